//! Media abuse inside a room, against the real `sfu` binary on loopback, with real ICE, DTLS
//! and SRTP clients: redirection without consent, amplification by duplicate consumers and
//! by outgoing bit rate, key-frame storms, and retransmission caches beyond the budget.

use std::time::{Duration, Instant};

use loadtest::media::Track;
use loadtest::probe::{
    bind_from, consume, count_media, counter, extra_socket, join, produce_video, vp8_layers,
    MediaSender, SfuProcess,
};
use loadtest::transport::DtlsClient;
use serde_json::json;
use sfu::room::limits::CACHE_BYTES;

fn room(name: &str) -> String {
    format!("{name}-{}", rand::random::<u32>())
}

/// A publisher sending VP8 at `kbps` in `room`; (its producer id, its sender).
fn publish(
    server: &SfuProcess,
    room: &str,
    dtls: &DtlsClient,
    kbps: u32,
) -> (loadtest::signaling::Signaling, String, MediaSender) {
    let mut p = join(&server.url(), room, "send", dtls).expect("publisher joins");
    let ssrc = rand::random::<u32>() & 0x0fff_fffe;
    let producer = produce_video(&mut p, vp8_layers(ssrc, 1, "pub")).expect("produce");
    let sender = MediaSender::start(p.transport, vec![Track::video(ssrc, kbps, 1000)]);
    (p.sig, producer, sender)
}

#[test]
fn a_binding_request_from_another_address_does_not_redirect_media_until_srtp_proves_consent() {
    let server = SfuProcess::start(&[]);
    let dtls = DtlsClient::start().unwrap();
    let room = room("consent");
    let (_pub_sig, producer, sender) = publish(&server, &room, &dtls, 800);
    let mut sub = join(&server.url(), &room, "recv", &dtls).expect("subscriber joins");
    let (consumer, consumer_ssrc) = consume(&mut sub, &producer).unwrap();
    sub.sig
        .request("resume-consumer", json!({"consumerId": consumer}))
        .unwrap();
    let real = &sub.transport.socket;
    let warm = count_media(&[real], Instant::now() + Duration::from_secs(1));
    assert!(warm[0].0 > 20, "the subscriber receives media: {warm:?}");

    // An attacker who knows the subscriber's ICE credentials nominates its own address, and
    // sends SRTP-looking junk from it (it has no keys).
    let attacker = extra_socket(&sub.transport);
    assert!(
        bind_from(&attacker, &sub.transport, true),
        "the check is answered"
    );
    let mut junk = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78];
    junk.resize(200, 0xAB);
    for _ in 0..50 {
        attacker.send(&junk).unwrap();
    }
    assert!(bind_from(&attacker, &sub.transport, true));
    let counts = count_media(&[real, &attacker], Instant::now() + Duration::from_secs(3));
    println!("real subscriber vs attacker over 3 s: {counts:?}");
    assert_eq!(counts[1], (0, 0), "no media reaches the unproven address");
    assert!(
        counts[0].0 > 60,
        "the real subscriber keeps receiving: {counts:?}"
    );

    // The real client moving to a new address: a check, then authenticated SRTCP from it.
    let moved = extra_socket(&sub.transport);
    assert!(bind_from(&moved, &sub.transport, true));
    let mut pli = Vec::new();
    sfu::rtc::rtcp::build_pli(0x5151, consumer_ssrc, &mut pli);
    let proof = sub.transport.srtp.encrypt_rtcp(&pli).unwrap();
    moved.send(&proof).unwrap();
    let after = count_media(&[real, &moved], Instant::now() + Duration::from_secs(2));
    println!("old vs new address after the move: {after:?}");
    assert!(
        after[1].0 > 40,
        "media follows the proven address: {after:?}"
    );
    // At most what was in flight at the switch reaches the old one.
    assert!(
        after[0].0 < 10,
        "the old address stops receiving: {after:?}"
    );
    let stats = server.worker_stats();
    assert_eq!(counter(&stats, "tupleSwitches"), 1, "{stats}");
    drop(sender.stop());
}

