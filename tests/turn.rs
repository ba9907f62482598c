//! TURN credentials through the real server (shared/protocol.md "Networks"): every
//! `create-transport` answer carries `iceServers` exactly when `SFU_TURN_*` is configured, and a
//! half-configured TURN is refused at start-up.

mod common;

use base64::Engine;
use common::Server;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "turn-test-secret";
const URLS: [&str; 2] = [
    "turn:127.0.0.1:3478?transport=udp",
    "turns:127.0.0.1:443?transport=tcp",
];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn every_create_transport_answer_carries_turn_credentials_for_its_peer() {
    let urls = URLS.join(",");
    let server = Server::start_with(&[
        "--workers",
        "1",
        "--turn-urls",
        &urls,
        "--turn-secret",
        SECRET,
        "--turn-ttl",
        "600",
    ]);
    let mut c = server.client();
    let joined = c.ok("join-room", json!({"roomId": "turn-1"}));
    let peer_id = joined["peerId"].as_str().unwrap().to_string();
    for direction in ["send", "recv"] {
        let before = unix_now();
        let t = c.ok("create-transport", json!({"direction": direction}));
        let after = unix_now();
        let servers = t["iceServers"].as_array().expect("iceServers present");
        assert_eq!(servers.len(), 1, "{t}");
        let s = &servers[0];
        assert_eq!(s["urls"], json!(URLS), "{s}");
        let username = s["username"].as_str().unwrap();
        let (expiry, user_peer) = username.split_once(':').unwrap();
        assert_eq!(user_peer, peer_id);
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (before + 600..=after + 600).contains(&expiry),
            "expiry {expiry} is not now + ttl ({before}..={after} + 600)"
        );
        let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(username.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(s["credential"], json!(expected), "{s}");
        // The rest of the answer is unchanged.
        assert!(t["id"].is_string() && t["iceCandidates"].is_array(), "{t}");
    }
}

#[test]
fn without_turn_settings_the_answer_has_no_ice_servers() {
    let server = Server::start();
    let mut c = server.client();
    c.ok("join-room", json!({"roomId": "turn-2"}));
    let t = c.ok("create-transport", json!({"direction": "send"}));
    assert!(t.get("iceServers").is_none(), "{t}");
    assert!(t["iceParameters"].is_object(), "{t}");
}

/// Starts the binary with `args` and returns (exit success, stderr).
fn run_sfu(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--listen", "127.0.0.1:0", "--no-pin", "--workers", "1"])
        .args(args)
        .env_remove("SFU_TURN_URLS")
        .env_remove("SFU_TURN_SECRET")
        .env_remove("SFU_TURN_TTL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run sfu");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn half_configured_turn_is_a_start_up_error_that_says_what_to_set() {
    let (ok, err) = run_sfu(&["--turn-urls", URLS[0]]);
    assert!(!ok && err.contains("SFU_TURN_SECRET"), "{err}");
    let (ok, err) = run_sfu(&["--turn-secret", SECRET]);
    assert!(!ok && err.contains("SFU_TURN_URLS"), "{err}");
    assert!(!err.contains(SECRET), "the secret is not printed: {err}");
    let (ok, err) = run_sfu(&[
        "--turn-urls",
        "stun:127.0.0.1:3478",
        "--turn-secret",
        SECRET,
    ]);
    assert!(!ok && err.contains("turn:"), "{err}");
    assert!(!err.contains(SECRET), "the secret is not printed: {err}");
}
