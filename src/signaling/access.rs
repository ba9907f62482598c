//! Access tokens (shared/protocol.md "Access"): HS256 JWTs naming one room (or `*`) and what
//! their holder may do there. Off unless a secret is configured.
//!
//! Verification is strict: HS256 only, `sub`, `room` and `exp` required, `exp`/`nbf` checked
//! with no leeway, sizes bounded before anything is decoded. A token is never logged; only the
//! reason it was refused is.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longer tokens are refused unread (a JWT with these claims is a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Identities longer than this are refused.
const MAX_IDENTITY_LEN: usize = 256;

/// What a token allows in its room (shared/protocol.md: `publish`, `subscribe`, `data`
/// default to true, `admin` to false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grants {
    pub publish: bool,
    pub subscribe: bool,
    pub data: bool,
    pub admin: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            publish: true,
            subscribe: true,
            data: true,
            admin: false,
        }
    }
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: who the holder is.
    pub identity: String,
    /// `room`: the room it admits, or `*` for every room.
    pub room: String,
    /// `name`, cleaned ([`clean_display_name`]); it wins over `join-room`'s `displayName`.
    pub name: Option<String>,
    pub grants: Grants,
    /// `exp`, unix seconds.
    pub expires: u64,
}

impl Claims {
    pub fn admits_room(&self, room_id: &str) -> bool {
        self.room == "*" || self.room == room_id
    }
}

/// The claims as they travel (unknown claims such as `iat` or `iss` are ignored).
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    sub: String,
    room: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    grants: Grants,
}

/// Why a token was refused (for logs and the 401 body; never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("the token is not a valid HS256 JWT with sub, room and exp")]
    Malformed,
    #[error("the token's signature does not match this server's secret")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
}

/// What `sfu token` (or a test) puts into a new token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub room: String,
    pub identity: String,
    pub name: Option<String>,
    pub ttl_secs: u64,
    pub grants: Grants,
}

/// The configured secret, ready to verify and sign.
pub struct Access {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(<secret redacted>)")
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Access {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Checks signature, algorithm, `exp`, `nbf` and the claims' shapes.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(TokenError::Malformed);
        }
        let data =
            jsonwebtoken::decode::<Wire>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    _ => TokenError::Malformed,
                }
            })?;
        let w = data.claims;
        let room_ok = w.room == "*" || super::protocol::is_valid_room_id(&w.room);
        if w.sub.is_empty() || w.sub.len() > MAX_IDENTITY_LEN || !room_ok {
            return Err(TokenError::Malformed);
        }
        let name = w
            .name
            .map(|n| clean_display_name(&n))
            .filter(|n| !n.is_empty());
        Ok(Claims {
            identity: w.sub,
            room: w.room,
            name,
            grants: w.grants,
            expires: w.exp,
        })
    }

    /// A token for `spec`, valid from now for `spec.ttl_secs`.
    pub fn sign(&self, spec: &TokenSpec) -> String {
        let wire = Wire {
            sub: spec.identity.clone(),
            room: spec.room.clone(),
            exp: unix_now().saturating_add(spec.ttl_secs),
            nbf: None,
            name: spec.name.clone(),
            grants: spec.grants,
        };
        // Serializing these plain fields with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &wire, &self.encoding)
            .unwrap_or_default()
    }
}

/// Characters a display name may not carry: control characters (C0, DEL, C1) and the Unicode
/// bidirectional overrides and isolates, which let a name reorder the text around it.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A token's `name` made safe to show: forbidden characters removed, trimmed, at most
/// [`super::protocol::MAX_DISPLAY_NAME`] characters.
pub fn clean_display_name(name: &str) -> String {
    name.chars()
        .filter(|&c| !is_forbidden_in_name(c))
        .collect::<String>()
        .trim()
        .chars()
        .take(super::protocol::MAX_DISPLAY_NAME)
        .collect()
}

/// The value of `name` in a query string (`a=1&token=…`), percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| super::http::percent_decode(v))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A playlist whose URIs carry `?token=` on (segments, init sections, variant playlists), so
/// a player that was given the playlist URL can fetch the rest.
pub fn carry_token(playlist: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(playlist);
    let with_token = |uri: &str| {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}token={token}")
    };
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if body.is_empty() {
            out.push_str(line);
        } else if let Some(tag) = body.strip_prefix('#') {
            match tag.find("URI=\"") {
                Some(at) => {
                    let start = at + 1 + "URI=\"".len();
                    let len = body[start..].find('"').unwrap_or(body.len() - start);
                    out.push_str(&body[..start]);
                    out.push_str(&with_token(&body[start..start + len]));
                    out.push_str(&body[start + len..]);
                    out.push_str(end);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(&with_token(body));
            out.push_str(end);
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(room: &str) -> TokenSpec {
        TokenSpec {
            room: room.into(),
            identity: "alice".into(),
            name: Some("Alice".into()),
            ttl_secs: 60,
            grants: Grants::default(),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let access = Access::new("s3cret");
        let claims = access.verify(&access.sign(&spec("r1"))).unwrap();
        assert_eq!(claims.identity, "alice");
        assert!(claims.admits_room("r1") && !claims.admits_room("r2"));
        assert_eq!(claims.name.as_deref(), Some("Alice"));
        assert_eq!(claims.grants, Grants::default());
    }

    #[test]
    fn another_key_is_a_bad_signature_and_junk_is_malformed() {
        let token = Access::new("one").sign(&spec("r1"));
        let other = Access::new("two");
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
        assert_eq!(other.verify(""), Err(TokenError::Missing));
        assert_eq!(other.verify("a.b.c"), Err(TokenError::Malformed));
        assert_eq!(
            other.verify(&"x".repeat(10_000)),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn names_lose_control_and_bidi_characters() {
        assert_eq!(clean_display_name(" A\u{202E}b\u{0007}c\u{2066} "), "Abc");
        assert!(is_forbidden_in_name('\u{202D}') && !is_forbidden_in_name('é'));
    }

    #[test]
    fn query_and_bearer_extract_the_token() {
        assert_eq!(
            query_param("a=1&token=x%2Ey", "token").as_deref(),
            Some("x.y")
        );
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
    }

    #[test]
    fn every_playlist_uri_carries_the_token() {
        let playlist =
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.0,\nseg1.ts\r\nseg2.ts?x=1\n";
        let out = String::from_utf8(carry_token(playlist.as_bytes(), "T")).unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=T\"\n#EXTINF:1.0,\nseg1.ts?token=T\r\nseg2.ts?x=1&token=T\n"
        );
    }
}
