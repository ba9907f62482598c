//! Starts the real `sfu` binary and runs a 3-second 1 → 5 load through it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use loadtest::probe::sfu_binary;
use loadtest::{run, Args};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use sfu::testing::{free_tcp_port, free_udp_port};

fn start_server(workers: &[&str]) -> (Server, u16) {
    let port = free_tcp_port();
    let hls = std::env::temp_dir().join(format!("loadtest-smoke-hls-{port}"));
    let child = Command::new(sfu_binary())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--rtc-port", &free_udp_port().to_string()])
        .args(workers)
        .args(["--no-pin", "--web-root", "/nonexistent"])
        .args(["--hls-root", hls.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sfu");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if loadtest::signaling::http_get(&format!("127.0.0.1:{port}"), "/healthz").is_ok() {
            return (server, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not become healthy");
}

#[test]
fn one_publisher_to_five_subscribers_for_three_seconds_loses_under_five_percent() {
    let (server, port) = start_server(&["--workers", "1"]);
    let args = Args::parse_from([
        "loadtest",
        "--url",
        &format!("ws://127.0.0.1:{port}/ws"),
        "--subscribers",
        "5",
        "--duration",
        "3",
        "--warmup",
        "1.5",
        "--audio",
        "--server-pid",
        &server.0.id().to_string(),
    ]);
    let results = run(&args).expect("load run");
    let r = &results[0];
    println!("{}", r.to_text());
    assert_eq!(r.consumers, 10, "5 subscribers × (video + audio)");
    assert_eq!(r.silent_consumers, 0, "every consumer received media");
    assert_eq!(r.stalled_consumers, 0, "no consumer stopped receiving");
    assert!(r.received_packets_per_s > 100.0, "{r:?}");
    assert!(r.loss_percent < 5.0, "loss {}%", r.loss_percent);
    assert!(r.latency.samples > 0);
    assert!(r
        .server_cpu
        .iter()
        .any(|t| t.name.starts_with("sfu-worker")));
}

#[test]
fn a_room_spanning_two_workers_delivers_media_to_subscribers_on_both() {
    // Every other peer of the room goes to the second worker: the publisher's media is piped
    // from its worker to the other one.
    let (server, port) = start_server(&["--workers", "2", "--room-spill-peers", "1"]);
    let args = Args::parse_from([
        "loadtest",
        "--url",
        &format!("ws://127.0.0.1:{port}/ws"),
        "--subscribers",
        "4",
        "--duration",
        "3",
        "--warmup",
        "1.5",
        "--server-pid",
        &server.0.id().to_string(),
    ]);
    let results = run(&args).expect("load run");
    let r = &results[0];
    println!("{}", r.to_text());
    assert_eq!(r.consumers, 4);
    assert_eq!(r.silent_consumers, 0, "every consumer received media");
    assert_eq!(r.stalled_consumers, 0, "no consumer stopped receiving");
    assert!(r.loss_percent < 5.0, "loss {}%", r.loss_percent);
    let stats: serde_json::Value = serde_json::from_str(
        &loadtest::signaling::http_get(&format!("127.0.0.1:{port}"), "/api/stats").unwrap(),
    )
    .unwrap();
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        assert!(
            w["packetsOut"].as_u64().unwrap() > 100,
            "worker {} sent media to its subscribers: {w}",
            w["id"]
        );
    }
    let piped: u64 = workers
        .iter()
        .map(|w| w["pipePacketsIn"].as_u64().unwrap())
        .sum();
    assert!(piped > 100, "media crossed workers: {stats}");
    assert_eq!(stats["workers"][0]["pipeDrops"], 0);
    assert_eq!(stats["workers"][1]["pipeDrops"], 0);
}
