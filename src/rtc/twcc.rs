//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01):
//! records the arrival time of every transport-wide sequence number a sending transport
//! receives and builds the RTCP feedback (PT 205, FMT 15) Chromium's send-side bandwidth
//! estimator needs to ramp its bitrate up. Sans-IO: fed sequence numbers and instants.

use std::time::{Duration, Instant};

/// Sequence numbers remembered between two feedback packets (a power of two).
const WINDOW: usize = 1024;
/// How often feedback is sent while packets arrive.
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
const NOT_RECEIVED: i64 = i64::MIN;
/// Receive deltas are in multiples of 250 µs; the reference time in multiples of 64 ms.
const DELTA_TICK_US: i64 = 250;
const REFERENCE_TICK_US: i64 = 64_000;
const PT_RTPFB: u8 = 205;
const FMT_TRANSPORT_CC: u8 = 15;

/// Arrival times of one transport's transport-wide sequence numbers since the last feedback.
pub struct TwccRecorder {
    epoch: Instant,
    /// Arrival (µs since `epoch`) by unwrapped sequence number modulo `WINDOW`.
    arrivals: Box<[i64; WINDOW]>,
    /// First unwrapped sequence number the next feedback reports.
    base: Option<i64>,
    /// Highest unwrapped sequence number received.
    highest: i64,
    feedback_count: u8,
    last_feedback: Option<Instant>,
}

impl TwccRecorder {
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            arrivals: Box::new([NOT_RECEIVED; WINDOW]),
            base: None,
            highest: 0,
            feedback_count: 0,
            last_feedback: None,
        }
    }

    fn unwrap(&self, seq: u16) -> i64 {
        match self.base {
            None => i64::from(seq),
            Some(_) => self.highest + i64::from(seq.wrapping_sub(self.highest as u16) as i16),
        }
    }

    /// Records that transport-wide sequence number `seq` arrived at `now`.
    pub fn record(&mut self, seq: u16, now: Instant) {
        let arrival = now.saturating_duration_since(self.epoch).as_micros() as i64;
        let s = self.unwrap(seq);
        let base = match self.base {
            None => {
                self.base = Some(s);
                self.highest = s;
                s
            }
            Some(b) => b,
        };
        if s < base {
            // Already reported (as lost); too late to matter.
            return;
        }
        if s > self.highest {
            // Forget what cannot be reported any more (a long gap).
            for lost in (self.highest + 1).max(s - WINDOW as i64 + 1)..s {
                self.arrivals[slot(lost)] = NOT_RECEIVED;
            }
            self.highest = s;
            if s - base >= WINDOW as i64 {
                self.base = Some(s - WINDOW as i64 + 1);
            }
        }
        self.arrivals[slot(s)] = arrival;
    }

    /// Whether a feedback packet should be sent now.
    pub fn due(&self, now: Instant) -> bool {
        self.base.is_some_and(|b| b <= self.highest)
            && self
                .last_feedback
                .is_none_or(|t| now.saturating_duration_since(t) >= FEEDBACK_INTERVAL)
    }

    /// Appends a feedback packet covering every sequence number since the last one to `out`
    /// (nothing when none was received).
    pub fn build_feedback(
        &mut self,
        sender_ssrc: u32,
        media_ssrc: u32,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        let Some(base) = self.base else {
            return;
        };
        let Some(first_arrival) = (base..=self.highest)
            .map(|s| self.arrivals[slot(s)])
            .find(|&a| a != NOT_RECEIVED)
        else {
            return;
        };
        self.last_feedback = Some(now);
        let reference = first_arrival.div_euclid(REFERENCE_TICK_US);
        // Symbols and deltas; stop before a delta too large for 16 bits (the next feedback
        // starts there with a new reference time).
        let mut symbols: Vec<u8> = Vec::with_capacity((self.highest - base + 1) as usize);
        let mut deltas: Vec<u8> = Vec::with_capacity(symbols.capacity() * 2);
        let mut previous = reference * REFERENCE_TICK_US;
        let mut end = base;
        while end <= self.highest {
            let a = self.arrivals[slot(end)];
            if a == NOT_RECEIVED {
                symbols.push(0);
            } else {
                let ticks = (a - previous).div_euclid(DELTA_TICK_US);
                if let Ok(small) = u8::try_from(ticks) {
                    symbols.push(1);
                    deltas.push(small);
                } else if let Ok(large) = i16::try_from(ticks) {
                    symbols.push(2);
                    deltas.extend_from_slice(&large.to_be_bytes());
                } else {
                    break;
                }
                previous += ticks * DELTA_TICK_US;
            }
            end += 1;
        }
        // Trailing losses are reported by the next feedback, once a later packet arrived.
        while symbols.last() == Some(&0) {
            symbols.pop();
            end -= 1;
        }

        let start = out.len();
        out.extend_from_slice(&[0x80 | FMT_TRANSPORT_CC, PT_RTPFB, 0, 0]);
        out.extend_from_slice(&sender_ssrc.to_be_bytes());
        out.extend_from_slice(&media_ssrc.to_be_bytes());
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&(symbols.len() as u16).to_be_bytes());
        let reference_field = (reference as u32) & 0x00ff_ffff;
        out.extend_from_slice(
            &((reference_field << 8) | u32::from(self.feedback_count)).to_be_bytes(),
        );
        write_chunks(&symbols, out);
        out.extend_from_slice(&deltas);
        let padding = (4 - (out.len() - start) % 4) % 4;
        if padding > 0 {
            out.extend(std::iter::repeat_n(0, padding - 1));
            out.push(padding as u8);
            out[start] |= 0x20;
        }
        let words = ((out.len() - start) / 4 - 1) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());

        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.base = Some(end);
    }
}

