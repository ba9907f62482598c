//! Forwarding decisions for one outgoing stream (a consumer's, or an HLS tap's): which
//! producer packets to send, with which sequence number and timestamp, when to switch
//! simulcast layer, and the mappings NACK answers and sender reports need. Pure state, no I/O
//! and no allocation: the caller applies the decisions.

use crate::rtc::vp8;
use std::time::Instant;

/// Whether `a` is newer than `b` in 16-bit sequence space.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// The encoding to forward: the preferred one (default: the highest) if it is sending, else
/// the nearest sending one below it, else the lowest sending one above it. `active` has bit
/// `i` set when encoding `i` is sending.
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

/// Maps a producer's sequence numbers and timestamps into the stream's, so the stream stays
/// continuous across pauses, resumes and key-frame syncs.
#[derive(Debug, Clone, Default)]
pub struct SeqState {
    /// False until the first forwardable packet (a key frame for video) after (re)start.
    pub synced: bool,
    pub started: bool,
    pub seq_offset: u16,
    pub ts_offset: u32,
    /// The producer sequence number at which the current sync started, and the highest one
    /// mapped since, both extended past 16 bits (rollovers counted from the sync point), so
    /// "before the sync point" stays true however long the stream runs.
    sync_ext: u64,
    highest_ext: u64,
    pub last_seq: u16,
    pub last_ts: u32,
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
        // A fresh extended space per sync: the new sync point may come from another layer,
        // with its own sequence base. Starting at 2^32 keeps every comparison unsigned.
        self.sync_ext = (1 << 32) | u64::from(seq);
        self.highest_ext = self.sync_ext;
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
        let elapsed = last_sent_at.map_or(0, |at| ticks(at, now, clock_rate));
        self.sync(seq, ts, elapsed);
    }

    /// The stream's (seq, ts) for a producer packet, or None if it predates the sync point.
    pub fn map(&mut self, seq: u16, ts: u32) -> Option<(u16, u32)> {
        let ext = self.extend(seq);
        if ext < self.sync_ext {
            return None;
        }
        self.highest_ext = self.highest_ext.max(ext);
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if seq_newer(out_seq, self.last_seq) || out_seq == self.last_seq.wrapping_add(1) {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        Some((out_seq, out_ts))
    }

    /// Whether the producer sequence number `seq` is older than the current sync point.
    fn predates_sync(&self, seq: u16) -> bool {
        self.extend(seq) < self.sync_ext
    }

    /// `seq` extended past 16 bits: the value nearest to the highest one mapped so far.
    fn extend(&self, seq: u16) -> u64 {
        let base = self.highest_ext;
        let ext = (base & !0xFFFF) | u64::from(seq);
        if ext + 0x8000 < base {
            ext + 0x1_0000
        } else if ext > base + 0x8000 {
            ext - 0x1_0000
        } else {
            ext
        }
    }
}

/// RTP ticks at `clock_rate` from `from` to `to` (0 if `to` is earlier).
fn ticks(from: Instant, to: Instant, clock_rate: u32) -> u32 {
    (to.saturating_duration_since(from).as_secs_f64() * f64::from(clock_rate)) as u32
}

/// What the forwarder needs of one producer packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub seq: u16,
    pub ts: u32,
    /// The producer encoding (simulcast layer) it belongs to; 0 without simulcast.
    pub layer: usize,
    /// Video waits for a key frame to (re)sync; audio syncs at any packet.
    pub video: bool,
}

impl Packet {
    pub fn new(seq: u16, ts: u32, layer: usize, video: bool) -> Self {
        Self {
            seq,
            ts,
            layer,
            video,
        }
    }
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Send it with this (sequence number, timestamp); None: drop it.
    pub send: Option<(u16, u32)>,
    /// The stream waits for a key frame of the target layer (ask the producer for one).
    pub need_keyframe: bool,
    /// The stream switched to this layer with this packet (tell the subscriber). Also
    /// reported at the very first sync; the caller decides whether to notify.
    pub switched_to: Option<usize>,
}

