//! What one subscriber does with each datagram it receives, as a browser would: counts its
//! consumers' packets by their clear RTP header (loss, bitrate), decrypts a sample for latency,
//! unwraps retransmissions, records transport-wide sequence numbers, and answers with RTCP
//! ([`crate::feedback`]). A capped subscriber ([`crate::downlink`]) sees each datagram only
//! at its departure from the virtual queue, or never when the queue dropped it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sfu::rtc::nack::rtx_unwrap;
use sfu::rtc::rtp::parse_rtp;
use sfu::rtc::srtp::SrtpSession;

use crate::downlink::Downlink;
use crate::feedback::{transport_sequence, Feedback, FeedbackCounts, Reception};
use crate::media::{instant_of, now_ns, Kind};

/// What a subscriber counts for one consumer (one SSRC it receives).
pub struct Stream {
    pub ssrc: u32,
    pub kind: Kind,
    /// The consumer's RTX SSRC (retransmissions answering NACKs), if negotiated.
    pub rtx_ssrc: Option<u32>,
    /// consume-media's `consumerId` (the key of `consumer-layers-changed`).
    pub consumer_id: String,
    first: Option<i64>,
    max: i64,
    pub received: u64,
    /// SRTP bytes of the consumer's own packets (retransmissions excluded) while measuring.
    pub bytes: u64,
    /// Losses a retransmission repaired while measuring.
    pub repaired: u64,
    pub(crate) last_at: Option<Instant>,
    reception: Reception,
}

impl Stream {
    pub fn new(ssrc: u32, kind: Kind) -> Self {
        Self {
            ssrc,
            kind,
            rtx_ssrc: None,
            consumer_id: String::new(),
            first: None,
            max: 0,
            received: 0,
            bytes: 0,
            repaired: 0,
            last_at: None,
            reception: Reception::new(kind == Kind::Video),
        }
    }

    /// The consumer this stream belongs to, and its RTX SSRC.
    pub fn of_consumer(mut self, consumer_id: String, rtx_ssrc: Option<u32>) -> Self {
        self.consumer_id = consumer_id;
        self.rtx_ssrc = rtx_ssrc;
        self
    }

    pub(crate) fn record(&mut self, seq: u16, now: Instant) {
        self.received += 1;
        self.last_at = Some(now);
        let Some(_) = self.first else {
            self.first = Some(seq as i64);
            self.max = seq as i64;
            return;
        };
        // Extend the 16-bit number relative to the newest one seen.
        let delta = seq.wrapping_sub(self.max as u16) as i16 as i64;
        let ext = self.max + delta;
        if ext > self.max {
            self.max = ext;
        }
        if ext < self.first.unwrap_or(ext) {
            self.first = Some(ext);
        }
    }

    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |f| (self.max - f + 1) as u64)
    }

    fn reset(&mut self) {
        self.first = None;
        self.received = 0;
        self.bytes = 0;
        self.repaired = 0;
        self.last_at = None;
    }
}

/// What a datagram is to the subscriber.
#[derive(Clone, Copy, Debug)]
enum Content {
    /// A consumer's packet with this sequence number.
    Media(u16),
    /// A retransmission repairing this sequence number of the consumer.
    Repair(u16),
    /// Anything else with a transport-wide sequence number (probes, padding).
    Other,
}

/// A datagram the subscriber sees at `at_ns` (on the `now_ns` scale).
#[derive(Clone, Copy, Debug)]
struct Arrival {
    at_ns: u64,
    stream: u16,
    content: Content,
    transport_seq: Option<u16>,
    len: u16,
}

/// Counters of the receive thread that every subscriber adds to.
pub struct Counters {
    pub latency_ns: Histogram<u64>,
    pub packets: u64,
    pub bytes: u64,
    pub decrypt_errors: u64,
    /// Retransmissions delivered (on a consumer's RTX SSRC), padding-only ones included.
    pub rtx_packets: u64,
    /// Other delivered packets with a transport-wide sequence number (probes, padding).
    pub other_packets: u64,
}

/// What every received packet is measured against.
pub struct Receipt {
    pub sample: u64,
    pub measuring: bool,
}

