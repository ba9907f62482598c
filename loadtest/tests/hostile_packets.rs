//! Hostile packets from a publisher's own address (issue #10 items 1 and 2), against the real
//! `sfu` binary over real ICE/DTLS/SRTP on loopback: the room survives, its subscriber keeps
//! receiving media, nothing panics, and junk SRTP with random SSRCs does not grow memory.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use loadtest::media::{self, Track};
use loadtest::probe::SfuProcess;
use loadtest::signaling::Signaling;
use loadtest::transport::{self, DtlsClient, Transport};
use serde_json::{json, Value};
use sfu::rtc::srtp::{SrtpSession, MAX_RTP_TAG_LEN};

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// xorshift64: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The publisher's sending side, shared by the paced media and the attacks.
struct Sender {
    srtp: SrtpSession,
    track: Track,
}

impl Sender {
    /// The next media packet, `mutate`d in clear, then protected (so it authenticates); left
    /// in clear if its lengths are too broken to protect.
    fn next_protected(&mut self, mutate: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut p = Vec::with_capacity(1500 + MAX_RTP_TAG_LEN);
        self.track.next_packet(&mut p);
        mutate(&mut p);
        // In place: our protect reads only the lengths, so malformed elements get through.
        let _ = self.srtp.protect_rtp_in_place(&mut p);
        p
    }
}

/// The 36-byte packet of issue #10, all header: a one-byte extension block of 5 words whose
/// last element (id 1) claims 16 bytes past the end of the packet.
fn crasher(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 0xe0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x05, 0x10, b'a']);
    p.resize(35, 0);
    p.push(0x1f);
    assert_eq!(p.len(), 36);
    p
}

/// Rewrites the extension block of a plain packet (keeping its SSRC and sequence number, so
/// the publisher's real stream stays in order) into a hostile one.
fn hostile_extensions(p: &mut [u8], rng: &mut Rng) {
    let r = rng.next();
    match r % 4 {
        // One-byte element overrunning the block.
        0 => p[16..20].copy_from_slice(&[0x1f, 0xaa, 0xbb, 0xcc]),
        // Two-byte form with an overrunning length.
        1 => {
            p[12..14].copy_from_slice(&[0x10, 0x00]);
            p[16..20].copy_from_slice(&[0x01, 0xff, 0, 0]);
        }
        // A block length larger than the packet.
        2 => p[14..16].copy_from_slice(&[0xff, 0xff]),
        // Random bytes in the block and the payload descriptor, padding bit with a random length.
        _ => {
            for b in &mut p[16..30] {
                *b = rng.next() as u8;
            }
            if r & 0x100 != 0 {
                p[0] |= 0x20;
                *p.last_mut().unwrap() = (r >> 16) as u8;
            }
        }
    }
}

fn publisher(url: &str, dtls: &DtlsClient, room: &str) -> (Signaling, Transport, u32) {
    let mut sig = Signaling::connect(url).expect("connect");
    sig.request("join-room", json!({"roomId": room, "displayName": "pub"}))
        .expect("join");
    let t = transport::open(&mut sig, "send", dtls).expect("send transport");
    let ssrc = 0x1000_0000 | (rand::random::<u32>() & 0x0fff_fffe);
    sig.request(
        "produce",
        json!({"transportId": t.id, "kind": "video",
               "rtpParameters": media::vp8_rtp_parameters(ssrc, "hostile")}),
    )
    .expect("produce");
    (sig, t, ssrc)
}

fn subscriber(url: &str, dtls: &DtlsClient, room: &str) -> (Signaling, Transport, u32) {
    let mut sig = Signaling::connect(url).expect("connect");
    let joined = sig
        .request("join-room", json!({"roomId": room, "displayName": "sub"}))
        .expect("join");
    let caps = joined["routerRtpCapabilities"].clone();
    let producer = joined["producers"][0]["producerId"].clone();
    let t = transport::open(&mut sig, "recv", dtls).expect("recv transport");
    let consumer = sig
        .request(
            "consume-media",
            json!({"transportId": t.id, "producerId": producer, "rtpCapabilities": caps}),
        )
        .expect("consume");
    let ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
        .as_u64()
        .expect("ssrc") as u32;
    sig.request(
        "resume-consumer",
        json!({"consumerId": consumer["consumerId"]}),
    )
    .expect("resume");
    (sig, t, ssrc)
}

/// Counts the subscriber's packets of `ssrc` that decrypt, until `stop`.
fn receive(
    socket: &UdpSocket,
    mut srtp: SrtpSession,
    ssrc: u32,
    got: &AtomicU64,
    stop: &AtomicBool,
) {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let p = &buf[..n];
        if n >= 12
            && p[0] >> 6 == 2
            && !(192..=223).contains(&p[1])
            && p[8..12] == ssrc.to_be_bytes()
            && srtp.decrypt_rtp(p).is_ok()
        {
            got.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn worker_sum(stats: &Value, field: &str) -> u64 {
    stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w[field].as_u64().unwrap())
        .sum()
}

fn assert_room_alive(server: &SfuProcess, got: &AtomicU64, what: &str) {
    let before = got.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(5),
        &format!("media after {what}"),
        || got.load(Ordering::Relaxed) >= before + 50,
    );
    let stats = server.stats();
    assert_eq!(stats["rooms"], 1, "after {what}: {stats}");
    assert_eq!(stats["peers"], 2, "after {what}: {stats}");
    assert_eq!(worker_sum(&stats, "panics"), 0, "after {what}: {stats}");
}

