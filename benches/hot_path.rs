//! Micro benches of the forwarding hot path: SRTP protect/unprotect of a 1200-byte packet (our
//! in-place protect, `SrtpSession::encrypt_rtp`, and `webrtc-srtp`'s own encrypt as the old
//! baseline; our in-place unprotect next to `webrtc-srtp`'s decrypt), the per-consumer RTP
//! header rewrite, the `Forwarder`'s decision, and the fan-out of one publisher datagram to
//! N consumers through a real router (`sfu::testing::media`: receive, route, decide, rewrite,
//! protect in place ×N). Also prints allocations per forwarded and per received packet,
//! counted by a global allocator, and fails if the in-place protect or unprotect (+ parse), or
//! a router's whole packet path, allocates.
//!
//! `make bench` or `cargo bench --bench hot_path`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu::room::forward::{Forwarder, Packet};
use sfu::rtc::rtp::{parse_rtp, rewrite_into, set_sequence, ExtIdMap, Rewrite};
use sfu::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession, MAX_RTP_TAG_LEN};
use sfu::testing::media::{self, MediaRoom};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Counts every allocation (and reallocation) made by the process.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const PACKET_LEN: usize = 1200;
const PROFILES: [(SrtpProfile, &str); 3] = [
    (SrtpProfile::AeadAes256Gcm, "aead_aes_256_gcm"),
    (SrtpProfile::AeadAes128Gcm, "aead_aes_128_gcm"),
    (SrtpProfile::Aes128CmHmacSha1_80, "aes_cm_128_hmac_sha1_80"),
];

/// A 1200-byte VP8 packet as Chromium sends it: mid, abs-send-time and transport-cc extensions.
fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 96, 0, 0, 0, 1, 0x5f, 0x90, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0, 3]);
    p.extend_from_slice(&[0x40, b'0', 0x22, 1, 2, 3, 0x31, 0, 7, 0, 0, 0]);
    p.push(0x10);
    p.resize(PACKET_LEN, 0xa5);
    p
}

/// The browser's session (DTLS client) and ours (DTLS server) from the same keys.
fn session_pair(profile: SrtpProfile) -> (SrtpSession, SrtpSession) {
    let len = 2 * (profile.key_len() + profile.salt_len());
    let material: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let client = split_keying_material(profile, &material, true).expect("keys");
    let server = split_keying_material(profile, &material, false).expect("keys");
    (
        SrtpSession::new(&client).expect("session"),
        SrtpSession::new(&server).expect("session"),
    )
}

/// The old protect path: `webrtc-srtp`'s `Context` with the server's sending keys.
fn webrtc_srtp_tx(profile: SrtpProfile) -> Context {
    let len = 2 * (profile.key_len() + profile.salt_len());
    let material: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let server = split_keying_material(profile, &material, false).expect("keys");
    Context::new(
        &server.local_key,
        &server.local_salt,
        ProtectionProfile::from(profile),
        None,
        None,
    )
    .expect("context")
}

/// The old receive path: `webrtc-srtp`'s `Context` with the server's receiving keys and
/// replay protection on.
fn webrtc_srtp_rx(profile: SrtpProfile) -> Context {
    let len = 2 * (profile.key_len() + profile.salt_len());
    let material: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let server = split_keying_material(profile, &material, false).expect("keys");
    Context::new(
        &server.remote_key,
        &server.remote_salt,
        ProtectionProfile::from(profile),
        Some(srtp_replay_protection(512)),
        None,
    )
    .expect("context")
}

/// Times `unprotect` over `iters` fresh packets from `browser`, encrypted untimed in chunks.
fn timed_in_chunks(
    iters: u64,
    browser: &mut SrtpSession,
    seq: &mut u16,
    mut unprotect: impl FnMut(&[u8]),
) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(1024);
        let protected: Vec<_> = (0..chunk)
            .map(|_| {
                *seq = seq.wrapping_add(1);
                browser.encrypt_rtp(&packet(*seq)).expect("encrypt")
            })
            .collect();
        let started = Instant::now();
        for p in &protected {
            unprotect(p);
        }
        spent += started.elapsed();
        left -= chunk;
    }
    spent
}

