//! Data-channel signaling through the real server (shared/protocol.md item 12): the
//! `sctpParameters` of create-transport, produce-data / consume-data / close-data-producer and
//! their notifications as JSON, join-room's `dataProducers`, the `data` grant, and the live
//! counts returning to zero. (SCTP itself: src/rtc/sctp_tests.rs and the browser test
//! tests/browser/data-channels.test.mjs.)

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{Client, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn join(server: &Server, room: &str) -> (Client, Value) {
    let mut c = server.client();
    let joined = c.ok("join-room", json!({"roomId": room}));
    (c, joined)
}

fn sctp_transport(c: &mut Client, direction: &str) -> String {
    let t = c.ok(
        "create-transport",
        json!({"direction": direction, "sctp": true}),
    );
    assert_eq!(
        t["sctpParameters"],
        json!({"port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144})
    );
    t["id"].as_str().unwrap().to_owned()
}

fn data_counts(server: &Server) -> (u64, u64) {
    let s = server.stats();
    let workers = s["workers"].as_array().cloned().unwrap_or_default();
    let sum = |k: &str| workers.iter().map(|w| w[k].as_u64().unwrap_or(0)).sum();
    (sum("dataProducers"), sum("dataConsumers"))
}

fn wait_for_data_counts(server: &Server, want: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while data_counts(server) != want {
        assert!(
            Instant::now() < deadline,
            "data counts stay at {:?}, not {want:?}",
            data_counts(server)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn data_producers_are_announced_listed_consumed_closed_and_counted() {
    let server = Server::start_with(&["--workers", "1"]);
    let (mut a, ja) = join(&server, "chat-room");
    let (mut b, _) = join(&server, "chat-room");

    let plain = a.ok("create-transport", json!({"direction": "send"}));
    assert!(plain.get("sctpParameters").is_none(), "{plain}");
    let code = a.error_code(
        "produce-data",
        json!({"transportId": plain["id"], "sctpStreamParameters": {"streamId": 0}, "label": "chat"}),
    );
    assert_eq!(code, "invalid-state");

    let send = sctp_transport(&mut a, "send");
    let produced = a.ok(
        "produce-data",
        json!({"transportId": send, "sctpStreamParameters": {"streamId": 0, "ordered": true},
               "label": "chat", "protocol": "", "appData": {}}),
    );
    let dp = produced["dataProducerId"].clone();
    assert!(dp.is_string(), "{produced}");
    let n = b.wait_notification("new-data-producer");
    assert_eq!(
        n["data"],
        json!({"dataProducerId": dp, "peerId": ja["peerId"], "label": "chat", "protocol": ""})
    );

    let (mut c, jc) = join(&server, "chat-room");
    assert_eq!(
        jc["dataProducers"],
        json!([{"dataProducerId": dp, "peerId": ja["peerId"], "label": "chat", "protocol": ""}])
    );
    let recv = sctp_transport(&mut c, "recv");
    let consumed = c.ok(
        "consume-data",
        json!({"transportId": recv, "dataProducerId": dp}),
    );
    assert_eq!(consumed["dataProducerId"], dp);
    assert_eq!(
        consumed["sctpStreamParameters"],
        json!({"streamId": 0, "ordered": true})
    );
    assert_eq!(consumed["label"], json!("chat"));
    assert_eq!(consumed["protocol"], json!(""));
    let dc = consumed["dataConsumerId"].clone();
    assert_eq!(data_counts(&server), (1, 1));

    let unknown = c.error_code(
        "consume-data",
        json!({"transportId": recv, "dataProducerId": "nope"}),
    );
    assert_eq!(unknown, "not-found");
    let foreign = b.error_code("close-data-producer", json!({"dataProducerId": dp}));
    assert_eq!(foreign, "not-found");

    assert_eq!(
        a.ok("close-data-producer", json!({"dataProducerId": dp})),
        json!({})
    );
    assert_eq!(
        c.wait_notification("data-consumer-closed")["data"],
        json!({"dataConsumerId": dc})
    );
    assert_eq!(
        c.wait_notification("data-producer-closed")["data"],
        json!({"dataProducerId": dp})
    );
    assert_eq!(
        b.wait_notification("data-producer-closed")["data"],
        json!({"dataProducerId": dp})
    );
    wait_for_data_counts(&server, (0, 0));

    // Leaving cascades: a's new data producer and c's consumer of it go with a.
    let dp2 = a.ok(
        "produce-data",
        json!({"transportId": send, "sctpStreamParameters": {"streamId": 1}, "label": "chat"}),
    )["dataProducerId"]
        .clone();
    c.ok(
        "consume-data",
        json!({"transportId": recv, "dataProducerId": dp2}),
    );
    wait_for_data_counts(&server, (1, 1));
    a.ok("leave-room", json!({}));
    wait_for_data_counts(&server, (0, 0));
    drop((a, b, c));
    server.wait_for_zero_counts();
}

const SECRET: &str = "data-test-secret-0123456789abcdef";

fn token(grants: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": "user", "room": "*", "exp": exp, "grants": grants});
    let head = B64.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let input = format!("{head}.{}", B64.encode(claims.to_string()));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

#[test]
fn produce_data_and_consume_data_need_the_data_grant() {
    let server = Server::start_with(&["--workers", "1", "--auth-secret", SECRET]);
    let mut with = server.client_with_token(&token(json!({}))).unwrap();
    with.ok("join-room", json!({"roomId": "granted"}));
    let send = sctp_transport(&mut with, "send");
    let dp = with.ok(
        "produce-data",
        json!({"transportId": send, "sctpStreamParameters": {"streamId": 0}, "label": "chat"}),
    )["dataProducerId"]
        .clone();

    let mut without = server
        .client_with_token(&token(json!({"data": false})))
        .unwrap();
    without.ok("join-room", json!({"roomId": "granted"}));
    let t = sctp_transport(&mut without, "send");
    let code = without.error_code(
        "produce-data",
        json!({"transportId": t, "sctpStreamParameters": {"streamId": 0}, "label": "chat"}),
    );
    assert_eq!(code, "forbidden");
    let r = sctp_transport(&mut without, "recv");
    let code = without.error_code(
        "consume-data",
        json!({"transportId": r, "dataProducerId": dp}),
    );
    assert_eq!(code, "forbidden");
    // The refused requests changed nothing: the granted peer can still consume its own.
    let r = sctp_transport(&mut with, "recv");
    with.ok(
        "consume-data",
        json!({"transportId": r, "dataProducerId": dp}),
    );
}
