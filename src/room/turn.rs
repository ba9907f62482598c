//! TURN REST-API credentials (the scheme coturn's `--use-auth-secret` / `static-auth-secret`
//! checks): `username` = `"<unix expiry>:<peerId>"`, `credential` =
//! base64(HMAC-SHA1(secret, username)). Every `create-transport` answer carries them as
//! `iceServers` when TURN is configured (shared/protocol.md, "Networks").
//!
//! The secret never leaves this module except through [`credential`]: the `Debug` output of
//! [`TurnConfig`] and of the answer's [`IceServer`] redacts it and the credential.

use super::api::IceServer;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a worker needs to hand out TURN credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:`/`turns:` URLs, as configured.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: Arc<str>,
    /// Seconds a credential is valid.
    pub ttl_secs: u64,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl TurnConfig {
    /// The `iceServers` entry for `peer_id`, valid `ttl_secs` from `now_unix`.
    pub fn ice_server(&self, peer_id: &str, now_unix: u64) -> IceServer {
        let username = format!("{}:{peer_id}", now_unix.saturating_add(self.ttl_secs));
        IceServer {
            urls: self.urls.clone(),
            credential: credential(&self.secret, &username),
            username,
        }
    }

    /// [`TurnConfig::ice_server`] at the current wall-clock time.
    pub fn ice_server_now(&self, peer_id: &str) -> IceServer {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.ice_server(peer_id, now)
    }
}

/// base64(HMAC-SHA1(secret, username)), standard alphabet with padding (what coturn expects).
pub fn credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed with Python:
    //   import hmac, hashlib, base64
    //   base64.b64encode(hmac.new(b'north-sea-secret', b'1700000000:p-test',
    //                             hashlib.sha1).digest()).decode()
    //   → 'ie/MOMLlAeIfxNC8HU9kMmF8orE='
    const VECTOR: (&str, &str, &str) = (
        "north-sea-secret",
        "1700000000:p-test",
        "ie/MOMLlAeIfxNC8HU9kMmF8orE=",
    );

    #[test]
    fn the_credential_matches_a_vector_computed_elsewhere() {
        let (secret, username, expected) = VECTOR;
        assert_eq!(credential(secret, username), expected);
    }

    #[test]
    fn the_username_is_expiry_colon_peer_id_and_the_credential_signs_it() {
        let turn = TurnConfig {
            urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            secret: VECTOR.0.into(),
            ttl_secs: 86_400,
        };
        let s = turn.ice_server("p-test", 1_700_000_000 - 86_400);
        assert_eq!(s.urls, turn.urls);
        assert_eq!(s.username, VECTOR.1);
        assert_eq!(s.credential, VECTOR.2);
    }

    #[test]
    fn debug_output_shows_neither_the_secret_nor_the_credential() {
        let turn = TurnConfig {
            urls: vec!["turn:127.0.0.1:3478".into()],
            secret: VECTOR.0.into(),
            ttl_secs: 60,
        };
        let s = turn.ice_server("p-test", 1);
        for text in [format!("{turn:?}"), format!("{s:?}")] {
            assert!(!text.contains(VECTOR.0), "{text}");
            assert!(!text.contains(&s.credential), "{text}");
            assert!(text.contains("turn:127.0.0.1:3478"), "{text}");
        }
    }
}
