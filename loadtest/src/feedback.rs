//! The RTCP a subscriber sends on its recv transport, as a browser does: receiver reports
//! about every second per received SSRC, generic NACKs for sequence gaps, and transport-wide
//! congestion control feedback every 100 ms once the server stamps transport-wide sequence
//! numbers. Sans-IO: fed sequence numbers and instants, returns the plain RTCP to protect.

use std::time::{Duration, Instant};

use sfu::rtc::nack::NackGenerator;
use sfu::rtc::rtcp::{build_nack, build_receiver_report, ReceptionReport};
use sfu::rtc::rtp::{find_extension, RtpHeader};
use sfu::rtc::twcc::TwccRecorder;

/// How often a browser reports reception (Chromium: about every second with video).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The header extension the server stamps transport-wide sequence numbers with.
pub const TRANSPORT_WIDE_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The value of header extension `id` of an RTP packet, read from its clear header only (the
/// payload may be SRTP-encrypted: the padding flag is not looked at).
pub fn header_extension(packet: &[u8], id: u8) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(packet[0] & 0x0f);
    let word = packet.get(at..at + 4)?;
    let ext_len = 4 * usize::from(u16::from_be_bytes([word[2], word[3]]));
    let h = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: 0,
        timestamp: 0,
        ssrc: 0,
        csrc_count: packet[0] & 0x0f,
        ext_profile: u16::from_be_bytes([word[0], word[1]]),
        ext_start: at + 4,
        ext_len,
        payload_start: at + 4 + ext_len,
        payload_end: packet.len(),
        padding_len: 0,
    };
    // The iterator never reads past the block, nor past the packet.
    find_extension(packet, &h, id)
}

/// The transport-wide sequence number of a packet, if it carries extension `id`.
pub fn transport_sequence(packet: &[u8], id: u8) -> Option<u16> {
    header_extension(packet, id)
        .and_then(|v| v.first_chunk::<2>())
        .map(|v| u16::from_be_bytes(*v))
}

/// Sequence numbers behind the highest whose arrival is remembered (to tell a repair from a
/// duplicate): 2 s of 2.5 Mbit/s video.
const HISTORY: i64 = 512;

/// Reception statistics of one received SSRC (RFC 3550 A.3), and its gap detection.
#[derive(Default)]
pub struct Reception {
    /// Extended sequence numbers: the first one seen and the highest.
    base: Option<i64>,
    highest: i64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// One bit per extended sequence number modulo [`HISTORY`]: arrived.
    arrived: [u64; HISTORY as usize / 64],
    /// Video only: audio is not NACKed (Opus consumers negotiate no `nack`).
    nack: Option<NackGenerator>,
}

impl Reception {
    pub fn new(nack: bool) -> Self {
        Self {
            nack: nack.then(NackGenerator::default),
            ..Self::default()
        }
    }

    /// Notes that `seq` arrived at `now` (an original, or a retransmission unwrapped).
    pub fn on_packet(&mut self, seq: u16, now: Instant) {
        self.received += 1;
        let ext = match self.base {
            None => {
                self.base = Some(i64::from(seq));
                self.highest = i64::from(seq);
                i64::from(seq)
            }
            Some(base) => {
                let ext = self.extend(seq);
                if ext - self.highest > HISTORY {
                    self.arrived = Default::default();
                } else {
                    // The slots of a gap now stand for the missing numbers.
                    for missing in self.highest + 1..ext {
                        self.set_arrived(missing, false);
                    }
                }
                self.highest = self.highest.max(ext);
                self.base = Some(base.min(ext));
                ext
            }
        };
        self.set_arrived(ext, true);
        if let Some(nack) = &mut self.nack {
            nack.on_packet(seq, now);
        }
    }

    fn extend(&self, seq: u16) -> i64 {
        self.highest + i64::from(seq.wrapping_sub(self.highest as u16) as i16)
    }

    fn set_arrived(&mut self, ext: i64, arrived: bool) {
        let i = ext.rem_euclid(HISTORY) as usize;
        let bit = 1u64 << (i % 64);
        if arrived {
            self.arrived[i / 64] |= bit;
        } else {
            self.arrived[i / 64] &= !bit;
        }
    }

    /// Whether a retransmission of `seq` repairs a loss: it is behind the highest sequence
    /// number seen, recent, and never arrived (whether or not it is still being NACKed).
    pub fn is_missing(&self, seq: u16) -> bool {
        let Some(base) = self.base else {
            return false;
        };
        let ext = self.extend(seq);
        let i = ext.rem_euclid(HISTORY) as usize;
        ext >= base
            && ext < self.highest
            && self.highest - ext < HISTORY
            && self.arrived[i / 64] & (1 << (i % 64)) == 0
    }

