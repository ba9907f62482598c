//! Hostile ICE-TCP on a worker's media port (issue #12, acceptance 4), against the real `sfu`
//! binary: a thousand connections that send nothing, garbage, truncated frames or a length
//! prefix of 65,535 followed by 10 bytes, while a UDP loadtest runs on the same worker. The UDP
//! peers keep their media, the server's memory stays bounded, and every hostile connection is
//! closed (bad framing at once, the rest at the idle deadline). Meanwhile an ICE-TCP subscriber
//! that never reads is sent 8 Mbit/s of video: its send queue fills and drops, nobody else's.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;
use loadtest::media::Track;
use loadtest::probe::{join, produce_video, vp8_layers, MediaSender, SfuProcess};
use loadtest::signaling::Signaling;
use loadtest::transport::{open_tcp, DtlsClient};
use serde_json::{json, Value};

/// The worker's ICE-TCP candidate, from a create-transport answer.
fn tcp_candidate(server: &SfuProcess) -> SocketAddr {
    let mut sig = Signaling::connect(&server.url()).expect("connect");
    sig.request(
        "join-room",
        json!({"roomId": format!("probe-{}", rand::random::<u32>())}),
    )
    .expect("join");
    let t = sig
        .request("create-transport", json!({"direction": "recv"}))
        .expect("create-transport");
    let candidates = t["iceCandidates"].as_array().expect("candidates").clone();
    assert_eq!(
        candidates[0]["protocol"], "udp",
        "UDP first: {candidates:?}"
    );
    let tcp = candidates
        .iter()
        .find(|c| c["protocol"] == "tcp")
        .unwrap_or_else(|| panic!("no TCP candidate in {candidates:?}"));
    assert_eq!(tcp["tcpType"], "passive");
    assert!(
        tcp["priority"].as_u64() < candidates[0]["priority"].as_u64(),
        "TCP has the lower priority: {candidates:?}"
    );
    assert_eq!(tcp["port"], candidates[0]["port"], "the same port number");
    sig.close();
    format!("{}:{}", tcp["ip"].as_str().unwrap(), tcp["port"])
        .parse()
        .unwrap()
}

fn ice_tcp(stats: &Value) -> Value {
    stats["workers"][0]["iceTcp"].clone()
}