/// One forwarded stream's mapping state (a consumer's, or an HLS tap's).
#[derive(Debug, Clone)]
pub struct Forwarder {
    seq: SeqState,
    layer: Option<usize>,
    last_sent_at: Option<Instant>,
    clock_rate: u32,
    rtx_seq: u16,
    /// VP8 PictureID / TL0PICIDX continuity across sync points (rtc/vp8.rs).
    vp8: vp8::Continuity,
}

impl Forwarder {
    /// The first packet sent gets `initial_seq + 1`; the RTX stream starts at 0.
    pub fn new(initial_seq: u16, clock_rate: u32) -> Self {
        Self {
            seq: SeqState::new(initial_seq),
            layer: None,
            last_sent_at: None,
            clock_rate,
            rtx_seq: 0,
            vp8: vp8::Continuity::default(),
        }
    }

    /// Decides for `pkt`, forwarding towards layer `target` (see [`target_layer`]). Until the
    /// stream is synced on `target` (at a key frame, for video), the current layer keeps
    /// flowing. `is_keyframe` is called at most once, and only for a video packet of `target`
    /// that would sync the stream. When `send` is Some, the state is updated as if the packet
    /// was sent at `now`.
    pub fn decide(
        &mut self,
        pkt: &Packet,
        target: usize,
        now: Instant,
        is_keyframe: impl FnOnce() -> bool,
    ) -> Decision {
        let mut d = Decision::default();
        let current = self.layer;
        if !self.seq.synced || current != Some(target) {
            let mut switched = false;
            if pkt.layer == target {
                if pkt.video && !is_keyframe() {
                    d.need_keyframe = true;
                } else {
                    self.seq
                        .sync_after(pkt.seq, pkt.ts, self.last_sent_at, now, self.clock_rate);
                    self.vp8.resync();
                    if current != Some(pkt.layer) {
                        self.layer = Some(pkt.layer);
                        d.switched_to = Some(pkt.layer);
                    }
                    switched = true;
                }
            }
            // Until the switch, keep forwarding the current layer.
            let keeps_current = self.seq.synced && current == Some(pkt.layer);
            if !(switched || keeps_current) {
                return d;
            }
        } else if current != Some(pkt.layer) {
            return d;
        }
        d.send = self.seq.map(pkt.seq, pkt.ts);
        if d.send.is_some() {
            self.last_sent_at = Some(now);
        }
        d
    }

    /// Pause/resume of the stream or its producer: the next packet must be a fresh sync point
    /// (a key frame for video); the output stays continuous (seq + 1, timestamp rebased by
    /// the time elapsed since the last packet sent).
    pub fn resync(&mut self) {
        self.seq.synced = false;
    }

    /// Forgets which layer was forwarded, so the next sync reports its layer again (the
    /// subscriber was told the stream paused).
    pub fn forget_layer(&mut self) {
        self.layer = None;
    }

    /// The layer being forwarded (None before the first sync).
    pub fn layer(&self) -> Option<usize> {
        self.layer
    }

    /// Whether anything was forwarded since creation.
    pub fn started(&self) -> bool {
        self.seq.started
    }

    /// For a NACK: the producer sequence number (of [`Forwarder::layer`]) behind a lost
    /// stream sequence number; None when nothing was forwarded yet, when it predates the
    /// current sync point (another layer or offset), or when it was never sent.
    pub fn producer_seq(&self, consumer_seq: u16) -> Option<u16> {
        if !self.seq.started || seq_newer(consumer_seq, self.seq.last_seq) {
            return None;
        }
        let producer_seq = consumer_seq.wrapping_sub(self.seq.seq_offset);
        (!self.seq.predates_sync(producer_seq)).then_some(producer_seq)
    }

