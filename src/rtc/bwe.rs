//! Send-side bandwidth estimation from a subscriber's transport-cc feedback, after GCC
//! (draft-ietf-rmcat-gcc-02): a delay-based estimate (trendline of queuing delay, adaptive
//! threshold overuse detector, AIMD rate control) and a loss-based one; the estimate is the
//! lower of the two. Sans-IO: fed the packets a transport sends and the feedback it receives,
//! with instants, so tests drive it with a simulated link (src/rtc/bwe_tests.rs).
//!
//! Each recv transport owns one (room/adapt.rs), fed from the packet path.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sent packets remembered by transport-wide sequence number (a power of two): over a second
/// at 10 Mbit/s, while feedback comes every 100 ms; 16 KiB per transport.
const SENT_WINDOW: usize = 1024;
/// Packets sent within this of a group's first belong to the group (one burst).
const GROUP_US: i64 = 5_000;
/// Trendline regression window (groups) and the smoothing of the accumulated delay.
const TRENDLINE_WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const TRENDLINE_GAIN: f64 = 4.0;
/// Adaptive threshold (ms) and its gains.
const THRESHOLD_INITIAL: f64 = 12.5;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// Overuse must last this long before it counts.
const OVERUSE_TIME_US: f64 = 10_000.0;
/// Acknowledged bitrate window.
const ACKED_WINDOW_US: i64 = 500_000;
/// Decreases at most this often, to this share of the acknowledged rate.
const DECREASE_INTERVAL_US: i64 = 300_000;
const BETA: f64 = 0.85;
/// Multiplicative increase per second far from the last decrease, additive share near it.
const INCREASE_PER_S: f64 = 0.25;
const NEAR_INCREASE_PER_S: f64 = 0.04;
/// Loss: above the high mark the loss-based estimate falls, below the low mark it may rise.
const LOSS_HIGH: f64 = 0.10;
const LOSS_LOW: f64 = 0.02;
/// Packets a loss fraction is computed over (several feedbacks if needed).
const LOSS_MIN_PACKETS: u32 = 20;
/// Without feedback this long (while sending), the estimate falls by `GAP_CUT` per interval.
pub const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(1);
const GAP_CUT: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BweError {
    /// Not a transport-cc feedback packet, or one whose fields do not add up.
    Malformed,
}

/// Appends the packets a transport-cc feedback reports (RTCP PT 205 FMT 15, the whole RTCP
/// packet) to `out`: transport-wide sequence number and arrival time in µs on the receiver's
/// clock (None: not received). Bounded by the packet's own length; never panics.
pub fn parse_feedback(packet: &[u8], out: &mut Vec<(u16, Option<i64>)>) -> Result<(), BweError> {
    if packet.len() < 20 || packet[0] >> 6 != 2 || packet[0] & 0x1f != 15 || packet[1] != 205 {
        return Err(BweError::Malformed);
    }
    let words = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let len = (words + 1) * 4;
    if len > packet.len() || len < 20 {
        return Err(BweError::Malformed);
    }
    let packet = &packet[..len];
    let base = u16::from_be_bytes([packet[12], packet[13]]);
    let count = usize::from(u16::from_be_bytes([packet[14], packet[15]]));
    let reference = i32::from_be_bytes([packet[16], packet[17], packet[18], 0]) >> 8;
    // The status chunks come first, then one receive delta per received packet: walk the
    // chunks once to find where the deltas start, then again to read them (no allocation).
    let deltas_at = for_each_symbol(packet, count, |_| Ok(()))?;
    let start = out.len();
    let mut at = deltas_at;
    let mut arrival = i64::from(reference) * 64_000;
    let mut seq = base;
    let walked = for_each_symbol(packet, count, |symbol| {
        let delta = match symbol {
            0 => {
                out.push((seq, None));
                seq = seq.wrapping_add(1);
                return Ok(());
            }
            1 => {
                let d = *packet.get(at).ok_or(BweError::Malformed)?;
                at += 1;
                i64::from(d)
            }
            2 => {
                let d = packet.get(at..at + 2).ok_or(BweError::Malformed)?;
                at += 2;
                i64::from(i16::from_be_bytes([d[0], d[1]]))
            }
            _ => return Err(BweError::Malformed),
        };
        arrival += delta * 250;
        out.push((seq, Some(arrival)));
        seq = seq.wrapping_add(1);
        Ok(())
    });
    if walked.is_err() {
        out.truncate(start);
    }
    walked.map(|_| ())
}