/// Polls the server's stats until `ok` holds (or panics after `secs`).
fn wait_stats(server: &SfuProcess, secs: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = server.stats();
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {}", ice_tcp(&s));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the server closed `s` (EOF or reset) within `timeout`.
fn closed_by_server(mut s: &TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_thousand_hostile_tcp_connections_cost_the_udp_peers_nothing_and_are_all_closed() {
    let server = SfuProcess::start(&[
        "--ice-tcp-idle-timeout-ms",
        "3000",
        "--ice-tcp-max-per-ip",
        "1200",
    ]);
    let media = tcp_candidate(&server);
    let rss_before = server.rss_kib();

    // A subscriber over ICE-TCP that stops reading while it is sent 8 Mbit/s of video. It
    // keeps sending consent checks (it can still write), so its transport stays.
    let dtls = DtlsClient::start().unwrap();
    let stuck_room = format!("stuck-{}", rand::random::<u32>());
    let mut publisher = join(&server.url(), &stuck_room, "send", &dtls).expect("publisher");
    let ssrc = rand::random::<u32>() & 0x0fff_fffe;
    let producer = produce_video(&mut publisher, vp8_layers(ssrc, 1, "stuck")).expect("produce");
    let sender = MediaSender::start(publisher.transport, vec![Track::video(ssrc, 8000, 1200)]);
    let mut sub = Signaling::connect(&server.url()).unwrap();
    let joined = sub
        .request("join-room", json!({"roomId": stuck_room}))
        .unwrap();
    let mut never_reads = open_tcp(&mut sub, "recv", &dtls).expect("ICE-TCP subscriber");
    let c = sub
        .request(
            "consume-media",
            json!({"transportId": never_reads.id, "producerId": producer,
                   "rtpCapabilities": joined["routerRtpCapabilities"]}),
        )
        .expect("consume over TCP");
    sub.request("resume-consumer", json!({"consumerId": c["consumerId"]}))
        .unwrap();
    let checking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep = checking.clone();
    let consent = std::thread::spawn(move || {
        while keep.load(std::sync::atomic::Ordering::Relaxed) {
            let check = never_reads.consent.request();
            let _ = never_reads.socket.send(&check);
            let _ = never_reads.socket.flush();
            std::thread::sleep(Duration::from_secs(2));
        }
        never_reads
    });
    wait_stats(
        &server,
        40,
        "the stuck subscriber's queue fills and drops",
        |s| ice_tcp(s)["sendDropped"].as_u64().unwrap() > 0,
    );

    // UDP peers on the same (only) worker, measured while the connections pound the port.
    let url = server.url();
    let load = std::thread::spawn(move || {
        let args = loadtest::Args::parse_from([
            "loadtest",
            "--url",
            &url,
            "--subscribers",
            "20",
            "--warmup",
            "2",
            "--duration",
            "8",
        ]);
        loadtest::run(&args).expect("loadtest")
    });

    let mut conns = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect_timeout(&media, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let _ = match i % 4 {
            0 => Ok(()), // silent
            1 => {
                // Garbage: random bytes, read as length prefixes and frames.
                let junk: Vec<u8> = (0..300).map(|_| rand::random::<u8>()).collect();
                s.write_all(&junk)
            }
            2 => s.write_all(&[0x00, 100, 0x00, 0x01, 0x00, 0x00]), // a truncated frame
            _ => {
                // 65,535 bytes announced, 10 sent.
                let mut b = vec![0xff, 0xff];
                b.extend_from_slice(&[0x17; 10]);
                s.write_all(&b)
            }
        };
        conns.push(s);
    }
    let during = wait_stats(&server, 10, "all 1000 connections accepted", |s| {
        let t = ice_tcp(s);
        t["connections"].as_u64().unwrap()
            + t["framingErrors"].as_u64().unwrap()
            + t["idleClosed"].as_u64().unwrap()
            >= 1000
    });
    let framing = ice_tcp(&during)["framingErrors"].as_u64().unwrap();
    assert!(
        framing >= 250,
        "every oversized length prefix closes its connection at once: {}",
        ice_tcp(&during)
    );
    let rss_during = server.rss_kib();
    println!(
        "rss before {rss_before} KiB, with 1000 hostile connections {rss_during} KiB; {}",
        ice_tcp(&during)
    );
    assert!(
        rss_during < rss_before + 64 * 1024,
        "1000 connections cost at most 64 MiB: {rss_before} → {rss_during} KiB"
    );

    let results = load.join().expect("loadtest thread");
    let r = &results[0];
    println!(
        "UDP loadtest alongside: loss {:.4} %, silent {}, stalled {}",
        r.loss_percent, r.silent_consumers, r.stalled_consumers
    );
    assert!(
        r.loss_percent <= 0.1,
        "UDP peers keep ≤ 0.1 % loss: {:.4} %",
        r.loss_percent
    );
    assert_eq!(r.silent_consumers + r.stalled_consumers, 0);

    let stuck = wait_stats(
        &server,
        5,
        "the stuck subscriber's media is still dropped",
        |s| {
            ice_tcp(s)["sendDropped"].as_u64().unwrap()
                > ice_tcp(&during)["sendDropped"].as_u64().unwrap()
        },
    );
    println!("stuck subscriber: {}", ice_tcp(&stuck));
    checking.store(false, std::sync::atomic::Ordering::Relaxed);
    let never_reads = consent.join().unwrap();
    let _ = sender.stop();
    drop(never_reads);
    drop(sub);

    // Everything that never completed ICE is closed by the idle deadline, and the stuck
    // subscriber's connection once its transport is gone.
    let after = wait_stats(&server, 15, "every hostile connection closed", |s| {
        ice_tcp(s)["connections"] == 0
    });
    assert!(
        ice_tcp(&after)["idleClosed"].as_u64().unwrap() >= 500,
        "silent and truncated connections idle out: {}",
        ice_tcp(&after)
    );
    for (i, s) in conns.iter().enumerate().step_by(97) {
        assert!(
            closed_by_server(s, Duration::from_secs(2)),
            "connection {i} is closed on the server's side"
        );
    }
}

#[test]
fn connections_beyond_the_per_ip_limit_are_closed_at_once_and_ice_tcp_can_be_turned_off() {
    let server = SfuProcess::start(&["--ice-tcp-max-per-ip", "5"]);
    let media = tcp_candidate(&server);
    let conns: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(media).expect("connect"))
        .collect();
    let s = wait_stats(&server, 10, "5 admitted, 3 refused", |s| {
        let t = ice_tcp(s);
        t["connections"] == 5 && t["refused"] == 3
    });
    println!("{}", ice_tcp(&s));
    let closed = conns
        .iter()
        .filter(|c| closed_by_server(c, Duration::from_millis(500)))
        .count();
    assert_eq!(closed, 3, "the connections over the limit are closed");
    drop(conns);
    wait_stats(&server, 10, "closed connections are freed", |s| {
        ice_tcp(s)["connections"] == 0
    });

    let udp_only = SfuProcess::start(&["--no-ice-tcp"]);
    let mut sig = Signaling::connect(&udp_only.url()).unwrap();
    sig.request("join-room", json!({"roomId": "udp-only"}))
        .unwrap();
    let t = sig
        .request("create-transport", json!({"direction": "send"}))
        .unwrap();
    let protocols: Vec<&Value> = t["iceCandidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["protocol"])
        .collect();
    assert_eq!(protocols, [&json!("udp")]);
}
