//! `GET /metrics`: the counts and counters of `/api/stats` in the Prometheus text exposition
//! format (version 0.0.4), one series per worker (`worker` label) where the value is per
//! worker. Read from the workers' relaxed atomics like `/api/stats`; nothing here touches the
//! packet path.

use crate::stats::{Counted, WorkerStats, LATENCY_BUCKETS_NS};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds the exposition text family by family.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// One family with a sample per worker.
    fn per_worker(
        &mut self,
        workers: &[&WorkerStats],
        (name, kind, help): (&str, &str, &str),
        value: impl Fn(&WorkerStats) -> u64,
    ) {
        self.family(name, kind, help);
        for w in workers {
            self.sample(name, &format!("worker=\"{}\"", w.id), value(w));
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn load_usize(a: &AtomicUsize) -> u64 {
    a.load(Ordering::Relaxed) as u64
}

/// The live objects, per worker.
const GAUGES: [(&str, Counted, &str); 9] = [
    ("sfu_rooms", Counted::Room, "Rooms homed on the worker."),
    ("sfu_peers", Counted::Peer, "Peers hosted on the worker."),
    (
        "sfu_transports",
        Counted::Transport,
        "WebRTC transports on the worker.",
    ),
    (
        "sfu_producers",
        Counted::Producer,
        "Producers published on the worker.",
    ),
    (
        "sfu_consumers",
        Counted::Consumer,
        "Consumers on the worker.",
    ),
    (
        "sfu_room_replicas",
        Counted::RoomReplica,
        "Replicas of rooms homed on another worker.",
    ),
    (
        "sfu_piped_producers",
        Counted::PipedProducer,
        "Producers piped in from another worker.",
    ),
    (
        "sfu_data_producers",
        Counted::DataProducer,
        "Data producers (SCTP) on the worker.",
    ),
    (
        "sfu_data_consumers",
        Counted::DataConsumer,
        "Data consumers (SCTP) on the worker.",
    ),
];

type Counter = (&'static str, &'static str, fn(&WorkerStats) -> &AtomicU64);

/// Monotonic counters, per worker.
const COUNTERS: [Counter; 21] = [
    (
        "sfu_packets_in_total",
        "Datagrams received on the worker's media socket(s).",
        |s| &s.packets_in,
    ),
    (
        "sfu_packets_out_total",
        "Datagrams sent by the worker.",
        |s| &s.packets_out,
    ),
    (
        "sfu_bytes_in_total",
        "Bytes received on the worker's media socket(s).",
        |s| &s.bytes_in,
    ),
    ("sfu_bytes_out_total", "Bytes sent by the worker.", |s| {
        &s.bytes_out
    }),
    (
        "sfu_panics_total",
        "Panics caught while handling a packet or job (the object involved was closed).",
        |s| &s.panics,
    ),
    (
        "sfu_nacks_received_total",
        "NACKed packets asked for by subscribers.",
        |s| &s.nacks_received,
    ),
    (
        "sfu_retransmissions_sent_total",
        "Packets retransmitted to subscribers.",
        |s| &s.retransmissions_sent,
    ),
    (
        "sfu_nacks_sent_total",
        "Packets the worker asked publishers to resend.",
        |s| &s.nacks_sent,
    ),
    (
        "sfu_rtx_packets_received_total",
        "RTX packets received from publishers.",
        |s| &s.rtx_received,
    ),
    (
        "sfu_retransmit_cache_denied_total",
        "Packets not cached for retransmission (cache budget full).",
        |s| &s.retransmit_cache_denied,
    ),
    (
        "sfu_egress_dropped_packets_total",
        "Packets dropped by a peer's egress rate limit.",
        |s| &s.egress_dropped_packets,
    ),
    (
        "sfu_egress_dropped_bytes_total",
        "Bytes dropped by a peer's egress rate limit.",
        |s| &s.egress_dropped_bytes,
    ),
    (
        "sfu_keyframe_requests_sent_total",
        "Key-frame requests (PLI/FIR) sent to publishers.",
        |s| &s.keyframe_requests_sent,
    ),
    (
        "sfu_bandwidth_pauses_total",
        "Consumers whose video was paused because the subscriber's bandwidth fit no layer.",
        |s| &s.bandwidth_pauses,
    ),
    (
        "sfu_padding_packets_sent_total",
        "Padding packets sent to probe a subscriber's link before a layer goes up.",
        |s| &s.padding_sent,
    ),
    (
        "sfu_pipe_packets_out_total",
        "Packets piped to other workers.",
        |s| &s.pipe_packets_out,
    ),
    (
        "sfu_pipe_packets_in_total",
        "Packets piped in from other workers.",
        |s| &s.pipe_packets_in,
    ),
    (
        "sfu_pipe_drops_total",
        "Piped packets dropped (a full worker-to-worker queue).",
        |s| &s.pipe_drops,
    ),
    (
        "sfu_tuple_switches_total",
        "ICE selected-pair switches (a client's address changed).",
        |s| &s.tuple_switches,
    ),
    (
        "sfu_ice_tcp_refused_total",
        "ICE-TCP connections refused over the connection limits.",
        |s| &s.tcp_refused,
    ),
    (
        "sfu_ice_tcp_send_dropped_total",
        "Packets dropped because an ICE-TCP connection's send queue was full.",
        |s| &s.tcp_send_dropped,
    ),
];

/// The exposition for these workers and `websockets` open signaling connections.
pub fn render(workers: &[&WorkerStats], websockets: usize) -> String {
    let mut e = Exposition {
        out: String::with_capacity(16 * 1024),
    };
    e.family(
        "sfu_websocket_connections",
        "gauge",
        "Open signaling WebSockets.",
    );
    e.sample("sfu_websocket_connections", "", websockets);
    for (name, counted, help) in GAUGES {
        e.per_worker(workers, (name, "gauge", help), |w| w.get(counted) as u64);
    }
    for (name, help, field) in COUNTERS {
        e.per_worker(workers, (name, "counter", help), |w| load(field(w)));
    }
    e.per_worker(
        workers,
        (
            "sfu_retransmit_cache_bytes",
            "gauge",
            "Bytes held for retransmission.",
        ),
        |w| load(&w.retransmit_cache_bytes),
    );
    e.per_worker(
        workers,
        (
            "sfu_ice_tcp_connections",
            "gauge",
            "Open ICE-TCP connections.",
        ),
        |w| load_usize(&w.tcp_connections),
    );
    let name = "sfu_forward_latency_seconds";
    e.family(
        name,
        "histogram",
        "Time from a forwarded packet's arrival on the worker's socket until the send call carrying its copy returned, since start.",
    );
    for w in workers {
        let id = w.id;
        for (bucket, le) in w.latency_buckets.iter().zip(LATENCY_BUCKETS_NS) {
            let labels = format!("worker=\"{id}\",le=\"{}\"", le as f64 / 1e9);
            e.sample(&format!("{name}_bucket"), &labels, load(bucket));
        }
        let count = load(&w.latency_total.samples);
        e.sample(
            &format!("{name}_bucket"),
            &format!("worker=\"{id}\",le=\"+Inf\""),
            count,
        );
        let labels = format!("worker=\"{id}\"");
        let sum = load(&w.latency_sum_ns) as f64 / 1e9;
        e.sample(&format!("{name}_sum"), &labels, sum);
        e.sample(&format!("{name}_count"), &labels, count);
    }
    let name = "sfu_forward_latency_window_p99_seconds";
    e.family(
        name,
        "gauge",
        "p99 forwarding latency over the last complete window, by stage (handoff: arrival until handed to the kernel; kernel: the send call; total: both).",
    );
    for w in workers {
        let stages = [
            ("handoff", &w.window_handoff),
            ("kernel", &w.window_kernel),
            ("total", &w.window_total),
        ];
        for (stage, p) in stages {
            let labels = format!("worker=\"{}\",stage=\"{stage}\"", w.id);
            e.sample(name, &labels, load(&p.p99_ns) as f64 / 1e9);
        }
    }
    e.out
}

/// The node's own state, after [`render`]'s families: draining, and in a cluster whether Redis
/// answered the last heartbeat and how many live nodes it listed.
pub fn render_node(draining: bool, cluster: Option<(bool, usize)>) -> String {
    let mut e = Exposition {
        out: String::with_capacity(512),
    };
    e.family(
        "sfu_draining",
        "gauge",
        "1 while the server drains after SIGTERM (no new rooms).",
    );
    e.sample("sfu_draining", "", u8::from(draining));
    if let Some((connected, nodes)) = cluster {
        e.family(
            "sfu_cluster_redis_connected",
            "gauge",
            "1 if the last heartbeat reached Redis (0: new rooms cannot be placed).",
        );
        e.sample("sfu_cluster_redis_connected", "", u8::from(connected));
        e.family(
            "sfu_cluster_nodes",
            "gauge",
            "Live nodes of the cluster as of the last heartbeat.",
        );
        e.sample("sfu_cluster_nodes", "", nodes);
    }
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_typed_once_and_every_sample_belongs_to_one() {
        let a = WorkerStats::new(0, Some(0));
        let b = WorkerStats::new(1, None);
        a.packets_in.store(7, Ordering::Relaxed);
        a.latency_total.samples.store(3, Ordering::Relaxed);
        a.latency_buckets[0].store(2, Ordering::Relaxed);
        let text = render(&[&a, &b], 4) + &render_node(true, Some((false, 3)));
        assert!(text.contains("sfu_draining 1\n"));
        assert!(text.contains("sfu_cluster_redis_connected 0\n"));
        assert!(text.contains("sfu_cluster_nodes 3\n"));
        assert!(text.contains("sfu_packets_in_total{worker=\"0\"} 7\n"));
        assert!(text.contains("sfu_websocket_connections 4\n"));
        assert!(
            text.contains("sfu_forward_latency_seconds_bucket{worker=\"0\",le=\"0.00001\"} 2\n")
        );
        assert!(text.contains("sfu_forward_latency_seconds_bucket{worker=\"0\",le=\"+Inf\"} 3\n"));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_string()), "{name} typed twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_sum"))
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|f| typed.contains(*f))
                    .unwrap_or(name);
                assert!(typed.contains(family), "{line}: no TYPE before it");
            }
        }
    }
}