/// Calls `f` with each of the first `count` packet status symbols (0 not received, 1 small
/// delta, 2 large delta, 3 reserved) of the chunks from byte 20; returns where the chunks end.
fn for_each_symbol(
    packet: &[u8],
    count: usize,
    mut f: impl FnMut(u8) -> Result<(), BweError>,
) -> Result<usize, BweError> {
    let mut at = 20;
    let mut seen = 0;
    while seen < count {
        let chunk = packet.get(at..at + 2).ok_or(BweError::Malformed)?;
        let chunk = u16::from_be_bytes([chunk[0], chunk[1]]);
        at += 2;
        if chunk & 0x8000 == 0 {
            let symbol = ((chunk >> 13) & 0x3) as u8;
            let run = usize::from(chunk & 0x1fff).min(count - seen);
            for _ in 0..run {
                f(symbol)?;
            }
            seen += run;
        } else if chunk & 0x4000 == 0 {
            for k in 0..14.min(count - seen) {
                f(((chunk >> (13 - k)) & 1) as u8)?;
            }
            seen += 14.min(count - seen);
        } else {
            for k in 0..7.min(count - seen) {
                f(((chunk >> (12 - 2 * k)) & 3) as u8)?;
            }
            seen += 7.min(count - seen);
        }
    }
    Ok(at)
}

#[derive(Debug, Clone, Copy)]
pub struct BweConfig {
    pub initial_bps: u64,
    pub min_bps: u64,
    pub max_bps: u64,
}

impl Default for BweConfig {
    fn default() -> Self {
        Self {
            initial_bps: 600_000,
            min_bps: 50_000,
            max_bps: 10_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Normal,
    Overuse,
    Underuse,
}

#[derive(Clone, Copy, Default)]
struct Sent {
    seq: u16,
    size: u16,
    at_us: i64,
    valid: bool,
    /// Probe padding, not media.
    padding: bool,
}

#[derive(Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_arrival_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateState {
    Hold,
    Increase,
    Decrease,
}

/// One send transport's estimate.
pub struct Estimator {
    cfg: BweConfig,
    epoch: Instant,
    sent: Box<[Sent; SENT_WINDOW]>,
    group: Option<Group>,
    prev_group: Option<Group>,
    first_arrival_us: Option<i64>,
    acc_delay_ms: f64,
    smoothed_ms: f64,
    history: VecDeque<(f64, f64)>,
    deltas: u32,
    threshold_ms: f64,
    last_threshold_us: Option<i64>,
    overuse_us: f64,
    overuse_count: u32,
    prev_trend: f64,
    signal: Signal,
    state: RateState,
    delay_bps: f64,
    loss_bps: f64,
    last_update_us: Option<i64>,
    last_decrease_us: Option<i64>,
    last_decrease_bps: Option<f64>,
    /// (arrival µs, bytes) of received packets in the acknowledged window.
    /// (arrival µs, bytes, padding) of received packets in the acknowledged window.
    acked: VecDeque<(i64, u16, bool)>,
    acked_bytes: u64,
    /// Of them, media (not probe padding).
    acked_media_bytes: u64,
    acked_newest_us: i64,
    loss_packets: u32,
    loss_lost: u32,
    last_loss_cut_us: Option<i64>,
    last_feedback_us: Option<i64>,
    last_sent_us: Option<i64>,
    last_gap_cut_us: Option<i64>,
    /// One-way delay (arrival − send, clocks unaligned) of the newest packet reported, and the
    /// smallest seen in this and the previous period of [`BASE_DELAY_PERIOD_US`].
    delay_us: Option<i64>,
    base_delay: [Option<i64>; 2],
    base_period_start_us: i64,
}

/// The base (queue-free) one-way delay is the minimum over the last one to two of these.
const BASE_DELAY_PERIOD_US: i64 = 5_000_000;

impl Estimator {
    pub fn new(cfg: BweConfig, now: Instant) -> Self {
        let initial = cfg.initial_bps.clamp(cfg.min_bps, cfg.max_bps) as f64;
        Self {
            cfg,
            epoch: now,
            sent: Box::new([Sent::default(); SENT_WINDOW]),
            group: None,
            prev_group: None,
            first_arrival_us: None,
            acc_delay_ms: 0.0,
            smoothed_ms: 0.0,
            history: VecDeque::with_capacity(TRENDLINE_WINDOW + 1),
            deltas: 0,
            threshold_ms: THRESHOLD_INITIAL,
            last_threshold_us: None,
            overuse_us: 0.0,
            overuse_count: 0,
            prev_trend: 0.0,
            signal: Signal::Normal,
            state: RateState::Hold,
            delay_bps: initial,
            loss_bps: initial,
            last_update_us: None,
            last_decrease_us: None,
            last_decrease_bps: None,
            acked: VecDeque::with_capacity(SENT_WINDOW),
            acked_bytes: 0,
            acked_media_bytes: 0,
            acked_newest_us: i64::MIN,
            loss_packets: 0,
            loss_lost: 0,
            last_loss_cut_us: None,
            last_feedback_us: None,
            last_sent_us: None,
            last_gap_cut_us: None,
            delay_us: None,
            base_delay: [None; 2],
            base_period_start_us: 0,
        }
    }

