//! Access tokens through the real server (shared/protocol.md "Access"): every refusal at the
//! WebSocket upgrade, each grant, the admin API, HLS, kicks and room closes, the token's display
//! name, `sfu token`, and 10,000 hostile tokens. Tokens are signed here, with the test's own
//! HMAC, never with the server's code.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{Client, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

const SECRET: &str = "access-test-secret-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(secret: &str, input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A JWT with these claims, signed HS256 with `secret`.
fn sign_with(secret: &str, claims: &Value) -> String {
    let head = B64.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let body = B64.encode(claims.to_string());
    let input = format!("{head}.{body}");
    format!("{input}.{}", B64.encode(hs256(secret, &input)))
}

fn token(room: &str, extra: Value) -> String {
    let mut claims = json!({"sub": "user", "room": room, "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    sign_with(SECRET, &claims)
}

fn admin() -> String {
    token("*", json!({"sub": "admin", "grants": {"admin": true}}))
}

fn server() -> Server {
    let mut args = vec!["--workers", "1", "--auth-secret", SECRET];
    args.extend(common::NO_RATE_LIMITS);
    Server::start_with(&args)
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}")
}

fn api(server: &Server, method: &str, path: &str) -> (u16, String) {
    server
        .request_with(method, path, &[&bearer(&admin())])
        .expect("answer")
}

fn join(server: &Server, room: &str, extra: Value) -> (Client, Value) {
    let mut c = server
        .client_with_token(&token(room, extra))
        .expect("a valid token opens the socket");
    let joined = c.ok(
        "join-room",
        json!({"roomId": room, "displayName": "asked-for"}),
    );
    (c, joined)
}

/// Reads until the server closes the socket; true if it did within the deadline.
fn closes(c: &mut Client) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.ws.read() {
            Ok(Message::Text(t)) => c.notifications.push(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

fn notified(c: &Client, method: &str) -> Option<Value> {
    c.notifications
        .iter()
        .find(|n| n["method"] == json!(method))
        .map(|n| n["data"].clone())
}

#[test]
fn bad_tokens_are_refused_at_the_upgrade_with_401_and_leave_no_state() {
    let server = server();
    let t = now();
    let valid = token("r1", json!({}));
    let (head, rest) = valid.split_once('.').unwrap();
    let (body, sig) = rest.split_once('.').unwrap();
    let tampered_body = B64.encode(
        json!({"sub": "user", "room": "*", "exp": t + 600, "grants": {"admin": true}}).to_string(),
    );
    let none_head = B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let cases = [
        ("no token", String::new()),
        ("not a JWT", "hello".to_string()),
        ("garbage segments", "a.b.c".to_string()),
        (
            "bad signature",
            format!("{head}.{body}.{}", &sig[..sig.len() - 2]),
        ),
        ("tampered claims", format!("{head}.{tampered_body}.{sig}")),
        ("alg none", format!("{none_head}.{body}.")),
        (
            "another key",
            sign_with(
                "some-other-secret",
                &json!({"sub": "u", "room": "r1", "exp": t + 600}),
            ),
        ),
        ("expired", token("r1", json!({"exp": t - 5}))),
        ("nbf in the future", token("r1", json!({"nbf": t + 120}))),
        (
            "no sub",
            sign_with(SECRET, &json!({"room": "r1", "exp": t + 600})),
        ),
        (
            "no exp",
            sign_with(SECRET, &json!({"sub": "u", "room": "r1"})),
        ),
        (
            "no room",
            sign_with(SECRET, &json!({"sub": "u", "exp": t + 600})),
        ),
        ("invalid room", token("../etc", json!({}))),
    ];
    for (what, bad) in &cases {
        let status = server.client_with_token(bad).err();
        assert_eq!(
            status,
            Some(401),
            "{what}: the upgrade must be refused with 401"
        );
    }
    // No socket was opened by any of them (the counter is of open WebSockets).
    let (status, stats) = api(&server, "GET", "/api/stats");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["connections"], json!(0), "{stats}");
    assert!(server.client_with_token(&valid).is_ok());
}

#[test]
fn a_token_admits_its_room_only_and_its_name_is_the_display_name() {
    let server = server();
    let mut c = server.client_with_token(&token("mine", json!({}))).unwrap();
    assert_eq!(
        c.error_code("join-room", json!({"roomId": "other"})),
        "forbidden"
    );
    // The socket stays usable: the right room joins.
    c.ok("join-room", json!({"roomId": "mine"}));

    let (_alice, _) = join(
        &server,
        "named",
        json!({"sub": "alice", "name": "Alice\u{202e}A"}),
    );
    let (mut bob, joined) = join(&server, "named", json!({"sub": "bob", "name": "Bob"}));
    assert_eq!(
        joined["peers"][0]["displayName"],
        json!("AliceA"),
        "{joined}"
    );
    let (_carol, _) = join(&server, "named", json!({}));
    let carol_joined = bob.wait_notification("peer-joined");
    // No name in the token: the one asked for in join-room.
    assert_eq!(carol_joined["data"]["displayName"], json!("asked-for"));
    let (status, room) = api(&server, "GET", "/api/rooms/named");
    assert_eq!(status, 200);
    let names: Vec<Value> = serde_json::from_str::<Value>(&room).unwrap()["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["displayName"].clone())
        .collect();
    assert_eq!(names, [json!("AliceA"), json!("Bob"), json!("asked-for")]);

    // A token for every room joins any room.
    let mut any = server.client_with_token(&token("*", json!({}))).unwrap();
    any.ok("join-room", json!({"roomId": "named"}));
}

#[test]
fn each_missing_grant_is_forbidden() {
    let server = server();
    let (mut viewer, joined) = join(&server, "grants", json!({"grants": {"publish": false}}));
    let send = viewer.ok("create-transport", json!({"direction": "send"}));
    let produce = json!({"transportId": send["id"], "kind": "video",
                         "rtpParameters": common::vp8_rtp_parameters(1111)});
    assert_eq!(viewer.error_code("produce", produce.clone()), "forbidden");

    let (mut publisher, _) = join(&server, "grants", json!({}));
    let t = publisher.ok("create-transport", json!({"direction": "send"}));
    let mut ok_produce = produce;
    ok_produce["transportId"] = t["id"].clone();
    let producer = publisher.ok("produce", ok_produce)["producerId"].clone();

    let (mut blind, _) = join(&server, "grants", json!({"grants": {"subscribe": false}}));
    let recv = blind.ok("create-transport", json!({"direction": "recv"}));
    let consume = json!({"transportId": recv["id"], "producerId": producer,
                         "rtpCapabilities": joined["routerRtpCapabilities"]});
    assert_eq!(
        blind.error_code("consume-media", consume.clone()),
        "forbidden"
    );
    // The viewer (subscribe granted) may consume.
    let recv = viewer.ok("create-transport", json!({"direction": "recv"}));
    let mut ok_consume = consume;
    ok_consume["transportId"] = recv["id"].clone();
    viewer.ok("consume-media", ok_consume);
}

#[test]
fn the_admin_api_needs_an_admin_token_and_healthz_stays_open() {
    let server = server();
    assert_eq!(server.get("/healthz").unwrap().0, 200);
    let user = token("r", json!({}));
    for (method, path) in [
        ("GET", "/api/stats"),
        ("GET", "/metrics"),
        ("POST", "/api/rooms"),
        ("GET", "/api/rooms/r"),
        ("DELETE", "/api/rooms/r"),
        ("DELETE", "/api/rooms/r/peers/p"),
    ] {
        let none = server.request_with(method, path, &[]).unwrap().0;
        let bad = server
            .request_with(method, path, &["Authorization: Bearer x.y.z"])
            .unwrap()
            .0;
        let expired = token("*", json!({"exp": now() - 1, "grants": {"admin": true}}));
        let expired = server
            .request_with(method, path, &[&bearer(&expired)])
            .unwrap()
            .0;
        let not_admin = server
            .request_with(method, path, &[&bearer(&user)])
            .unwrap()
            .0;
        assert_eq!(
            (none, bad, expired, not_admin),
            (401, 401, 401, 403),
            "{method} {path}"
        );
    }
    assert_eq!(api(&server, "GET", "/api/stats").0, 200);
    assert_eq!(api(&server, "GET", "/metrics").0, 200);
    let (status, body) = api(&server, "POST", "/api/rooms");
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["roomId"].is_string());
    assert_eq!(api(&server, "GET", "/api/rooms/nobody-here").0, 404);
    assert_eq!(api(&server, "DELETE", "/api/rooms/nobody-here").0, 404);
    assert_eq!(
        api(&server, "DELETE", "/api/rooms/nobody-here/peers/x").0,
        404
    );
}

#[test]
fn an_admin_kicks_a_peer_and_closes_a_room() {
    let server = server();
    let (mut alice, a) = join(&server, "kick", json!({"sub": "alice"}));
    let (mut bob, b) = join(&server, "kick", json!({"sub": "bob"}));
    let (alice_id, bob_id) = (a["peerId"].as_str().unwrap(), b["peerId"].as_str().unwrap());
    alice.wait_notification("peer-joined");

    assert_eq!(
        api(&server, "DELETE", "/api/rooms/kick/peers/not-a-peer").0,
        404
    );
    let (status, body) = api(
        &server,
        "DELETE",
        &format!("/api/rooms/kick/peers/{bob_id}"),
    );
    assert_eq!((status, body.as_str()), (204, ""));
    assert!(closes(&mut bob), "the kicked peer's socket closes");
    assert!(notified(&bob, "kicked").is_some_and(|d| d["reason"].is_string()));
    let left = alice.wait_notification("peer-left");
    assert_eq!(left["data"]["peerId"], json!(bob_id));
    let (_, room) = api(&server, "GET", "/api/rooms/kick");
    let peers = serde_json::from_str::<Value>(&room).unwrap()["peers"].clone();
    assert_eq!(
        peers,
        json!([{"peerId": alice_id, "displayName": "asked-for"}])
    );

    let (mut carol, _) = join(&server, "kick", json!({"sub": "carol"}));
    let (mut elsewhere, _) = join(&server, "stays", json!({}));
    assert_eq!(api(&server, "DELETE", "/api/rooms/kick").0, 204);
    for c in [&mut alice, &mut carol] {
        assert!(closes(c), "every peer of the closed room is disconnected");
        assert_eq!(notified(c, "room-closed"), Some(json!({"roomId": "kick"})));
    }
    assert_eq!(api(&server, "GET", "/api/rooms/kick").0, 404);
    // Another room is untouched.
    elsewhere.ok("create-transport", json!({"direction": "recv"}));
    drop(elsewhere);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: Value = serde_json::from_str(&api(&server, "GET", "/api/stats").1).unwrap();
        if stats["peers"] == json!(0) && stats["rooms"] == json!(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "peers and rooms did not go: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hls_needs_a_subscribe_token_for_its_room() {
    let server = server();
    let path = "/hls/show/index.m3u8";
    let get = |query: &str| server.get(&format!("{path}{query}")).unwrap().0;
    assert_eq!(get(""), 401);
    assert_eq!(get("?token=nonsense"), 401);
    let expired = token("show", json!({"exp": now() - 1}));
    assert_eq!(get(&format!("?token={expired}")), 401);
    assert_eq!(get(&format!("?token={}", token("other", json!({})))), 403);
    let no_subscribe = token("show", json!({"grants": {"subscribe": false}}));
    assert_eq!(get(&format!("?token={no_subscribe}")), 403);
    // Past the access check: the room has no stream yet (the served playlist and its token
    // on segment URIs are covered by the edge's tests and the browser test).
    assert_eq!(get(&format!("?token={}", token("show", json!({})))), 404);
    assert_eq!(get(&format!("?token={}", token("*", json!({})))), 404);
}

#[test]
fn sfu_token_prints_a_token_this_test_verifies_with_the_secret() {
    let before = now();
    let out = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args([
            "token",
            "--room",
            "standup",
            "--identity",
            "ann",
            "--name",
            "Ann",
            "--ttl",
            "120",
            "--no-publish",
            "--no-data",
            "--admin",
        ])
        .env("SFU_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let jwt = printed.trim();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let signed = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(
        B64.decode(parts[2]).unwrap(),
        hs256(SECRET, &signed),
        "HS256 signature"
    );
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], json!("HS256"));
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], json!("ann"));
    assert_eq!(claims["room"], json!("standup"));
    assert_eq!(claims["name"], json!("Ann"));
    assert_eq!(
        claims["grants"],
        json!({"publish": false, "subscribe": true, "data": false, "admin": true})
    );
    let exp = claims["exp"].as_u64().unwrap();
    assert!((before + 120..=now() + 120).contains(&exp), "exp {exp}");

    // The flag works as well as the environment; without a secret it says what to do.
    let flag = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args([
            "token",
            "--auth-secret",
            "x",
            "--room",
            "*",
            "--identity",
            "i",
        ])
        .env_remove("SFU_AUTH_SECRET")
        .output()
        .unwrap();
    assert!(flag.status.success());
    let none = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["token", "--room", "r", "--identity", "i"])
        .env_remove("SFU_AUTH_SECRET")
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("SFU_AUTH_SECRET"));
}

