//! Closing cascades: room → peer → transport → producer → consumer. Every close is
//! idempotent, removes its children first, updates the live counters, and tells the peers
//! affected (`consumer-closed`, `producer-closed`, `peer-left`).

use super::core::WorkerCore;
use super::{CKey, PKey, TKey};
use crate::worker::jobs::{ConnId, Outbound};
use crate::worker::stats::Counted;
use serde_json::json;
use std::sync::Arc;

impl WorkerCore {
    /// Closes a producer and its consumers, telling every affected peer.
    pub(crate) fn close_producer(&mut self, pkey: PKey) {
        let Some(p) = self.producers.remove(&pkey) else {
            return;
        };
        self.stats.dec(Counted::Producer);
        self.taps.remove(&pkey);
        for ckey in &p.consumers {
            self.close_consumer(*ckey, true);
        }
        if let Some(t) = self.transports.get_mut(&p.transport) {
            t.producers_by_ssrc.retain(|_, k| *k != pkey);
        }
        if let Some(room) = self.rooms.get_mut(&p.room) {
            room.producers_by_id.remove(&p.id);
            if let Some(peer) = room.peer_mut(&p.peer) {
                peer.producers.remove(&p.id);
            }
            let room = &self.rooms[&p.room];
            self.notify_others(
                room,
                &p.peer,
                "producer-closed",
                json!({"producerId": p.id}),
            );
            self.announce_sources(&p.room);
        }
    }

    /// Closes a consumer; `tell` sends `consumer-closed` to its peer (its producer went away).
    pub(crate) fn close_consumer(&mut self, ckey: CKey, tell: bool) {
        let Some(c) = self.consumers.remove(&ckey) else {
            return;
        };
        self.stats.dec(Counted::Consumer);
        if let Some(p) = self.producers.get_mut(&c.producer) {
            p.consumers.retain(|k| *k != ckey);
        }
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.consumers_by_ssrc.retain(|_, k| *k != ckey);
        }
        let conn = self
            .rooms
            .get_mut(&c.room)
            .and_then(|r| r.peer_mut(&c.peer))
            .map(|peer| {
                peer.consumers.remove(&c.id);
                peer.conn
            });
        if let (true, Some(conn)) = (tell, conn) {
            self.notify(conn, "consumer-closed", json!({"consumerId": c.id}));
        }
    }

    /// Closes a transport with everything on it.
    pub(crate) fn close_transport(&mut self, tkey: TKey) {
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        let producers: Vec<PKey> = self
            .producers
            .iter()
            .filter(|(_, p)| p.transport == tkey)
            .map(|(k, _)| *k)
            .collect();
        let consumers: Vec<CKey> = t.consumers_by_ssrc.values().copied().collect();
        for p in producers {
            self.close_producer(p);
        }
        for c in consumers {
            self.close_consumer(c, false);
        }
        let Some(mut t) = self.transports.remove(&tkey) else {
            return;
        };
        t.close();
        self.by_ufrag.remove(&t.ice.ufrag);
        self.by_addr.retain(|_, k| *k != tkey);
        self.twcc.remove(&tkey);
        if let Some(peer) = self
            .rooms
            .get_mut(&t.room)
            .and_then(|r| r.peer_mut(&t.peer))
        {
            peer.transports.remove(&t.id);
        }
        self.stats.dec(Counted::Transport);
    }

    /// Removes a peer and everything it owns; closes the room when it was the last one.
    pub fn remove_peer(&mut self, room_id: &str, peer_id: &str) {
        let Some(peer) = self.rooms.get(room_id).and_then(|r| r.peer(peer_id)) else {
            return;
        };
        let transports: Vec<TKey> = peer.transports.values().copied().collect();
        for t in transports {
            self.close_transport(t);
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.peers.retain(|p| &*p.id != peer_id);
        self.stats.dec(Counted::Peer);
        let room = &self.rooms[room_id];
        self.notify_others(room, peer_id, "peer-left", json!({"peerId": peer_id}));
        if room.peers.is_empty() {
            self.rooms.remove(room_id);
            self.stats.dec(Counted::Room);
        }
    }

    /// Drops a room after a panic in its code: its objects go, its peers are told the room
    /// failed (their sockets stay open; they can join again).
    pub fn evict_room(&mut self, room_id: &str) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let peers: Vec<(Arc<str>, ConnId)> =
            room.peers.iter().map(|p| (p.id.clone(), p.conn)).collect();
        for (peer_id, conn) in peers {
            // Closing can panic again if the state is what broke; never let that escape.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.remove_peer(room_id, &peer_id)
            }));
            let _ = self.signaling.send(Outbound::PeerGone {
                conn,
                room_id: Arc::from(room_id),
                peer_id: peer_id.clone(),
            });
            self.notify(
                conn,
                "error",
                json!({"code": "internal", "message": "the room failed on the server; join again"}),
            );
        }
        if self.rooms.remove(room_id).is_some() {
            self.stats.dec(Counted::Room);
        }
    }
}