    fn us(&self, t: Instant) -> i64 {
        t.saturating_duration_since(self.epoch).as_micros() as i64
    }

    /// The estimate in bit/s.
    pub fn estimate_bps(&self) -> u64 {
        (self.delay_bps.min(self.loss_bps) as u64).clamp(self.cfg.min_bps, self.cfg.max_bps)
    }

    /// How long ago the estimate was last cut (for delay, loss or missing feedback), if ever.
    pub fn since_cut(&self, now: Instant) -> Option<Duration> {
        let last = [
            self.last_decrease_us,
            self.last_loss_cut_us,
            self.last_gap_cut_us,
        ]
        .into_iter()
        .flatten()
        .max()?;
        Some(Duration::from_micros((self.us(now) - last).max(0) as u64))
    }

    /// The delay detector's last verdict.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The bit rate the receiver acknowledged over the last 500 ms of arrivals, if known.
    pub fn acked_bps(&self) -> Option<f64> {
        self.acked_rate(self.acked_bytes)
    }

    /// The same for media alone (probe padding left out): what the sender itself uses.
    fn acked_media_bps(&self) -> Option<f64> {
        self.acked_rate(self.acked_media_bytes)
    }

    fn acked_rate(&self, bytes: u64) -> Option<f64> {
        let (first, ..) = *self.acked.front()?;
        let (last, ..) = *self.acked.back()?;
        let span = (last - first).max(ACKED_WINDOW_US / 5);
        Some(bytes as f64 * 8.0 * 1e6 / span as f64)
    }

    /// A packet with transport-wide sequence number `seq` and `size` bytes left at `now`.
    pub fn on_sent(&mut self, seq: u16, size: usize, now: Instant) {
        self.record_sent(seq, size, now, false);
    }

    /// A probe's padding packet left: it counts for the delay and the acknowledged rate, but
    /// not towards what the estimate may grow to without a probe (media's own use).
    pub fn on_sent_padding(&mut self, seq: u16, size: usize, now: Instant) {
        self.record_sent(seq, size, now, true);
    }

    fn record_sent(&mut self, seq: u16, size: usize, now: Instant, padding: bool) {
        let at_us = self.us(now);
        self.sent[usize::from(seq) % SENT_WINDOW] = Sent {
            seq,
            size: size.min(usize::from(u16::MAX)) as u16,
            at_us,
            valid: true,
            padding,
        };
        self.last_sent_us = Some(at_us);
    }

