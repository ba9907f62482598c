//! The packet side of a worker: a datagram (STUN / DTLS / SRTP / SRTCP), a DTLS event, a
//! piped packet or a timer tick finds its router through the worker's index, and the router
//! handles it (room/packet.rs, room/fanout.rs).

use super::core::WorkerCore;
use super::env::Route;
use super::remote::Remote;
use super::transport::DtlsMsg;
use super::PKey;
use crate::rtc::{classify, ice, rtp, PacketClass};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl WorkerCore {
    /// Handles one datagram received from `from`.
    pub fn handle_datagram(&mut self, buf: &[u8], from: Remote, now: Instant) {
        let stats = &self.env.stats;
        stats.packets_in.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_in
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        match classify(buf) {
            PacketClass::Stun => self.handle_stun(buf, from, now),
            PacketClass::Dtls => {
                if let Some((r, tkey)) = self.route_of(&from) {
                    r.on_dtls_record(tkey, buf);
                }
            }
            class @ (PacketClass::Rtp | PacketClass::Rtcp) => {
                // The room's id is shared, not copied: one reference-count increment.
                let Some(Route { room, transport }) = self.env.index.by_addr.get(&from).cloned()
                else {
                    return;
                };
                if let Some(r) = self.routers.get_mut(&room) {
                    let rtcp = class == PacketClass::Rtcp;
                    r.on_media_datagram(&mut self.env, transport, buf, from, rtcp, now);
                }
            }
            PacketClass::Unknown => {}
        }
        self.env.flush_pipes();
    }

    /// The router and transport a datagram from `from` belongs to.
    fn route_of(&mut self, from: &Remote) -> Option<(&mut super::router::Router, u64)> {
        let route = self.env.index.by_addr.get(from)?;
        let r = self.routers.get_mut(&route.room)?;
        Some((r, route.transport))
    }

    /// The room and transport a datagram from `from` belongs to (to close it after a panic).
    pub fn transport_of_addr(&self, from: &Remote) -> Option<Route> {
        self.env.index.by_addr.get(from).cloned()
    }

    fn handle_stun(&mut self, buf: &[u8], from: Remote, now: Instant) {
        let req = match ice::parse_binding_request(buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::trace!(%from, error = ?e, "STUN ignored");
                return;
            }
        };
        let Some(route) = self
            .env
            .index
            .by_ufrag
            .get(req.local_ufrag.as_str())
            .cloned()
        else {
            tracing::trace!(%from, ufrag = %req.local_ufrag, "STUN for an unknown ufrag");
            return;
        };
        let taken = self.env.index.by_addr.get(&from).is_some_and(|owner| {
            owner.transport != route.transport
                && self
                    .routers
                    .get(&owner.room)
                    .is_some_and(|r| r.transports.contains_key(&owner.transport))
        });
        // A forged source address must not steal (or receive) someone else's media: an
        // address another live transport uses stays with it.
        let Some(r) = self.routers.get_mut(&route.room) else {
            return;
        };
        if r.answer_binding(&mut self.env, route.transport, buf, from) && !taken {
            r.on_binding(&mut self.env, route.transport, from, req.use_candidate, now);
        }
    }

    /// Handles an event of a transport's DTLS session (from the DTLS thread).
    pub fn handle_dtls_msg(&mut self, msg: DtlsMsg) {
        let DtlsMsg {
            room,
            transport,
            event,
        } = msg;
        if let Some(r) = self.routers.get_mut(&room) {
            r.on_dtls_event(&mut self.env, transport, event, Instant::now());
        }
        self.reap(&room);
    }

    /// A packet of a piped producer, from its origin worker (`key`: this worker's key).
    pub fn on_piped_packet(&mut self, key: PKey, layer: usize, packet: &[u8], now: Instant) {
        let Some(hdr) = rtp::parse_rtp(packet) else {
            return;
        };
        let Some(room) = self.env.index.producers.get(&key) else {
            return;
        };
        let Some(r) = self.routers.get_mut(room) else {
            return;
        };
        if r.producers.get(&key).is_none_or(|p| !p.is_piped()) {
            return;
        }
        self.env
            .stats
            .pipe_packets_in
            .fetch_add(1, Ordering::Relaxed);
        r.on_producer_packet(&mut self.env, key, layer, packet, &hdr, now);
    }

    /// Hands the media queued for other workers to them.
    pub fn flush_pipes(&mut self) {
        self.env.flush_pipes();
    }

    /// Periodic work (about every 250 ms) of every room; a room whose tick panics is evicted,
    /// the others go on.
    pub fn tick(&mut self, now: Instant, send_reports: bool) {
        let rooms: Vec<Arc<str>> = self.routers.keys().cloned().collect();
        for room in rooms {
            let Some(r) = self.routers.get_mut(&room) else {
                continue;
            };
            let env = &mut self.env;
            if catch_unwind(AssertUnwindSafe(|| r.tick(env, now, send_reports))).is_err() {
                self.env.stats.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(worker = self.env.worker, room = %room, "panic in the room's timer; room closed");
                self.evict_room(&room);
            } else {
                self.reap(&room);
            }
        }
    }
}
