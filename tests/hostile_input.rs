//! Bad input is answered, never fatal: each case is followed by proof the server still serves.

mod common;

use common::{vp8_rtp_parameters, Server};
use serde_json::json;
use std::net::UdpSocket;
use tungstenite::Message;

fn still_serves(server: &Server) {
    let mut c = server.client();
    let joined = c.ok("join-room", json!({"roomId": "still-serving"}));
    assert!(joined["routerRtpCapabilities"]["codecs"].is_array());
    c.ok("leave-room", json!({}));
}

#[test]
fn a_frame_that_is_not_json_gets_an_error_notification_and_the_socket_stays_open() {
    let server = Server::start();
    let mut c = server.client();
    c.send_text("{not json");
    let n = c.next_frame();
    assert_eq!(n["notification"], json!(true));
    assert_eq!(n["method"], json!("error"));
    assert_eq!(n["data"]["code"], json!("bad-request"));
    c.send_text(r#"{"request":true,"method":"join-room"}"#);
    assert_eq!(c.next_frame()["method"], json!("error"));
    c.ok("join-room", json!({"roomId": "r1"}));
}

#[test]
fn unknown_methods_and_wrong_types_fail_with_bad_request() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.error_code("teleport", json!({})), "bad-request");
    assert_eq!(
        c.error_code("join-room", json!({"roomId": 42})),
        "bad-request"
    );
    assert_eq!(
        c.error_code("join-room", json!({"roomId": "bad id"})),
        "bad-request"
    );
    assert_eq!(c.error_code("join-room", json!([1, 2])), "bad-request");
    c.ok("join-room", json!({"roomId": "r2"}));
    assert_eq!(
        c.error_code("create-transport", json!({"direction": "sideways"})),
        "bad-request"
    );
    assert_eq!(
        c.error_code(
            "produce",
            json!({"transportId": "x", "kind": "smell", "rtpParameters": {}})
        ),
        "bad-request"
    );
    still_serves(&server);
}

#[test]
fn requests_before_join_fail_with_invalid_state() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(
        c.error_code("create-transport", json!({"direction": "send"})),
        "invalid-state"
    );
    assert_eq!(
        c.error_code("resume-consumer", json!({"consumerId": "c"})),
        "invalid-state"
    );
    c.ok("join-room", json!({"roomId": "r3"}));
    assert_eq!(
        c.error_code("join-room", json!({"roomId": "r3"})),
        "invalid-state"
    );
}

#[test]
fn ids_of_other_peers_are_not_found() {
    let server = Server::start();
    let mut a = server.client();
    let mut b = server.client();
    a.ok("join-room", json!({"roomId": "r4"}));
    b.ok("join-room", json!({"roomId": "r4"}));
    let t = a.ok("create-transport", json!({"direction": "send"}));
    let tid = t["id"].as_str().unwrap().to_string();
    let produced = a.ok(
        "produce",
        json!({"transportId": tid, "kind": "video", "rtpParameters": vp8_rtp_parameters(1111)}),
    );
    let pid = produced["producerId"].as_str().unwrap().to_string();
    assert_eq!(
        b.error_code("connect-transport", json!({"transportId": tid, "dtlsParameters": {"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AA:BB"}]}})),
        "not-found"
    );
    assert_eq!(
        b.error_code("pause-producer", json!({"producerId": pid})),
        "not-found"
    );
    assert_eq!(
        b.error_code("close-producer", json!({"producerId": pid})),
        "not-found"
    );
    assert_eq!(
        b.error_code("consume-media", json!({"transportId": tid, "producerId": pid, "rtpCapabilities": {"codecs": [], "headerExtensions": []}})),
        "not-found"
    );
}

