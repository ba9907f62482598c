//! Closing cascades inside a router: peer → transport → producer → consumer. Every close is
//! idempotent, removes its children first, updates the live counters and the worker's index,
//! and tells the peers affected (`consumer-closed`, `producer-closed`, `peer-left`). What a
//! cascade leaves behind when it panics midway goes with the router ([`Router::release`]).

use super::api::Notice;
use super::env::Env;
use super::mesh::PipeMsg;
use super::producer::Source;
use super::router::{Role, Router};
use super::{CKey, PKey, TKey};
use crate::stats::Counted;
use std::sync::Arc;

impl Router {
    /// Closes a producer and its consumers, telling every affected peer.
    pub fn close_producer(&mut self, env: &mut Env, pkey: PKey) {
        let Some(p) = self.producers.remove(&pkey) else {
            return;
        };
        env.index.producers.remove(&pkey);
        match &p.source {
            Source::Local { transport, .. } => {
                env.stats.dec(Counted::Producer);
                if let Some(t) = self.transports.get_mut(transport) {
                    t.producers_by_ssrc.retain(|_, k| *k != pkey);
                }
                let from = env.worker;
                self.propagate(
                    env,
                    |room| PipeMsg::ProducerClosed {
                        room,
                        from,
                        producer_id: p.id.clone(),
                    },
                    None,
                );
            }
            Source::Piped { origin } => {
                env.stats.dec(Counted::PipedProducer);
                env.unsubscribe(pkey, *origin);
            }
        }
        self.taps.remove(&pkey);
        self.sending.remove(&pkey);
        for ckey in &p.consumers {
            self.close_consumer(env, *ckey, true);
        }
        self.producers_by_id.remove(&p.id);
        if let Some(peer) = self.peer_mut(&p.peer) {
            peer.producers.remove(&p.id);
        }
        self.notify_others(
            env,
            &p.peer,
            Notice::ProducerClosed {
                producer_id: p.id.clone(),
            },
        );
        self.announce_sources(env);
    }