    /// The stream timestamp of a producer timestamp (the mapping of forwarded packets).
    pub fn map_ts(&self, producer_ts: u32) -> u32 {
        producer_ts.wrapping_add(self.seq.ts_offset)
    }

    /// Rewrites the VP8 payload descriptor of a packet [`Self::decide`] just said to send
    /// (`payload`: its RTP payload in the outgoing copy), keeping picture numbers continuous.
    pub fn rewrite_vp8(&mut self, payload: &mut [u8], d: &vp8::Descriptor) {
        self.vp8.forward(payload, d);
    }

    /// The same for a retransmission of a packet sent since the current sync point.
    pub fn rewrite_vp8_retransmit(&self, payload: &mut [u8]) {
        self.vp8.retransmit(payload);
    }

    /// The next sequence number of the RTX stream (its own continuous space).
    pub fn next_rtx_seq(&mut self) -> u16 {
        let s = self.rtx_seq;
        self.rtx_seq = s.wrapping_add(1);
        s
    }

    /// For a sender report: the RTP time `now` corresponds to (None before the first packet).
    pub fn rtp_time_at(&self, now: Instant) -> Option<u32> {
        let at = self.last_sent_at.filter(|_| self.seq.started)?;
        let elapsed = ticks(at, now, self.clock_rate);
        Some(self.seq.last_ts.wrapping_add(elapsed))
    }

    /// When the last packet was sent.
    pub fn last_sent_at(&self) -> Option<Instant> {
        self.last_sent_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn video(layer: usize, seq: u16, ts: u32) -> Packet {
        Packet {
            seq,
            ts,
            layer,
            video: true,
        }
    }

    fn audio(seq: u16, ts: u32) -> Packet {
        Packet {
            video: false,
            ..video(0, seq, ts)
        }
    }

    /// `decide` where the packet's key-frame status must not matter.
    fn no_parse(f: &mut Forwarder, p: Packet, target: usize, now: Instant) -> Decision {
        f.decide(&p, target, now, || panic!("key frame asked for {p:?}"))
    }

    fn sent(seq: u16, ts: u32) -> Decision {
        let send = Some((seq, ts));
        Decision { send, ..DROP }
    }

    const DROP: Decision = Decision {
        send: None,
        need_keyframe: false,
        switched_to: None,
    };
    /// Dropped, waiting for a key frame.
    const WAIT: Decision = Decision {
        need_keyframe: true,
        ..DROP
    };

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
        let t = target_layer;
        assert_eq!(t(None, 3, 0b111), 2, "default: the highest");
        assert_eq!(t(Some(0), 3, 0b111), 0);
        assert_eq!(t(Some(9), 3, 0b111), 2, "clamped");
        assert_eq!(t(None, 3, 0b011), 1, "the highest is not sending yet");
        assert_eq!(t(Some(0), 3, 0b110), 1, "nothing below: the lowest above");
        assert_eq!(t(Some(1), 3, 0), 1, "nothing sending: keep the preference");
        assert_eq!(t(None, 1, 0), 0);
    }

    #[test]
    fn sequence_comparison_handles_wraparound() {
        assert!(seq_newer(1, 65535));
        assert!(!seq_newer(65535, 1));
        assert!(!seq_newer(7, 7));
    }

