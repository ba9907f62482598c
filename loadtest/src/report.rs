//! Results of one step: text, JSON and the SVG plot of latency percentiles vs consumers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::cpu::ThreadCpu;
use crate::media::SendTotals;
use crate::media::{Kind, SIMULCAST_LAYERS};
use crate::receive::{ReceiveTotals, SubscriberSummary};
use crate::transport::Protocol;
use crate::Args;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

/// What the signaling sockets heard of the consumers' layers (`consumer-layers-changed`).
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// The spatial layer each consumer was last told it receives.
    pub current: HashMap<String, Option<u8>>,
    pub notifications: u64,
}

/// The RTCP the subscribers sent while measuring, and what it repaired.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcpReport {
    pub receiver_reports: u64,
    pub nack_packets: u64,
    pub nacked_sequences: u64,
    pub transport_cc_feedback: u64,
    /// Losses repaired by the server's retransmissions (RTX).
    pub repaired_packets: u64,
    /// Retransmissions received (useful or not), and other packets such as probes.
    pub rtx_packets: u64,
    pub other_packets: u64,
    pub send_errors: u64,
    /// `consumer-layers-changed` notifications over the whole run (setup included).
    pub layer_notifications: u64,
}

/// Video consumers per spatial layer ("0", "1", "2"; "none": no notification or a null one).
pub type LayerCounts = BTreeMap<String, usize>;

/// The figures of one class of subscribers: capped by `--downlink-kbps`, or not.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassReport {
    /// "uncapped" or "capped".
    pub class: &'static str,
    pub downlink_kbps: Option<u32>,
    pub subscribers: usize,
    pub consumers: usize,
    /// Sequence gaps of the consumers' own packets (before any retransmission).
    pub loss_percent: f64,
    /// What retransmissions did not repair.
    pub residual_loss_percent: f64,
    /// Datagrams the capped downlinks dropped.
    pub downlink_drops: u64,
    /// Everything delivered per subscriber (media, RTX, probes).
    pub received_kbps_per_subscriber: f64,
    /// The consumers' own video packets, per video consumer.
    pub video_kbps_per_consumer: f64,
    /// The layer the server last said each video consumer receives.
    pub layers_notified: LayerCounts,
    /// With --simulcast: the layer whose bitrate is nearest to what the server sent each video
    /// consumer (its received bitrate divided by the share of its packets that arrived).
    pub layers_by_bitrate: LayerCounts,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub label: String,
    pub url: String,
    /// What the media ran over: "udp", or "tcp" (ICE-TCP, `--tcp`).
    pub transport: Protocol,
    pub rooms: usize,
    /// Conference rooms: every peer publishes and consumes every other peer (`--conference`),
    /// so publishers and subscribers per room are the same peers.
    pub conference: bool,
    pub publishers_per_room: usize,
    pub subscribers_per_room: usize,
    pub consumers: usize,
    pub audio: bool,
    pub bitrate_kbps: u32,
    pub packet_size: usize,
    pub duration_s: f64,
    pub setup_s: f64,
    /// One-way latency publisher socket → subscriber socket (decrypted sample).
    pub latency: Latency,
    pub loss_percent: f64,
    /// Consumers that received nothing while measuring.
    pub silent_consumers: u64,
    /// Consumers whose media stopped before the end of the run.
    pub stalled_consumers: u64,
    pub decrypt_errors: u64,
    /// ICE-TCP connections that ended during the run (always 0 over UDP).
    pub closed_connections: u64,
    pub sent_packets_per_s: f64,
    pub received_packets_per_s: f64,
    pub received_mbit_per_s: f64,
    /// Server threads: every sfu-worker-N, and any other thread above 1% of a core.
    pub server_cpu: Vec<ThreadCpu>,
    /// The load generator's own CPU (all threads), % of one core.
    pub loadtest_cpu_percent: f64,
    /// /proc/loadavg at the end: the machine is shared, so say how busy it was.
    pub load_average: String,
    /// `workers[].forwardLatencyNs` from the server's /api/stats (our server only).
    pub server_forward_latency_ns: Vec<Value>,
    /// Video publishers send three simulcast encodings (`--simulcast`).
    pub simulcast: bool,
    /// Subscribers send RTCP (not `--no-feedback`).
    pub feedback: bool,
    pub rtcp: RtcpReport,
    /// Per class of subscriber: uncapped first, then capped (when `--downlink-kbps`).
    pub classes: Vec<ClassReport>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn loss(expected: u64, got: u64) -> f64 {
    if expected == 0 {
        return 100.0;
    }
    let l = expected.saturating_sub(got) as f64 * 100.0 / expected as f64;
    (l * 1000.0).round() / 1000.0
}