    /// Closes a consumer; `tell` sends `consumer-closed` to its peer (its producer went away).
    pub fn close_consumer(&mut self, env: &mut Env, ckey: CKey, tell: bool) {
        if env.faults.panics_closes_of(&self.id) && self.consumers.contains_key(&ckey) {
            panic!(
                "fault injection: closing a consumer of room {} panics",
                self.id
            );
        }
        let Some(c) = self.consumers.remove(&ckey) else {
            return;
        };
        env.stats.dec(Counted::Consumer);
        if let Some(p) = self.producers.get_mut(&c.producer) {
            p.consumers.retain(|k| *k != ckey);
        }
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.consumers_by_ssrc.retain(|_, k| *k != ckey);
        }
        let me = env.worker;
        let conn = self.peer_mut(&c.peer).map(|peer| {
            peer.consumers.remove(&c.id);
            (peer.worker == me).then_some(peer.conn)
        });
        if let (true, Some(Some(conn))) = (tell, conn) {
            env.notify(conn, Notice::ConsumerClosed { consumer_id: c.id });
        }
    }

    /// Closes a transport with everything on it.
    pub fn close_transport(&mut self, env: &mut Env, tkey: TKey) {
        if !self.transports.contains_key(&tkey) {
            return;
        }
        self.close_data_of_transport(env, tkey);
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        let producers: Vec<PKey> = self
            .producers
            .iter()
            .filter(|(_, p)| p.transport() == Some(tkey))
            .map(|(k, _)| *k)
            .collect();
        let consumers: Vec<CKey> = t.consumers_by_ssrc.values().copied().collect();
        for p in producers {
            self.close_producer(env, p);
        }
        for c in consumers {
            self.close_consumer(env, c, false);
        }
        let Some(mut t) = self.transports.remove(&tkey) else {
            return;
        };
        t.close();
        env.index.forget_transport(tkey, &t.ice.ufrag);
        if let Some(peer) = self.peer_mut(&t.peer) {
            peer.transports.remove(&t.id);
        }
        env.stats.dec(Counted::Transport);
    }

    /// Closes a transport the server ends on its own (its DTLS ended, or a panic while
    /// handling one of its packets) with everything on it, and tells its peer:
    /// `consumer-closed` for each consumer on it, then `transport-closed` (extra to
    /// protocol.md; mediasoup-client has no such event, the web app joins again). The rest of
    /// the room is untouched.
    pub fn close_transport_and_tell(&mut self, env: &mut Env, tkey: TKey) {
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        let (id, peer_id) = (t.id.clone(), t.peer.clone());
        let consumers: Vec<CKey> = t.consumers_by_ssrc.values().copied().collect();
        for c in consumers {
            self.close_consumer(env, c, true);
        }
        self.close_transport(env, tkey);
        if let Some(conn) = self.conn_of(&peer_id, env.worker) {
            env.notify(conn, Notice::TransportClosed { transport_id: id });
        }
    }

    /// Removes a peer and everything it owns (for a peer of another worker: its directory
    /// entry and its piped producers). On the home worker, a satellite left without peers is
    /// released; the worker closes the room once it has no peers at all.
    pub fn remove_peer(&mut self, env: &mut Env, peer_id: &str) {
        let Some(peer) = self.peer(peer_id) else {
            return;
        };
        let local = peer.worker == env.worker;
        let transports: Vec<TKey> = peer.transports.values().copied().collect();
        for t in transports {
            self.close_transport(env, t);
        }
        // Producers not on a transport here: piped in from the peer's worker.
        let rest: Vec<PKey> = self
            .peer(peer_id)
            .map(|p| p.producers.values().copied().collect())
            .unwrap_or_default();
        for p in rest {
            self.close_producer(env, p);
        }
        // Data producers piped in from the peer's worker (room/data.rs).
        self.close_piped_data_of_peer(env, peer_id);
        self.peers.retain(|p| &*p.id != peer_id);
        let peer_arc = Arc::<str>::from(peer_id);
        if local {
            env.stats.dec(Counted::Peer);
        }
        self.notify_others(
            env,
            peer_id,
            Notice::PeerLeft {
                peer_id: peer_arc.clone(),
            },
        );
        if local {
            let from = env.worker;
            self.propagate(
                env,
                |room| PipeMsg::PeerLeft {
                    room,
                    from,
                    peer_id: peer_arc.clone(),
                },
                None,
            );
        }
        self.release_idle_satellites(env);
    }

    /// On the home worker: satellites hosting no peer of the room drop their replica.
    fn release_idle_satellites(&mut self, env: &Env) {
        let tag = self.tag();
        let Role::Home {
            satellites,
            snapshots,
        } = &mut self.role
        else {
            return;
        };
        let peers = &self.peers;
        let idle: Vec<usize> = satellites
            .iter()
            .copied()
            .filter(|&w| !peers.iter().any(|p| p.worker == w))
            .collect();
        satellites.retain(|w| !idle.contains(w));
        snapshots.retain(|(w, _)| !idle.contains(w));
        for w in idle {
            env.mesh.send(
                w,
                PipeMsg::DropReplica {
                    room: tag.clone(),
                    from: env.worker,
                },
            );
        }
    }

    /// Whether the room has run its course: homed here and nobody left in it.
    pub fn is_finished(&self) -> bool {
        self.is_home() && self.peers.is_empty()
    }

    /// Closes what is left before the router goes: the producers piped in for peers of other
    /// workers (their origins stop sending). Peers of this worker must be removed first.
    pub fn close_rest(&mut self, env: &mut Env) {
        let pkeys: Vec<PKey> = self.producers_by_id.values().copied().collect();
        for p in pkeys {
            self.close_producer(env, p);
        }
    }
}