    #[test]
    fn a_layer_switch_happens_only_at_a_key_frame_of_the_target_layer() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(99, 90_000);
        // Nothing flows until the first key frame of the target.
        assert_eq!(f.decide(&video(0, 1000, 0), 0, t0, || false), WAIT);
        assert_eq!(no_parse(&mut f, video(1, 50, 0), 0, t0), DROP);
        let first = f.decide(&video(0, 1001, 0), 0, t0, || true);
        assert_eq!(first.send, Some((100, 0)));
        assert_eq!(first.switched_to, Some(0), "the first sync is reported too");
        assert_eq!(no_parse(&mut f, video(0, 1002, 0), 0, t0), sent(101, 0));
        // Target 2: layer 0 keeps flowing, layer 1 drops, layer 2 waits for a key frame.
        assert_eq!(no_parse(&mut f, video(1, 51, 0), 2, t0), DROP);
        assert_eq!(f.decide(&video(2, 7000, 0), 2, t0, || false), WAIT);
        assert_eq!(no_parse(&mut f, video(0, 1003, 0), 2, t0), sent(102, 0));
        assert_eq!(f.layer(), Some(0));
        let switch = f.decide(&video(2, 7001, 0), 2, t0, || true);
        assert_eq!((switch.send, switch.switched_to), (Some((103, 1)), Some(2)));
        assert_eq!(f.layer(), Some(2));
        // Now the old layer drops and the new one flows without key frames.
        assert_eq!(no_parse(&mut f, video(0, 1004, 0), 2, t0), DROP);
        assert_eq!(no_parse(&mut f, video(2, 7002, 0), 2, t0), sent(104, 1));
    }

    #[test]
    fn seq_and_ts_are_continuous_across_a_layer_switch() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(9, 90_000);
        f.decide(&video(0, 5000, 1_000_000), 0, t0, || true);
        let d = no_parse(&mut f, video(0, 5001, 1_003_000), 0, t0 + ms(33));
        assert_eq!(d, sent(11, 1_003_000));
        // Layer 1 has unrelated bases; it takes over 100 ms after the last packet sent.
        let d = f.decide(&video(1, 40_000, 7), 1, t0 + ms(133), || true);
        assert_eq!(d.send, Some((12, 1_012_000)));
        assert_eq!(d.switched_to, Some(1));
        let d = no_parse(&mut f, video(1, 40_001, 3007), 1, t0 + ms(166));
        assert_eq!(d, sent(13, 1_015_000));
        // A switch right after the last packet still advances the timestamp by one tick.
        let d = f.decide(&video(0, 5010, 55), 0, t0 + ms(166), || true);
        assert_eq!(d.send, Some((14, 1_015_001)));
    }

    #[test]
    fn vp8_picture_numbers_continue_across_a_layer_switch() {
        // Each encoding numbers its pictures on its own: layer 0 from 20 000 (TL0PICIDX 9),
        // layer 1 from 3 (TL0PICIDX 200). A descriptor with a 15-bit PictureID and TL0PICIDX.
        let desc = |pid: u16, tl0: u8| vec![0x90, 0xC0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0];
        let out = |f: &mut Forwarder, pkt: Packet, payload: &mut Vec<u8>, key: bool| {
            let d = f.decide(&pkt, pkt.layer, Instant::now(), || key);
            assert!(d.send.is_some(), "{pkt:?} is sent");
            let v = vp8::parse(payload).unwrap();
            f.rewrite_vp8(payload, &v);
            let (at, _) = v.picture_id.unwrap();
            (
                u16::from_be_bytes([payload[at] & 0x7F, payload[at + 1]]),
                payload[v.tl0_pic_idx.unwrap()],
            )
        };
        let mut f = Forwarder::new(0, 90_000);
        let mut last = (0, 0);
        for i in 0..5u16 {
            let mut p = desc(20_000 + i, 9 + i as u8);
            last = out(
                &mut f,
                video(0, 100 + i, u32::from(i) * 3000),
                &mut p,
                i == 0,
            );
            assert_eq!(
                last,
                (20_000 + i, 9 + i as u8),
                "unchanged before any switch"
            );
        }
        let mut p = desc(3, 200);
        let first = out(&mut f, video(1, 7000, 0), &mut p, true);
        assert_eq!(
            first,
            (last.0 + 1, last.1 + 1),
            "the new layer's key frame follows on"
        );
        let mut p = desc(4, 201);
        assert_eq!(
            out(&mut f, video(1, 7001, 3000), &mut p, false),
            (last.0 + 2, last.1 + 2)
        );
        // A retransmission of the key frame's packet gets the numbers it was sent with.
        let mut r = desc(3, 200);
        f.rewrite_vp8_retransmit(&mut r);
        assert_eq!(&r[2..5], &desc(last.0 + 1, last.1 + 1)[2..5]);
    }

    #[test]
    fn seq_and_ts_stay_continuous_across_pause_and_resume() {
        let t0 = Instant::now();
        let at = |n| t0 + ms(n);
        let mut a = Forwarder::new(0, 48_000);
        assert_eq!(no_parse(&mut a, audio(10, 960), 0, t0).send, Some((1, 960)));
        assert_eq!(no_parse(&mut a, audio(11, 1920), 0, at(20)), sent(2, 1920));
        a.resync();
        // Audio resumes at once: the producer went on meanwhile, the stream does not jump.
        let d = no_parse(&mut a, audio(60, 48_960), 0, at(1020));
        assert_eq!(d, sent(3, 1920 + 48_000));

        let mut v = Forwarder::new(0, 90_000);
        v.decide(&video(0, 500, 0), 0, t0, || true);
        v.resync();
        assert_eq!(v.decide(&video(0, 501, 3000), 0, at(500), || false), WAIT);
        let d = v.decide(&video(0, 600, 99_000), 0, at(1000), || true);
        assert_eq!(d, sent(2, 90_000), "same layer: no switch reported");
        let d = no_parse(&mut v, video(0, 601, 102_000), 0, at(1033));
        assert_eq!(d, sent(3, 93_000));
    }

    #[test]
    fn packets_older_than_the_sync_point_drop_and_sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(65_534, 90_000);
        let d = f.decide(&video(0, 65_534, 0), 0, t0, || true);
        assert_eq!(d.send, Some((65_535, 0)));
        let d = no_parse(&mut f, video(0, 65_533, 0), 0, t0);
        assert_eq!(d, DROP, "before the sync point");
        assert_eq!(no_parse(&mut f, video(0, 0, 0), 0, t0), sent(1, 0));
        // A late packet after the sync point still goes out with its own number...
        assert_eq!(no_parse(&mut f, video(0, 65_535, 0), 0, t0), sent(0, 0));
        // ...without pulling the stream back.
        assert_eq!(no_parse(&mut f, video(0, 1, 0), 0, t0), sent(2, 0));
        assert_eq!(f.producer_seq(0), Some(65_535));
    }

    #[test]
    fn a_stream_keeps_flowing_long_after_its_sync_point() {
        // 200 000 packets (three rollovers) after one key frame: every one goes out, in
        // order, and NACKs stay answerable (a 16-bit "older than the sync point" test stopped
        // such a stream 32 768 packets after each sync, for 32 768 packets).
        let t0 = Instant::now();
        let mut f = Forwarder::new(0, 90_000);
        assert_eq!(
            f.decide(&video(0, 40_000, 0), 0, t0, || true).send,
            Some((1, 0))
        );
        for i in 1..200_000u32 {
            let seq = 40_000u16.wrapping_add(i as u16);
            let d = no_parse(&mut f, video(0, seq, i), 0, t0);
            assert_eq!(d.send, Some(((i + 1) as u16, i)), "packet {i}");
        }
        let last = 200_000u32 as u16;
        assert_eq!(
            f.producer_seq(last),
            Some(40_000u16.wrapping_add(199_999u32 as u16))
        );
        assert_eq!(
            f.producer_seq(last.wrapping_sub(100)),
            Some(40_000u16.wrapping_add(199_899u32 as u16))
        );
        // An old packet from just before a resync still drops after many rollovers.
        f.resync();
        let seq = 40_000u16.wrapping_add(200_000u32 as u16);
        assert!(f.decide(&video(0, seq, 0), 0, t0, || true).send.is_some());
        assert_eq!(
            no_parse(&mut f, video(0, seq.wrapping_sub(1), 0), 0, t0),
            DROP
        );
    }

    #[test]
    fn rtx_mapping_inverts_the_forwarded_mapping_within_the_current_sync() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(99, 90_000);
        assert_eq!(f.producer_seq(99), None, "nothing forwarded yet");
        assert_eq!(f.producer_seq(100), None, "nothing forwarded yet");
        f.decide(&video(0, 1000, 50), 0, t0, || true);
        no_parse(&mut f, video(0, 1001, 3050), 0, t0 + ms(33));
        assert_eq!(f.producer_seq(100), Some(1000));
        assert_eq!(f.producer_seq(101), Some(1001));
        assert_eq!(f.producer_seq(99), None, "before the sync point");
        assert_eq!(f.producer_seq(102), None, "never sent");
        // After a switch, the previous layer's packets are out of reach.
        let d = f.decide(&video(1, 30_000, 7), 1, t0 + ms(133), || true);
        let (seq, ts) = d.send.unwrap();
        assert_eq!(seq, 102);
        assert_eq!(f.producer_seq(102), Some(30_000));
        assert_eq!(f.producer_seq(101), None, "another layer");
        assert_eq!(f.map_ts(7), ts);
        let d = no_parse(&mut f, video(1, 30_001, 3007), 1, t0 + ms(166));
        assert_eq!(d.send.map(|s| s.1), Some(f.map_ts(3007)));
        let rtx: Vec<u16> = (0..3).map(|_| f.next_rtx_seq()).collect();
        assert_eq!(rtx, [0, 1, 2]);
    }

    #[test]
    fn a_tap_follows_the_highest_active_layer() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(0, 90_000);
        let target = |active| target_layer(None, 3, active);
        // Layers 0 and 1 sending: the tap starts at layer 1's first key frame.
        assert_eq!(no_parse(&mut f, video(0, 10, 0), target(0b011), t0), DROP);
        let d = f.decide(&video(1, 20, 0), target(0b011), t0, || true);
        assert_eq!((d.send, d.switched_to), (Some((1, 0)), Some(1)));
        // Layer 2 starts: the tap moves up at its key frame, not before.
        let up = target(0b111);
        assert_eq!(f.decide(&video(2, 30, 0), up, t0, || false), WAIT);
        assert_eq!(no_parse(&mut f, video(1, 21, 0), up, t0), sent(2, 0));
        let d = f.decide(&video(2, 31, 0), up, t0, || true);
        assert_eq!((d.send.map(|s| s.0), d.switched_to), (Some(3), Some(2)));
        assert_eq!(no_parse(&mut f, video(1, 22, 0), up, t0), DROP);
        // Layer 2 stops: back down to layer 1 at its next key frame.
        let down = target(0b011);
        assert_eq!(f.decide(&video(1, 23, 0), down, t0, || false), WAIT);
        let d = f.decide(&video(1, 24, 0), down, t0, || true);
        assert_eq!((d.send.map(|s| s.0), d.switched_to), (Some(4), Some(1)));
        assert_eq!(f.layer(), Some(1));
    }

    #[test]
    fn rtp_time_advances_with_time_at_the_clock_rate() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(0, 90_000);
        assert_eq!(f.rtp_time_at(t0), None, "before the first packet");
        assert_eq!(f.last_sent_at(), None);
        f.decide(&video(0, 1, 1000), 0, t0, || true);
        assert!(f.started());
        assert_eq!(f.last_sent_at(), Some(t0));
        assert_eq!(f.rtp_time_at(t0), Some(1000));
        assert_eq!(f.rtp_time_at(t0 + ms(500)), Some(46_000));
        assert_eq!(f.rtp_time_at(t0 + ms(2000)), Some(181_000));
        // Relative to the last packet sent, in the stream's timestamp space.
        no_parse(&mut f, video(0, 2, 10_000), 0, t0 + ms(100));
        assert_eq!(f.rtp_time_at(t0 + ms(1100)), Some(100_000));
    }
}