    /// The report block for `ssrc` covering everything since the previous one; `None` before
    /// the first packet.
    pub fn report(&mut self, ssrc: u32) -> Option<ReceptionReport> {
        let base = self.base?;
        let expected = (self.highest - base + 1) as u64;
        let lost = expected.saturating_sub(self.received);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        Some(ReceptionReport {
            ssrc,
            fraction_lost,
            total_lost: lost.min(0x7f_ffff) as u32,
            highest_sequence: self.highest as u32,
            jitter: 0,
            last_sender_report: 0,
            delay_since_last_sender_report: 0,
        })
    }
}

/// What a subscriber sent, counted for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeedbackCounts {
    pub receiver_reports: u64,
    pub nack_packets: u64,
    pub nacked_sequences: u64,
    pub transport_cc: u64,
}

/// A subscriber's transport-level feedback state.
pub struct Feedback {
    /// The SSRC this receiver reports from (a browser's recv-only streams pick a random one).
    sender_ssrc: u32,
    /// The consumers' transport-wide-cc extension id (from consume-media's answer).
    transport_cc_id: Option<u8>,
    /// Made when the first stamped packet arrives: nothing to report (and no memory) before.
    recorder: Option<TwccRecorder>,
    next_report: Instant,
    reports: Vec<ReceptionReport>,
    out: Vec<u8>,
    pub counts: FeedbackCounts,
}

impl Feedback {
    /// `first_report` spreads many subscribers' reports over the interval.
    pub fn new(sender_ssrc: u32, transport_cc_id: Option<u8>, first_report: Instant) -> Self {
        Self {
            sender_ssrc,
            transport_cc_id,
            recorder: None,
            next_report: first_report,
            reports: Vec::new(),
            out: Vec::with_capacity(256),
            counts: FeedbackCounts::default(),
        }
    }

    pub fn transport_cc_id(&self) -> Option<u8> {
        self.transport_cc_id
    }

    /// Records that transport-wide sequence number `seq` arrived at `at`.
    pub fn on_transport_sequence(&mut self, seq: u16, at: Instant) {
        self.recorder
            .get_or_insert_with(|| TwccRecorder::new(at))
            .record(seq, at);
    }

