//! A consumer: one producer's media forwarded to one transport, with its own SSRC, payload
//! types, header-extension ids, and a continuous sequence-number space.

use super::ortc::MediaKind;
use super::{PKey, TKey};
use crate::rtc::rtp::ExtIdMap;
use std::sync::Arc;
use std::time::Instant;

pub struct Consumer {
    pub id: String,
    pub kind: MediaKind,
    pub transport: TKey,
    pub producer: PKey,
    pub room: Arc<str>,
    pub peer: Arc<str>,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// Producer payload type → consumer payload type (0xFF: not forwarded).
    pub pt_map: [u8; 128],
    pub ext_map: ExtIdMap,
    /// The consumer's mid extension id and value, written into every packet.
    pub mid_ext: Option<(u8, Vec<u8>)>,
    pub clock_rate: u32,
    pub paused: bool,
    pub preferred_spatial_layer: Option<u8>,
    pub preferred_temporal_layer: Option<u8>,
    pub seq: SeqState,
    pub packets_sent: u32,
    pub octets_sent: u32,
    pub last_sent_at: Option<Instant>,
    pub quality: ConsumerQuality,
}

/// Per-consumer state for simulcast and retransmission (a few bytes: the packets themselves
/// are cached once per producer).
#[derive(Debug, Default)]
pub struct ConsumerQuality {
    /// The producer encoding being forwarded (None until the first sync).
    pub layer: Option<usize>,
    /// Next sequence number of the RTX stream.
    pub rtx_seq: u16,
    /// Retransmissions in the current budget window (bounds what NACKs can make us send).
    pub retransmit_window: Option<Instant>,
    pub retransmitted_in_window: u16,
}

/// At most this many retransmissions per consumer per [`RETRANSMIT_WINDOW`] (≈ 10 Mbps).
pub const MAX_RETRANSMISSIONS_PER_WINDOW: u16 = 100;
pub const RETRANSMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

impl ConsumerQuality {
    /// Takes one retransmission from the budget; false when it is spent for this window.
    pub fn take_retransmission(&mut self, now: Instant) -> bool {
        let fresh = self
            .retransmit_window
            .is_none_or(|t| now.saturating_duration_since(t) >= RETRANSMIT_WINDOW);
        if fresh {
            self.retransmit_window = Some(now);
            self.retransmitted_in_window = 0;
        }
        if self.retransmitted_in_window >= MAX_RETRANSMISSIONS_PER_WINDOW {
            return false;
        }
        self.retransmitted_in_window += 1;
        true
    }

    /// The encoding to forward: the preferred one (default: the highest) if it is sending,
    /// else the nearest sending one below it, else the lowest sending one above it.
    pub fn target_layer(preferred: Option<u8>, layers: usize, active: u32) -> usize {
        let top = layers.saturating_sub(1);
        let preferred = preferred.map_or(top, |p| usize::from(p).min(top));
        let is_active = |i: usize| i < 32 && active & (1 << i) != 0;
        (0..=preferred)
            .rev()
            .find(|&i| is_active(i))
            .or_else(|| (preferred + 1..layers).find(|&i| is_active(i)))
            .unwrap_or(preferred)
    }
}

/// Maps a producer's sequence numbers and timestamps into the consumer's, so the consumer's
/// stream stays continuous across pauses, resumes and key-frame syncs.
#[derive(Debug, Clone, Default)]
pub struct SeqState {
    /// False until the first forwardable packet (a key frame for video) after (re)start.
    pub synced: bool,
    pub started: bool,
    pub seq_offset: u16,
    pub ts_offset: u32,
    /// Producer sequence number at which the current sync started.
    pub sync_seq: u16,
    pub last_seq: u16,
    pub last_ts: u32,
}

