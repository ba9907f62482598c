//! Attacks on DTLS and HLS against the real server (issue #10 items 5, 10, 12), with a small
//! WebRTC client of its own (ICE binding request, DTLS as the client, SRTP) on loopback.

mod common;

use common::{vp8_rtp_parameters, Client, Server};
use serde_json::{json, Value};
use sfu::rtc::dtls::{
    DtlsCertificate, DtlsEvent, DtlsRole, DtlsRuntime, DtlsSession, RemoteFingerprint,
    SrtpProfileId,
};
use sfu::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
use std::net::UdpSocket;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use stun::textattrs::TextAttribute;

/// A 15-byte plaintext DTLS alert record (content type 21, epoch 0): `level`, `description`.
fn plaintext_alert(level: u8, description: u8) -> Vec<u8> {
    vec![
        21,
        0xfe,
        0xfd,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        9,
        0,
        2,
        level,
        description,
    ]
}

fn dtls_client() -> &'static (DtlsRuntime, String) {
    static CLIENT: OnceLock<(DtlsRuntime, String)> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
        let fingerprint = cert.fingerprint_sha256();
        (DtlsRuntime::start(cert).expect("dtls runtime"), fingerprint)
    })
}

/// The client side of one transport, up to the DTLS handshake.
struct Pending {
    id: String,
    socket: UdpSocket,
    server_fingerprint: String,
}

/// A connected transport.
struct Connected {
    id: String,
    socket: UdpSocket,
    srtp: SrtpSession,
    dtls: DtlsSession,
    /// The client session's later datagrams (its close_notify).
    dtls_events: mpsc::Receiver<DtlsEvent>,
}

impl Connected {
    /// Sends what the client's DTLS session queued since the handshake.
    fn pump_dtls(&self) {
        while let Ok(event) = self.dtls_events.try_recv() {
            if let DtlsEvent::Transmit(d) = event {
                let _ = self.socket.send(&d);
            }
        }
    }
}

/// create-transport, connect-transport (we are the DTLS client) and an ICE check.
fn open_transport(server: &Server, c: &mut Client, direction: &str) -> Pending {
    let t = c.ok("create-transport", json!({"direction": direction}));
    let id = t["id"].as_str().unwrap().to_owned();
    let ufrag = t["iceParameters"]["usernameFragment"].as_str().unwrap();
    let pwd = t["iceParameters"]["password"].as_str().unwrap();
    let port = t["iceCandidates"][0]["port"].as_u64().unwrap() as u16;
    assert_eq!(port, server.rtc_port);
    let server_fingerprint = t["dtlsParameters"]["fingerprints"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    c.ok(
        "connect-transport",
        json!({"transportId": id, "dtlsParameters": {"role": "client",
               "fingerprints": [{"algorithm": "sha-256", "value": dtls_client().1}]}}),
    );
    ice_check(&socket, ufrag, pwd);
    Pending {
        id,
        socket,
        server_fingerprint,
    }
}

fn ice_check(socket: &UdpSocket, ufrag: &str, pwd: &str) {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let mut m = Message::new();
        m.set_type(BINDING_REQUEST);
        m.transaction_id = TransactionId::new();
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, format!("{ufrag}:client"))
            .add_to(&mut m)
            .unwrap();
        m.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &1u64.to_be_bytes());
        m.add(ATTR_USE_CANDIDATE, &[]);
        MessageIntegrity::new_short_term_integrity(pwd.to_owned())
            .add_to(&mut m)
            .unwrap();
        FINGERPRINT.add_to(&mut m).unwrap();
        socket.send(&m.raw).unwrap();
        while let Ok(n) = socket.recv(&mut buf) {
            let mut r = Message::new();
            if r.unmarshal_binary(&buf[..n]).is_ok() && r.typ == BINDING_SUCCESS {
                return;
            }
        }
    }
    panic!("no ICE binding response");
}

