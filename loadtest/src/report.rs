//! Results of one step: text, JSON and the SVG plot of latency percentiles vs consumers.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::cpu::ThreadCpu;
use crate::media::SendTotals;
use crate::receive::ReceiveTotals;
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
    ) -> Self {
        let mut histogram = received
            .first()
            .map(|r| r.latency_ns.clone())
            .expect("at least one receive thread");
        let (mut packets, mut bytes, mut expected, mut got, mut silent, mut errors) =
            (0, 0, 0, 0, 0, 0);
        let (mut stalled, mut closed) = (0, 0);
        for (i, r) in received.iter().enumerate() {
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
