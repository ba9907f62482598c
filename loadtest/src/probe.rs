//! Small pieces for tests that probe the server as an attacker would: start the real binary,
//! publish and subscribe with real ICE/DTLS/SRTP, count what arrives on a socket, and read
//! the RTCP the server sends a publisher (key-frame requests).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sfu::rtc::rtcp::{self, RtcpEvent};

use crate::media::{self, Track};
use crate::signaling::{http_get, Signaling};
use crate::transport::{self, DtlsClient, Transport};

/// The real `sfu` binary, killed on drop.
pub struct SfuProcess {
    child: Child,
    pub port: u16,
}

impl Drop for SfuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sfu binary of this build profile (built first if missing), or `SFU_BIN`.
pub fn sfu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SFU_BIN") {
        return PathBuf::from(path);
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let binary = target.join(profile).join("sfu");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(&root)
            .args(["build", "-p", "sfu", "--bin", "sfu"]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the sfu binary failed");
    }
    binary
}

impl SfuProcess {
    /// One worker on free loopback ports, plus `extra` flags; waits until `/healthz` answers.
    pub fn start(extra: &[&str]) -> SfuProcess {
        let port = sfu::testing::free_tcp_port();
        let hls = std::env::temp_dir().join(format!("loadtest-probe-hls-{port}"));
        let child = Command::new(sfu_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--rtc-port", &sfu::testing::free_udp_port().to_string()])
            .args(["--workers", "1", "--no-pin", "--web-root", "/nonexistent"])
            .args(["--hls-root", hls.to_str().expect("utf-8 temp dir")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sfu");
        let server = SfuProcess { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(&server.host(), "/healthz").is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// All of `/api/stats`.
    pub fn stats(&self) -> Value {
        let text = http_get(&self.host(), "/api/stats").expect("GET /api/stats");
        serde_json::from_str(&text).expect("stats JSON")
    }

    /// The first worker's entry of `/api/stats`.
    pub fn worker_stats(&self) -> Value {
        self.stats()["workers"][0].clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// A counter of `/api/stats` (worker 0).
pub fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// A joined peer with one connected transport.
pub struct Peer {
    pub sig: Signaling,
    pub transport: Transport,
    pub caps: Value,
}

/// Joins `room` and opens a transport of `direction`.
pub fn join(url: &str, room: &str, direction: &str, dtls: &DtlsClient) -> Result<Peer, String> {
    let (mut sig, joined, _) = Signaling::join(url, room, "probe")?;
    let transport = transport::open(&mut sig, direction, dtls)?;
    Ok(Peer {
        sig,
        transport,
        caps: joined["routerRtpCapabilities"].clone(),
    })
}

/// VP8 parameters with `encodings` layers, SSRCs `ssrc, ssrc + 2, …` (RTX on the odd ones).
pub fn vp8_layers(ssrc: u32, encodings: u32, cname: &str) -> Value {
    let mut params = media::vp8_rtp_parameters(ssrc, cname);
    params["encodings"] = (0..encodings)
        .map(|i| json!({"ssrc": ssrc + 2 * i, "rtx": {"ssrc": ssrc + 2 * i + 1}}))
        .collect();
    params
}

/// Produces VP8 video on the peer's transport; the producer id.
pub fn produce_video(peer: &mut Peer, params: Value) -> Result<String, String> {
    let answer = peer.sig.request(
        "produce",
        json!({"transportId": peer.transport.id, "kind": "video", "rtpParameters": params}),
    )?;
    answer["producerId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "produce: no producerId".into())
}

/// consume-media (not resumed); (consumer id, its SSRC).
pub fn consume(peer: &mut Peer, producer_id: &str) -> Result<(String, u32), String> {
    let c = peer.sig.request(
        "consume-media",
        json!({"transportId": peer.transport.id, "producerId": producer_id,
               "rtpCapabilities": peer.caps}),
    )?;
    let id = c["consumerId"].as_str().ok_or("no consumerId")?.to_owned();
    let ssrc = c["rtpParameters"]["encodings"][0]["ssrc"]
        .as_u64()
        .ok_or("no ssrc")? as u32;
    Ok((id, ssrc))
}

/// What a publisher's send loop saw from the server.
#[derive(Debug, Default)]
pub struct PublisherLog {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// When each RTCP packet asking for a key frame (PLI or FIR) arrived.
    pub keyframe_requests: Vec<Instant>,
}

/// Sends `tracks` over the transport from a thread until stopped, and decrypts the server's
/// SRTCP on the same socket (one thread: the SRTP session serves both directions).
pub struct MediaSender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<PublisherLog>>,
}

impl MediaSender {
    pub fn start(transport: Transport, mut tracks: Vec<Track>) -> MediaSender {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // `_dtls` lives as long as the thread: dropping it would close the transport.
            let Transport {
                socket,
                mut srtp,
                _dtls,
                ..
            } = transport;
            socket
                .set_read_timeout(Some(Duration::from_millis(2)))
                .expect("socket timeout");
            let mut log = PublisherLog::default();
            let mut plain = Vec::with_capacity(2048);
            let mut buf = [0u8; 2048];
            let mut next_due: Vec<Instant> = tracks.iter().map(|_| Instant::now()).collect();
            let mut events = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                for (t, due) in tracks.iter_mut().zip(next_due.iter_mut()) {
                    while *due <= now {
                        t.next_packet(&mut plain);
                        *due += t.interval;
                        if let Ok(p) = srtp.encrypt_rtp(&plain) {
                            if let Ok(n) = socket.send(&p) {
                                log.packets_sent += 1;
                                log.bytes_sent += n as u64;
                            }
                        }
                    }
                }
                while let Ok(n) = socket.recv(&mut buf) {
                    let is_rtcp = n > 1 && (192..=223).contains(&buf[1]);
                    if !is_rtcp || buf[0] < 128 {
                        continue;
                    }
                    let Ok(clear) = srtp.decrypt_rtcp(&buf[..n]) else {
                        continue;
                    };
                    events.clear();
                    if rtcp::parse_compound(&clear, &mut events).is_ok()
                        && events
                            .iter()
                            .any(|e| matches!(e, RtcpEvent::Pli { .. } | RtcpEvent::Fir { .. }))
                    {
                        log.keyframe_requests.push(Instant::now());
                    }
                }
            }
            log
        });
        MediaSender {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> PublisherLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for MediaSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Datagrams (and their bytes) arriving on each socket until `until`, STUN left out.
pub fn count_media(sockets: &[&UdpSocket], until: Instant) -> Vec<(u64, u64)> {
    let mut counts = vec![(0u64, 0u64); sockets.len()];
    let mut buf = [0u8; 2048];
    for s in sockets {
        s.set_read_timeout(Some(Duration::from_millis(1)))
            .expect("socket timeout");
    }
    // At least one pass, so a deadline of now just drains the sockets.
    loop {
        for (s, c) in sockets.iter().zip(counts.iter_mut()) {
            while let Ok(n) = s.recv(&mut buf) {
                // RFC 7983: 0..=3 is STUN; the rest (DTLS, SRTP) is what consent guards.
                if n > 0 && buf[0] > 3 {
                    c.0 += 1;
                    c.1 += n as u64;
                }
            }
        }
        if Instant::now() >= until {
            return counts;
        }
    }
}

/// A UDP socket on loopback that talks to the server's media address of `transport`.
pub fn extra_socket(transport: &Transport) -> UdpSocket {
    let to: SocketAddr = transport.socket.peer_addr().expect("connected transport");
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.connect(to).expect("connect");
    s
}

/// Sends a binding request with `transport`'s credentials (and USE-CANDIDATE) from `socket`
/// and waits for the server's answer (true if it came).
pub fn bind_from(socket: &UdpSocket, transport: &Transport, nominate: bool) -> bool {
    let c = &transport.consent;
    let req = transport::binding_request(&c.server_ufrag, &c.client_ufrag, &c.server_pwd, nominate);
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("socket timeout");
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        if socket.send(&req).is_err() {
            continue;
        }
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= 20 && buf[0] < 4 && buf[8..20] == req[8..20] {
                return true;
            }
        }
    }
    false
}