/// The simulcast layer whose nominal bitrate `kbps` is nearest to (on a log scale).
fn layer_by_bitrate(kbps: f64) -> usize {
    let mut best = 0;
    for (i, (_, nominal, _, _)) in SIMULCAST_LAYERS.iter().enumerate() {
        let d = (kbps.max(1.0) / f64::from(*nominal)).ln().abs();
        let b = (kbps.max(1.0) / f64::from(SIMULCAST_LAYERS[best].1))
            .ln()
            .abs();
        if d < b {
            best = i;
        }
    }
    best
}

impl ClassReport {
    fn of(args: &Args, capped: bool, subscribers: &[&SubscriberSummary], layers: &Layers) -> Self {
        let secs = args.duration.max(1e-3);
        let (mut expected, mut got, mut repaired, mut drops, mut delivered) = (0, 0, 0, 0, 0);
        let (mut video, mut video_bytes) = (0usize, 0u64);
        let mut notified = LayerCounts::new();
        let mut by_bitrate = LayerCounts::new();
        for s in subscribers {
            drops += s.downlink_drops;
            delivered += s.delivered_bytes;
            for c in &s.consumers {
                expected += c.expected;
                got += c.received;
                repaired += c.repaired;
                if c.kind != Kind::Video {
                    continue;
                }
                video += 1;
                video_bytes += c.bytes;
                let layer = layers.current.get(&c.consumer_id).copied().flatten();
                let key = layer.map_or_else(|| "none".to_owned(), |l| l.to_string());
                *notified.entry(key).or_default() += 1;
                if args.simulcast {
                    // What the server sent, not what got through the cap: the received
                    // bitrate over the share of packets that arrived.
                    let delivered = c.received.max(1) as f64 / c.expected.max(1) as f64;
                    let kbps = c.bytes as f64 * 8.0 / secs / 1000.0 / delivered;
                    *by_bitrate
                        .entry(layer_by_bitrate(kbps).to_string())
                        .or_default() += 1;
                }
            }
        }
        let per =
            |bytes: u64, n: usize| round2(bytes as f64 * 8.0 / secs / 1000.0 / n.max(1) as f64);
        Self {
            class: if capped { "capped" } else { "uncapped" },
            downlink_kbps: if capped { args.downlink_kbps } else { None },
            subscribers: subscribers.len(),
            consumers: subscribers.iter().map(|s| s.consumers.len()).sum(),
            loss_percent: loss(expected, got),
            residual_loss_percent: loss(expected, got + repaired),
            downlink_drops: drops,
            received_kbps_per_subscriber: per(delivered, subscribers.len()),
            video_kbps_per_consumer: per(video_bytes, video),
            layers_notified: notified,
            layers_by_bitrate: by_bitrate,
        }
    }

