//! What may reach webrtc-dtls, and how many handshakes may run at once.
//!
//! - [`has_plaintext_alert`]: an alert record of epoch 0 carries no authentication at all: anyone
//!   who can forge a participant's source address could send one, and webrtc-dtls would end the
//!   session on it (after the handshake) or abort the handshake (during it). Such records are
//!   dropped before webrtc-dtls sees them, always: after the handshake a real peer's alerts are
//!   encrypted (epoch ≥ 1); during it, a real peer whose handshake fails stops answering and the
//!   handshake deadline ends the session instead, so ignoring its plaintext alert costs at most
//!   that deadline, while honouring it would let a forger abort anyone's handshake.
//! - [`HandshakeGate`]: the single DTLS thread runs every handshake; a flood of them from one
//!   address (or in total) would delay everyone's. Each handshake holds a [`HandshakePermit`]
//!   from its start until it ends; beyond the caps a new session fails at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const CONTENT_TYPE_ALERT: u8 = 21;
const RECORD_HEADER_LEN: usize = 13;

/// Limits of the DTLS runtime (settings: `--dtls-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtlsLimits {
    /// A handshake not done after this long fails (webrtc-dtls has no deadline of its own).
    pub handshake_timeout: Duration,
    /// Concurrent handshakes from one source IP.
    pub max_handshakes_per_ip: usize,
    /// Concurrent handshakes in the whole process.
    pub max_handshakes: usize,
}

impl Default for DtlsLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(15),
            max_handshakes_per_ip: 32,
            max_handshakes: 256,
        }
    }
}

/// Whether any record of `datagram` is an epoch-0 (unauthenticated) alert. A record whose
/// length runs past the datagram still counts by its header: webrtc-dtls would parse it too.
pub fn has_plaintext_alert(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= RECORD_HEADER_LEN {
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        if rest[0] == CONTENT_TYPE_ALERT && epoch == 0 {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        rest = rest.get(RECORD_HEADER_LEN + len..).unwrap_or(&[]);
    }
    false
}

/// Counts the handshakes in progress, per source IP and in total.
#[derive(Default)]
pub struct HandshakeGate {
    counts: Mutex<GateCounts>,
}

#[derive(Default)]
struct GateCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Held by one handshake in progress; dropping it frees its place.
pub struct HandshakePermit {
    gate: Arc<HandshakeGate>,
    ip: Option<IpAddr>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error("too many concurrent DTLS handshakes from {0}")]
    PerIp(IpAddr),
    #[error("too many concurrent DTLS handshakes")]
    Total,
}

impl HandshakeGate {
    fn counts(&self) -> MutexGuard<'_, GateCounts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A permit for one more handshake from `ip` (unknown: counted in the total only).
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        limits: &DtlsLimits,
    ) -> Result<HandshakePermit, GateRefusal> {
        let mut counts = self.counts();
        if counts.total >= limits.max_handshakes {
            return Err(GateRefusal::Total);
        }
        if let Some(ip) = ip {
            let n = counts.per_ip.entry(ip).or_insert(0);
            if *n >= limits.max_handshakes_per_ip {
                return Err(GateRefusal::PerIp(ip));
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(HandshakePermit {
            gate: Arc::clone(self),
            ip,
        })
    }

    /// Handshakes in progress (for tests and stats).
    pub fn in_progress(&self) -> usize {
        self.counts().total
    }
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        let mut counts = self.gate.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    // Keeps the map as small as the set of addresses handshaking right now.
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn a_fifteen_byte_plaintext_alert_is_recognised_alone_or_behind_other_records() {
        let alert = record(21, 0, &[2, 0]);
        assert_eq!(alert.len(), 15);
        assert!(has_plaintext_alert(&alert));
        let mut coalesced = record(22, 0, &[1; 40]);
        coalesced.extend_from_slice(&alert);
        assert!(has_plaintext_alert(&coalesced));
    }

    #[test]
    fn encrypted_alerts_and_other_records_pass() {
        assert!(!has_plaintext_alert(&record(21, 1, &[9; 26])));
        assert!(!has_plaintext_alert(&record(22, 0, &[1; 40])));
        assert!(!has_plaintext_alert(&record(23, 1, &[1; 40])));
        assert!(!has_plaintext_alert(&[21, 0xfe, 0xfd, 0, 0]));
        // A length past the end stops the walk without reading out of bounds.
        let mut truncated = record(22, 0, &[1; 4]);
        truncated[12] = 200;
        assert!(!has_plaintext_alert(&truncated));
    }

    #[test]
    fn the_gate_caps_handshakes_per_ip_and_in_total_and_frees_them_on_drop() {
        let gate = Arc::new(HandshakeGate::default());
        let limits = DtlsLimits {
            max_handshakes_per_ip: 2,
            max_handshakes: 3,
            ..DtlsLimits::default()
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = gate.admit(Some(a), &limits).unwrap();
        let _p2 = gate.admit(Some(a), &limits).unwrap();
        assert_eq!(
            gate.admit(Some(a), &limits).err(),
            Some(GateRefusal::PerIp(a))
        );
        let _p3 = gate.admit(Some(b), &limits).unwrap();
        assert_eq!(gate.admit(Some(b), &limits).err(), Some(GateRefusal::Total));
        assert_eq!(gate.in_progress(), 3);
        drop(p1);
        assert_eq!(gate.in_progress(), 2);
        assert!(gate.admit(Some(a), &limits).is_ok());
        assert_eq!(
            gate.in_progress(),
            2,
            "the permit above was dropped at once"
        );
    }
}
