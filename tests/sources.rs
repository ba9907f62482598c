//! Producer source labels through the real server (shared/protocol.md, `produce`):
//! `appData.source` is validated, defaults by kind, and is echoed in `new-producer`, in
//! `join-room`'s `producers[]` and in `consume-media`'s `appData` — also to peers hosted on
//! another worker than the publisher (a room spanning workers).

mod common;

use common::{vp8_rtp_parameters, Client, Server};
use serde_json::{json, Value};

fn opus(ssrc: u32) -> Value {
    json!({
        "mid": "1",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                    "parameters": {"minptime": 10, "useinbandfec": 1}, "rtcpFeedback": []}],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": "test", "reducedSize": true}
    })
}

fn produce(c: &mut Client, transport: &Value, kind: &str, params: Value, app_data: Value) -> Value {
    c.request(
        "produce",
        json!({"transportId": transport, "kind": kind, "rtpParameters": params, "appData": app_data}),
    )
}

#[test]
fn sources_are_validated_defaulted_and_echoed_everywhere_even_across_workers() {
    // Every second peer of a room lands on the other worker.
    let server = Server::start_with(&["--workers", "2", "--room-spill-peers", "1"]);
    let mut alice = server.client();
    alice.ok("join-room", json!({"roomId": "labels"}));
    let mut bob = server.client();
    let joined = bob.ok("join-room", json!({"roomId": "labels"}));
    let caps = joined["routerRtpCapabilities"].clone();
    let send = alice.ok("create-transport", json!({"direction": "send"}))["id"].clone();

    for bad in [
        json!({"source": "webcam"}),
        json!({"source": 3}),
        json!({"source": ""}),
    ] {
        let r = produce(
            &mut alice,
            &send,
            "video",
            vp8_rtp_parameters(100),
            bad.clone(),
        );
        assert_eq!(r["error"]["code"], json!("bad-request"), "{bad}: {r}");
    }
    let screen = produce(
        &mut alice,
        &send,
        "video",
        vp8_rtp_parameters(200),
        json!({"source": "screen"}),
    );
    let camera = produce(
        &mut alice,
        &send,
        "video",
        vp8_rtp_parameters(300),
        json!({}),
    );
    let mic = produce(&mut alice, &send, "audio", opus(400), json!(null));
    let ids: Vec<Value> = [&screen, &camera, &mic]
        .iter()
        .map(|r| r["data"]["producerId"].clone())
        .collect();
    let want = ["screen", "camera", "microphone"];

    // new-producer, to a peer on the other worker.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let n = bob.wait_notification("new-producer");
        seen.push((n["data"]["producerId"].clone(), n["data"]["source"].clone()));
    }
    for (id, source) in ids.iter().zip(want) {
        assert!(
            seen.contains(&(id.clone(), json!(source))),
            "{id} {source}: {seen:?}"
        );
    }

    // join-room's producers[], for a late joiner.
    let mut carol = server.client();
    let late = carol.ok("join-room", json!({"roomId": "labels"}));
    let listed: Vec<(Value, Value)> = late["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["producerId"].clone(), p["source"].clone()))
        .collect();
    for (id, source) in ids.iter().zip(want) {
        assert!(listed.contains(&(id.clone(), json!(source))), "{late}");
    }

    // consume-media's appData names the source and the publisher.
    let alice_id = late["peers"][0]["peerId"].clone();
    let recv = bob.ok("create-transport", json!({"direction": "recv"}))["id"].clone();
    let consumed = bob.ok(
        "consume-media",
        json!({"transportId": recv, "producerId": ids[0], "rtpCapabilities": caps}),
    );
    assert_eq!(
        consumed["appData"],
        json!({"source": "screen", "peerId": alice_id})
    );
}