#[test]
fn produce_with_parameters_the_router_cannot_take_fails() {
    let server = Server::start();
    let mut c = server.client();
    c.ok("join-room", json!({"roomId": "r5"}));
    let t = c.ok("create-transport", json!({"direction": "send"}));
    let mut params = vp8_rtp_parameters(2222);
    params["codecs"][0]["mimeType"] = json!("video/FOO");
    params["codecs"].as_array_mut().unwrap().truncate(1);
    let code = c.error_code(
        "produce",
        json!({"transportId": t["id"], "kind": "video", "rtpParameters": params}),
    );
    assert!(code == "bad-request" || code == "unsupported", "{code}");
    // Audio kind with a video codec.
    let code = c.error_code(
        "produce",
        json!({"transportId": t["id"], "kind": "audio", "rtpParameters": vp8_rtp_parameters(3333)}),
    );
    assert_eq!(code, "bad-request");
    // No encodings.
    let mut params = vp8_rtp_parameters(4444);
    params["encodings"] = json!([]);
    let code = c.error_code(
        "produce",
        json!({"transportId": t["id"], "kind": "video", "rtpParameters": params}),
    );
    assert_eq!(code, "bad-request");
    still_serves(&server);
}

#[test]
fn an_oversized_frame_closes_that_socket_with_1009_and_others_keep_working() {
    let server = Server::start();
    let mut other = server.client();
    other.ok("join-room", json!({"roomId": "r6"}));
    let mut c = server.client();
    let big = format!(
        r#"{{"request":true,"id":1,"method":"join-room","data":{{"roomId":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let _ = c.ws.send(Message::text(big));
    let code = loop {
        match c.ws.read() {
            Ok(Message::Close(Some(f))) => break Some(u16::from(f.code)),
            Ok(Message::Close(None)) => break None,
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    assert_eq!(code, Some(1009));
    let s = other.ok("create-transport", json!({"direction": "recv"}));
    assert!(s["id"].is_string());
}

#[test]
fn garbage_udp_on_the_media_port_is_ignored() {
    let server = Server::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", server.rtc_port);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0x00, 0x01, 0x00, 0x00],
        vec![0x16; 13],
        vec![0x80; 12],
        vec![0x80, 200, 0, 1],
        vec![0xff; 1500],
    ];
    let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'a', b':', b'b', 0]);
    junk.push(stun);
    let mut x: u32 = 12345;
    for _ in 0..300 {
        let len = (x % 1400) as usize;
        let pkt: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        junk.push(pkt);
    }
    for j in &junk {
        let _ = sock.send_to(j, target);
    }
    still_serves(&server);
    assert_eq!(server.stats()["workers"][0]["panics"], json!(0));
}

#[test]
fn leaving_notifies_the_others_and_counts_return_to_zero() {
    let server = Server::start();
    let mut a = server.client();
    let mut b = server.client();
    let ja = a.ok("join-room", json!({"roomId": "r7", "displayName": "Ann"}));
    let t = a.ok("create-transport", json!({"direction": "send"}));
    let p = a.ok(
        "produce",
        json!({"transportId": t["id"], "kind": "video", "rtpParameters": vp8_rtp_parameters(5555)}),
    );
    let jb = b.ok("join-room", json!({"roomId": "r7", "displayName": "Bob"}));
    assert_eq!(jb["peers"][0]["displayName"], json!("Ann"));
    assert_eq!(jb["producers"][0]["producerId"], p["producerId"]);
    assert_eq!(jb["producers"][0]["peerId"], ja["peerId"]);
    let joined = a.wait_notification("peer-joined");
    assert_eq!(joined["data"]["peerId"], jb["peerId"]);

    let (status, body) = server.get("/api/rooms/r7").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("Bob"), "{body}");

    let rt = b.ok("create-transport", json!({"direction": "recv"}));
    let caps = jb["routerRtpCapabilities"].clone();
    let consumed = b.ok(
        "consume-media",
        json!({"transportId": rt["id"], "producerId": p["producerId"], "rtpCapabilities": caps}),
    );
    assert_eq!(consumed["kind"], json!("video"));
    assert_eq!(consumed["rtpParameters"]["mid"], json!("0"));
    assert!(consumed["rtpParameters"]["encodings"][0]["ssrc"].is_u64());
    let s = server.stats();
    assert_eq!(
        (
            s["rooms"].clone(),
            s["peers"].clone(),
            s["transports"].clone(),
            s["producers"].clone(),
            s["consumers"].clone()
        ),
        (json!(1), json!(2), json!(2), json!(1), json!(1))
    );

    drop(a); // socket drop = leave
    let closed = b.wait_notification("consumer-closed");
    assert_eq!(closed["data"]["consumerId"], consumed["consumerId"]);
    b.wait_notification("producer-closed");
    let left = b.wait_notification("peer-left");
    assert_eq!(left["data"]["peerId"], ja["peerId"]);
    b.ok("leave-room", json!({}));
    server.wait_for_zero_counts();
    assert_eq!(server.get("/api/rooms/r7").unwrap().0, 404);
}