/// One keep-alive connection sending upgrade requests; returns each answer's status.
struct Upgrader {
    port: u16,
    stream: Option<TcpStream>,
}

impl Upgrader {
    fn status(&mut self, token: &str) -> u16 {
        for _ in 0..3 {
            if self.stream.is_none() {
                let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                self.stream = Some(s);
            }
            let s = self.stream.as_mut().unwrap();
            let req = format!(
                "GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            if s.write_all(req.as_bytes()).is_ok() {
                if let Some((status, close)) = read_response(s) {
                    if close {
                        self.stream = None;
                    }
                    return status;
                }
            }
            self.stream = None;
        }
        panic!("no answer to an upgrade request");
    }
}

/// Reads one response (head + Content-Length body): its status and whether it closes.
fn read_response(s: &mut TcpStream) -> Option<(u16, bool)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((status, head.contains("connection: close")))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A hostile variation of `valid`: bytes flipped, cut, segments swapped or replaced, other
/// keys and algorithms, random junk.
fn mutate(valid: &str, i: u64, rng: &mut u64) -> String {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let parts: Vec<&str> = valid.split('.').collect();
    let mut bytes = valid.as_bytes().to_vec();
    match i % 8 {
        0 => {
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = b"ABCDEFabcdef0123456789-_"[(next() % 24) as usize];
            }
            if bytes == valid.as_bytes() {
                bytes[0] = if bytes[0] == b'e' { b'f' } else { b'e' };
            }
            String::from_utf8(bytes).unwrap()
        }
        1 => valid[..(next() as usize) % valid.len()].to_string(),
        2 => format!("{}.{}.{}", parts[1], parts[0], parts[2]),
        3 => sign_with(
            &format!("guess-{}", next()),
            &json!({"sub": "x", "room": "*", "exp": now() + 600, "grants": {"admin": true}}),
        ),
        4 => {
            let alg = ["none", "HS512", "RS256"][(next() % 3) as usize];
            let head = B64.encode(json!({ "alg": alg }).to_string());
            format!("{head}.{}.{}", parts[1], parts[2])
        }
        5 => (0..(next() % 600))
            .map(|_| (next() % 255 + 1) as u8 as char)
            .collect(),
        6 => {
            let claims = B64.encode(format!("{{\"sub\":\"x\",\"exp\":{}", next()));
            format!("{}.{claims}.{}", parts[0], parts[2])
        }
        _ => format!("{valid}{}", ".x".repeat((next() % 4000) as usize)),
    }
}