/// The consumer-side rewrite the SFU does: mid and transport-cc kept (ids remapped),
/// abs-send-time dropped, the consumer's own mid written.
fn ext_map() -> ExtIdMap {
    let mut map = ExtIdMap::new();
    map.set(3, 5);
    map
}

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_1200B");
    group.throughput(Throughput::Elements(1));
    for (profile, name) in PROFILES {
        let (mut browser, _) = session_pair(profile);
        let mut plain = packet(0);
        let mut seq = 0u16;
        group.bench_function(BenchmarkId::new("protect", name), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_sequence(&mut plain, seq);
                black_box(browser.encrypt_rtp(&plain).expect("encrypt"))
            })
        });

        let mut old = webrtc_srtp_tx(profile);
        group.bench_function(BenchmarkId::new("protect_webrtc_srtp", name), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_sequence(&mut plain, seq);
                black_box(old.encrypt_rtp(&plain).expect("encrypt"))
            })
        });

        // The copy back into the buffer stands in for the rewrite that refills it per consumer.
        let (_, mut ours) = session_pair(profile);
        let mut buf = Vec::with_capacity(PACKET_LEN + MAX_RTP_TAG_LEN);
        group.bench_function(BenchmarkId::new("protect_in_place", name), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_sequence(&mut plain, seq);
                buf.clear();
                buf.extend_from_slice(&plain);
                ours.protect_rtp_in_place(&mut buf).expect("protect");
                black_box(buf.len())
            })
        });

        // Replay protection rejects a repeated packet: unprotect fresh ones, encrypted untimed.
        // Ours decrypts in place in a reused buffer (the copy in stands in for the receive
        // path's copy out of the socket buffer); webrtc-srtp's decrypt (replay protection on,
        // as the server used it) allocates its output per packet.
        let (mut browser, mut ours) = session_pair(profile);
        let mut seq = 0u16;
        let mut buf = Vec::with_capacity(2048);
        group.bench_function(BenchmarkId::new("unprotect_in_place", name), |b| {
            b.iter_custom(|iters| {
                timed_in_chunks(iters, &mut browser, &mut seq, |p| {
                    buf.clear();
                    buf.extend_from_slice(p);
                    ours.unprotect_rtp(&mut buf).expect("unprotect");
                    black_box(buf.len());
                })
            })
        });
        let (mut browser, _) = session_pair(profile);
        let mut old = webrtc_srtp_rx(profile);
        group.bench_function(BenchmarkId::new("decrypt_webrtc_srtp", name), |b| {
            b.iter_custom(|iters| {
                timed_in_chunks(iters, &mut browser, &mut seq, |p| {
                    black_box(old.decrypt_rtp(p).expect("decrypt"));
                })
            })
        });
    }
    group.finish();
}

fn rewrite(c: &mut Criterion) {
    let src = packet(1);
    let header = parse_rtp(&src).expect("rtp");
    let map = ext_map();
    let mut out = Vec::with_capacity(2048);
    let mut seq = 0u16;
    let mut group = c.benchmark_group("rtp_rewrite_1200B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rewrite_into", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let rw = Rewrite {
                ssrc: 0xdead_beef,
                payload_type: 101,
                sequence: seq,
                timestamp: 12345,
                ext_map: &map,
                mid: Some((1, b"3")),
                twcc: None,
            };
            rewrite_into(black_box(&src), &header, &rw, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

/// The publisher's next `n` datagrams (encrypted outside any timing).
fn datagrams(room: &mut MediaRoom, n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|_| room.next_datagram(PACKET_LEN)).collect()
}

/// The real packet path of a router: one publisher datagram in (SRTP unprotect, parse,
/// route, cache), the `Forwarder`'s decision, rewrite and in-place protect for each of `n`
/// consumers, out to the outbox. Elements = forwarded packets, so the report's
/// per-element time is ns per forwarded packet (the receive side amortised over the fan-out).
fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out_1200B");
    for n in [1usize, 10, 100] {
        let (mut core, mut harness) = media::worker();
        let mut room = harness.room(&mut core, "bench", n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("router_receive_forward", n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = datagrams(&mut room, left.min(1024));
                    let started = Instant::now();
                    for d in &chunk {
                        let sent = room.receive(&mut core, d);
                        debug_assert_eq!(sent, n);
                        black_box(sent);
                    }
                    spent += started.elapsed();
                    left -= chunk.len() as u64;
                }
                spent
            })
        });
    }
    group.finish();

    // The decision alone: what each consumer pays before rewrite and protect.
    let mut group = c.benchmark_group("forwarder");
    group.throughput(Throughput::Elements(1));
    let mut fwd = Forwarder::new(1000, 90_000);
    let mut seq = 0u16;
    let now = Instant::now();
    group.bench_function("decide", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let pkt = Packet {
                seq,
                ts: u32::from(seq) * 3000,
                layer: 0,
                video: true,
            };
            black_box(fwd.decide(&pkt, 0, now, || true))
        })
    });
    group.finish();
}

#[derive(Clone, Copy)]
enum Protect {
    None,
    EncryptRtp,
    WebrtcSrtp,
    InPlace,
}