#[test]
fn a_thousand_consumers_of_one_producer_on_one_transport_are_one_and_out_stays_near_in() {
    // The room's one-consumer rule is under test here, not the edge's request rate limit
    // (tests/hostile_edge.rs), so the socket may send its thousand requests at once.
    let server = SfuProcess::start(&["--ws-request-burst", "5000"]);
    let dtls = DtlsClient::start().unwrap();
    let room = room("amplify");
    let (_pub_sig, producer, sender) = publish(&server, &room, &dtls, 1000);
    let mut sub = join(&server.url(), &room, "recv", &dtls).expect("subscriber joins");
    let (mut ok, mut limit, mut other) = (Vec::new(), 0, Vec::new());
    let started = Instant::now();
    for _ in 0..1000 {
        match consume(&mut sub, &producer) {
            Ok((id, _)) => ok.push(id),
            Err(e) if e.contains("\"limit\"") => limit += 1,
            Err(e) => other.push(e),
        }
    }
    println!("1000 consume-media in {:?}", started.elapsed());
    assert_eq!(ok.len(), 1, "exactly one consumer");
    assert_eq!(limit, 999, "the rest fail with limit; others: {other:?}");
    sub.sig
        .request("resume-consumer", json!({"consumerId": ok[0]}))
        .unwrap();
    // Let the consumer sync, then compare bytes out with bytes in over two seconds.
    count_media(
        &[&sub.transport.socket],
        Instant::now() + Duration::from_millis(700),
    );
    let before = server.worker_stats();
    let got = count_media(
        &[&sub.transport.socket],
        Instant::now() + Duration::from_secs(2),
    );
    let after = server.worker_stats();
    let bytes_in = counter(&after, "bytesIn") - counter(&before, "bytesIn");
    let bytes_out = counter(&after, "bytesOut") - counter(&before, "bytesOut");
    let ratio = bytes_out as f64 / bytes_in.max(1) as f64;
    println!("in {bytes_in} B, out {bytes_out} B (×{ratio:.2}), subscriber got {got:?}");
    assert!(bytes_in > 100_000, "the publisher sent media: {bytes_in}");
    assert!(ratio < 1.5, "out/in amplification ×{ratio:.2}");
    assert!(got[0].1 > 100_000, "the one consumer receives: {got:?}");
    drop(sender.stop());
}

#[test]
fn the_bit_rate_towards_one_peer_is_capped_and_the_excess_is_counted() {
    let server = SfuProcess::start(&["--peer-egress-kbps", "400"]);
    let dtls = DtlsClient::start().unwrap();
    let room = room("egress");
    let (_pub_sig, producer, sender) = publish(&server, &room, &dtls, 2000);
    let mut sub = join(&server.url(), &room, "recv", &dtls).expect("subscriber joins");
    let (consumer, _) = consume(&mut sub, &producer).unwrap();
    sub.sig
        .request("resume-consumer", json!({"consumerId": consumer}))
        .unwrap();
    count_media(
        &[&sub.transport.socket],
        Instant::now() + Duration::from_millis(700),
    );
    let got = count_media(
        &[&sub.transport.socket],
        Instant::now() + Duration::from_secs(3),
    );
    let kbps = got[0].1 as f64 * 8.0 / 3.0 / 1000.0;
    let stats = server.worker_stats();
    println!("subscriber got {kbps:.0} kbit/s of 2000; {stats}");
    assert!(kbps < 400.0 * 1.25, "capped at 400 kbit/s: {kbps:.0}");
    assert!(kbps > 400.0 * 0.5, "the cap still passes media: {kbps:.0}");
    assert!(counter(&stats, "egressDroppedPackets") > 100, "{stats}");
    drop(sender.stop());
}