    /// The plain RTCP compound due at `now` (empty most of the time): a receiver report when
    /// due, NACKs for what `streams` miss, transport-cc feedback every 100 ms. `streams` are
    /// (SSRC, reception) pairs; `media_ssrc` names the transport-cc feedback's media source.
    pub fn poll<'a>(
        &mut self,
        now: Instant,
        streams: impl Iterator<Item = (u32, &'a mut Reception)>,
        media_ssrc: u32,
    ) -> &[u8] {
        self.out.clear();
        let report_due = now >= self.next_report;
        if report_due {
            self.next_report = now + REPORT_INTERVAL;
            self.reports.clear();
        }
        let mut nacks = Vec::new();
        for (ssrc, r) in streams {
            if report_due {
                self.reports.extend(r.report(ssrc));
            }
            if let Some(nack) = &mut r.nack {
                let lost = nack.poll(now);
                if !lost.is_empty() {
                    self.counts.nack_packets += 1;
                    self.counts.nacked_sequences += lost.len() as u64;
                    nacks.push((ssrc, lost.to_vec()));
                }
            }
        }
        if report_due && !self.reports.is_empty() {
            // First in the compound, as RFC 3550 §6.1 has it.
            build_receiver_report(self.sender_ssrc, &self.reports, &mut self.out);
            self.counts.receiver_reports += 1;
        }
        for (ssrc, lost) in &nacks {
            build_nack(self.sender_ssrc, *ssrc, lost, &mut self.out);
        }
        if let Some(recorder) = &mut self.recorder {
            if recorder.due(now) {
                let before = self.out.len();
                recorder.build_feedback(self.sender_ssrc, media_ssrc, now, &mut self.out);
                if self.out.len() > before {
                    self.counts.transport_cc += 1;
                }
            }
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::rtc::rtcp::{parse_compound, RtcpEvent};

    const TWCC_ID: u8 = 5;

    /// An RTP packet with a mid and (optionally) a transport-wide sequence number, and 10
    /// bytes of "encrypted" payload ending in a byte that looks like a padding count.
    fn packet(seq: u16, transport_seq: Option<u16>) -> Vec<u8> {
        let mut p = vec![0xb0, 96]; // V=2, P=1 (as an encrypted probe may have), X=1
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 42]);
        let block = match transport_seq {
            Some(t) => {
                let [hi, lo] = t.to_be_bytes();
                vec![0x10, b'0', TWCC_ID << 4 | 1, hi, lo, 0, 0, 0]
            }
            None => vec![0x10, b'0', 0, 0],
        };
        p.extend_from_slice(&[0xbe, 0xde]);
        p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&block);
        p.extend_from_slice(&[7; 9]);
        p.push(200);
        p
    }

    #[test]
    fn the_transport_wide_sequence_is_read_from_the_clear_header_only() {
        let p = packet(1, Some(0xabcd));
        assert_eq!(transport_sequence(&p, TWCC_ID), Some(0xabcd));
        assert_eq!(transport_sequence(&p, 7), None);
        assert_eq!(transport_sequence(&packet(1, None), TWCC_ID), None);
        assert_eq!(transport_sequence(&p[..13], TWCC_ID), None, "truncated");
        let mut no_ext = p.clone();
        no_ext[0] &= !0x10;
        assert_eq!(transport_sequence(&no_ext, TWCC_ID), None);
    }

    #[test]
    fn a_report_gives_interval_and_cumulative_loss_and_the_extended_highest_sequence() {
        let t = Instant::now();
        let mut r = Reception::new(true);
        assert!(r.report(9).is_none(), "nothing received yet");
        // 65530 ..= 65535 and 0 ..= 9 with 4 lost: 16 expected, 12 received.
        for seq in (65530u16..=65535).chain(0..10) {
            if ![65533, 2, 3, 4].contains(&seq) {
                r.on_packet(seq, t);
            }
        }
        let rep = r.report(9).unwrap();
        assert_eq!(rep.ssrc, 9);
        assert_eq!(rep.total_lost, 4);
        assert_eq!(rep.fraction_lost, (4 * 256 / 16) as u8);
        assert_eq!(rep.highest_sequence, 65536 + 9, "one cycle");
        assert_eq!(rep.jitter, 0);
        // Then 10 more, none lost; and a late original of 3.
        for seq in 10..20 {
            r.on_packet(seq, t);
        }
        r.on_packet(3, t);
        let rep = r.report(9).unwrap();
        assert_eq!(rep.fraction_lost, 0);
        assert_eq!(rep.total_lost, 3);
        assert_eq!(rep.highest_sequence, 65536 + 19);
    }

    #[test]
    fn feedback_carries_a_receiver_report_nacks_and_transport_cc_that_the_server_parses() {
        let t0 = Instant::now();
        let mut video = Reception::new(true);
        let mut audio = Reception::new(false);
        let mut fb = Feedback::new(77, Some(TWCC_ID), t0);
        for (i, seq) in [100u16, 101, 104, 105].into_iter().enumerate() {
            let at = t0 + Duration::from_millis(10 * i as u64);
            video.on_packet(seq, at);
            fb.on_transport_sequence(1000 + i as u16, at);
        }
        audio.on_packet(7, t0);
        let now = t0 + Duration::from_millis(50);
        let out = fb
            .poll(now, [(11, &mut video), (12, &mut audio)].into_iter(), 11)
            .to_vec();
        let mut events = Vec::new();
        parse_compound(&out, &mut events).expect("a valid compound");
        assert!(
            matches!(&events[0], RtcpEvent::ReceiverReport { ssrc: 77, reports } if reports.len() == 2
                && reports[0].ssrc == 11 && reports[0].total_lost == 2 && reports[1].ssrc == 12)
        );
        assert!(events.iter().any(|e| matches!(e,
            RtcpEvent::Nack { sender_ssrc: 77, media_ssrc: 11, lost } if lost == &[102, 103])));
        assert!(events
            .iter()
            .any(|e| matches!(e, RtcpEvent::TransportCc { media_ssrc: 11 })));
        assert_eq!(fb.counts.receiver_reports, 1);
        assert_eq!(fb.counts.nack_packets, 1);
        assert_eq!(fb.counts.nacked_sequences, 2);
        assert_eq!(fb.counts.transport_cc, 1);
        // 20 ms later: nothing due (the report is a second away, transport-cc 100 ms, the
        // NACK retry 60 ms).
        let later = now + Duration::from_millis(20);
        assert!(fb
            .poll(later, [(11, &mut video)].into_iter(), 11)
            .is_empty());
    }

    #[test]
    fn without_stamped_packets_no_transport_cc_feedback_is_sent() {
        let t0 = Instant::now();
        let mut video = Reception::new(true);
        video.on_packet(1, t0);
        let mut fb = Feedback::new(77, Some(TWCC_ID), t0 + Duration::from_secs(5));
        for k in 0..20 {
            let now = t0 + Duration::from_millis(100 * k);
            assert!(fb.poll(now, [(11, &mut video)].into_iter(), 11).is_empty());
        }
        assert_eq!(fb.counts.transport_cc, 0);
    }

    #[test]
    fn a_retransmission_repairs_only_what_is_still_missing() {
        let t = Instant::now();
        let mut r = Reception::new(true);
        r.on_packet(10, t);
        r.on_packet(13, t);
        assert!(r.is_missing(11) && r.is_missing(12));
        assert!(!r.is_missing(10) && !r.is_missing(13) && !r.is_missing(14));
        r.on_packet(11, t);
        assert!(!r.is_missing(11));
        // Still a repair after the NACKs gave up (a retransmission stuck in a long queue).
        for seq in 14..200 {
            r.on_packet(seq, t + Duration::from_secs(5));
        }
        assert!(r.is_missing(12) && !r.is_missing(150));
        // Too old to tell: not counted.
        r.on_packet(1000, t);
        assert!(!r.is_missing(12));
    }
}
