//! `--joins N`: how fast a server (or a cluster, entered through every node) admits peers.
//! Each join opens a WebSocket, sends join-room (following `moved`) and stays in the room until
//! every join is done, so rooms fill up as they would; no media.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::Latency;
use crate::signaling::Signaling;
use crate::Args;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResult {
    pub label: String,
    /// The entry URLs, in the order peers used them.
    pub entries: Vec<String>,
    pub joins: usize,
    pub rooms: usize,
    pub threads: usize,
    pub failed: usize,
    /// Joins answered `moved` at least once (the room lived on another node).
    pub moved: usize,
    pub seconds: f64,
    pub joins_per_s: f64,
    /// WebSocket connect → join-room answered (including any `moved` hop).
    pub latency: Latency,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl JoinResult {
    pub fn to_text(&self) -> String {
        let l = &self.latency;
        format!(
            "[{}] {} joins over {} rooms through {} entr{} ({} threads): {:.1} joins/s, \
             latency p50 {:.2} ms p90 {:.2} p99 {:.2} max {:.2}; moved {}, failed {}{}\n",
            self.label,
            self.joins,
            self.rooms,
            self.entries.len(),
            if self.entries.len() == 1 { "y" } else { "ies" },
            self.threads,
            self.joins_per_s,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            self.moved,
            self.failed,
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
        )
    }
}

struct Tally {
    latency: Histogram<u64>,
    moved: usize,
    failed: usize,
    first_error: Option<String>,
    open: Vec<Signaling>,
}

pub fn run(args: &Args, joins: usize) -> Result<JoinResult, String> {
    if joins == 0 || args.rooms == 0 {
        return Err("--joins and --rooms must be at least 1".into());
    }
    let threads = args.setup_threads.clamp(1, joins);
    let run_id = format!("{:08x}", rand::random::<u32>());
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally {
        latency: Histogram::new_with_bounds(1_000, 60_000_000_000, 3).map_err(|e| e.to_string())?,
        moved: 0,
        failed: 0,
        first_error: None,
        open: Vec::with_capacity(joins),
    });
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= joins {
                    return;
                }
                let room = format!("lj-{run_id}-{}", i % args.rooms);
                let t0 = Instant::now();
                let result = Signaling::join(args.entry(), &room, "loadtest-join");
                let ns = t0.elapsed().as_nanos() as u64;
                let Ok(mut t) = tally.lock() else { return };
                match result {
                    Ok((sig, _, moves)) => {
                        let _ = t.latency.record(ns.max(1_000));
                        t.moved += usize::from(moves > 0);
                        t.open.push(sig);
                    }
                    Err(e) => {
                        t.failed += 1;
                        t.first_error.get_or_insert(e);
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let t = tally.into_inner().map_err(|_| "a join thread panicked")?;
    let ok = joins - t.failed;
    for sig in t.open {
        sig.close();
    }
    let mut entries = vec![args.url.clone()];
    entries.extend(args.entry.iter().cloned());
    Ok(JoinResult {
        label: args.label.clone(),
        entries,
        joins,
        rooms: args.rooms,
        threads,
        failed: t.failed,
        moved: t.moved,
        seconds: (seconds * 1000.0).round() / 1000.0,
        joins_per_s: (ok as f64 / seconds.max(1e-9) * 10.0).round() / 10.0,
        latency: Latency::of(&t.latency),
        first_error: t.first_error,
    })
}