#[test]
fn a_storm_of_resume_consumer_requests_reaches_the_publisher_as_at_most_two_key_frame_requests_a_second(
) {
    let server = SfuProcess::start(&[]);
    let dtls = DtlsClient::start().unwrap();
    let room = room("pli");
    let (_pub_sig, producer, sender) = publish(&server, &room, &dtls, 500);
    // Two subscribers share the storm (each resumes its own consumer of the producer).
    let mut subs = Vec::new();
    for _ in 0..2 {
        let mut sub = join(&server.url(), &room, "recv", &dtls).expect("subscriber joins");
        let (consumer, _) = consume(&mut sub, &producer).unwrap();
        let resume = json!({"consumerId": consumer});
        sub.sig.request("resume-consumer", resume.clone()).unwrap();
        subs.push((sub, resume));
    }
    let sockets: Vec<_> = subs.iter().map(|(s, _)| &s.transport.socket).collect();
    count_media(&sockets, Instant::now() + Duration::from_millis(500));
    let storm_start = Instant::now();
    // 2,000 requests paced over about 3 s. A `limit` answer (a request rate cap at the edge)
    // still counts as part of the storm; anything else fails the test.
    let mut answered = 0u32;
    for i in 0..2000u32 {
        let (sub, resume) = &mut subs[i as usize % 2];
        match sub.sig.request("resume-consumer", resume.clone()) {
            Ok(_) => answered += 1,
            Err(e) if e.contains("\"limit\"") => {}
            Err(e) => panic!("resume-consumer: {e}"),
        }
        let due = storm_start + Duration::from_micros(u64::from(i) * 1500);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if i % 200 == 0 {
            // Keep the subscribers' sockets drained.
            let sockets: Vec<_> = subs.iter().map(|(s, _)| &s.transport.socket).collect();
            count_media(&sockets, Instant::now());
        }
    }
    let storm_end = Instant::now();
    assert!(
        answered >= 200,
        "only {answered} resumes reached the server"
    );
    // Deferred, not lost: what the storm left pending goes out after it.
    let at_end = counter(&server.worker_stats(), "keyframeRequestsSent");
    let deadline = storm_end + Duration::from_secs(2);
    while counter(&server.worker_stats(), "keyframeRequestsSent") == at_end {
        assert!(Instant::now() < deadline, "the deferred request was lost");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = sender.stop();
    let storm: Vec<Instant> = log
        .keyframe_requests
        .iter()
        .copied()
        .filter(|&t| t >= storm_start)
        .collect();
    let secs = (storm_end - storm_start).as_secs_f64();
    println!(
        "{} key-frame requests reached the publisher during a {secs:.1} s storm of 2000",
        storm.len()
    );
    // In any second, at most two (a little slack for scheduling on the receiving side).
    for (i, &t) in storm.iter().enumerate() {
        let in_window = storm[i..]
            .iter()
            .take_while(|&&u| u < t + Duration::from_millis(980))
            .count();
        assert!(in_window <= 2, "{in_window} requests within a second");
    }
    assert!(
        storm.len() as f64 <= 2.0 * (secs + 1.0) + 1.0,
        "{} requests in {secs:.1} s",
        storm.len()
    );
    // Spaced, not lost: the storm still produced requests throughout.
    assert!(storm.len() >= 4, "{} requests", storm.len());
}

#[test]
fn simulcast_producers_beyond_the_peer_cap_fail_and_caches_stay_within_the_worker_budget() {
    // A budget of six caches; four producers of four encodings would want sixteen.
    let budget_mib = 5;
    let server = SfuProcess::start(&[
        "--max-producers-per-peer",
        "4",
        "--retransmit-cache-mib",
        &budget_mib.to_string(),
    ]);
    let dtls = DtlsClient::start().unwrap();
    let room = room("caches");
    let mut p = join(&server.url(), &room, "send", &dtls).expect("publisher joins");
    let mut tracks = Vec::new();
    let mut refused = Vec::new();
    for i in 0..6u32 {
        let ssrc = 0x0100_0000 + i * 0x100;
        match produce_video(&mut p, vp8_layers(ssrc, 4, "sim")) {
            Ok(_) => tracks.extend((0..4).map(|l| Track::video(ssrc + 2 * l, 300, 1000))),
            Err(e) => refused.push(e),
        }
    }
    assert_eq!(tracks.len(), 16, "four producers of four encodings");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().all(|e| e.contains("\"limit\"")),
        "{refused:?}"
    );
    let sig = p.sig;
    let sender = MediaSender::start(p.transport, tracks);
    // Wait until every encoding's first packet asked for a cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = server.worker_stats();
        let asked = counter(&s, "retransmitCacheBytes") / CACHE_BYTES
            + counter(&s, "retransmitCacheDenied");
        if asked >= 16 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let held = counter(&stats, "retransmitCacheBytes");
    println!(
        "caches: {held} B held, {} refused",
        counter(&stats, "retransmitCacheDenied")
    );
    assert!(held <= budget_mib << 20, "{held} B over the budget");
    assert_eq!(held, 6 * CACHE_BYTES, "the budget is used: {stats}");
    assert_eq!(counter(&stats, "retransmitCacheDenied"), 10, "{stats}");
    drop(sender.stop());
    // Released on close: the publisher leaves.
    sig.close();
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&server.worker_stats(), "retransmitCacheBytes") != 0 {
        assert!(
            Instant::now() < deadline,
            "caches released when the peer left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counter(&server.worker_stats(), "producers"), 0);
}