/// One subscriber's receive side.
pub struct Inbound {
    pub streams: Vec<Stream>,
    srtp: SrtpSession,
    seen: u64,
    feedback: Option<Feedback>,
    downlink: Option<Downlink>,
    /// Admitted by the downlink and not departed yet, in departure order.
    in_flight: VecDeque<Arrival>,
    /// RTP bytes delivered while measuring: media, retransmissions, probes.
    pub delivered_bytes: u64,
    pub rtcp_send_errors: u64,
}

impl Inbound {
    pub fn new(srtp: SrtpSession, streams: Vec<Stream>) -> Self {
        Self {
            streams,
            srtp,
            seen: 0,
            feedback: None,
            downlink: None,
            in_flight: VecDeque::new(),
            delivered_bytes: 0,
            rtcp_send_errors: 0,
        }
    }

    /// Sends browser-like RTCP from now on; transport-cc feedback only for packets stamped with
    /// extension `transport_cc_id`.
    pub fn enable_feedback(&mut self, transport_cc_id: Option<u8>) {
        // Spread many subscribers' receiver reports over the second.
        let first = Instant::now() + Duration::from_millis(rand::random::<u64>() % 1000);
        self.feedback = Some(Feedback::new(rand::random(), transport_cc_id, first));
    }

    pub fn cap_downlink(&mut self, kbps: u32) {
        self.downlink = Some(Downlink::new(kbps));
    }

    pub fn capped(&self) -> bool {
        self.downlink.is_some()
    }

    pub fn downlink_drops(&self) -> u64 {
        self.downlink.as_ref().map_or(0, |d| d.dropped_packets)
    }

    pub fn feedback_counts(&self) -> FeedbackCounts {
        self.feedback.as_ref().map(|f| f.counts).unwrap_or_default()
    }

    /// Starts the measurement: counts from zero.
    pub fn reset_counts(&mut self) {
        self.streams.iter_mut().for_each(Stream::reset);
        self.delivered_bytes = 0;
        self.rtcp_send_errors = 0;
        if let Some(d) = &mut self.downlink {
            d.dropped_packets = 0;
        }
        if let Some(f) = &mut self.feedback {
            f.counts = FeedbackCounts::default();
        }
    }

