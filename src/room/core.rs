//! The state of one worker: its routers (one per room, room/router.rs), the environment they
//! share (room/env.rs: settings, outlets, the index), and the entry points the worker's tasks
//! call. Sans-IO: packets to send go to the outbox, messages for the signaling thread go to
//! the `signaling` mailbox; the worker (src/worker) owns the I/O.
//!
//! This file is the control side (jobs from the signaling thread, messages from other
//! workers, the life and death of rooms); room/demux.rs is the packet side.

use super::api::{ApiError, ConnId, Job, JobKind, Notice, Outbound};
use super::env::{Env, Faults};
use super::limits::{CacheBudget, MediaLimits};
use super::mesh::{Mesh, PipeMsg, RoomTag};
use super::remote::Remote;
use super::router::Router;
use super::{PKey, TKey};
use crate::stats::{Counted, WorkerStats};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// Everything a worker owns, and the entry points that change it.
pub struct WorkerCore {
    pub(crate) routers: HashMap<Arc<str>, Router>,
    pub env: Env,
}

impl WorkerCore {
    /// A worker's state around its environment (no rooms yet).
    pub fn new(env: Env) -> Self {
        Self {
            routers: HashMap::new(),
            env,
        }
    }

    /// This worker's number.
    pub fn id(&self) -> usize {
        self.env.worker
    }

    /// Replaces the default limits (before any room exists).
    pub fn set_limits(&mut self, limits: MediaLimits) {
        self.env.cache_budget =
            CacheBudget::new(limits.retransmit_cache_budget, self.env.stats.clone());
        self.env.limits = limits;
    }

    /// Turns on test-only faults (see [`Faults`]).
    pub fn set_faults(&mut self, faults: Faults) {
        self.env.faults = faults;
    }

    /// Hands TURN credentials out with every new transport (see room/turn.rs).
    pub fn set_turn(&mut self, turn: Option<super::turn::TurnConfig>) {
        self.env.turn = turn;
    }

    /// Connects this worker to the others (rooms spanning workers); without it, every room
    /// stays on this worker.
    pub fn set_mesh(&mut self, mesh: Mesh) {
        self.env.pipe_out = (0..mesh.workers()).map(|_| None).collect();
        self.env.mesh = mesh;
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.env.stats
    }

    pub fn rooms_len(&self) -> usize {
        self.routers.len()
    }

    pub fn router(&self, room: &str) -> Option<&Router> {
        self.routers.get(room)
    }

    /// Notes the request the next job or message must answer (see `Env::unanswered`).
    pub fn expect_answer(&self, request: Option<(ConnId, u32)>) {
        self.env.unanswered.set(request);
    }

    /// The request the last job left unanswered (it panicked), if any.
    pub fn take_unanswered(&self) -> Option<(ConnId, u32)> {
        self.env.unanswered.take()
    }

    /// Runs one job from the signaling thread.
    pub fn handle_job(&mut self, job: Job, now: Instant) {
        let Job {
            conn,
            room_id,
            peer_id,
            kind,
        } = job;
        match kind {
            JobKind::Request { req_id, command } => {
                if self.env.faults.panics_requests_of(&room_id) {
                    panic!("fault injection: requests in room {room_id} panic");
                }
                let result = match self.routers.get_mut(&room_id) {
                    Some(r) => r.handle_command(&mut self.env, &peer_id, command, now),
                    None => Err(ApiError::invalid_state("not in a room; join-room first")),
                };
                self.env.respond(conn, req_id, result);
            }
            JobKind::Join {
                req_id,
                display_name,
                host,
            } => self.join(conn, &room_id, &peer_id, display_name, host, req_id),
            JobKind::Disconnected => {
                if let Some(r) = self.routers.get_mut(&room_id) {
                    r.disconnect(&mut self.env, &peer_id);
                }
            }
            JobKind::SetTaps(taps) => {
                if let Some(r) = self.routers.get_mut(&room_id) {
                    r.set_taps(&mut self.env, taps, now);
                }
            }
            JobKind::RequestKeyFrames => {
                if let Some(r) = self.routers.get_mut(&room_id) {
                    r.request_keyframes(&mut self.env, now);
                }
            }
        }
        self.reap(&room_id);
    }

