//! Closing cascades: room → peer → transport → producer → consumer. Every close is
//! idempotent, removes its children first, updates the live counters, and tells the peers
//! affected (`consumer-closed`, `producer-closed`, `peer-left`).

use super::core::WorkerCore;
use super::span::{PipeMsg, RoomTag};
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
        match p.origin {
            None => {
                self.stats.dec(Counted::Producer);
                let from = self.id;
                self.propagate(
                    &p.room,
                    |room| PipeMsg::ProducerClosed {
                        room,
                        from,
                        producer_id: p.id.clone(),
                    },
                    None,
                );
            }
            Some(origin) => {
                self.stats.dec(Counted::PipedProducer);
                self.mesh.send(
                    origin.worker,
                    PipeMsg::Unsubscribe {
                        origin_key: origin.key,
                        worker: self.id,
                        key: pkey,
                    },
                );
            }
        }
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

    /// Closes a transport the server ends on its own (its DTLS ended, or a panic while
    /// handling one of its packets) with everything on it, and tells its peer:
    /// `consumer-closed` for each consumer on it, then `transport-closed` (extra to
    /// protocol.md; mediasoup-client has no such event, the web app joins again). The rest of
    /// the room is untouched.
    pub(crate) fn close_transport_and_tell(&mut self, tkey: TKey) {
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        let (id, room_id, peer_id) = (t.id.clone(), t.room.clone(), t.peer.clone());
        let consumers: Vec<CKey> = t.consumers_by_ssrc.values().copied().collect();
        for c in consumers {
            self.close_consumer(c, true);
        }
        self.close_transport(tkey);
        let conn = self
            .rooms
            .get(&room_id)
            .and_then(|r| r.peer(&peer_id))
            .map(|p| p.conn);
        if let Some(conn) = conn {
            self.notify(conn, "transport-closed", json!({ "transportId": id }));
        }
    }

    /// After a panic while handling one of a transport's packets: the transport goes
    /// ([`Self::close_transport_and_tell`]). If closing panics too, the state is broken and the
    /// room is evicted instead.
    pub fn fail_transport(&mut self, tkey: TKey) {
        let Some(room_id) = self.transports.get(&tkey).map(|t| t.room.clone()) else {
            return;
        };
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.close_transport_and_tell(tkey);
        }));
        if closed.is_err() {
            tracing::error!(worker = self.id, room = %room_id, "closing a failed transport panicked; room closed");
            self.evict_room(&room_id);
        }
    }

    /// Removes a peer and everything it owns (for a peer of another worker: its directory
    /// entry and its piped producers). On the home worker, a satellite left without peers is
    /// released and the room closes when its last peer goes.
    pub fn remove_peer(&mut self, room_id: &str, peer_id: &str) {
        let Some(peer) = self.rooms.get(room_id).and_then(|r| r.peer(peer_id)) else {
            return;
        };
        let local = peer.worker == self.id;
        let transports: Vec<TKey> = peer.transports.values().copied().collect();
        for t in transports {
            self.close_transport(t);
        }
        // Producers not on a transport here: piped in from the peer's worker.
        let rest: Vec<PKey> = self
            .rooms
            .get(room_id)
            .and_then(|r| r.peer(peer_id))
            .map(|p| p.producers.values().copied().collect())
            .unwrap_or_default();
        for p in rest {
            self.close_producer(p);
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.peers.retain(|p| &*p.id != peer_id);
        if local {
            self.stats.dec(Counted::Peer);
        }
        let room = &self.rooms[room_id];
        self.notify_others(room, peer_id, "peer-left", json!({"peerId": peer_id}));
        if local {
            let (from, peer_arc) = (self.id, Arc::<str>::from(peer_id));
            self.propagate(
                room_id,
                |room| PipeMsg::PeerLeft {
                    room,
                    from,
                    peer_id: peer_arc.clone(),
                },
                None,
            );
        }
        self.release_idle_satellites(room_id);
    }

    /// On the home worker: satellites hosting no peer of the room drop their replica; the
    /// room closes once it has no peers at all.
    fn release_idle_satellites(&mut self, room_id: &str) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if room.home != self.id {
            return;
        }
        let idle: Vec<usize> = room
            .satellites
            .iter()
            .copied()
            .filter(|&w| !room.peers.iter().any(|p| p.worker == w))
            .collect();
        room.satellites.retain(|w| !idle.contains(w));
        room.snapshots.retain(|(w, _)| !idle.contains(w));
        let empty = room.peers.is_empty();
        let tag = RoomTag {
            id: room.id.clone(),
            epoch: room.epoch,
        };
        for w in idle {
            self.mesh.send(
                w,
                PipeMsg::DropReplica {
                    room: tag.clone(),
                    from: self.id,
                },
            );
        }
        if empty {
            self.discard_room(room_id);
        }
    }

    /// Removes a room (or replica) and whatever is left in it: peers of other workers and
    /// the producers piped in for them. Peers of this worker must be removed first.
    pub(crate) fn discard_room(&mut self, room_id: &str) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let pkeys: Vec<PKey> = room.producers_by_id.values().copied().collect();
        for p in pkeys {
            self.close_producer(p);
        }
        let Some(room) = self.rooms.remove(room_id) else {
            return;
        };
        let local_peers = room.peers.iter().filter(|p| p.worker == self.id).count();
        for _ in 0..local_peers {
            self.stats.dec(Counted::Peer);
        }
        if room.home == self.id {
            self.stats.dec(Counted::Room);
            let _ = self
                .signaling
                .send(Outbound::RoomClosed { room_id: room.id });
        } else {
            self.stats.dec(Counted::RoomReplica);
        }
    }

    /// Drops a room after a panic in its code: its objects go, its peers are told the room
    /// failed (their sockets stay open; they can join again).
    pub fn evict_room(&mut self, room_id: &str) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let (home_worker, from) = (room.home, self.id);
        let generation = room.snapshots.first().map_or(0, |&(_, g)| g);
        let home = home_worker == self.id;
        let peers: Vec<(Arc<str>, ConnId)> = room
            .peers
            .iter()
            .filter(|p| p.worker == self.id)
            .map(|p| (p.id.clone(), p.conn))
            .collect();
        // The other workers hosting peers of the room evict them too.
        let tag = RoomTag {
            id: room.id.clone(),
            epoch: room.epoch,
        };
        let spanning = home && !room.satellites.is_empty();
        if home {
            for &w in &room.satellites {
                self.mesh.send(
                    w,
                    PipeMsg::Evict {
                        room: tag.clone(),
                        from,
                    },
                );
            }
        }
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
        if !home {
            self.mesh.send(
                home_worker,
                PipeMsg::ReplicaDropped {
                    room: tag,
                    from,
                    generation,
                },
            );
        }
        if spanning {
            // The satellites' peers leave as the Evict reaches them; the room closes (and is
            // reported closed) with the last of them, as usual.
            return;
        }
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.discard_room(room_id)));
        // If closing panicked, drop the state without ceremony.
        if let Some(room) = self.rooms.remove(room_id) {
            self.stats.dec(if room.home == self.id {
                Counted::Room
            } else {
                Counted::RoomReplica
            });
            if room.home == self.id {
                let _ = self
                    .signaling
                    .send(Outbound::RoomClosed { room_id: room.id });
            }
        }
    }
}
