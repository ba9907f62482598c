//! ICE consent for an ICE-lite server (RFC 7675 in spirit): which tuple a transport's media
//! goes to, and when that may change.
//!
//! - Before media can flow (no SRTP keys yet), the browser's nomination selects the tuple, as
//!   ICE-lite has it: DTLS goes there, and the handshake only completes if that address
//!   answers.
//! - Once SRTP keys exist, a valid binding request from another address (credentials are
//!   easy to come by: every peer knows its own, and a forged source costs nothing) only makes
//!   it a *candidate*. The selected tuple moves there only when SRTP or SRTCP from it
//!   authenticates with the transport's keys: proof that the browser itself is there and wants
//!   the traffic.
//! - Freshness is per tuple: only STUN or authenticated media from the selected tuple keeps
//!   the transport alive (see `media::CONSENT_TIMEOUT`).

use super::remote::Remote;
use super::transport::Transport;
use std::time::{Duration, Instant};

/// Candidate tuples remembered per transport (the oldest is replaced).
pub const MAX_CANDIDATES: usize = 4;
/// A candidate's binding request proves reachability this long (RFC 7675's consent expiry).
pub const CANDIDATE_TTL: Duration = Duration::from_secs(30);

/// What a valid binding request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The request came from the selected tuple: its consent is fresh.
    Refreshed,
    /// The tuple is now the selected one (before media: the browser's nomination).
    Selected,
    /// The tuple is a candidate: media may prove it later.
    Candidate,
}

/// A binding request with valid credentials arrived from `from`. Also returns a tuple the
/// transport no longer keeps (a candidate replaced by a newer one), to forget in the
/// worker's address index: a transport's tuples are its selected one and its candidates.
pub fn on_binding_request(
    t: &mut Transport,
    from: Remote,
    nominated: bool,
    now: Instant,
) -> (Binding, Option<Remote>) {
    if t.remote == Some(from) {
        t.last_seen = now;
        return (Binding::Refreshed, None);
    }
    if t.srtp.is_none() && (nominated || t.remote.is_none()) {
        let dropped = select(t, from, now);
        return (Binding::Selected, dropped);
    }
    (Binding::Candidate, remember(&mut t.candidates, from, now))
}

/// Makes `from` the selected tuple; the previous one stays a candidate (the browser may move
/// back). Returns a candidate that had to make room.
fn select(t: &mut Transport, from: Remote, now: Instant) -> Option<Remote> {
    t.candidates.retain(|(a, _)| *a != from);
    let previous = t.remote.replace(from);
    let since = t.last_seen;
    t.last_seen = now;
    previous.and_then(|p| remember(&mut t.candidates, p, since))
}

fn remember(candidates: &mut Vec<(Remote, Instant)>, from: Remote, now: Instant) -> Option<Remote> {
    if let Some(c) = candidates.iter_mut().find(|(a, _)| *a == from) {
        c.1 = c.1.max(now);
        return None;
    }
    if candidates.len() < MAX_CANDIDATES {
        candidates.push((from, now));
        return None;
    }
    let oldest = candidates.iter_mut().min_by_key(|(_, at)| *at)?;
    let dropped = oldest.0;
    *oldest = (from, now);
    Some(dropped)
}

/// Whether media from `from` may be tried as proof of consent: the transport has keys and
/// `from` passed a binding request recently.
pub fn may_probe(t: &Transport, from: Remote, now: Instant) -> bool {
    t.srtp.is_some()
        && t.candidates
            .iter()
            .any(|&(a, at)| a == from && now.saturating_duration_since(at) <= CANDIDATE_TTL)
}

/// Media from candidate `from` authenticated: it becomes the selected tuple. Returns a tuple
/// the transport no longer keeps.
pub fn switch_to(t: &mut Transport, from: Remote, now: Instant) -> Option<Remote> {
    select(t, from, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::api::TransportDirection;
    use crate::room::limits::shared_bucket;
    use crate::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
    use std::sync::Arc;

    fn transport(now: Instant) -> Transport {
        let egress = shared_bucket(0);
        Transport::new(1, Arc::from("p"), TransportDirection::Recv, egress, now)
    }

    fn with_keys(t: &mut Transport) {
        let p = SrtpProfile::Aes128CmHmacSha1_80;
        let m = vec![7u8; 2 * (p.key_len() + p.salt_len())];
        let keys = split_keying_material(p, &m, false).unwrap();
        t.srtp = Some(SrtpSession::new(&keys).unwrap());
    }

    fn addr(port: u16) -> Remote {
        Remote::Udp(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn before_media_the_nomination_selects_the_tuple() {
        let t0 = Instant::now();
        let mut t = transport(t0);
        assert_eq!(
            on_binding_request(&mut t, addr(1), false, t0),
            (Binding::Selected, None)
        );
        assert_eq!(
            on_binding_request(&mut t, addr(2), false, t0),
            (Binding::Candidate, None)
        );
        assert_eq!(t.remote, Some(addr(1)));
        assert_eq!(
            on_binding_request(&mut t, addr(2), true, t0),
            (Binding::Selected, None)
        );
        assert_eq!(t.remote, Some(addr(2)));
        assert_eq!(
            t.candidates.len(),
            1,
            "the previous tuple stays a candidate"
        );
    }

    #[test]
    fn once_media_flows_a_nomination_from_elsewhere_moves_nothing_until_media_proves_it() {
        let t0 = Instant::now();
        let mut t = transport(t0);
        on_binding_request(&mut t, addr(1), true, t0);
        with_keys(&mut t);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            on_binding_request(&mut t, addr(9), true, later).0,
            Binding::Candidate
        );
        assert_eq!(t.remote, Some(addr(1)), "media stays where it was");
        // The candidate's STUN does not keep the selected tuple alive.
        assert_eq!(t.last_seen, t0);
        assert!(may_probe(&t, addr(9), later));
        assert!(!may_probe(&t, addr(8), later), "never checked");
        assert!(
            !may_probe(&t, addr(9), later + CANDIDATE_TTL + Duration::from_secs(1)),
            "its check expired"
        );
        assert_eq!(switch_to(&mut t, addr(9), later), None);
        assert_eq!(t.remote, Some(addr(9)));
        assert_eq!(t.last_seen, later);
        assert!(!may_probe(&t, addr(9), later), "selected, not a candidate");
        // The old tuple may win the media back only by proving it again.
        assert!(t.candidates.iter().any(|(a, _)| *a == addr(1)));
    }

    #[test]
    fn the_selected_tuple_refreshes_consent_and_candidates_stay_bounded() {
        let t0 = Instant::now();
        let mut t = transport(t0);
        on_binding_request(&mut t, addr(1), true, t0);
        with_keys(&mut t);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            on_binding_request(&mut t, addr(1), false, later),
            (Binding::Refreshed, None)
        );
        assert_eq!(t.last_seen, later);
        let mut dropped = Vec::new();
        for port in 100..200 {
            let at = later + Duration::from_millis(u64::from(port));
            dropped.extend(on_binding_request(&mut t, addr(port), true, at).1);
        }
        assert_eq!(t.candidates.len(), MAX_CANDIDATES);
        // Every replaced candidate is reported, so the address index forgets it too.
        assert_eq!(dropped.len(), 100 - MAX_CANDIDATES);
        assert_eq!(dropped[0], addr(100));
        // The newest ones are kept.
        assert!(t.candidates.iter().any(|(a, _)| *a == addr(199)));
        assert_eq!(t.remote, Some(addr(1)));
    }
}