    /// One received datagram (or ICE-TCP frame), arrived at `arrived_ns` if the kernel said.
    pub fn on_datagram(
        &mut self,
        packet: &[u8],
        counters: &mut Counters,
        at: &Receipt,
        arrived_ns: Option<u64>,
    ) {
        let n = packet.len();
        // RTP and RTCP (RFC 7983: first byte 128..=191) cross the downlink; STUN is too small
        // to matter.
        if n < 12 || !(128..=191).contains(&packet[0]) {
            return;
        }
        let arrival = arrived_ns.unwrap_or_else(now_ns);
        let at_ns = match &mut self.downlink {
            Some(d) => match d.admit(arrival, n) {
                Some(departure) => departure,
                None => return, // lost on the way: never seen
            },
            None => arrival,
        };
        if (192..=223).contains(&packet[1]) {
            return; // the server's RTCP
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let transport_seq = self
            .feedback
            .as_ref()
            .and_then(Feedback::transport_cc_id)
            .and_then(|id| transport_sequence(packet, id));
        let (stream, content) = if let Some(i) = self.streams.iter().position(|s| s.ssrc == ssrc) {
            self.sample_latency(i, packet, at, at_ns, counters);
            (i, Content::Media(seq))
        } else if let Some(i) = self.streams.iter().position(|s| s.rtx_ssrc == Some(ssrc)) {
            match self.unwrap_retransmission(packet) {
                Some(osn) => (i, Content::Repair(osn)),
                None => (i, Content::Other),
            }
        } else if transport_seq.is_some() {
            (0, Content::Other) // a probation or padding stream
        } else {
            return;
        };
        let a = Arrival {
            at_ns,
            stream: stream as u16,
            content,
            transport_seq,
            len: n.min(usize::from(u16::MAX)) as u16,
        };
        if at_ns <= arrival && self.in_flight.is_empty() {
            self.deliver(a, counters);
        } else {
            self.in_flight.push_back(a);
        }
    }

    /// Every `sample`-th packet of the subscriber decrypted in place for its send stamp.
    fn sample_latency(
        &mut self,
        i: usize,
        packet: &[u8],
        at: &Receipt,
        received_at: u64,
        counters: &mut Counters,
    ) {
        self.seen += 1;
        if !self.seen.is_multiple_of(at.sample) {
            return;
        }
        let offset = self.streams[i].kind.stamp_offset();
        // The session's own receive buffer: no allocation per sampled packet.
        let mut plain = self.srtp.take_rx_buffer();
        plain.extend_from_slice(packet);
        if self.srtp.unprotect_rtp(&mut plain).is_ok() {
            if let Some(h) = parse_rtp(&plain) {
                let offset = h.payload_start + offset;
                if let Some(stamp) = plain.get(offset..offset + 8) {
                    let sent_at = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
                    if at.measuring && sent_at <= received_at {
                        let _ = counters
                            .latency_ns
                            .record((received_at - sent_at).max(1_000));
                    }
                }
            }
        } else {
            counters.decrypt_errors += 1;
        }
        self.srtp.restore_rx_buffer(plain);
    }

    /// The original sequence number of an RTX packet (decrypted: they are rare), `None` for a
    /// padding-only one.
    fn unwrap_retransmission(&mut self, packet: &[u8]) -> Option<u16> {
        let mut plain = self.srtp.take_rx_buffer();
        plain.extend_from_slice(packet);
        let osn = if self.srtp.unprotect_rtp(&mut plain).is_ok() {
            parse_rtp(&plain)
                .and_then(|h| rtx_unwrap(h.payload(&plain)).filter(|(_, p)| !p.is_empty()))
                .map(|(osn, _)| osn)
        } else {
            None
        };
        self.srtp.restore_rx_buffer(plain);
        osn
    }

    /// The subscriber sees `a` now (at its arrival time, `a.at_ns`).
    fn deliver(&mut self, a: Arrival, counters: &mut Counters) {
        let at = instant_of(a.at_ns);
        self.delivered_bytes += u64::from(a.len);
        if let Some(s) = self.streams.get_mut(usize::from(a.stream)) {
            match a.content {
                Content::Media(seq) => {
                    s.record(seq, at);
                    s.reception.on_packet(seq, at);
                    s.bytes += u64::from(a.len);
                    counters.packets += 1;
                    counters.bytes += u64::from(a.len);
                }
                Content::Repair(osn) if s.reception.is_missing(osn) => {
                    counters.rtx_packets += 1;
                    s.repaired += 1;
                    s.reception.on_packet(osn, at);
                }
                Content::Repair(_) => counters.rtx_packets += 1,
                Content::Other => counters.other_packets += 1,
            }
        } else {
            counters.other_packets += 1;
        }
        if let (Some(seq), Some(fb)) = (a.transport_seq, &mut self.feedback) {
            fb.on_transport_sequence(seq, at);
        }
    }

    /// Delivers what has departed the downlink by `now_ns`, and returns the SRTCP packet due
    /// now, if any.
    pub fn tick(&mut self, now: Instant, now_ns: u64, counters: &mut Counters) -> Option<Vec<u8>> {
        while self.in_flight.front().is_some_and(|a| a.at_ns <= now_ns) {
            let a = self.in_flight.pop_front().expect("front exists");
            self.deliver(a, counters);
        }
        let fb = self.feedback.as_mut()?;
        let media_ssrc = self.streams.first().map_or(0, |s| s.ssrc);
        let streams = self.streams.iter_mut().map(|s| (s.ssrc, &mut s.reception));
        let plain = fb.poll(now, streams, media_ssrc);
        if plain.is_empty() {
            return None;
        }
        match self.srtp.encrypt_rtcp(plain) {
            Ok(packet) => Some(packet.to_vec()),
            Err(_) => {
                self.rtcp_send_errors += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::rtc::srtp::{split_keying_material, SrtpProfile};

    fn inbound(streams: Vec<Stream>) -> Inbound {
        let profile = SrtpProfile::Aes128CmHmacSha1_80;
        let material: Vec<u8> = (0..2 * (profile.key_len() + profile.salt_len()))
            .map(|i| i as u8)
            .collect();
        let keys = split_keying_material(profile, &material, true).unwrap();
        Inbound::new(SrtpSession::new(&keys).unwrap(), streams)
    }

    fn counters() -> Counters {
        Counters {
            latency_ns: Histogram::new_with_bounds(1_000, 60_000_000_000, 3).unwrap(),
            packets: 0,
            bytes: 0,
            decrypt_errors: 0,
            rtx_packets: 0,
            other_packets: 0,
        }
    }

    /// A 1200-byte RTP packet of `ssrc` with transport-wide sequence number `tseq` (id 5).
    fn packet(ssrc: u32, seq: u16, tseq: u16) -> Vec<u8> {
        let mut p = vec![0x90, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        let [hi, lo] = tseq.to_be_bytes();
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 5 << 4 | 1, hi, lo, 0]);
        p.resize(1200, 0xa5);
        p
    }

    // No sampled decryption in these tests (the packets are not encrypted).
    const NO_SAMPLE: Receipt = Receipt {
        sample: u64::MAX,
        measuring: true,
    };

    #[test]
    fn loss_is_counted_from_sequence_gaps_across_the_16_bit_wrap() {
        let mut s = Stream::new(1, Kind::Video);
        for seq in [65_533u16, 65_534, 0, 1, 3, 2] {
            s.record(seq, Instant::now());
        }
        assert_eq!(s.expected(), 7); // 65533 ..= 3
        assert_eq!(s.received, 6);
    }

    #[test]
    fn an_uncapped_subscriber_sees_each_packet_on_arrival_and_records_its_transport_seq() {
        let mut rx = inbound(vec![Stream::new(7, Kind::Video)]);
        rx.enable_feedback(Some(5));
        let mut c = counters();
        let t = now_ns();
        for k in 0..10u16 {
            rx.on_datagram(&packet(7, 100 + k, k), &mut c, &NO_SAMPLE, Some(t));
        }
        rx.on_datagram(&packet(99, 1, 10), &mut c, &NO_SAMPLE, Some(t)); // a probe
        assert_eq!((c.packets, rx.streams[0].received), (10, 10));
        assert_eq!(rx.delivered_bytes, 11 * 1200);
        assert!(rx.in_flight.is_empty());
        // The first tick after the report time sends RR + transport-cc, protected.
        let now = Instant::now() + Duration::from_secs(2);
        let rtcp = rx.tick(now, now_ns(), &mut c).expect("feedback due");
        assert!(rtcp.len() > 8 + 24 + 20);
        let counts = rx.feedback_counts();
        assert_eq!((counts.receiver_reports, counts.transport_cc), (1, 1));
    }

    #[test]
    fn a_capped_subscriber_sees_packets_at_their_departure_and_never_sees_dropped_ones() {
        let mut rx = inbound(vec![Stream::new(7, Kind::Video)]);
        rx.enable_feedback(Some(5));
        rx.cap_downlink(400);
        let mut c = counters();
        // 40 packets at once into 400 kbit/s: 26 fit (see downlink.rs), 14 are dropped.
        let t = now_ns();
        for k in 0..40u16 {
            rx.on_datagram(&packet(7, 100 + k, k), &mut c, &NO_SAMPLE, Some(t));
        }
        assert_eq!(rx.downlink_drops(), 14);
        // The first 13 leave at once (the burst); the rest are still queued.
        assert_eq!(rx.streams[0].received, 13);
        assert_eq!(rx.in_flight.len(), 13);
        // 300 ms later every admitted one has departed, at its own time.
        let later = t + 300_000_000;
        let _ = rx.tick(instant_of(later), later, &mut c);
        assert!(rx.in_flight.is_empty());
        assert_eq!(rx.streams[0].received, 26);
        assert_eq!(
            rx.streams[0].expected(),
            26,
            "the tail was dropped, not a gap yet"
        );
        assert_eq!(rx.streams[0].last_at, Some(instant_of(t + 296_320_000)));
        // The next packet after the drops makes a gap of 14: loss, and NACKed.
        let next = later + 100_000_000;
        rx.on_datagram(&packet(7, 140, 40), &mut c, &NO_SAMPLE, Some(next));
        assert_eq!(rx.streams[0].expected() - rx.streams[0].received, 14);
        let _ = rx.tick(instant_of(next + 10_000_000), next + 10_000_000, &mut c);
        assert_eq!(rx.feedback_counts().nacked_sequences, 14);
    }
}
