//! Live counters of one worker, written by the worker, read by the signaling thread
//! (relaxed atomics: no locks, no effect on the packet path). `/api/stats` shows them
//! (src/signaling/http.rs turns them into JSON).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct WorkerStats {
    pub id: usize,
    pub core: Option<usize>,
    pub rooms: AtomicUsize,
    pub peers: AtomicUsize,
    pub transports: AtomicUsize,
    pub producers: AtomicUsize,
    pub consumers: AtomicUsize,
    /// Rooms homed on another worker that this worker hosts peers of (see docs/architecture.md,
    /// "Rooms spanning workers"), and the producers of other workers piped in for them.
    pub room_replicas: AtomicUsize,
    pub piped_producers: AtomicUsize,
    /// Data producers and consumers (src/room/data.rs).
    pub data_producers: AtomicUsize,
    pub data_consumers: AtomicUsize,
    /// Media handed to / received from other workers, and batches dropped because the
    /// receiving worker's queue was full.
    pub pipe_packets_out: AtomicU64,
    pub pipe_packets_in: AtomicU64,
    pub pipe_drops: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub panics: AtomicU64,
    /// Loss recovery: NACK packets received from consumers, packets retransmitted to them,
    /// NACK packets sent to producers, RTX packets received from producers.
    pub nacks_received: AtomicU64,
    pub retransmissions_sent: AtomicU64,
    pub nacks_sent: AtomicU64,
    pub rtx_received: AtomicU64,
    /// Limits on media abuse (src/room/limits.rs): bytes of retransmission caches held, caches
    /// refused because the budget was spent (NACKs for those encodings go unanswered), media
    /// dropped by a peer's egress cap, key-frame requests sent to producers, and selected ICE
    /// tuples changed after the new address proved consent with authenticated SRTP.
    pub retransmit_cache_bytes: AtomicU64,
    pub retransmit_cache_denied: AtomicU64,
    pub egress_dropped_packets: AtomicU64,
    pub egress_dropped_bytes: AtomicU64,
    pub keyframe_requests_sent: AtomicU64,
    /// Bandwidth adaptation (room/adapt.rs): consumers' video paused because the subscriber's
    /// estimate fit not even the lowest layer, and padding packets sent to probe a link.
    pub bandwidth_pauses: AtomicU64,
    pub padding_sent: AtomicU64,
    pub tuple_switches: AtomicU64,
    /// ICE-TCP (worker/tcp.rs): open connections; connections refused by the per-worker or
    /// per-IP limit; closed for never belonging to a transport (idle deadline); closed for
    /// bad framing; frames dropped because a connection's send queue was full.
    pub tcp_connections: AtomicUsize,
    pub tcp_refused: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    pub tcp_framing_errors: AtomicU64,
    pub tcp_send_dropped: AtomicU64,
    /// Forwarding latency since start (arrival → the send call carrying the copy returned),
    /// refreshed about once a second by the worker.
    pub latency_total: Percentiles,
    /// Cumulative forwarding-latency histogram for `/metrics`: samples ≤ each bound of
    /// [`LATENCY_BUCKETS_NS`], and the sum of all samples (ns).
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS_NS.len()],
    pub latency_sum_ns: AtomicU64,
    /// The same forwarding latency split in two (docs/architecture.md, "Latency"): arrival →
    /// the copy handed to the kernel (`handoff`, our work) and the send call itself
    /// (`kernel`), since start and over the last complete window of `window_secs`.
    pub handoff_total: Percentiles,
    pub kernel_total: Percentiles,
    pub window_handoff: Percentiles,
    pub window_kernel: Percentiles,
    pub window_total: Percentiles,
    pub window_secs: AtomicU64,
    /// Windows completed since start (0: the first is still running).
    pub windows: AtomicU64,
    /// Incremented by the worker's timer task every tick (250 ms): the signaling thread
    /// reports a worker whose heartbeat stopped as dead on `/healthz`.
    pub heartbeat: AtomicU64,
}

/// Percentiles of one latency histogram in nanoseconds, published by the worker.
#[derive(Debug, Default)]
pub struct Percentiles {
    pub p50_ns: AtomicU64,
    pub p99_ns: AtomicU64,
    pub p999_ns: AtomicU64,
    pub max_ns: AtomicU64,
    pub samples: AtomicU64,
}

impl Percentiles {
    /// Publishes `h`'s percentiles (all 0 for an empty histogram).
    pub fn publish(&self, h: &hdrhistogram::Histogram<u64>) {
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        self.p50_ns.store(q(0.5), Ordering::Relaxed);
        self.p99_ns.store(q(0.99), Ordering::Relaxed);
        self.p999_ns.store(q(0.999), Ordering::Relaxed);
        self.max_ns.store(h.max(), Ordering::Relaxed);
        self.samples.store(h.len(), Ordering::Relaxed);
    }
}

/// Upper bounds (ns) of the latency buckets `/metrics` exports (plus +Inf = all samples).
pub const LATENCY_BUCKETS_NS: [u64; 12] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
];

/// Object kinds counted live.
#[derive(Debug, Clone, Copy)]
pub enum Counted {
    Room,
    Peer,
    Transport,
    Producer,
    Consumer,
    RoomReplica,
    PipedProducer,
    DataProducer,
    DataConsumer,
}

impl WorkerStats {
    pub fn new(id: usize, core: Option<usize>) -> Self {
        Self {
            id,
            core,
            ..Default::default()
        }
    }

    fn counter(&self, c: Counted) -> &AtomicUsize {
        match c {
            Counted::Room => &self.rooms,
            Counted::Peer => &self.peers,
            Counted::Transport => &self.transports,
            Counted::Producer => &self.producers,
            Counted::Consumer => &self.consumers,
            Counted::RoomReplica => &self.room_replicas,
            Counted::PipedProducer => &self.piped_producers,
            Counted::DataProducer => &self.data_producers,
            Counted::DataConsumer => &self.data_consumers,
        }
    }

    pub fn inc(&self, c: Counted) {
        self.counter(c).fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self, c: Counted) {
        self.counter(c).fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes `n` off a live count (a room dropped with objects still in it).
    pub fn sub(&self, c: Counted, n: usize) {
        if n > 0 {
            self.counter(c).fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, c: Counted) -> usize {
        self.counter(c).load(Ordering::Relaxed)
    }
}
