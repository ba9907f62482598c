//! Loss recovery pieces (RFC 4585 generic NACK, RFC 4588 RTX), sans-IO:
//! - [`RtpCache`]: the last packets of one incoming stream, by sequence number, in one
//!   preallocated buffer, to answer consumers' NACKs;
//! - [`NackGenerator`]: detects gaps in an incoming stream and says which sequence numbers to
//!   NACK now, retrying a few times with backoff;
//! - [`rtx_unwrap`]: the RTX payload format.

use std::time::{Duration, Instant};

/// Packets one [`RtpCache`] holds (a power of two): about 2 s of 2.5 Mbps video.
pub const CACHE_SLOTS: usize = 512;
/// Largest packet a cache slot holds; larger ones are not cached.
pub const CACHE_SLOT_LEN: usize = 1500;

/// The last [`CACHE_SLOTS`] packets of one stream (≈ 750 KiB, allocated once).
pub struct RtpCache {
    data: Box<[u8]>,
    /// Per slot: the sequence number stored and its length (0 = empty).
    meta: Box<[(u16, u16)]>,
}

impl Default for RtpCache {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpCache {
    pub fn new() -> Self {
        Self {
            data: vec![0; CACHE_SLOTS * CACHE_SLOT_LEN].into_boxed_slice(),
            meta: vec![(0, 0); CACHE_SLOTS].into_boxed_slice(),
        }
    }

    /// Stores `packet` (a whole plain RTP packet) as sequence number `seq`.
    pub fn insert(&mut self, seq: u16, packet: &[u8]) {
        let slot = usize::from(seq) % CACHE_SLOTS;
        if packet.is_empty() || packet.len() > CACHE_SLOT_LEN {
            self.meta[slot] = (0, 0);
            return;
        }
        let at = slot * CACHE_SLOT_LEN;
        self.data[at..at + packet.len()].copy_from_slice(packet);
        self.meta[slot] = (seq, packet.len() as u16);
    }

    /// The packet stored as `seq`, if it is still there.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let slot = usize::from(seq) % CACHE_SLOTS;
        let (stored, len) = self.meta[slot];
        if len == 0 || stored != seq {
            return None;
        }
        let at = slot * CACHE_SLOT_LEN;
        Some(&self.data[at..at + usize::from(len)])
    }
}

/// Sequence numbers tracked as missing at once; a larger gap resets the generator.
pub const MAX_MISSING: usize = 256;
/// NACKs sent per missing packet.
const MAX_TRIES: u8 = 3;
/// Wait before the first NACK (reordering) and between retries (doubling).
const FIRST_DELAY: Duration = Duration::from_millis(5);
const RETRY_DELAY: Duration = Duration::from_millis(60);

/// Whether `a` is newer than `b` in 16-bit sequence space.
fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[derive(Clone, Copy, Debug)]
struct Missing {
    seq: u16,
    tries: u8,
    next_at: Instant,
}

/// Gap detection for one incoming stream.
#[derive(Default)]
pub struct NackGenerator {
    highest: Option<u16>,
    missing: Vec<Missing>,
    due: Vec<u16>,
}

impl NackGenerator {
    /// Notes that `seq` arrived (original or retransmitted).
    pub fn on_packet(&mut self, seq: u16, now: Instant) {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return;
        };
        if !seq_newer(seq, highest) {
            self.missing.retain(|m| m.seq != seq);
            return;
        }
        let gap = usize::from(seq.wrapping_sub(highest)) - 1;
        if self.missing.len() + gap > MAX_MISSING {
            // A stream restart or a burst too large to repair: start over.
            self.missing.clear();
        } else {
            for k in 1..=gap as u16 {
                self.missing.push(Missing {
                    seq: highest.wrapping_add(k),
                    tries: 0,
                    next_at: now + FIRST_DELAY,
                });
            }
        }
        self.highest = Some(seq);
    }

    /// The sequence numbers to NACK now (empty most of the time); each is asked for at most
    /// [`MAX_TRIES`] times, with a growing delay.
    pub fn poll(&mut self, now: Instant) -> &[u16] {
        self.due.clear();
        if self.missing.is_empty() {
            return &self.due;
        }
        for m in &mut self.missing {
            if m.next_at <= now {
                self.due.push(m.seq);
                m.tries += 1;
                m.next_at = now + RETRY_DELAY * u32::from(m.tries);
            }
        }
        self.missing.retain(|m| m.tries < MAX_TRIES);
        &self.due
    }

    /// Whether a retransmission of `seq` is useful: it is missing, or newer than any seen.
    pub fn wants(&self, seq: u16) -> bool {
        self.highest.is_none_or(|h| seq_newer(seq, h)) || self.missing.iter().any(|m| m.seq == seq)
    }

    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }
}

/// The original sequence number and payload of an RTX payload (RFC 4588 §4); `None` for a
/// padding-only packet.
pub fn rtx_unwrap(payload: &[u8]) -> Option<(u16, &[u8])> {
    let (osn, rest) = payload.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*osn), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_returns_a_stored_packet_until_it_is_overwritten() {
        let mut c = RtpCache::new();
        c.insert(7, &[1, 2, 3]);
        assert_eq!(c.get(7), Some(&[1u8, 2, 3][..]));
        assert_eq!(c.get(8), None);
        c.insert(7 + CACHE_SLOTS as u16, &[9]);
        assert_eq!(c.get(7), None, "the slot now holds a newer packet");
        c.insert(9, &[0; CACHE_SLOT_LEN + 1]);
        assert_eq!(c.get(9), None, "oversized packets are not cached");
    }

    #[test]
    fn a_gap_is_nacked_after_a_short_delay_and_retried_with_backoff() {
        let t0 = Instant::now();
        let mut g = NackGenerator::default();
        g.on_packet(65534, t0);
        g.on_packet(2, t0); // 65535, 0, 1 missing
        assert!(g.poll(t0).is_empty(), "reordering gets a moment");
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(g.poll(t1), &[65535, 0, 1]);
        assert!(g.poll(t1).is_empty());
        assert!(g.wants(0) && !g.wants(2) && !g.wants(65534) && g.wants(3));
        g.on_packet(0, t1); // repaired
        assert!(!g.wants(0), "a duplicate");
        let t2 = t1 + Duration::from_millis(61);
        assert_eq!(g.poll(t2), &[65535, 1]);
        let t3 = t2 + Duration::from_millis(121);
        assert_eq!(g.poll(t3), &[65535, 1]);
        assert!(g.poll(t3 + Duration::from_secs(5)).is_empty(), "gave up");
        assert_eq!(g.missing_len(), 0);
    }

    #[test]
    fn a_huge_gap_resets_instead_of_nacking_thousands_of_packets() {
        let t0 = Instant::now();
        let mut g = NackGenerator::default();
        g.on_packet(100, t0);
        g.on_packet(20_000, t0);
        assert_eq!(g.missing_len(), 0);
        g.on_packet(20_002, t0);
        assert_eq!(g.missing_len(), 1);
    }

    #[test]
    fn rtx_payloads_carry_the_original_sequence_number_first() {
        assert_eq!(
            rtx_unwrap(&[0x12, 0x34, 9, 9]),
            Some((0x1234, &[9u8, 9][..]))
        );
        assert_eq!(rtx_unwrap(&[0x12]), None);
    }
}
