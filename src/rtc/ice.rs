//! ICE-lite, server side, on a shared socket (like mediasoup's WebRtcServer).
//!
//! The worker first calls [`parse_binding_request`] to learn which transport a request is for
//! (by our ufrag), then [`answer_binding_request`] with that transport's password.

use std::net::SocketAddr;

use rand::distributions::Alphanumeric;
use rand::Rng;
use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_ICE_CONTROLLING, ATTR_MESSAGE_INTEGRITY, ATTR_PRIORITY, ATTR_USERNAME,
    ATTR_USE_CANDIDATE,
};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use stun::xoraddr::XorMappedAddress;

/// Length of the HMAC-SHA1 value carried by MESSAGE-INTEGRITY.
const MESSAGE_INTEGRITY_LEN: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IceError {
    #[error("not a STUN message: {0}")]
    Malformed(String),
    #[error("not a STUN binding request")]
    NotBindingRequest,
    #[error("missing USERNAME")]
    MissingUsername,
    #[error("invalid USERNAME (expected \"local:remote\")")]
    BadUsername,
    #[error("invalid PRIORITY")]
    BadPriority,
    #[error("missing MESSAGE-INTEGRITY")]
    MissingIntegrity,
    #[error("MESSAGE-INTEGRITY mismatch")]
    IntegrityMismatch,
    #[error("FINGERPRINT mismatch")]
    FingerprintMismatch,
    #[error("cannot build response: {0}")]
    Build(String),
}

/// Our ICE username fragment and password for one transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl IceCredentials {
    /// Random alphanumeric credentials (a subset of ice-char, RFC 8445 §15.1).
    pub fn random() -> Self {
        Self {
            ufrag: random_ice_string(16),
            pwd: random_ice_string(32),
        }
    }
}

fn random_ice_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// What a binding request says, before its integrity is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRequest {
    /// The part of USERNAME before ':' — our ufrag; selects the transport.
    pub local_ufrag: String,
    pub remote_ufrag: String,
    pub use_candidate: bool,
    pub priority: Option<u32>,
    pub ice_controlling: bool,
    pub transaction_id: [u8; 12],
}

fn decode(buf: &[u8]) -> Result<Message, IceError> {
    if !stun::message::is_message(buf) {
        return Err(IceError::Malformed("bad header".into()));
    }
    let mut m = Message::new();
    m.unmarshal_binary(buf)
        .map_err(|e| IceError::Malformed(e.to_string()))?;
    if m.typ != BINDING_REQUEST {
        return Err(IceError::NotBindingRequest);
    }
    Ok(m)
}

/// Parses a STUN Binding Request without verifying its integrity.
pub fn parse_binding_request(buf: &[u8]) -> Result<BindingRequest, IceError> {
    let m = decode(buf)?;
    let username = m
        .get(ATTR_USERNAME)
        .map_err(|_| IceError::MissingUsername)?;
    let username = std::str::from_utf8(&username).map_err(|_| IceError::BadUsername)?;
    let (local, remote) = username.split_once(':').ok_or(IceError::BadUsername)?;
    if local.is_empty() {
        return Err(IceError::BadUsername);
    }
    let priority = match m.get(ATTR_PRIORITY) {
        Ok(v) => {
            let bytes: [u8; 4] = v.as_slice().try_into().map_err(|_| IceError::BadPriority)?;
            Some(u32::from_be_bytes(bytes))
        }
        Err(_) => None,
    };
    Ok(BindingRequest {
        local_ufrag: local.to_owned(),
        remote_ufrag: remote.to_owned(),
        use_candidate: m.contains(ATTR_USE_CANDIDATE),
        priority,
        ice_controlling: m.contains(ATTR_ICE_CONTROLLING),
        transaction_id: m.transaction_id.0,
    })
}

