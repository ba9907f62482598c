//! Forwarding latency of one worker, split in two: arrival → the copy handed to the kernel
//! (`handoff`: our work — finding the packet's producer, deciding, rewriting, protecting, and
//! waiting behind the copies queued before it) and the send call itself (`kernel`: for a
//! datagram, the `sendmmsg` that carried it, from entry to return). `total` is both.
//!
//! Only forwarded media counts (the receive path and media piped in from other workers), not
//! what the worker sends from jobs, DTLS events or timers. Kept since start and per window (10 s
//! by default): a window's percentiles show one step of a load, not its whole history.

use crate::stats::{WorkerStats, LATENCY_BUCKETS_NS};
use hdrhistogram::Histogram;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest latency a histogram records exactly (longer ones are clamped to it).
const HIGHEST_NS: u64 = 10_000_000_000;

struct Stages {
    handoff: Histogram<u64>,
    kernel: Histogram<u64>,
    total: Histogram<u64>,
}

impl Stages {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds");
        Self {
            handoff: h(),
            kernel: h(),
            total: h(),
        }
    }

    fn record(&mut self, handoff: u64, kernel: Option<u64>, n: u64) {
        let clamp = |ns: u64| ns.clamp(1, HIGHEST_NS);
        let _ = self.handoff.record_n(clamp(handoff), n);
        if let Some(k) = kernel {
            let _ = self.kernel.record_n(clamp(k), n);
        }
        let _ = self.total.record_n(clamp(handoff + kernel.unwrap_or(0)), n);
    }

    fn reset(&mut self) {
        self.handoff.reset();
        self.kernel.reset();
        self.total.reset();
    }
}

pub struct LatencyRecorder {
    window: Duration,
    window_start: Instant,
    since_start: Stages,
    current: Stages,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl LatencyRecorder {
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            window: window.max(Duration::from_secs(1)),
            window_start: now,
            since_start: Stages::new(),
            current: Stages::new(),
        }
    }

    /// `n` datagrams of packets that arrived at `arrival`, handed to the kernel in one call
    /// entered at `call` that returned at `returned`.
    pub fn sent(&mut self, arrival: Instant, call: Instant, returned: Instant, n: usize) {
        let handoff = ns(call.saturating_duration_since(arrival));
        let kernel = ns(returned.saturating_duration_since(call));
        self.since_start.record(handoff, Some(kernel), n as u64);
        self.current.record(handoff, Some(kernel), n as u64);
    }

    /// A frame queued at `at` for a connection's writer task (ICE-TCP): the hand-off is the
    /// queueing; the kernel's part happens in that task and is not measured here.
    pub fn queued(&mut self, arrival: Instant, at: Instant) {
        let handoff = ns(at.saturating_duration_since(arrival));
        self.since_start.record(handoff, None, 1);
        self.current.record(handoff, None, 1);
    }

    /// Publishes the since-start figures, and the window's once it is complete (then starts the
    /// next window).
    pub fn publish(&mut self, st: &WorkerStats, now: Instant) {
        let t = &self.since_start.total;
        st.latency_total.publish(t);
        for (bucket, &le) in st.latency_buckets.iter().zip(&LATENCY_BUCKETS_NS) {
            bucket.store(t.count_between(0, le), Ordering::Relaxed);
        }
        st.latency_sum_ns
            .store((t.mean() * t.len() as f64) as u64, Ordering::Relaxed);
        st.handoff_total.publish(&self.since_start.handoff);
        st.kernel_total.publish(&self.since_start.kernel);
        st.window_secs
            .store(self.window.as_secs(), Ordering::Relaxed);
        if now.saturating_duration_since(self.window_start) >= self.window {
            st.window_handoff.publish(&self.current.handoff);
            st.window_kernel.publish(&self.current.kernel);
            st.window_total.publish(&self.current.total);
            st.windows.fetch_add(1, Ordering::Relaxed);
            self.current.reset();
            self.window_start = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_and_kernel_are_split_and_a_window_shows_only_its_own_samples() {
        let t0 = Instant::now();
        let st = WorkerStats::new(0, None);
        let mut r = LatencyRecorder::new(Duration::from_secs(10), t0);
        let us = Duration::from_micros;
        // 10 datagrams: 20 µs of our work, then a 30 µs sendmmsg.
        r.sent(t0, t0 + us(20), t0 + us(50), 10);
        // A TCP frame queued after 5 µs.
        r.queued(t0, t0 + us(5));
        r.publish(&st, t0 + Duration::from_secs(1));
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(get(&st.handoff_total.samples), 11);
        assert_eq!(get(&st.kernel_total.samples), 10);
        assert_eq!(get(&st.latency_total.samples), 11);
        let near = |v: u64, want: u64| v.abs_diff(want) <= want / 100;
        assert!(near(get(&st.handoff_total.p99_ns), 20_000));
        assert!(near(get(&st.kernel_total.p50_ns), 30_000));
        assert!(near(get(&st.latency_total.p99_ns), 50_000));
        // The window is not complete yet: nothing published for it.
        assert_eq!(get(&st.windows), 0);
        assert_eq!(get(&st.window_total.samples), 0);

        r.publish(&st, t0 + Duration::from_secs(10));
        assert_eq!(get(&st.windows), 1);
        assert_eq!(get(&st.window_handoff.samples), 11);
        assert_eq!(get(&st.window_secs), 10);

        // The next window holds only what came after: one slow datagram.
        let t1 = t0 + Duration::from_secs(11);
        r.sent(t1, t1 + us(400), t1 + us(500), 1);
        r.publish(&st, t0 + Duration::from_secs(20));
        assert_eq!(get(&st.windows), 2);
        assert_eq!(get(&st.window_handoff.samples), 1);
        assert!(near(get(&st.window_handoff.p50_ns), 400_000));
        assert!(near(get(&st.window_kernel.max_ns), 100_000));
        // Since start keeps everything.
        assert_eq!(get(&st.handoff_total.samples), 12);
    }

    #[test]
    fn an_empty_window_publishes_zeros() {
        let t0 = Instant::now();
        let st = WorkerStats::new(0, None);
        let mut r = LatencyRecorder::new(Duration::from_secs(1), t0);
        r.publish(&st, t0 + Duration::from_secs(2));
        assert_eq!(st.window_total.p99_ns.load(Ordering::Relaxed), 0);
        assert_eq!(st.windows.load(Ordering::Relaxed), 1);
    }
}