#[test]
fn hostile_rtp_from_a_publishers_address_neither_kills_the_room_nor_grows_memory() {
    let server = SfuProcess::start(&[]);
    let url = format!("ws://{}/ws", server.host());
    let dtls = DtlsClient::start().expect("dtls");
    let room = format!("hostile-{:08x}", rand::random::<u32>());
    let (_pub_sig, pub_t, pub_ssrc) = publisher(&url, &dtls, &room);
    let (_sub_sig, sub_t, sub_ssrc) = subscriber(&url, &dtls, &room);
    let pub_socket = &pub_t.socket;
    let sender = Mutex::new(Sender {
        srtp: pub_t.srtp,
        track: Track::video(pub_ssrc, 800, 1000),
    });
    let got = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut rng = Rng(0x5eed_1234_abcd_0042);

    std::thread::scope(|scope| {
        let (sender, got, stop) = (&sender, &got, &stop);
        // The publisher's real media, ~100 packets/s, all the while.
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let p = sender.lock().unwrap().next_protected(|_| {});
                let _ = pub_socket.send(&p);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let sub_socket = &sub_t.socket;
        let sub_srtp = sub_t.srtp;
        scope.spawn(move || receive(sub_socket, sub_srtp, sub_ssrc, got, stop));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(
                Duration::from_secs(10),
                "first media at the subscriber",
                || got.load(Ordering::Relaxed) >= 20,
            );

            // 1. The 36-byte packet, in clear and authenticated, then mutated RTP and RTCP.
            let seq = 0x4000;
            pub_socket.send(&crasher(pub_ssrc, seq)).unwrap();
            let authenticated = sender.lock().unwrap().next_protected(|p| {
                let seq = [p[2], p[3]];
                *p = crasher(pub_ssrc, 0);
                p[2..4].copy_from_slice(&seq);
            });
            pub_socket.send(&authenticated).unwrap();
            for i in 0..3000u32 {
                let packet = match i % 4 {
                    // Authenticated media with hostile extensions or padding.
                    0 => sender
                        .lock()
                        .unwrap()
                        .next_protected(|p| hostile_extensions(p, &mut rng)),
                    // A real packet with bytes flipped after protection (fails authentication).
                    1 => {
                        let mut p = sender.lock().unwrap().next_protected(|_| {});
                        for _ in 0..1 + rng.next() % 4 {
                            let at = (rng.next() as usize) % p.len();
                            p[at] ^= 1 << (rng.next() % 8);
                        }
                        p
                    }
                    // Authenticated RTCP of random content after a valid first word.
                    2 => {
                        let len = 8 + 4 * (rng.next() % 20) as usize;
                        let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        p[0] = 0x80 | (p[0] & 0x3f);
                        p[1] = 192 + (rng.next() % 16) as u8;
                        let s = sender.lock().unwrap().srtp.encrypt_rtcp(&p);
                        s.expect("rtcp").to_vec()
                    }
                    // Raw junk RTP/RTCP (no valid tag).
                    _ => {
                        let len = 12 + (rng.next() % 80) as usize;
                        let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                        p[0] = 0x80 | (p[0] & 0x3f);
                        p
                    }
                };
                let _ = pub_socket.send(&packet);
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            assert_room_alive(&server, got, "mutated packets");

            // 2. Junk SRTP with random SSRCs: half in clear (no tag), half authenticated with
            // the publisher's keys (the server keeps state only for a budget of SSRCs).
            let rss_before = server.rss_kib();
            let in_before = worker_sum(&server.stats(), "packetsIn");
            let started = Instant::now();
            const JUNK: u32 = 200_000;
            let mut plain = Vec::with_capacity(256);
            for i in 0..JUNK {
                plain.clear();
                let r = rng.next();
                plain.extend_from_slice(&[0x80, 96]);
                plain.extend_from_slice(&(r as u16).to_be_bytes());
                plain.extend_from_slice(&((r >> 16) as u32).to_be_bytes());
                plain.extend_from_slice(&(rng.next() as u32).to_be_bytes());
                plain.resize(160, 0x5a);
                if i % 2 == 0 {
                    sender
                        .lock()
                        .unwrap()
                        .srtp
                        .protect_rtp_in_place(&mut plain)
                        .unwrap();
                }
                let _ = pub_socket.send(&plain);
                // ~40,000 packets/s: what one worker takes without its socket buffer dropping.
                if i % 200 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let sent_in = started.elapsed();
            assert!(sent_in < Duration::from_secs(12), "junk took {sent_in:?}");
            wait_until(Duration::from_secs(10), "the server read the junk", || {
                worker_sum(&server.stats(), "packetsIn") >= in_before + u64::from(JUNK) * 8 / 10
            });
            let rss_after = server.rss_kib();
            let grown_mib = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
            eprintln!(
                "junk: {JUNK} packets in {sent_in:?}; RSS {rss_before} → {rss_after} KiB (+{grown_mib:.1} MiB)"
            );
            assert!(grown_mib < 20.0, "RSS grew {grown_mib:.1} MiB under junk");
            assert_room_alive(&server, got, "junk SRTP with random SSRCs");
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
}
