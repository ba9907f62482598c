//! Packet index estimation (RFC 3711 §3.3.1) and the replay window (§3.3.2) of one received
//! SRTP or SRTCP stream. Checking never changes state: only [`ReplayWindow::accept`] does, and
//! the receive side calls it after a packet authenticated.

/// Packets a receiver still accepts when they arrive this far behind the newest one.
pub const REPLAY_WINDOW: u64 = 512;
/// Sequence numbers this far apart are taken as a wrap rather than reordering (RFC 3711 §3.3.1).
const SEQ_HALF: u16 = 0x8000;
const WORD_BITS: u64 = 64;
/// A ring of 64-bit blocks: one more than the window needs, so the block of the newest index
/// can be partly filled while the oldest block still covers the window's far end.
const WORDS: usize = (REPLAY_WINDOW / WORD_BITS) as usize + 1;

/// The packet index (ROC << 16 | SEQ) of `seq` nearest `highest`, the highest index received
/// so far (RFC 3711 §3.3.1, appendix A). Before the first wrap a "late" guess stays at ROC 0.
/// `None` when the guess would need a 33-bit ROC (2^48 packets: the session must be rekeyed).
pub fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let highest_seq = highest as u16;
    let guess = if highest_seq < SEQ_HALF {
        if seq > highest_seq + SEQ_HALF && roc > 0 {
            roc - 1 // late packet from before the last wrap
        } else {
            roc
        }
    } else if seq < highest_seq - SEQ_HALF {
        roc + 1 // wrapped
    } else {
        roc
    };
    (guess <= u32::MAX as u64).then_some(guess << 16 | seq as u64)
}

/// Which of the last [`REPLAY_WINDOW`] indices below the highest were received.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `i % 64` of block `(i / 64) % WORDS` is set once index `i` was accepted.
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// The window after the first authenticated packet of a stream, with index `first`.
    pub fn starting_at(first: u64) -> Self {
        let mut w = Self {
            highest: first,
            bits: [0; WORDS],
        };
        w.set(first);
        w
    }

    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` is new: above the highest, or within the window and not yet received.
    pub fn check(&self, index: u64) -> bool {
        if index > self.highest {
            return true;
        }
        if self.highest - index >= REPLAY_WINDOW {
            return false;
        }
        let (block, bit) = Self::position(index);
        self.bits[block] & bit == 0
    }

    /// Records `index` as received (call only after it passed [`Self::check`] and
    /// authenticated).
    pub fn accept(&mut self, index: u64) {
        if index > self.highest {
            // Clear the blocks the window moves into; all of them on a jump of a whole ring.
            let from = self.highest / WORD_BITS;
            let to = index / WORD_BITS;
            let cleared = (to - from).min(WORDS as u64);
            for b in 1..=cleared {
                self.bits[((from + b) % WORDS as u64) as usize] = 0;
            }
            self.highest = index;
        }
        self.set(index);
    }

    fn set(&mut self, index: u64) {
        let (block, bit) = Self::position(index);
        self.bits[block] |= bit;
    }

    fn position(index: u64) -> (usize, u64) {
        (
            ((index / WORD_BITS) % WORDS as u64) as usize,
            1 << (index % WORD_BITS),
        )
    }
}

/// SSRCs one session receives at most (each direction: SRTP and SRTCP separately). A browser
/// sends a few per track (simulcast layers, RTX); 16 producers per peer with RTX and room for
/// probing streams fit.
pub const MAX_RECEIVE_SSRCS: usize = 64;

/// The receive state of one session's streams: a replay window per SSRC, created only for a
/// packet that authenticated and for at most [`MAX_RECEIVE_SSRCS`] SSRCs.
#[derive(Default)]
pub struct ReceiveStreams {
    windows: std::collections::HashMap<u32, ReplayWindow>,
    refused: u64,
}

impl ReceiveStreams {
    pub fn get(&self, ssrc: u32) -> Option<&ReplayWindow> {
        self.windows.get(&ssrc)
    }

    /// Read-only and cheap, so callers run it before the MAC: a replay costs no crypto.
    pub fn is_replay(&self, ssrc: u32, index: u64) -> bool {
        self.windows.get(&ssrc).is_some_and(|w| !w.check(index))
    }

    /// Records `index` of `ssrc` after its packet authenticated; a new SSRC beyond the budget
    /// is refused (and counted) instead.
    pub fn accept(&mut self, ssrc: u32, index: u64) -> Result<(), super::srtp::SrtpError> {
        let full = self.windows.len() >= MAX_RECEIVE_SSRCS;
        match self.windows.get_mut(&ssrc) {
            Some(w) => w.accept(index),
            None if full => {
                self.refused += 1;
                return Err(super::srtp::SrtpError::TooManySsrcs);
            }
            None => {
                self.windows.insert(ssrc, ReplayWindow::starting_at(index));
            }
        }
        Ok(())
    }

    /// SSRCs with receive state (each authenticated at least once).
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Authenticated packets dropped because their SSRC was beyond [`MAX_RECEIVE_SSRCS`].
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

impl std::fmt::Debug for ReceiveStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveStreams")
            .field("ssrcs", &self.windows.len())
            .field("refused", &self.refused)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_estimation_follows_rfc_3711_across_wraps() {
        assert_eq!(estimate_index(10, 11), Some(11));
        assert_eq!(estimate_index(0xFFF0, 0x0005), Some(0x1_0005), "wrapped");
        assert_eq!(
            estimate_index(0x1_0005, 0xFFF0),
            Some(0xFFF0),
            "late, before the wrap"
        );
        assert_eq!(
            estimate_index(0x0005, 0xFFF0),
            Some(0xFFF0),
            "no ROC -1 before any wrap"
        );
        assert_eq!(estimate_index(0x3_8000, 0x0001), Some(0x3_0001));
        assert_eq!(estimate_index(0x3_8001, 0x0000), Some(0x4_0000));
        assert_eq!(
            estimate_index(0xFFFF_FFFF_FFFF, 0x0001),
            None,
            "ROC exhausted"
        );
    }

    #[test]
    fn the_window_refuses_replays_and_packets_older_than_the_window() {
        let mut w = ReplayWindow::starting_at(1000);
        assert!(!w.check(1000));
        assert!(w.check(999));
        w.accept(999);
        assert!(!w.check(999));
        assert!(w.check(1000 - REPLAY_WINDOW + 1));
        assert!(!w.check(1000 - REPLAY_WINDOW));
        w.accept(1500);
        assert!(!w.check(1000) && !w.check(999), "still remembered");
        assert!(w.check(1001) && w.check(1499));
        w.accept(1_000_000);
        assert!(!w.check(1500), "far behind now");
        assert!(w.check(1_000_000 - 1));
        assert!(!w.check(1_000_000));
    }

    #[test]
    fn the_window_matches_a_set_of_seen_indices_under_random_reordering() {
        use std::collections::HashSet;
        let mut seen = HashSet::new();
        let mut w = ReplayWindow::starting_at(0);
        seen.insert(0u64);
        let mut x = 12345u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let highest = w.highest();
            let jump = match x % 100 {
                0 => x % 5000,
                1..=60 => x % 8,
                _ => 0,
            };
            let back = (x >> 20) % 700;
            let index = (highest + jump).saturating_sub(back);
            let expected =
                !seen.contains(&index) && (index > highest || highest - index < REPLAY_WINDOW);
            assert_eq!(w.check(index), expected, "index {index} highest {highest}");
            if expected {
                w.accept(index);
                seen.insert(index);
            }
        }
    }
}