/// The DTLS handshake; with `alert_mid_handshake`, a plaintext fatal alert is sent from the
/// client's own address as soon as the server's first flight arrives.
fn handshake(p: Pending, alert_mid_handshake: bool) -> Result<Connected, String> {
    let (tx, events) = mpsc::channel();
    let session = dtls_client().0.new_session(
        DtlsRole::Client,
        vec![RemoteFingerprint {
            algorithm: "sha-256".into(),
            value: p.server_fingerprint.clone(),
        }],
        Arc::new(move |e| {
            let _ = tx.send(e);
        }),
    );
    p.socket
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    let mut alerted = !alert_mid_handshake;
    while Instant::now() < deadline {
        let mut connected = None;
        while let Ok(event) = events.try_recv() {
            match event {
                DtlsEvent::Transmit(d) => {
                    p.socket.send(&d).unwrap();
                }
                DtlsEvent::Connected(keys) => {
                    connected = Some(keys);
                    break;
                }
                DtlsEvent::Failed(reason) => return Err(reason),
                DtlsEvent::Closed => return Err("closed".into()),
                DtlsEvent::Sctp(_) => {}
            }
        }
        if let Some(keys) = connected {
            assert!(alerted, "the alert went out before the handshake ended");
            let keys = split_keying_material(profile(keys.profile), &keys.material, true).unwrap();
            return Ok(Connected {
                id: p.id,
                socket: p.socket,
                srtp: SrtpSession::new(&keys).unwrap(),
                dtls: session,
                dtls_events: events,
            });
        }
        if let Ok(n) = p.socket.recv(&mut buf) {
            if (20..=63).contains(&buf[0]) {
                if !alerted {
                    // handshake_failure, fatal: what a forger would send to abort it.
                    p.socket.send(&plaintext_alert(2, 40)).unwrap();
                    alerted = true;
                }
                session.feed(&buf[..n]);
            }
        }
    }
    Err("handshake timed out".into())
}

fn profile(p: SrtpProfileId) -> SrtpProfile {
    match p {
        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProfileId::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfileId::Aes128CmHmacSha1_32 => SrtpProfile::Aes128CmHmacSha1_32,
    }
}

/// A publisher sending VP8 (every 10th packet a key frame) over SRTP.
struct Publisher {
    t: Connected,
    ssrc: u32,
    seq: u16,
    producer_id: String,
}

impl Publisher {
    fn join(server: &Server, room: &str, ssrc: u32) -> (Client, Publisher) {
        let mut c = server.client();
        c.ok("join-room", json!({"roomId": room}));
        let t = handshake(open_transport(server, &mut c, "send"), false).expect("handshake");
        let p = c.ok(
            "produce",
            json!({"transportId": t.id, "kind": "video", "rtpParameters": vp8_rtp_parameters(ssrc)}),
        );
        let producer_id = p["producerId"].as_str().unwrap().to_owned();
        (
            c,
            Publisher {
                t,
                ssrc,
                seq: 100,
                producer_id,
            },
        )
    }

    fn send(&mut self, n: usize) {
        for _ in 0..n {
            let key = self.seq.is_multiple_of(10);
            let mut pkt = vec![0x80, 0x80 | 96];
            pkt.extend_from_slice(&self.seq.to_be_bytes());
            pkt.extend_from_slice(&(u32::from(self.seq) * 3000).to_be_bytes());
            pkt.extend_from_slice(&self.ssrc.to_be_bytes());
            pkt.extend_from_slice(&[0x90, 0x80, 0x80, self.seq as u8]);
            if key {
                pkt.extend_from_slice(&[
                    0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
                ]);
            } else {
                pkt.extend_from_slice(&[0x51, 0x2a, 0x00, 0, 0, 0, 0, 0, 0, 0]);
            }
            pkt.resize(400, 0xa5);
            self.seq = self.seq.wrapping_add(1);
            let protected = self.t.srtp.encrypt_rtp(&pkt).unwrap();
            self.t.socket.send(&protected).unwrap();
        }
    }
}

/// A subscriber consuming one producer; counts the media packets it can decrypt.
struct Subscriber {
    c: Client,
    t: Connected,
}

impl Subscriber {
    fn join(server: &Server, room: &str, producer_id: &str, alert_mid_handshake: bool) -> Self {
        let mut c = server.client();
        let joined = c.ok("join-room", json!({"roomId": room}));
        let pending = open_transport(server, &mut c, "recv");
        let t = handshake(pending, alert_mid_handshake).expect("the handshake completes");
        let consumer = c.ok(
            "consume-media",
            json!({"transportId": t.id, "producerId": producer_id,
                   "rtpCapabilities": joined["routerRtpCapabilities"]}),
        );
        c.ok(
            "resume-consumer",
            json!({"consumerId": consumer["consumerId"]}),
        );
        t.socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        Subscriber { c, t }
    }

    /// Drains the socket; returns the media packets that decrypted.
    fn receive(&mut self) -> usize {
        let mut buf = [0u8; 2048];
        let mut media = 0;
        while let Ok(n) = self.t.socket.recv(&mut buf) {
            let rtp = (128..=191).contains(&buf[0]) && !(192..=223).contains(&buf[1]);
            if rtp && self.t.srtp.decrypt_rtp(&buf[..n]).is_ok() {
                media += 1;
            }
        }
        media
    }
}

/// Sends media until the subscriber has decrypted `want` packets (or the deadline passes).
fn media_reaches(publisher: &mut Publisher, sub: &mut Subscriber, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut got = 0;
    while got < want && Instant::now() < deadline {
        publisher.send(5);
        std::thread::sleep(Duration::from_millis(5));
        got += sub.receive();
    }
    got
}

