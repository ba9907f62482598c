//! The session's defences: worker health for `/healthz`, the join deadline, and the
//! coalescing of notifications that only carry a latest state.

use super::{ConnId, EdgeOut, HttpResponse, Signaling};
use serde_json::Value;
use std::time::Instant;

impl Signaling {
    /// Workers that stopped: their mailbox is closed (the thread exited) or their heartbeat
    /// has not moved for `worker_stall` (stuck, or its timer task died).
    fn dead_workers(&self, now: Instant) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|&w| {
                self.workers[w].jobs.is_closed()
                    || now.saturating_duration_since(self.heartbeats[w].1)
                        > self.limits.worker_stall
            })
            .collect()
    }

    pub(super) fn watch_heartbeats(&mut self, now: Instant) {
        for (link, seen) in self.workers.iter().zip(self.heartbeats.iter_mut()) {
            let beat = link
                .stats
                .heartbeat
                .load(std::sync::atomic::Ordering::Relaxed);
            if beat != seen.0 {
                *seen = (beat, now);
            }
        }
    }

    pub(super) fn healthz(&self) -> HttpResponse {
        let dead = self.dead_workers(Instant::now());
        if self.is_draining() {
            HttpResponse::text(
                503,
                "draining: this node takes no new rooms and stops once its rooms are empty\n",
            )
        } else if dead.is_empty() {
            HttpResponse::text(200, "ok")
        } else {
            HttpResponse::text(503, &format!("workers not running: {dead:?}\n"))
        }
    }

    /// Closes sockets that have not been in a room for the join deadline.
    pub(super) fn enforce_join_deadline(&mut self, now: Instant, out: &mut EdgeOut) {
        let deadline = self.limits.join_deadline;
        for (&id, c) in self.conns.iter_mut() {
            let late = c
                .unjoined_since
                .is_some_and(|t| now.saturating_duration_since(t) >= deadline);
            if late && !c.joining() {
                c.unjoined_since = None;
                tracing::debug!(conn = id, "websocket closed: no join-room in time");
                out.close(
                    id,
                    1008,
                    &format!("no join-room within {} s", deadline.as_secs_f32()),
                );
            }
        }
    }
}

/// A notification to one socket. A producer's paused/resumed state is a "latest value":
/// while one is still unsent, the next replaces it, so a burst of toggles costs a slow
/// reader one frame (the final state), not one per toggle.
pub(super) fn send_notification(
    out: &mut EdgeOut,
    conn: ConnId,
    method: &'static str,
    data: Value,
) {
    let coalesce = matches!(method, "producer-paused" | "producer-resumed");
    let key = coalesce
        .then(|| data.get("producerId").and_then(Value::as_str))
        .flatten()
        .map(|p| format!("producer-state/{p}"));
    let text = super::notification(method, data);
    match key {
        Some(key) => out.send_latest(conn, key, text),
        None => out.send_text(conn, text),
    }
}
