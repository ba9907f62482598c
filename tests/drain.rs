//! SIGTERM drains a single node too (shared/protocol.md "Cluster"): `/healthz` 503, no new
//! rooms, existing rooms keep going until empty, then a clean exit; a second SIGTERM stops at
//! once.

mod common;

use common::Server;
use serde_json::json;
use std::time::{Duration, Instant};

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_refuses_new_rooms_keeps_open_ones_and_exits_once_they_are_empty() {
    let mut server = Server::start();
    let (status, body) = server.get("/api/cluster").unwrap();
    assert_eq!(status, 200);
    let cluster: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        cluster["nodes"].as_array().map(Vec::len),
        Some(1),
        "{cluster}"
    );
    assert_eq!(cluster["nodes"][0]["draining"], json!(false));

    let mut first = server.client();
    first.ok("join-room", json!({"roomId": "open-room"}));
    server.signal(libc::SIGTERM);
    wait_until("/healthz 503", Duration::from_secs(5), || {
        server.get("/healthz").map(|(s, _)| s) == Some(503)
    });
    let (_, body) = server.get("/api/cluster").unwrap();
    assert!(body.contains(r#""draining":true"#), "{body}");

    let mut late = server.client();
    let refused = late.request("join-room", json!({"roomId": "new-room"}));
    assert_eq!(
        refused["error"]["code"],
        json!("invalid-state"),
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("draining"), "{message}");
    late.ok("join-room", json!({"roomId": "open-room"}));
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "the server stays while its room has peers"
    );

    drop(first);
    drop(late);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits once its last room is empty");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let mut server = Server::start();
    let mut peer = server.client();
    peer.ok("join-room", json!({"roomId": "kept"}));
    server.signal(libc::SIGTERM);
    wait_until("/healthz 503", Duration::from_secs(5), || {
        server.get("/healthz").map(|(s, _)| s) == Some(503)
    });
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("a second SIGTERM stops the server with a room still open");
    assert!(status.success(), "{status:?}");
    drop(peer);
}
