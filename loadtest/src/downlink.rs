//! A capped subscriber downlink (`--downlink-kbps`), modelled like
//! `tc qdisc ... tbf rate N burst 16kb latency 300ms` on the path to the subscriber: a token
//! bucket in front of a queue, computed in virtual time (nothing sleeps per packet). Every
//! datagram gets a departure time, or is dropped when it would wait too long; the subscriber
//! then sees it at that departure time, as if it had arrived then.

/// Bytes that pass at once after a quiet spell (tbf `burst 16kb`: 16 KiB).
pub const BURST_BYTES: u64 = 16 * 1024;
/// Longest wait in the queue, beyond what the burst lets through (tbf `latency 300ms`).
pub const MAX_QUEUE_DELAY_NS: u64 = 300_000_000;

/// One subscriber's downlink: rate, burst and queue limit.
#[derive(Debug, Clone)]
pub struct Downlink {
    rate_bps: u64,
    burst_ns: u64,
    /// When the bucket would be full again had nothing more been sent (the theoretical
    /// arrival time of GCRA, the virtual-clock form of a token bucket), on the `now_ns` scale.
    full_at_ns: u64,
    pub dropped_packets: u64,
}

impl Downlink {
    pub fn new(rate_kbps: u32) -> Self {
        let rate_bps = u64::from(rate_kbps.max(1)) * 1000;
        Self {
            rate_bps,
            burst_ns: BURST_BYTES * 8 * 1_000_000_000 / rate_bps,
            full_at_ns: 0,
            dropped_packets: 0,
        }
    }

    /// The time a datagram of `size` bytes arriving at `arrival_ns` leaves the queue (at least
    /// `arrival_ns`), or `None`: it would wait more than [`MAX_QUEUE_DELAY_NS`], so it is
    /// dropped and takes no tokens. With a burst of zero this is exactly "departs at
    /// max(arrival, previous departure) + size × 8 / rate".
    pub fn admit(&mut self, arrival_ns: u64, size: usize) -> Option<u64> {
        let cost_ns = size as u64 * 8 * 1_000_000_000 / self.rate_bps;
        let full_at = self.full_at_ns.max(arrival_ns) + cost_ns;
        let departure = arrival_ns.max(full_at.saturating_sub(self.burst_ns));
        if departure - arrival_ns > MAX_QUEUE_DELAY_NS {
            self.dropped_packets += 1;
            return None;
        }
        self.full_at_ns = full_at;
        Some(departure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn an_idle_link_passes_a_burst_of_16_kib_without_delay() {
        let mut d = Downlink::new(400);
        let t0 = 1_000 * MS;
        // 13 × 1200 bytes = 15 600 bytes ≤ 16 KiB: all leave on arrival.
        for _ in 0..13 {
            assert_eq!(d.admit(t0, 1200), Some(t0));
        }
        // The 14th exceeds the burst by 416 bytes: it waits for their tokens (8.32 ms at 400k).
        assert_eq!(d.admit(t0, 1200), Some(t0 + 8_320_000));
    }

    #[test]
    fn a_packet_that_would_queue_beyond_300_ms_is_dropped_and_takes_no_tokens() {
        let mut d = Downlink::new(400);
        let t0 = 1_000 * MS;
        // At 400 kbit/s a 1200-byte packet takes 24 ms; the burst is worth 327.68 ms. Packet
        // k (from 1) of a burst arriving at once waits k × 24 − 327.68 ms: 26 fit in 300 ms.
        let mut admitted = Vec::new();
        for _ in 0..40 {
            if let Some(t) = d.admit(t0, 1200) {
                admitted.push(t);
            }
        }
        assert_eq!(admitted.len(), 26);
        assert_eq!(d.dropped_packets, 14);
        let last = *admitted.last().unwrap();
        assert!(last - t0 <= MAX_QUEUE_DELAY_NS && last - t0 > MAX_QUEUE_DELAY_NS - 24 * MS);
        // Once the queue has drained a little the next packet is admitted again, behind the
        // last admitted one (the dropped ones took no tokens).
        let later = t0 + 50 * MS;
        assert_eq!(d.admit(later, 1200), Some(last + 24 * MS));
    }

    #[test]
    fn the_rate_is_respected_under_a_sustained_overload() {
        // 1 Mbit/s offered (1200 bytes every 9.6 ms) into a 400 kbit/s link for 20 s.
        let mut d = Downlink::new(400);
        let t0 = 1_000 * MS;
        let mut departures = Vec::new();
        for k in 0..2084u64 {
            let arrival = t0 + k * 9_600_000;
            if let Some(t) = d.admit(arrival, 1200) {
                assert!(t >= arrival);
                assert!(t - arrival <= MAX_QUEUE_DELAY_NS);
                departures.push(t);
            }
        }
        // Departures are in order and, once the burst is spent, exactly 24 ms apart.
        assert!(departures.windows(2).all(|w| w[0] <= w[1]));
        let tail = &departures[departures.len() - 100..];
        assert!(tail.windows(2).all(|w| w[1] - w[0] == 24 * MS));
        // Delivered rate over the run: the link rate plus one burst, never more.
        let span = departures.last().unwrap() - t0;
        let bits = departures.len() as u64 * 1200 * 8;
        let limit = 400_000 * span / 1_000_000_000 + BURST_BYTES * 8 + 1200 * 8;
        assert!(bits <= limit, "{bits} bits in {span} ns");
        assert!(bits >= 400_000 * span / 1_000_000_000, "the link idled");
        assert!(d.dropped_packets > 1000);
    }

    #[test]
    fn traffic_below_the_rate_is_never_delayed() {
        let mut d = Downlink::new(1000);
        let t0 = 1_000 * MS;
        for k in 0..1000u64 {
            let arrival = t0 + k * 20 * MS; // 480 kbit/s
            assert_eq!(d.admit(arrival, 1200), Some(arrival));
        }
        assert_eq!(d.dropped_packets, 0);
    }
}