    fn to_text(&self) -> String {
        let cap = self
            .downlink_kbps
            .map_or(String::new(), |k| format!(" at {k} kbit/s"));
        let counts = |c: &LayerCounts| {
            c.iter()
                .map(|(k, n)| format!("{k}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut s = format!(
            "{}{cap}: {} subscriber(s), {} consumers: loss {}% (after RTX {}%), downlink drops {}, \
             {} kbit/s per subscriber, video {} kbit/s per consumer; layers notified [{}]",
            self.class,
            self.subscribers,
            self.consumers,
            self.loss_percent,
            self.residual_loss_percent,
            self.downlink_drops,
            self.received_kbps_per_subscriber,
            self.video_kbps_per_consumer,
            counts(&self.layers_notified),
        );
        if !self.layers_by_bitrate.is_empty() {
            let _ = write!(s, ", by bitrate [{}]", counts(&self.layers_by_bitrate));
        }
        s
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds.
    pub fn of(histogram: &hdrhistogram::Histogram<u64>) -> Self {
        let q = |q: f64| ms(histogram.value_at_quantile(q));
        Self {
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(histogram.max()),
            samples: histogram.len(),
        }
    }
}

impl StepResult {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: &Args,
        step: crate::Step,
        consumers: usize,
        setup_s: f64,
        send: SendTotals,
        received: Vec<ReceiveTotals>,
        (server_cpu, loadtest_cpu_percent): (Vec<ThreadCpu>, f64),
        server_stats: Option<Value>,
        layers: Layers,
    ) -> Self {
        let mut histogram = received
            .first()
            .map(|r| r.latency_ns.clone())
            .expect("at least one receive thread");
        let (mut packets, mut bytes, mut expected, mut got, mut silent, mut errors) =
            (0, 0, 0, 0, 0, 0);
        let (mut stalled, mut closed) = (0, 0);
        let mut rtcp = RtcpReport {
            receiver_reports: 0,
            nack_packets: 0,
            nacked_sequences: 0,
            transport_cc_feedback: 0,
            repaired_packets: 0,
            rtx_packets: 0,
            other_packets: 0,
            send_errors: 0,
            layer_notifications: layers.notifications,
        };
        for (i, r) in received.iter().enumerate() {
            rtcp.receiver_reports += r.feedback.receiver_reports;
            rtcp.nack_packets += r.feedback.nack_packets;
            rtcp.nacked_sequences += r.feedback.nacked_sequences;
            rtcp.transport_cc_feedback += r.feedback.transport_cc;
            rtcp.repaired_packets += r.repaired;
            rtcp.rtx_packets += r.rtx_packets;
            rtcp.other_packets += r.other_packets;
            rtcp.send_errors += r.rtcp_send_errors;
            if i > 0 {
                let _ = histogram.add(&r.latency_ns);
            }
            packets += r.packets;
            bytes += r.bytes;
            expected += r.expected;
            got += r.received;
            silent += r.silent_streams;
            stalled += r.stalled_streams;
            errors += r.decrypt_errors;
            closed += r.closed_connections;
        }
        let secs = args.duration.max(1e-3);
        let loss_percent = if expected == 0 {
            100.0
        } else {
            expected.saturating_sub(got) as f64 * 100.0 / expected as f64
        };
        let server_forward_latency_ns = server_stats
            .as_ref()
            .and_then(|s| s["workers"].as_array())
            .map(|ws| {
                ws.iter()
                    .filter(|w| w["forwardLatencyNs"].is_object())
                    .map(|w| serde_json::json!({"worker": w["id"], "forwardLatencyNs": w["forwardLatencyNs"]}))
                    .collect()
            })
            .unwrap_or_default();
        let summaries: Vec<&SubscriberSummary> =
            received.iter().flat_map(|r| &r.subscribers).collect();
        let mut classes = Vec::new();
        for capped in [false, true] {
            let class: Vec<&SubscriberSummary> = summaries
                .iter()
                .copied()
                .filter(|s| s.capped == capped)
                .collect();
            if !class.is_empty() || (!capped && args.downlink_kbps.is_none()) {
                classes.push(ClassReport::of(args, capped, &class, &layers));
            }
        }
        Self {
            label: args.label.clone(),
            url: args.url.clone(),
            transport: args.protocol(),
            rooms: step.rooms,
            conference: args.conference.is_some(),
            publishers_per_room: args.conference.unwrap_or(args.publishers),
            subscribers_per_room: step.subscribers,
            consumers,
            audio: args.audio,
            bitrate_kbps: args.bitrate_kbps,
            packet_size: args.packet_size,
            duration_s: args.duration,
            setup_s: (setup_s * 10.0).round() / 10.0,
            latency: Latency::of(&histogram),
            loss_percent: (loss_percent * 1000.0).round() / 1000.0,
            silent_consumers: silent,
            stalled_consumers: stalled,
            decrypt_errors: errors,
            closed_connections: closed,
            sent_packets_per_s: (send.packets as f64 / secs).round(),
            received_packets_per_s: (packets as f64 / secs).round(),
            received_mbit_per_s: (bytes as f64 * 8.0 / secs / 1e4).round() / 100.0,
            server_cpu,
            loadtest_cpu_percent: (loadtest_cpu_percent * 10.0).round() / 10.0,
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            server_forward_latency_ns,
            simulcast: args.simulcast,
            feedback: !args.no_feedback,
            rtcp,
            classes,
        }
    }

    pub fn summary_line(&self) -> String {
        format!(
            "[{} {}] {} consumers: p50 {} ms, p99 {} ms, loss {}%",
            self.label,
            self.transport.name(),
            self.consumers,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.loss_percent
        )
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let l = &self.latency;
        let shape = if self.conference {
            format!(
                "{} conference room(s) × {} peers (each publishes and consumes the others)",
                self.rooms, self.subscribers_per_room
            )
        } else {
            format!(
                "{} room(s) × {} publisher(s) × {} subscriber(s)",
                self.rooms, self.publishers_per_room, self.subscribers_per_room
            )
        };
        let _ = writeln!(
            s,
            "== {} over {} — {shape} = {} consumers, {} s (setup {} s)",
            self.label,
            self.transport.name(),
            self.consumers,
            self.duration_s,
            self.setup_s
        );
        let _ = writeln!(
            s,
            "latency one-way ms: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
        );
        let _ = writeln!(
            s,
            "loss {}%  silent consumers {}  stalled consumers {}  decrypt errors {}",
            self.loss_percent, self.silent_consumers, self.stalled_consumers, self.decrypt_errors
        );
        if self.closed_connections > 0 {
            let _ = writeln!(
                s,
                "ICE-TCP connections closed during the run: {}",
                self.closed_connections
            );
        }
        let _ = writeln!(
            s,
            "sent {} pkt/s  received {} pkt/s, {} Mbit/s",
            self.sent_packets_per_s, self.received_packets_per_s, self.received_mbit_per_s
        );
        if self.feedback {
            let r = &self.rtcp;
            let _ = writeln!(
                s,
                "subscriber rtcp: {} receiver reports, {} NACKs ({} seqs), {} transport-cc; \
                 {} repaired by RTX ({} RTX, {} other packets received); {} layer notifications",
                r.receiver_reports,
                r.nack_packets,
                r.nacked_sequences,
                r.transport_cc_feedback,
                r.repaired_packets,
                r.rtx_packets,
                r.other_packets,
                r.layer_notifications
            );
        }
        if self.simulcast || self.classes.iter().any(|c| c.downlink_kbps.is_some()) {
            for c in &self.classes {
                let _ = writeln!(s, "{}", c.to_text());
            }
        }
        let _ = writeln!(
            s,
            "loadtest cpu {:.1}% of a core, load average {}",
            self.loadtest_cpu_percent, self.load_average
        );
        for t in &self.server_cpu {
            let _ = writeln!(
                s,
                "server cpu: {:<18} pid {:<7} tid {:<7} {:>6.1}% of a core",
                t.name, t.pid, t.tid, t.percent
            );
        }
        for w in &self.server_forward_latency_ns {
            let f = &w["forwardLatencyNs"];
            let _ = writeln!(
                s,
                "server forward latency worker {}: p50 {} ns  p99 {} ns  p99.9 {} ns  max {} ns  ({} samples)",
                w["worker"], f["p50"], f["p99"], f["p999"], f["max"], f["samples"]
            );
        }
        s
    }
}

/// Latency percentiles (and loss) against the number of consumers, one line per percentile.
pub fn svg_plot(results: &[StepResult]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 60.0;
    let xmax = results
        .iter()
        .map(|r| r.consumers)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let ymax = results
        .iter()
        .map(|r| r.latency.p999_ms)
        .fold(0.1f64, f64::max)
        * 1.15;
    let x = |c: f64| LEFT + c / xmax * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / ymax * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let label = results.first().map_or("", |r| r.label.as_str());
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{label}: one-way latency vs consumers</text>"#
    );
    let (x0, y0, x1, y1) = (LEFT, H - BOTTOM, W - RIGHT, TOP);
    let _ = writeln!(
        s,
        r#"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" stroke="black" fill="none"/>"#
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            x0 - 6.0,
            yy + 4.0
        );
    }
    for r in results {
        let xx = x(r.consumers as f64);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="gray">{}% loss</text>"#,
            y0 + 16.0,
            r.consumers,
            y0 + 30.0,
            r.loss_percent
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">consumers</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">ms</text>"#,
        (x0 + x1) / 2.0,
        H - 10.0,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    type Series<'a> = (&'a str, &'a str, fn(&Latency) -> f64);
    let series: [Series; 4] = [
        ("p50", "#1f77b4", |l| l.p50_ms),
        ("p90", "#2ca02c", |l| l.p90_ms),
        ("p99", "#ff7f0e", |l| l.p99_ms),
        ("p99.9", "#d62728", |l| l.p999_ms),
    ];
    for (i, (name, color, get)) in series.iter().enumerate() {
        let points: Vec<String> = results
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.consumers as f64), y(get(&r.latency))))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
        }
        let lx = x1 - 80.0;
        let ly = y1 + 14.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