/// Verifies a binding request against our password and writes the success response into `out`.
pub fn answer_binding_request(
    buf: &[u8],
    local_pwd: &str,
    from: SocketAddr,
    out: &mut Vec<u8>,
) -> Result<(), IceError> {
    let mut m = decode(buf)?;
    // The stun crate trusts the attribute's length when locating the HMAC input; check it first.
    let mi = m
        .get(ATTR_MESSAGE_INTEGRITY)
        .map_err(|_| IceError::MissingIntegrity)?;
    if mi.len() != MESSAGE_INTEGRITY_LEN {
        return Err(IceError::IntegrityMismatch);
    }
    if m.contains(ATTR_FINGERPRINT) {
        // FINGERPRINT must be the last attribute and the datagram must hold exactly the message.
        let last_is_fp = m.attributes.0.last().map(|a| a.typ) == Some(ATTR_FINGERPRINT);
        if !last_is_fp || m.raw.len() != 20 + m.length as usize {
            return Err(IceError::FingerprintMismatch);
        }
        FINGERPRINT
            .check(&m)
            .map_err(|_| IceError::FingerprintMismatch)?;
    }
    let integrity = MessageIntegrity::new_short_term_integrity(local_pwd.to_owned());
    integrity
        .check(&mut m)
        .map_err(|_| IceError::IntegrityMismatch)?;

    let mut resp = Message::new();
    resp.set_type(BINDING_SUCCESS);
    resp.transaction_id = m.transaction_id;
    resp.write_header();
    let build = |resp: &mut Message| -> Result<(), stun::Error> {
        XorMappedAddress {
            ip: from.ip(),
            port: from.port(),
        }
        .add_to(resp)?;
        integrity.add_to(resp)?;
        FINGERPRINT.add_to(resp)
    };
    build(&mut resp).map_err(|e| IceError::Build(e.to_string()))?;
    out.clear();
    out.extend_from_slice(&resp.raw);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::agent::TransactionId;
    use stun::textattrs::TextAttribute;

    const SERVER_PWD: &str = "serverpassword0123456789abcdefgh";
    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn chromium_request(pwd: &str) -> Vec<u8> {
        let mut m = Message::new();
        m.set_type(BINDING_REQUEST);
        m.transaction_id = TransactionId(TID);
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, "srv:cli".into())
            .add_to(&mut m)
            .unwrap();
        m.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &[0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
        m.add(ATTR_USE_CANDIDATE, &[]);
        MessageIntegrity::new_short_term_integrity(pwd.into())
            .add_to(&mut m)
            .unwrap();
        FINGERPRINT.add_to(&mut m).unwrap();
        m.raw.clone()
    }

    #[test]
    fn random_credentials_have_the_required_lengths_and_ice_chars() {
        let c = IceCredentials::random();
        assert_eq!(c.ufrag.len(), 16);
        assert_eq!(c.pwd.len(), 32);
        assert!(c
            .ufrag
            .chars()
            .chain(c.pwd.chars())
            .all(|ch| ch.is_ascii_alphanumeric()));
        assert_ne!(IceCredentials::random(), c);
    }

    #[test]
    fn chromium_binding_request_is_parsed() {
        let req = parse_binding_request(&chromium_request(SERVER_PWD)).unwrap();
        assert_eq!(
            req,
            BindingRequest {
                local_ufrag: "srv".into(),
                remote_ufrag: "cli".into(),
                use_candidate: true,
                priority: Some(1_845_501_695),
                ice_controlling: true,
                transaction_id: TID,
            }
        );
    }

    #[test]
    fn binding_request_is_answered_with_mapped_address_and_integrity() {
        let from: SocketAddr = "203.0.113.7:54321".parse().unwrap();
        let mut out = Vec::new();
        answer_binding_request(&chromium_request(SERVER_PWD), SERVER_PWD, from, &mut out).unwrap();

        let mut resp = Message::new();
        resp.unmarshal_binary(&out).unwrap();
        assert_eq!(resp.typ, BINDING_SUCCESS);
        assert_eq!(resp.transaction_id.0, TID);
        let mut xor = XorMappedAddress::default();
        xor.get_from_as(&resp, stun::attributes::ATTR_XORMAPPED_ADDRESS)
            .unwrap();
        assert_eq!(SocketAddr::new(xor.ip, xor.port), from);
        FINGERPRINT.check(&resp).unwrap();
        MessageIntegrity::new_short_term_integrity(SERVER_PWD.into())
            .check(&mut resp)
            .unwrap();
    }

    #[test]
    fn binding_request_over_ipv6_is_answered_with_the_ipv6_address() {
        let from: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let mut out = Vec::new();
        answer_binding_request(&chromium_request(SERVER_PWD), SERVER_PWD, from, &mut out).unwrap();
        let mut resp = Message::new();
        resp.unmarshal_binary(&out).unwrap();
        let mut xor = XorMappedAddress::default();
        xor.get_from_as(&resp, stun::attributes::ATTR_XORMAPPED_ADDRESS)
            .unwrap();
        assert_eq!(SocketAddr::new(xor.ip, xor.port), from);
    }

    #[test]
    fn binding_request_with_wrong_password_is_rejected() {
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut out = Vec::new();
        let err = answer_binding_request(
            &chromium_request("not-the-password"),
            SERVER_PWD,
            from,
            &mut out,
        );
        assert_eq!(err, Err(IceError::IntegrityMismatch));
        assert!(out.is_empty());
    }

    #[test]
    fn binding_request_with_corrupted_fingerprint_is_rejected() {
        let mut req = chromium_request(SERVER_PWD);
        let n = req.len();
        req[n - 1] ^= 0xff;
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let err = answer_binding_request(&req, SERVER_PWD, from, &mut Vec::new());
        assert_eq!(err, Err(IceError::FingerprintMismatch));
    }

    #[test]
    fn binding_request_without_integrity_is_rejected() {
        let mut m = Message::new();
        m.set_type(BINDING_REQUEST);
        m.transaction_id = TransactionId(TID);
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, "srv:cli".into())
            .add_to(&mut m)
            .unwrap();
        assert!(parse_binding_request(&m.raw).is_ok());
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let err = answer_binding_request(&m.raw, SERVER_PWD, from, &mut Vec::new());
        assert_eq!(err, Err(IceError::MissingIntegrity));
    }

    #[test]
    fn binding_request_without_colon_in_username_is_rejected() {
        let mut m = Message::new();
        m.set_type(BINDING_REQUEST);
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, "srvcli".into())
            .add_to(&mut m)
            .unwrap();
        assert_eq!(parse_binding_request(&m.raw), Err(IceError::BadUsername));
    }

    #[test]
    fn binding_success_is_not_taken_for_a_request() {
        let mut m = Message::new();
        m.set_type(BINDING_SUCCESS);
        m.write_header();
        assert_eq!(
            parse_binding_request(&m.raw),
            Err(IceError::NotBindingRequest)
        );
    }

    #[test]
    fn truncated_or_garbage_bytes_return_errors() {
        let req = chromium_request(SERVER_PWD);
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for len in 0..req.len() {
            let cut = &req[..len];
            assert!(parse_binding_request(cut).is_err(), "len {len}");
            assert!(answer_binding_request(cut, SERVER_PWD, from, &mut Vec::new()).is_err());
        }
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        assert!(parse_binding_request(&garbage).is_err());
        // A valid header claiming attributes with absurd lengths.
        let mut hostile = req[..20].to_vec();
        hostile[2..4].copy_from_slice(&8u16.to_be_bytes());
        hostile.extend_from_slice(&[0x00, 0x08, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(parse_binding_request(&hostile).is_err());
        // MESSAGE-INTEGRITY with a short value.
        let mut short_mi = req[..20].to_vec();
        short_mi[2..4].copy_from_slice(&8u16.to_be_bytes());
        short_mi.extend_from_slice(&[0x00, 0x08, 0x00, 0x00, 0, 0, 0, 0]);
        assert!(answer_binding_request(&short_mi, SERVER_PWD, from, &mut Vec::new()).is_err());
    }
}
