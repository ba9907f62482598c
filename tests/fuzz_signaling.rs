//! Fuzz targets for the signaling edge's parsers: the JSON request decoder (frame envelope and
//! every method's validation) and the HTTP/1.1 request parser. Structure-aware: valid requests
//! are mutated as bytes, and valid envelopes get random JSON values in their fields. Bounded
//! (see tests/fuzz_support).

mod fuzz_support;

use fuzz_support::Fuzz;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use sfu::signaling::http::{parse_request as parse_http, ParseOutcome};
use sfu::signaling::protocol::{parse_frame, parse_request, Frame};

const METHODS: [&str; 15] = [
    "join-room",
    "create-transport",
    "connect-transport",
    "produce",
    "consume-media",
    "resume-consumer",
    "pause-consumer",
    "pause-producer",
    "resume-producer",
    "close-producer",
    "restart-ice",
    "set-consumer-preferred-layers",
    "leave-room",
    "produce-data",
    "no-such-method",
];

fn request_seeds() -> Vec<Value> {
    let id = "6f1c0c52-2c0e-4a4e-9d35-6f7c4d0b9a11";
    vec![
        json!({"roomId": "room-1", "displayName": "Ann"}),
        json!({"direction": "send"}),
        json!({"transportId": id, "dtlsParameters": {"role": "client",
               "fingerprints": [{"algorithm": "sha-256", "value": "AB:CD"}]}}),
        json!({"transportId": id, "kind": "video", "rtpParameters": {"codecs": [], "encodings": [{"ssrc": 1}]},
               "appData": {"source": "camera"}}),
        json!({"transportId": id, "producerId": id, "rtpCapabilities": {"codecs": []}}),
        json!({"consumerId": id}),
        json!({"producerId": id}),
        json!({"transportId": id}),
        json!({"consumerId": id, "spatialLayer": 2, "temporalLayer": 1}),
        json!({}),
    ]
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e12),
        4 => json!(
            [
                "",
                "send",
                "video",
                "client",
                &"x".repeat(100),
                "\u{0}",
                "../.."
            ][rng.gen_range(0..7)]
        ),
        5 => json!(u64::MAX),
        6 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "roomId",
                "transportId",
                "kind",
                "codecs",
                "ssrc",
                "role",
                "direction",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    keys[rng.gen_range(0..keys.len())].into(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// Replaces one field somewhere in `v` (or `v` itself) with a random value.
fn mutate_value(rng: &mut StdRng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.gen_bool(0.8) => {
            let key = m.keys().nth(rng.gen_range(0..m.len())).cloned().unwrap();
            mutate_value(rng, m.get_mut(&key).unwrap());
        }
        Value::Array(a) if !a.is_empty() && rng.gen_bool(0.8) => {
            let i = rng.gen_range(0..a.len());
            mutate_value(rng, &mut a[i]);
        }
        _ => *v = random_value(rng, 0),
    }
}

#[test]
fn fuzz_signaling_json_decoding_never_panics_on_bytes_or_on_typed_fields() {
    let datas = request_seeds();
    // Byte-level: whole frames as text.
    let seeds: Vec<Vec<u8>> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let method = METHODS[i % METHODS.len()];
            json!({"request": true, "id": i, "method": method, "data": d})
                .to_string()
                .into_bytes()
        })
        .collect();
    let mut decoded = 0u64;
    let ran = Fuzz::new("json-bytes").run(&seeds, |input| {
        let text = String::from_utf8_lossy(input);
        if let Frame::Request { method, data, .. } = parse_frame(&text) {
            decoded += 1;
            let _ = parse_request(&method, data);
        }
    });
    assert!(ran > 1000 && decoded > 0, "ran {ran}, decoded {decoded}");

    // Structure-aware: valid envelopes whose fields get values of any type.
    let mut fuzz = Fuzz::new("json-fields");
    let started = std::time::Instant::now();
    let mut n = 0;
    while n < 20_000 && started.elapsed() < std::time::Duration::from_secs(5) {
        n += 1;
        let mut data = datas[fuzz.rng.gen_range(0..datas.len())].clone();
        for _ in 0..fuzz.rng.gen_range(1..4) {
            mutate_value(&mut fuzz.rng, &mut data);
        }
        let method = METHODS[fuzz.rng.gen_range(0..METHODS.len())];
        let shown = data.to_string();
        let outcome = std::panic::catch_unwind(|| parse_request(method, data));
        assert!(outcome.is_ok(), "{method} with {shown} panicked");
    }
    assert!(n >= 1000);
}

#[test]
fn fuzz_http_request_parsing_never_panics_and_never_overreads() {
    let body = r#"{"roomId":"abc"}"#;
    let seeds: Vec<Vec<u8>> = vec![
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /ws?token=abc HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:8000\r\n\r\n"
            .to_vec(),
        format!(
            "POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        b"GET /hls/room-1/index.m3u8?token=t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
          GET /healthz HTTP/1.1\r\n\r\n"
            .to_vec(),
        b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
    ];
    let mut complete = 0u64;
    let ran = Fuzz::new("http").run(&seeds, |input| match parse_http(input, 1024) {
        ParseOutcome::Complete(req) => {
            complete += 1;
            assert!(
                req.consumed <= input.len(),
                "consumed {} of {}",
                req.consumed,
                input.len()
            );
            assert!(req.request.body.len() <= 1024);
        }
        ParseOutcome::Partial | ParseOutcome::Reject(_) => {}
    });
    assert!(ran > 1000 && complete > 0, "ran {ran}, complete {complete}");
}