    /// Feedback (from [`parse_feedback`]) arrived at `now`.
    pub fn on_feedback(&mut self, packets: &[(u16, Option<i64>)], now: Instant) {
        let now_us = self.us(now);
        self.last_feedback_us = Some(now_us);
        self.last_gap_cut_us = None;
        for &(seq, arrival) in packets {
            let slot = usize::from(seq) % SENT_WINDOW;
            let sent = self.sent[slot];
            if !sent.valid || sent.seq != seq {
                continue;
            }
            self.sent[slot].valid = false;
            self.loss_packets += 1;
            let Some(arrival_us) = arrival else {
                self.loss_lost += 1;
                continue;
            };
            self.ack(arrival_us, sent.size, sent.padding);
            self.packet_arrived(sent.at_us, arrival_us);
        }
        self.update_loss(now_us);
        self.update_rate(now_us);
    }

    /// A probe showed the receiver taking `bps`: the estimate rises to it at once (GCC's probe
    /// result) unless the delay detector sees overuse. Never lowers the estimate.
    pub fn on_probe_result(&mut self, bps: u64, now: Instant) {
        if self.signal == Signal::Overuse {
            return;
        }
        let bps = (bps as f64).min(self.cfg.max_bps as f64);
        if bps > self.delay_bps {
            self.delay_bps = bps;
            self.loss_bps = self.loss_bps.max(bps);
            self.last_update_us = Some(self.us(now));
        }
    }

    /// Keeps the estimate at `bps` or above: the overuse and loss that followed a failed probe
    /// were the probe's own doing, not the link getting worse than before it.
    pub fn hold_at_least(&mut self, bps: u64) {
        let bps = bps as f64;
        self.delay_bps = self.delay_bps.max(bps);
        self.loss_bps = self.loss_bps.max(bps);
    }

    /// Sets the estimate to `bps`: a failed probe's rise (a shaper's burst allowance passing
    /// for capacity) is taken back.
    pub fn set_estimate(&mut self, bps: u64) {
        let bps = (bps as f64).clamp(self.cfg.min_bps as f64, self.cfg.max_bps as f64);
        self.delay_bps = bps;
        self.loss_bps = bps;
    }

    /// Time passing without feedback: after [`FEEDBACK_TIMEOUT`] while sending, the estimate
    /// falls (the link may be gone); it never rises without feedback.
    pub fn on_tick(&mut self, now: Instant) {
        let now_us = self.us(now);
        let timeout = FEEDBACK_TIMEOUT.as_micros() as i64;
        let since = self.last_feedback_us.unwrap_or(0);
        let sending = self.last_sent_us.is_some_and(|t| now_us - t < timeout);
        if now_us - since >= timeout {
            // The queuing delay last reported is no news of the link any more.
            self.delay_us = None;
        }
        if !sending || now_us - since < timeout {
            return;
        }
        if self.last_gap_cut_us.is_none_or(|t| now_us - t >= timeout) {
            self.delay_bps = (self.delay_bps * GAP_CUT).max(self.cfg.min_bps as f64);
            self.loss_bps = self.loss_bps.min(self.delay_bps);
            self.last_gap_cut_us = Some(now_us);
            self.state = RateState::Hold;
            self.last_update_us = Some(now_us);
        }
    }

    fn ack(&mut self, arrival_us: i64, size: u16, padding: bool) {
        if self.acked.len() == self.acked.capacity() {
            if let Some((_, b, pad)) = self.acked.pop_front() {
                self.forget_acked(b, pad);
            }
        }
        self.acked.push_back((arrival_us, size, padding));
        self.acked_bytes += u64::from(size);
        if !padding {
            self.acked_media_bytes += u64::from(size);
        }
        self.acked_newest_us = self.acked_newest_us.max(arrival_us);
        let newest = self.acked_newest_us;
        while let Some(&(t, b, pad)) = self.acked.front() {
            if newest - t <= ACKED_WINDOW_US {
                break;
            }
            self.acked.pop_front();
            self.forget_acked(b, pad);
        }
    }