/// Reads frames until the response to `id` (notifications are skipped).
fn response(c: &mut common::Client, id: u32) -> serde_json::Value {
    loop {
        let f = c.next_frame();
        if f["response"] == json!(true) && f["id"] == json!(id) {
            return f;
        }
    }
}

#[test]
fn churn_in_a_room_spanning_two_workers_leaves_nothing_behind() {
    // Every other peer on the second worker: joins, pipelined requests, sockets dropped before
    // their join was answered, leaves, all at once.
    let server = Server::start_with(&["--workers", "2", "--room-spill-peers", "1"]);
    let join = |id: u32| {
        json!({"request": true, "id": id, "method": "join-room", "data": {"roomId": "churn"}})
            .to_string()
    };
    let mut kept = Vec::new();
    for i in 0..30u32 {
        let mut c = server.client();
        match i % 3 {
            0 => {
                c.send_text(&join(1));
                drop(c);
            }
            1 => {
                // join-room and create-transport pipelined: the second reaches the peer's
                // worker only after the join placed the peer there.
                c.send_text(&join(1));
                c.send_text(
                    &json!({"request": true, "id": 2, "method": "create-transport",
                            "data": {"direction": "send"}})
                    .to_string(),
                );
                assert_eq!(response(&mut c, 1)["ok"], json!(true));
                let t = response(&mut c, 2);
                assert_eq!(t["ok"], json!(true), "{t}");
                c.ok(
                    "produce",
                    json!({"transportId": t["data"]["id"], "kind": "video",
                           "rtpParameters": vp8_rtp_parameters(7000 + 2 * i)}),
                );
                kept.push(c);
            }
            _ => {
                c.send_text(&join(1));
                assert_eq!(response(&mut c, 1)["ok"], json!(true));
                c.ok("leave-room", json!({}));
            }
        }
    }
    // A latecomer sees every kept peer's producer, whichever worker it lives on.
    let mut late = server.client();
    let jl = late.ok("join-room", json!({"roomId": "churn"}));
    assert_eq!(jl["producers"].as_array().map(Vec::len), Some(kept.len()));
    let s = server.stats();
    let workers = s["workers"].as_array().unwrap();
    assert!(
        workers.iter().all(|w| w["peers"].as_u64() > Some(0)),
        "peers on both workers: {s}"
    );
    assert!(
        workers
            .iter()
            .all(|w| w["pipedProducers"].as_u64() > Some(0)),
        "producers piped both ways: {s}"
    );
    drop(kept);
    drop(late);
    server.wait_for_zero_counts();
    assert_eq!(server.get("/api/rooms/churn").unwrap().0, 404);
    still_serves(&server);
}

#[test]
fn the_http_api_creates_room_ids_and_answers_health() {
    let server = Server::start();
    let (status, body) = server.request("POST", "/api/rooms").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["roomId"].as_str().unwrap();
    assert!(sfu::signaling::protocol::is_valid_room_id(id));
    assert_eq!(server.get("/healthz").unwrap(), (200, "ok".to_string()));
    assert_eq!(server.get("/hls/..%2f..%2fetc/passwd").unwrap().0, 404);
    assert_eq!(server.get("/api/rooms/nope").unwrap().0, 404);
}