/// Notifications of `method` received so far (a request round trip flushes what is queued).
fn notified(c: &mut Client, method: &str) -> Vec<Value> {
    let _ = c.request("pause-consumer", json!({"consumerId": "none"}));
    c.notifications
        .iter()
        .filter(|n| n["method"] == json!(method))
        .cloned()
        .collect()
}

fn transports(server: &Server) -> u64 {
    server.stats()["transports"].as_u64().unwrap()
}

#[test]
fn a_plaintext_alert_after_the_handshake_and_one_during_another_handshake_change_nothing() {
    let server = Server::start();
    let (mut pc, mut publisher) = Publisher::join(&server, "alerts", 1111);
    let mut sub = Subscriber::join(&server, "alerts", &publisher.producer_id, false);
    assert!(
        media_reaches(&mut publisher, &mut sub, 20) >= 20,
        "media flows"
    );

    // The 15-byte attack, from both clients' own addresses: close_notify and a fatal alert.
    for alert in [plaintext_alert(1, 0), plaintext_alert(2, 40)] {
        assert_eq!(alert.len(), 15);
        publisher.t.socket.send(&alert).unwrap();
        sub.t.socket.send(&alert).unwrap();
    }
    // A second subscriber whose handshake gets a forged fatal alert half-way through.
    let mut sub2 = Subscriber::join(&server, "alerts", &publisher.producer_id, true);
    assert_eq!(transports(&server), 3);

    let after = media_reaches(&mut publisher, &mut sub, 100);
    assert!(
        after >= 100,
        "media kept flowing after the alerts: {after} packets"
    );
    let second = media_reaches(&mut publisher, &mut sub2, 20);
    assert!(
        second >= 20,
        "the alerted handshake carries media: {second} packets"
    );
    assert_eq!(transports(&server), 3, "no transport closed");
    for c in [&mut pc, &mut sub.c, &mut sub2.c] {
        assert!(notified(c, "transport-closed").is_empty());
    }
}

#[test]
fn a_real_dtls_close_closes_the_transport_and_tells_the_client() {
    let server = Server::start();
    let mut c = server.client();
    c.ok("join-room", json!({"roomId": "closing"}));
    let t = handshake(open_transport(&server, &mut c, "send"), false).expect("handshake");
    c.ok(
        "produce",
        json!({"transportId": t.id, "kind": "video", "rtpParameters": vp8_rtp_parameters(2222)}),
    );
    assert_eq!(transports(&server), 1);
    // An authenticated close_notify: the client ends its DTLS session.
    t.dtls.close();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    t.socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let closed = loop {
        // The client's close_notify leaves through its sink; carry it to the server.
        t.pump_dtls();
        let _ = t.socket.recv(&mut buf);
        let closed = notified(&mut c, "transport-closed");
        if !closed.is_empty() || Instant::now() > deadline {
            break closed;
        }
    };
    assert_eq!(
        closed.len(),
        1,
        "one transport-closed: {:?}",
        c.notifications
    );
    assert_eq!(closed[0]["data"]["transportId"], json!(t.id));
    assert_eq!(transports(&server), 0);
    assert_eq!(
        server.stats()["producers"],
        json!(0),
        "its producer went with it"
    );
    // The client can reconnect with a new transport.
    let again = handshake(open_transport(&server, &mut c, "send"), false);
    assert!(again.is_ok(), "{:?}", again.err());
}

/// The server's FFmpeg children: (pid, working directory, uid).
fn ffmpeg_children(server_pid: u32) -> Vec<(u32, String, u32)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(server_pid) || !head.contains("(ffmpeg") {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(u32::MAX);
        found.push((pid, cwd, uid));
    }
    found
}