    fn forget_acked(&mut self, bytes: u16, padding: bool) {
        self.acked_bytes -= u64::from(bytes);
        if !padding {
            self.acked_media_bytes -= u64::from(bytes);
        }
    }

    /// How much longer than its queue-free minimum the newest reported packet took (ms): the
    /// queue building at the bottleneck.
    pub fn queuing_delay_ms(&self) -> Option<f64> {
        let d = self.delay_us?;
        let base = self.base_delay.iter().flatten().min()?;
        Some((d - base) as f64 / 1000.0)
    }

    fn track_delay(&mut self, send_us: i64, arrival_us: i64) {
        let d = arrival_us - send_us;
        self.delay_us = Some(d);
        if send_us - self.base_period_start_us >= BASE_DELAY_PERIOD_US {
            self.base_delay = [self.base_delay[1], None];
            self.base_period_start_us = send_us;
        }
        let cur = &mut self.base_delay[1];
        *cur = Some(cur.map_or(d, |b| b.min(d)));
    }

    /// Groups packets by send time; each completed group gives one delay-gradient sample.
    fn packet_arrived(&mut self, send_us: i64, arrival_us: i64) {
        self.track_delay(send_us, arrival_us);
        let Some(group) = self.group.as_mut() else {
            self.group = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                last_arrival_us: arrival_us,
            });
            return;
        };
        if send_us < group.first_send_us {
            return; // reordered across groups
        }
        if send_us - group.first_send_us <= GROUP_US {
            group.last_send_us = group.last_send_us.max(send_us);
            group.last_arrival_us = group.last_arrival_us.max(arrival_us);
            return;
        }
        let done = *group;
        self.group = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            last_arrival_us: arrival_us,
        });
        if let Some(prev) = self.prev_group {
            let send_delta = done.last_send_us - prev.last_send_us;
            let arrival_delta = done.last_arrival_us - prev.last_arrival_us;
            if send_delta > 0 {
                self.trendline(
                    (arrival_delta - send_delta) as f64 / 1000.0,
                    send_delta as f64,
                    done.last_arrival_us,
                );
            }
        }
        self.prev_group = Some(done);
    }

    fn trendline(&mut self, delay_delta_ms: f64, send_delta_us: f64, arrival_us: i64) {
        let first = *self.first_arrival_us.get_or_insert(arrival_us);
        self.deltas = (self.deltas + 1).min(1000);
        self.acc_delay_ms += delay_delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.acc_delay_ms;
        self.history
            .push_back(((arrival_us - first) as f64 / 1000.0, self.smoothed_ms));
        if self.history.len() > TRENDLINE_WINDOW {
            self.history.pop_front();
        }
        let trend = if self.history.len() == TRENDLINE_WINDOW {
            slope(&self.history).unwrap_or(self.prev_trend)
        } else {
            self.prev_trend
        };
        self.detect(trend, send_delta_us, arrival_us);
    }

    fn detect(&mut self, trend: f64, send_delta_us: f64, now_us: i64) {
        let modified = f64::from(self.deltas.min(60)) * trend * TRENDLINE_GAIN;
        if modified > self.threshold_ms {
            self.overuse_us += send_delta_us;
            self.overuse_count += 1;
            if self.overuse_us > OVERUSE_TIME_US
                && self.overuse_count > 1
                && trend >= self.prev_trend
            {
                self.overuse_us = 0.0;
                self.overuse_count = 0;
                self.signal = Signal::Overuse;
            }
        } else if modified < -self.threshold_ms {
            self.overuse_us = 0.0;
            self.overuse_count = 0;
            self.signal = Signal::Underuse;
        } else {
            self.overuse_us = 0.0;
            self.overuse_count = 0;
            self.signal = Signal::Normal;
        }
        self.prev_trend = trend;
        // Adaptive threshold (skip outliers far above it).
        let m = modified.abs();
        if m <= self.threshold_ms + 15.0 {
            let k = if m < self.threshold_ms { K_DOWN } else { K_UP };
            let dt_ms = self
                .last_threshold_us
                .map_or(0.0, |t| ((now_us - t) as f64 / 1000.0).clamp(0.0, 100.0));
            self.threshold_ms =
                (self.threshold_ms + k * (m - self.threshold_ms) * dt_ms).clamp(6.0, 600.0);
        }
        self.last_threshold_us = Some(now_us);
    }

    fn update_loss(&mut self, now_us: i64) {
        if self.loss_packets < LOSS_MIN_PACKETS {
            return;
        }
        let loss = f64::from(self.loss_lost) / f64::from(self.loss_packets);
        self.loss_packets = 0;
        self.loss_lost = 0;
        let current = self.delay_bps.min(self.loss_bps);
        if loss > LOSS_HIGH {
            let due = self
                .last_loss_cut_us
                .is_none_or(|t| now_us - t >= DECREASE_INTERVAL_US);
            if due {
                // Never far below what the receiver was shown to take: the loss of an
                // overshoot (a queue overflowing) says the link is full, not that it shrank.
                let floor = self.acked_bps().map_or(0.0, |a| BETA * a).min(current);
                self.loss_bps = (current * (1.0 - 0.5 * loss))
                    .max(floor)
                    .max(self.cfg.min_bps as f64);
                self.last_loss_cut_us = Some(now_us);
            }
        } else if loss < LOSS_LOW {
            // Loss does not limit: follow the delay-based estimate up.
            self.loss_bps = self.loss_bps.max(self.delay_bps);
        }
    }

    fn update_rate(&mut self, now_us: i64) {
        let dt_s = self
            .last_update_us
            .map_or(0.0, |t| ((now_us - t) as f64 / 1e6).clamp(0.0, 1.0));
        self.last_update_us = Some(now_us);
        self.state = match (self.signal, self.state) {
            (Signal::Overuse, _) => RateState::Decrease,
            (Signal::Underuse, _) => RateState::Hold,
            (Signal::Normal, RateState::Hold | RateState::Increase) => RateState::Increase,
            (Signal::Normal, RateState::Decrease) => RateState::Hold,
        };
        let acked = self.acked_bps();
        match self.state {
            RateState::Decrease => {
                let due = self
                    .last_decrease_us
                    .is_none_or(|t| now_us - t >= DECREASE_INTERVAL_US);
                if due {
                    // To a little below what the receiver acknowledged (GCC), never up; cuts
                    // while a queue drains do not compound below it.
                    let target = BETA * acked.unwrap_or(self.delay_bps);
                    self.delay_bps = self.delay_bps.min(target).max(self.cfg.min_bps as f64);
                    self.last_decrease_us = Some(now_us);
                    self.last_decrease_bps = Some(self.delay_bps);
                }
                self.state = RateState::Hold;
                // The detector's verdict is consumed: the next one decides again.
                self.signal = Signal::Normal;
            }
            RateState::Increase => {
                let near = self
                    .last_decrease_bps
                    .is_some_and(|d| self.delay_bps < d * 1.5);
                let rate = if near {
                    NEAR_INCREASE_PER_S
                } else {
                    INCREASE_PER_S
                };
                let mut next = self.delay_bps * (1.0 + rate * dt_s);
                // Never far above what the media itself has been shown to take: the padding
                // of a probe that failed does not lift the estimate after it (only a probe's
                // success does, through `on_probe_result`).
                if let Some(acked) = self.acked_media_bps() {
                    next = next
                        .min(1.5 * acked + 10_000.0)
                        .max(self.delay_bps.min(next));
                }
                self.delay_bps = next.min(self.cfg.max_bps as f64);
            }
            RateState::Hold => {}
        }
    }
}

/// Least-squares slope of (x, y) points; None when the x values do not vary.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
#[path = "bwe_tests.rs"]
mod tests;