/// Whether `a` is newer than `b` in 16-bit sequence space.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl SeqState {
    pub fn new(initial_seq: u16) -> Self {
        Self {
            last_seq: initial_seq,
            ..Default::default()
        }
    }

    /// Starts a new sync at the producer packet (`seq`, `ts`): the next output sequence
    /// number follows the last one sent. Once started, the timestamp is rebased so that it
    /// continues `elapsed_ticks` (at least 1) after the last one sent: a different simulcast
    /// layer has its own timestamp base.
    pub fn sync(&mut self, seq: u16, ts: u32, elapsed_ticks: u32) {
        self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
        if self.started {
            self.ts_offset = self
                .last_ts
                .wrapping_add(elapsed_ticks.max(1))
                .wrapping_sub(ts);
        }
        self.sync_seq = seq;
        self.synced = true;
        self.started = true;
    }

    /// [`SeqState::sync`] with the time elapsed since the last packet sent (`last_sent_at`)
    /// converted to RTP ticks at `clock_rate`.
    pub fn sync_after(
        &mut self,
        seq: u16,
        ts: u32,
        last_sent_at: Option<Instant>,
        now: Instant,
        clock_rate: u32,
    ) {
        let elapsed = last_sent_at.map_or(0, |at| {
            (now.saturating_duration_since(at).as_secs_f64() * f64::from(clock_rate)) as u32
        });
        self.sync(seq, ts, elapsed);
    }

    /// The consumer's (seq, ts) for a producer packet, or None if it predates the sync point.
    pub fn map(&mut self, seq: u16, ts: u32) -> Option<(u16, u32)> {
        if seq != self.sync_seq && seq_newer(self.sync_seq, seq) {
            return None;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if seq_newer(out_seq, self.last_seq) || out_seq == self.last_seq.wrapping_add(1) {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        Some((out_seq, out_ts))
    }
}

impl Consumer {
    pub fn is_active(&self, producer_paused: bool) -> bool {
        !self.paused && !producer_paused
    }

    pub fn mid(&self) -> Option<(u8, &[u8])> {
        self.mid_ext.as_ref().map(|(id, v)| (*id, v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_stay_continuous_across_a_resync() {
        let mut s = SeqState::new(999);
        s.sync(5000, 10, 0);
        assert_eq!(s.map(5000, 10), Some((1000, 10)));
        assert_eq!(s.map(5001, 10), Some((1001, 10)));
        // Paused, then resumed at a later key frame: output continues at 1002.
        s.synced = false;
        s.sync(7000, 900, 890);
        assert_eq!(s.map(7000, 900), Some((1002, 900)));
    }

    #[test]
    fn packets_from_before_the_sync_point_are_dropped() {
        let mut s = SeqState::new(10);
        s.sync(100, 0, 0);
        assert_eq!(s.map(99, 0), None);
        assert!(s.map(101, 0).is_some());
    }

    #[test]
    fn a_layer_switch_rebases_timestamps_to_continue_after_the_last_one_sent() {
        let mut s = SeqState::new(10);
        s.sync(100, 1_000_000, 0);
        assert_eq!(s.map(101, 1_000_000), Some((12, 1_000_000)));
        // Another layer: unrelated sequence and timestamp bases, 100 ms later at 90 kHz.
        s.synced = false;
        s.sync(40_000, 7, 9000);
        assert_eq!(s.map(40_000, 7), Some((13, 1_009_000)));
        assert_eq!(s.map(40_001, 3007), Some((14, 1_012_000)));
    }

    #[test]
    fn the_target_layer_is_the_preferred_one_or_the_nearest_sending_one() {
        let t = ConsumerQuality::target_layer;
        assert_eq!(t(None, 3, 0b111), 2, "default: the highest");
        assert_eq!(t(Some(0), 3, 0b111), 0);
        assert_eq!(t(Some(9), 3, 0b111), 2, "clamped");
        assert_eq!(t(None, 3, 0b011), 1, "the highest is not sending yet");
        assert_eq!(t(Some(0), 3, 0b110), 1, "nothing below: the lowest above");
        assert_eq!(t(Some(1), 3, 0), 1, "nothing sending: keep the preference");
        assert_eq!(t(None, 1, 0), 0);
    }

    #[test]
    fn retransmissions_are_bounded_per_window() {
        let t0 = Instant::now();
        let mut q = ConsumerQuality::default();
        let sent = (0..500).filter(|_| q.take_retransmission(t0)).count();
        assert_eq!(sent, usize::from(MAX_RETRANSMISSIONS_PER_WINDOW));
        assert!(q.take_retransmission(t0 + RETRANSMIT_WINDOW));
    }

    #[test]
    fn sequence_comparison_handles_wraparound() {
        assert!(seq_newer(1, 65535));
        assert!(!seq_newer(65535, 1));
        assert!(!seq_newer(7, 7));
    }
}