/// Allocations per forwarded packet: the rewrite alone, and rewrite + each SRTP protect path.
/// 70 000 packets per path: every SSRC's sequence number wraps once (ROC 0 → 1).
fn allocations(_: &mut Criterion) {
    const PACKETS: u64 = 70_000;
    let src = packet(1);
    let header = parse_rtp(&src).expect("rtp");
    let map = ext_map();
    let mut scratch = Vec::with_capacity(2048);
    let (_, mut ours) = session_pair(SrtpProfile::AeadAes256Gcm);
    let mut old = webrtc_srtp_tx(SrtpProfile::AeadAes256Gcm);
    let mut ssrc = 7;
    let mut measure = |protect: Protect| {
        // A fresh SSRC per path; its first packet (the map entry for its ROC) is not counted.
        ssrc += 1;
        let mut before = 0;
        for seq in 0..PACKETS {
            if seq == 1 {
                before = ALLOCATIONS.load(Ordering::Relaxed);
            }
            let rw = Rewrite {
                ssrc,
                payload_type: 101,
                sequence: (seq as u16).wrapping_add(0xff00),
                timestamp: 12345,
                ext_map: &map,
                mid: Some((1, b"3")),
                twcc: None,
            };
            rewrite_into(&src, &header, &rw, &mut scratch);
            match protect {
                Protect::None => {}
                Protect::EncryptRtp => {
                    black_box(ours.encrypt_rtp(&scratch).expect("encrypt"));
                }
                Protect::WebrtcSrtp => {
                    black_box(old.encrypt_rtp(&scratch).expect("encrypt"));
                }
                Protect::InPlace => {
                    ours.protect_rtp_in_place(&mut scratch).expect("protect");
                    black_box(scratch.len());
                }
            }
        }
        (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / (PACKETS - 1) as f64
    };
    let rewrite = measure(Protect::None);
    let encrypt_rtp = measure(Protect::EncryptRtp);
    let webrtc_srtp = measure(Protect::WebrtcSrtp);
    let in_place = measure(Protect::InPlace);
    println!(
        "allocations per forwarded packet: rewrite_into {rewrite:.2}, + SrtpSession::encrypt_rtp \
         {encrypt_rtp:.2}, + webrtc-srtp encrypt {webrtc_srtp:.2}, + protect_rtp_in_place \
         {in_place:.2}"
    );
    assert_eq!(in_place, 0.0, "protect_rtp_in_place allocated");
    receive_allocations();
    router_allocations();
}

/// Allocations per datagram through a real router with 10 consumers (receive, route,
/// forwarder, rewrite, protect ×10): 70 000 datagrams, so the sequence numbers wrap. The
/// first ones (the retransmission cache, the first sync) are not counted.
fn router_allocations() {
    const PACKETS: u64 = 70_000;
    let (mut core, mut harness) = media::worker();
    let mut room = harness.room(&mut core, "allocations", 10);
    for d in datagrams(&mut room, 16) {
        assert_eq!(room.receive(&mut core, &d), 10, "every consumer forwards");
    }
    let mut counted = 0;
    let mut left = PACKETS;
    while left > 0 {
        let chunk = datagrams(&mut room, left.min(4096));
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for d in &chunk {
            black_box(room.receive(&mut core, d));
        }
        counted += ALLOCATIONS.load(Ordering::Relaxed) - before;
        left -= chunk.len() as u64;
    }
    let per_packet = counted as f64 / PACKETS as f64;
    println!(
        "allocations per datagram through a router (receive + forward to 10 consumers): \
         {per_packet:.4}"
    );
    assert_eq!(counted, 0, "the router's packet path allocated");
}

/// Allocations per received packet: our unprotect in place + parse_rtp, against webrtc-srtp's
/// decrypt + parse; 60 000 packets from sequence number 30 000, so it wraps (ROC 0 → 1).
fn receive_allocations() {
    const PACKETS: u16 = 60_000;
    for (profile, name) in PROFILES {
        let (mut browser, mut ours) = session_pair(profile);
        let mut old = webrtc_srtp_rx(profile);
        let protected: Vec<_> = (0..PACKETS)
            .map(|i| {
                browser
                    .encrypt_rtp(&packet(i.wrapping_add(30_000)))
                    .expect("encrypt")
            })
            .collect();
        let mut buf = Vec::with_capacity(2048);
        let count = |f: &mut dyn FnMut(&[u8])| {
            f(&protected[0]); // the SSRC's state is created once
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for p in &protected[1..] {
                f(p);
            }
            (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / f64::from(PACKETS - 1)
        };
        let in_place = count(&mut |p| {
            buf.clear();
            buf.extend_from_slice(p);
            ours.unprotect_rtp(&mut buf).expect("unprotect");
            black_box(parse_rtp(&buf).expect("rtp"));
        });
        let webrtc = count(&mut |p| {
            let plain = old.decrypt_rtp(p).expect("decrypt");
            black_box(parse_rtp(&plain).expect("rtp"));
        });
        println!(
            "allocations per received packet ({name}): unprotect_rtp in place + parse_rtp \
             {in_place:.2}, webrtc-srtp decrypt + parse_rtp {webrtc:.2}"
        );
        assert_eq!(in_place, 0.0, "unprotect_rtp allocated ({name})");
    }
}

criterion_group!(benches, allocations, srtp, rewrite, fan_out);
criterion_main!(benches);