#[test]
fn rooms_with_producers_but_no_media_start_no_ffmpeg_while_a_room_with_media_gets_one() {
    let server = Server::start_with(&["--workers", "1", "--hls-max-rooms", "4"]);
    // Four fake rooms: a producer each, no media, and an HLS viewer.
    let fakes: Vec<String> = (0..4).map(|i| format!("fake-{i}")).collect();
    let mut holders = Vec::new();
    for (i, room) in fakes.iter().enumerate() {
        let mut c = server.client();
        c.ok("join-room", json!({"roomId": room}));
        let t = c.ok("create-transport", json!({"direction": "send"}));
        c.ok(
            "produce",
            json!({"transportId": t["id"], "kind": "video",
                   "rtpParameters": vp8_rtp_parameters(3000 + 2 * i as u32)}),
        );
        holders.push(c);
    }
    let view = |room: &str| {
        let _ = server.get(&format!("/hls/{room}/index.m3u8"));
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        fakes.iter().for_each(|r| view(r));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        ffmpeg_children(server.pid()).is_empty(),
        "FFmpeg for a room without media"
    );

    // The control room sends media; its viewer gets a pipeline although four rooms asked first.
    let (_pc, mut publisher) = Publisher::join(&server, "control", 4444);
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut control = None;
    let mut fake_runs = Vec::new();
    let mut seen_after = 0;
    while Instant::now() < deadline && seen_after < 10 {
        publisher.send(10);
        view("control");
        fakes.iter().for_each(|r| view(r));
        let children = ffmpeg_children(server.pid());
        fake_runs.extend(
            children
                .iter()
                .filter(|(_, cwd, _)| fakes.iter().any(|f| cwd.ends_with(&format!("/{f}"))))
                .cloned(),
        );
        if let Some(c) = children
            .iter()
            .find(|(_, cwd, _)| cwd.ends_with("/control"))
        {
            control = Some(c.clone());
        }
        // Keep watching the fake rooms for a while after the control room started.
        if control.is_some() {
            seen_after += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (pid, _, uid) = control.expect("the room with media got an FFmpeg");
    assert!(
        fake_runs.is_empty(),
        "FFmpeg for rooms without media: {fake_runs:?}"
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(uid, 0, "FFmpeg (pid {pid}) runs without root privileges");
    }
    drop(holders);
}

/// The binary started by hand (for start-up checks), killed on drop.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_raw(args: &[&str], tmpdir: &std::path::Path) -> Started {
    let port = sfu::testing::free_tcp_port();
    let rtc = sfu::testing::free_udp_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--rtc-port", &rtc.to_string(), "--workers", "1", "--no-pin"])
        .args(["--web-root", "/nonexistent"])
        .args(args)
        .env("TMPDIR", tmpdir)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("SFU_HLS_ROOT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sfu");
    Started(child)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sfu-hlsroot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_default_hls_root_is_a_fresh_private_folder_deleted_at_exit() {
    use std::os::unix::fs::MetadataExt;
    let tmp = scratch("default");
    let mut server = start_raw(&[], &tmp);
    let pid = server.0.id();
    let prefix = format!("sfu-hls-{pid}-");
    let deadline = Instant::now() + Duration::from_secs(15);
    let root = loop {
        let found = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix));
        if let Some(e) = found {
            break e.path();
        }
        assert!(
            Instant::now() < deadline,
            "no HLS root under {}",
            tmp.display()
        );
        assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(50));
    };
    let meta = std::fs::symlink_metadata(&root).unwrap();
    assert!(meta.is_dir() && !meta.file_type().is_symlink());
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", root.display());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!root.exists(), "the fresh root is deleted at exit");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_symlinked_hls_root_is_refused_at_start_up_with_what_to_do() {
    use std::io::Read;
    let tmp = scratch("symlink");
    let target = tmp.join("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    let link = tmp.join("hls");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut server = start_raw(&["--hls-root", link.to_str().unwrap()], &tmp);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server started with a symlinked root"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("symlink") && stderr.contains("--hls-root"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written through it"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Waits for a `transport-closed` of `id`; returns how long it took.
fn wait_transport_closed(c: &mut Client, id: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if notified(c, "transport-closed")
            .iter()
            .any(|n| n["data"]["transportId"] == json!(id))
        {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn handshakes_beyond_the_per_ip_cap_fail_at_once_and_a_stalled_one_meets_its_deadline() {
    let server = Server::start_with(&[
        "--workers",
        "1",
        "--dtls-max-handshakes-per-ip",
        "1",
        "--dtls-handshake-timeout-secs",
        "4",
    ]);
    let mut c = server.client();
    c.ok("join-room", json!({"roomId": "flood"}));
    // A: ICE done, then silence: the server's handshake waits for a ClientHello.
    let stalled = open_transport(&server, &mut c, "send");
    let started = Instant::now();
    // B from the same address: over the cap.
    let refused = open_transport(&server, &mut c, "send");
    let b = wait_transport_closed(&mut c, &refused.id, Duration::from_secs(8));
    assert!(b.is_some(), "the handshake over the cap was refused");
    let refused_after = started.elapsed();
    assert!(
        notified(&mut c, "transport-closed")
            .iter()
            .all(|n| n["data"]["transportId"] != json!(stalled.id)),
        "refused at once, while A still waits for its deadline ({refused_after:?})"
    );
    let a = wait_transport_closed(&mut c, &stalled.id, Duration::from_secs(8));
    let took = started.elapsed();
    assert!(a.is_some(), "the stalled handshake was ended");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "ended by its 4 s deadline, after {took:?}"
    );
    assert_eq!(transports(&server), 0);
    // With the place free again, a real handshake goes through.
    assert!(handshake(open_transport(&server, &mut c, "send"), false).is_ok());
}