#[test]
fn ten_thousand_hostile_tokens_get_401_while_the_server_keeps_serving() {
    let server = server();
    let (mut member, _) = join(&server, "steady", json!({}));
    let valid = token("steady", json!({}));
    let port = server.port;
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let valid = valid.clone();
            std::thread::spawn(move || {
                let mut up = Upgrader { port, stream: None };
                let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (w + 1);
                let mut wrong = Vec::new();
                for i in 0..2500 {
                    let bad = mutate(&valid, i, &mut rng);
                    let status = up.status(&percent_encode(&bad));
                    if status != 401 && wrong.len() < 5 {
                        wrong.push((status, bad));
                    }
                }
                wrong
            })
        })
        .collect();
    // Meanwhile the member's requests keep being answered.
    let mut answered = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
        member.ok("create-transport", json!({"direction": "recv"}));
        answered += 1;
        if answered % 8 == 0 {
            // Stay under the transports-per-peer cap: leave and rejoin.
            member.ok("leave-room", json!({}));
            member.ok("join-room", json!({"roomId": "steady"}));
        }
    }
    let wrong: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        wrong.is_empty(),
        "hostile tokens not refused with 401: {wrong:?}"
    );
    assert!(answered > 0);
    assert!(
        server.client_with_token(&valid).is_ok(),
        "valid tokens still open sockets"
    );
    // The same raw request with the valid token is upgraded: the 401s were about the tokens.
    let mut up = Upgrader { port, stream: None };
    assert_eq!(up.status(&valid), 101);
}

#[test]
fn joins_beyond_the_per_ip_rate_get_limit_and_names_cannot_carry_bidi_overrides() {
    let server = Server::start_with(&[
        "--workers",
        "1",
        "--join-rate-per-ip",
        "0.01",
        "--join-burst-per-ip",
        "3",
    ]);
    let mut sockets: Vec<Client> = (0..4).map(|_| server.client()).collect();
    for c in &mut sockets[..3] {
        c.ok("join-room", json!({"roomId": "rate"}));
    }
    // The fourth join from the same address, on another socket, is over the rate.
    assert_eq!(
        sockets[3].error_code("join-room", json!({"roomId": "rate"})),
        "limit"
    );
    for name in ["evil\u{202e}gnp.exe", "a\u{2066}b", "bell\u{7}"] {
        let mut c = server.client();
        let code = c.error_code("join-room", json!({"roomId": "names", "displayName": name}));
        assert_eq!(code, "bad-request", "{name:?}");
    }
}