fn slot(seq: i64) -> usize {
    seq.rem_euclid(WINDOW as i64) as usize
}

/// Packet status chunks: run-length chunks for runs of 14 or more equal symbols, otherwise
/// two-bit status vector chunks of 7 symbols.
fn write_chunks(symbols: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < symbols.len() {
        let run = symbols[i..]
            .iter()
            .take_while(|&&s| s == symbols[i])
            .count();
        if run >= 14 {
            let run = run.min(0x1fff);
            let chunk = (u16::from(symbols[i]) << 13) | run as u16;
            out.extend_from_slice(&chunk.to_be_bytes());
            i += run;
        } else {
            let mut chunk: u16 = 0xc000;
            for (k, &s) in symbols[i..].iter().take(7).enumerate() {
                chunk |= u16::from(s) << (12 - 2 * k);
            }
            out.extend_from_slice(&chunk.to_be_bytes());
            i += 7;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
    };
    use webrtc_util::Unmarshal;

    fn parse(buf: &[u8]) -> TransportLayerCc {
        let mut b = buf;
        TransportLayerCc::unmarshal(&mut b).expect("valid transport-cc feedback")
    }

    fn received(fb: &TransportLayerCc) -> Vec<bool> {
        let mut out = Vec::new();
        for c in &fb.packet_chunks {
            match c {
                PacketStatusChunk::RunLengthChunk(r) => {
                    for _ in 0..r.run_length {
                        out.push(r.packet_status_symbol != SymbolTypeTcc::PacketNotReceived);
                    }
                }
                PacketStatusChunk::StatusVectorChunk(v) => {
                    for s in &v.symbol_list {
                        out.push(*s != SymbolTypeTcc::PacketNotReceived);
                    }
                }
            }
        }
        out.truncate(fb.packet_status_count as usize);
        out
    }

    #[test]
    fn feedback_reports_every_packet_with_its_arrival_delta() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(t0);
        for (i, seq) in (100u16..110).enumerate() {
            r.record(seq, t0 + Duration::from_millis(5 * i as u64));
        }
        assert!(r.due(t0));
        let mut out = Vec::new();
        r.build_feedback(1, 2, t0, &mut out);
        assert_eq!(out.len() % 4, 0);
        let fb = parse(&out);
        assert_eq!(fb.base_sequence_number, 100);
        assert_eq!(fb.packet_status_count, 10);
        assert_eq!(fb.fb_pkt_count, 0);
        assert_eq!(received(&fb), vec![true; 10]);
        assert_eq!(fb.recv_deltas.len(), 10);
        // 5 ms apart = 20 ticks of 250 µs.
        assert!(fb.recv_deltas[1..].iter().all(|d| d.delta == 5000));
        assert!(
            !r.due(t0 + Duration::from_millis(200)),
            "nothing new to report"
        );
    }

    #[test]
    fn a_gap_is_reported_as_lost_and_the_next_feedback_continues_after_it() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(t0);
        r.record(65534, t0);
        r.record(65535, t0);
        r.record(2, t0 + Duration::from_millis(1)); // 0 and 1 lost, across the wrap
        let mut out = Vec::new();
        r.build_feedback(1, 2, t0, &mut out);
        let fb = parse(&out);
        assert_eq!(fb.base_sequence_number, 65534);
        assert_eq!(received(&fb), vec![true, true, false, false, true]);
        r.record(3, t0 + Duration::from_millis(150));
        out.clear();
        r.build_feedback(1, 2, t0 + Duration::from_millis(150), &mut out);
        let fb = parse(&out);
        assert_eq!(fb.base_sequence_number, 3);
        assert_eq!(fb.fb_pkt_count, 1);
        assert_eq!(received(&fb), vec![true]);
    }

    #[test]
    fn long_runs_use_run_length_chunks_and_late_packets_are_ignored() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(t0);
        for seq in 0..40u16 {
            r.record(seq, t0 + Duration::from_micros(250 * u64::from(seq)));
        }
        let mut out = Vec::new();
        r.build_feedback(1, 2, t0, &mut out);
        let fb = parse(&out);
        assert!(matches!(
            fb.packet_chunks[0],
            PacketStatusChunk::RunLengthChunk(_)
        ));
        assert_eq!(received(&fb), vec![true; 40]);
        r.record(5, t0); // already reported
        assert!(!r.due(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_large_time_gap_uses_two_byte_deltas() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(t0);
        r.record(10, t0);
        r.record(11, t0 + Duration::from_millis(500));
        let mut out = Vec::new();
        r.build_feedback(1, 2, t0, &mut out);
        let fb = parse(&out);
        assert_eq!(received(&fb), vec![true, true]);
        assert_eq!(fb.recv_deltas[1].delta, 500_000);
    }

    #[test]
    fn a_jump_beyond_the_window_keeps_memory_bounded() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new(t0);
        r.record(0, t0);
        r.record(30_000, t0);
        let mut out = Vec::new();
        r.build_feedback(1, 2, t0, &mut out);
        let fb = parse(&out);
        assert!(usize::from(fb.packet_status_count) <= WINDOW);
        assert!(*received(&fb).last().unwrap());
    }
}