    /// join-room on the room's home worker (created here if it does not exist).
    fn join(
        &mut self,
        conn: ConnId,
        room_id: &Arc<str>,
        peer_id: &Arc<str>,
        display_name: String,
        host: usize,
        req_id: u32,
    ) {
        // Joins only reach a room's home. A replica here is stale: this worker was a
        // satellite of a room that has closed since (its DropReplica is still queued).
        if self.routers.get(room_id).is_some_and(|r| !r.is_home()) {
            self.drop_replica(room_id);
        }
        if !self.routers.contains_key(room_id) {
            // Unique across workers: the home's id in the top bits, a fresh key below.
            let epoch = ((self.env.worker as u64) << 48) | self.env.key();
            self.routers
                .insert(room_id.clone(), Router::home(room_id.clone(), epoch));
            self.env.stats.inc(Counted::Room);
        }
        if let Some(r) = self.routers.get_mut(room_id) {
            r.join(&mut self.env, conn, peer_id, display_name, host, req_id);
        }
    }

    /// The router a message of another worker names, if it is this incarnation.
    fn router_of(&mut self, room: &RoomTag) -> Option<&mut Router> {
        self.routers
            .get_mut(&room.id)
            .filter(|r| r.epoch == room.epoch)
    }

    /// Handles a control message from another worker.
    pub fn handle_pipe_msg(&mut self, msg: PipeMsg, now: Instant) {
        let room = msg.room().map(Arc::<str>::from);
        match msg {
            PipeMsg::Snapshot {
                room,
                from,
                generation,
                peers,
                producers,
            } => {
                if self.routers.contains_key(&room.id) {
                    self.drop_replica(&room.id);
                }
                let replica = Router::from_snapshot(
                    &mut self.env,
                    &room,
                    from,
                    generation,
                    &peers,
                    producers,
                );
                self.routers.insert(room.id.clone(), replica);
                self.env.stats.inc(Counted::RoomReplica);
            }
            PipeMsg::HostPeer {
                room,
                from,
                peer,
                req_id,
            } => {
                let replica = self.routers.get_mut(&room.id);
                super::directory::host_peer(replica, &mut self.env, &room, from, peer, req_id);
            }
            PipeMsg::PeerJoined { room, from, peer } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_peer_joined(&self.env, &room, from, &peer);
                }
            }
            PipeMsg::PeerLeft {
                room,
                from,
                peer_id,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_peer_left(&mut self.env, &room, from, &peer_id);
                }
            }
            PipeMsg::ProducerAdded {
                room,
                from,
                producer,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_producer_added(&mut self.env, &room, from, producer);
                }
            }
            PipeMsg::ProducerClosed {
                room,
                from,
                producer_id,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_producer_closed(&mut self.env, &room, from, &producer_id);
                }
            }
            PipeMsg::ProducerPaused {
                room,
                from,
                producer_id,
                paused,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_producer_paused(&mut self.env, &room, from, &producer_id, paused, now);
                }
            }
            PipeMsg::DropReplica { room, from } => {
                let current = self
                    .routers
                    .get(&room.id)
                    .is_some_and(|r| r.is_replica_of(&self.env, &room, from));
                if current {
                    self.drop_replica(&room.id);
                }
            }
            PipeMsg::ReplicaDropped {
                room,
                from,
                generation,
            } => {
                if let Some(r) = self.router_of(&room) {
                    r.on_replica_dropped(&room, from, generation);
                }
            }
            PipeMsg::Disconnect {
                room,
                from,
                peer_id,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_disconnect(&mut self.env, &room, from, &peer_id);
                }
            }
            PipeMsg::Evict { room, from } => {
                let current = self
                    .routers
                    .get(&room.id)
                    .is_some_and(|r| r.is_replica_of(&self.env, &room, from));
                if current {
                    self.evict_room(&room.id);
                }
            }
            PipeMsg::Subscribe {
                origin_key,
                worker,
                key,
            } => {
                if let Some(r) = self.router_of_producer(origin_key) {
                    r.on_subscribe(origin_key, worker, key);
                }
            }
            PipeMsg::Unsubscribe {
                origin_key,
                worker,
                key,
            } => {
                if let Some(r) = self.router_of_producer(origin_key) {
                    r.on_unsubscribe(origin_key, worker, key);
                }
            }
            PipeMsg::ActiveSpeaker {
                room,
                from,
                speaker,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_active_speaker(&self.env, &room, from, speaker);
                }
            }
            PipeMsg::DataProducerAdded {
                room,
                from,
                producer,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_data_producer_added(&self.env, &room, from, producer);
                }
            }
            PipeMsg::DataProducerClosed {
                room,
                from,
                data_producer_id,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_data_producer_closed(&mut self.env, &room, from, &data_producer_id);
                }
            }
            PipeMsg::DataMessage {
                room,
                from,
                data_producer_id,
                ppid,
                data,
            } => {
                if let Some(r) = self.routers.get_mut(&room.id) {
                    r.on_piped_data_message(&self.env, &room, from, data_producer_id, ppid, data);
                }
            }
            PipeMsg::KeyFrame { origin_key, force } => {
                let room = self.env.index.producers.get(&origin_key).cloned();
                if let Some(r) = room.and_then(|room| self.routers.get_mut(&room)) {
                    r.on_keyframe_wanted(&mut self.env, origin_key, force, now);
                }
            }
        }
        if let Some(room) = room {
            self.reap(&room);
        }
    }

    /// The router owning producer `pkey` (local or piped in).
    pub(crate) fn router_of_producer(&mut self, pkey: PKey) -> Option<&mut Router> {
        let room = self.env.index.producers.get(&pkey)?;
        self.routers.get_mut(room)
    }

    /// Closes a room homed here once nobody is left in it.
    pub(crate) fn reap(&mut self, room_id: &str) {
        if self.routers.get(room_id).is_some_and(Router::is_finished) {
            self.discard_room(room_id);
        }
    }

    /// Drops this worker's replica of a room (its own peers, if any, are told it failed).
    fn drop_replica(&mut self, room_id: &str) {
        let Some(r) = self.routers.get_mut(room_id) else {
            return;
        };
        let local: Vec<(Arc<str>, ConnId)> = r
            .peers
            .iter()
            .filter(|p| p.worker == self.env.worker)
            .map(|p| (p.id.clone(), p.conn))
            .collect();
        for (peer_id, conn) in local {
            r.remove_peer(&mut self.env, &peer_id);
            let _ = self.env.signaling.send(Outbound::PeerGone {
                conn,
                room_id: Arc::from(room_id),
                peer_id,
            });
        }
        self.discard_room(room_id);
    }

    /// Removes a room (or replica) with whatever is left in it: the producers piped in for
    /// peers of other workers close (their origins stop sending), then the router goes with
    /// everything it still holds. Peers of this worker must be removed first.
    fn discard_room(&mut self, room_id: &str) {
        let Some(mut router) = self.routers.remove(room_id) else {
            return;
        };
        let env = &mut self.env;
        if catch_unwind(AssertUnwindSafe(|| router.close_rest(env))).is_err() {
            tracing::error!(worker = self.env.worker, room = %room_id, "closing the rest of a room panicked; dropped as it was");
        }
        let home = router.is_home();
        let id = router.id.clone();
        router.release(&mut self.env);
        if home {
            let _ = self
                .env
                .signaling
                .send(Outbound::RoomClosed { room_id: id });
        }
    }

    /// After a panic while handling one of a transport's packets: the transport goes
    /// (cascading, its peer told). If closing panics too, the state is broken and the room is
    /// evicted instead.
    pub fn fail_transport(&mut self, room_id: &str, tkey: TKey) {
        let Some(r) = self.routers.get_mut(room_id) else {
            return;
        };
        let env = &mut self.env;
        let closed = catch_unwind(AssertUnwindSafe(|| r.close_transport_and_tell(env, tkey)));
        if closed.is_err() {
            tracing::error!(worker = self.env.worker, room = %room_id, "closing a failed transport panicked; room closed");
            self.evict_room(room_id);
        }
    }

    /// An ICE-TCP connection ended. A transport that was using it has no path left: it is
    /// closed now and its client told (`transport-closed`: it can reconnect at once), not after
    /// the 30 s consent timeout. A transport that only had it as a spare candidate forgets it.
    pub fn tcp_closed(&mut self, remote: Remote) {
        let Some(route) = self.env.index.by_addr.get(&remote).cloned() else {
            return;
        };
        let transport = self
            .routers
            .get_mut(&route.room)
            .and_then(|r| r.transports.get_mut(&route.transport));
        let Some(t) = transport else {
            return;
        };
        if t.remote == Some(remote) {
            tracing::info!(transport = %t.id, "its ICE-TCP connection closed; closing the transport");
            let room = route.room.clone();
            self.fail_transport(&room, route.transport);
        } else {
            t.candidates.retain(|(c, _)| *c != remote);
            self.env.index.forget_tuple(route.transport, Some(remote));
        }
    }

    /// After a panic while handling a piped packet: that piped producer goes (its consumers
    /// are told), not the room.
    pub fn fail_piped_producer(&mut self, pkey: PKey) {
        let Some(room) = self.env.index.producers.get(&pkey).cloned() else {
            return;
        };
        let Some(r) = self.routers.get_mut(&room) else {
            return;
        };
        let env = &mut self.env;
        if catch_unwind(AssertUnwindSafe(|| r.close_producer(env, pkey))).is_err() {
            self.evict_room(&room);
        }
    }

    /// Drops a room after a panic in its code: its peers are told the room failed (their
    /// sockets stay open; they can join again) and the router goes with everything it owns,
    /// however far its close cascade got.
    pub fn evict_room(&mut self, room_id: &str) {
        let Some(r) = self.routers.get_mut(room_id) else {
            return;
        };
        let me = self.env.worker;
        let home = r.is_home();
        let home_worker = r.home_worker(me);
        let generation = match r.role {
            super::router::Role::Replica { generation, .. } => generation,
            super::router::Role::Home { .. } => 0,
        };
        let tag = r.tag();
        let satellites = r.satellites().to_vec();
        let peers: Vec<(Arc<str>, ConnId)> = r
            .peers
            .iter()
            .filter(|p| p.worker == me)
            .map(|p| (p.id.clone(), p.conn))
            .collect();
        // The other workers hosting peers of the room evict them too.
        for &w in &satellites {
            self.env.mesh.send(
                w,
                PipeMsg::Evict {
                    room: tag.clone(),
                    from: me,
                },
            );
        }
        for (peer_id, conn) in peers {
            // Closing can panic again if the state is what broke; never let that escape.
            if let Some(r) = self.routers.get_mut(room_id) {
                let env = &mut self.env;
                let _ = catch_unwind(AssertUnwindSafe(|| r.remove_peer(env, &peer_id)));
            }
            let _ = self.env.signaling.send(Outbound::PeerGone {
                conn,
                room_id: Arc::from(room_id),
                peer_id: peer_id.clone(),
            });
            self.env.notify(conn, Notice::RoomFailed);
        }
        if !home {
            self.env.mesh.send(
                home_worker,
                PipeMsg::ReplicaDropped {
                    room: tag,
                    from: me,
                    generation,
                },
            );
        }
        if home && !satellites.is_empty() {
            // The satellites' peers leave as the Evict reaches them; the room closes (and is
            // reported closed) with the last of them, as usual.
            return;
        }
        self.discard_room(room_id);
    }
}
