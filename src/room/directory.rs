//! Rooms spanning workers: the membership directory, one handler per message kind.
//!
//! A room lives on its **home** worker. When the signaling thread places a joining peer on
//! another worker (the room outgrew one core, see `room_spill_peers`), that worker becomes a
//! **satellite** of the room: it holds a replica of the room's directory (every peer, with the
//! worker hosting it, and every producer) and owns the transports, producers and consumers of
//! the peers it hosts. Producers of other workers appear in a replica as piped producers
//! (room/piping.rs).
//!
//! Ordering: the home worker orders membership changes. Joins always go to the home; it adds
//! the peer to the directory and, for a peer hosted elsewhere, sends the satellite a snapshot
//! (first time) and then `HostPeer`, in one FIFO queue. A change made on a satellite (produce,
//! pause, close, leave) is applied there, sent to the home, and relayed by the home to the
//! other satellites. Every worker notifies only the peers it hosts, when the change reaches
//! it, so each client sees a consistent sequence: whatever its join answer did not contain
//! arrives later as a notification.

use super::api::{ApiError, ConnId, Notice};
use super::env::Env;
use super::limits::shared_bucket;
use super::mesh::{Origin, PeerInfo, PipeMsg, ProducerInfo, RoomTag};
use super::router::{Peer, Role, Router};
use super::PKey;
use std::sync::Arc;
use std::time::Instant;

impl Router {
    /// Whether a room message from worker `from` is current: from the home to a satellite,
    /// or from a satellite to the home.
    fn current_sender(&self, env: &Env, room: &RoomTag, from: usize) -> bool {
        self.epoch == room.epoch
            && match &self.role {
                Role::Replica { home, .. } => *home == from && from != env.worker,
                Role::Home { satellites, .. } => satellites.contains(&from),
            }
    }

    /// Whether `room` names this replica of a room homed on `from`.
    pub fn is_replica_of(&self, env: &Env, room: &RoomTag, from: usize) -> bool {
        self.epoch == room.epoch
            && matches!(self.role, Role::Replica { home, .. } if home == from && from != env.worker)
    }

    /// At the home: passes a change that came from satellite `from` on to the others.
    fn relay(&self, env: &Env, from: usize, msg: impl Fn(RoomTag, usize) -> PipeMsg) {
        if self.is_home() {
            let me = env.worker;
            self.propagate(env, |tag| msg(tag, me), Some(from));
        }
    }

    /// Whether a change from worker `from` is current (see [`Self::current_sender`]); if so,
    /// the home relays it (`msg`) to the other satellites before it is applied here.
    pub(super) fn accept(
        &self,
        env: &Env,
        room: &RoomTag,
        from: usize,
        msg: impl Fn(RoomTag, usize) -> PipeMsg,
    ) -> bool {
        let current = self.current_sender(env, room, from);
        if current {
            self.relay(env, from, msg);
        }
        current
    }

    /// join-room at the room's home; `host` is the worker placed to own the peer.
    pub fn join(
        &mut self,
        env: &mut Env,
        conn: ConnId,
        peer_id: &Arc<str>,
        display_name: String,
        host: usize,
        req_id: u32,
    ) {
        let from = env.worker;
        let local = host == from || host >= env.mesh.workers();
        let info = PeerInfo {
            id: peer_id.clone(),
            conn,
            display_name,
            worker: if local { from } else { host },
        };
        let mut joined = None;
        let snapshot = if local {
            let answer = self.add_local_peer(env, conn, peer_id, info.display_name.clone());
            if answer.is_err() {
                return env.respond(conn, req_id, answer);
            }
            joined = Some(answer);
            None
        } else {
            let snapshot = (!self.satellites().contains(&host)).then(|| self.snapshot(env));
            self.add_remote_peer(env, &info);
            snapshot
        };
        // The other satellites learn of the peer; its own host learns from `HostPeer`.
        self.propagate(
            env,
            |room| PipeMsg::PeerJoined {
                room,
                from,
                peer: info.clone(),
            },
            (!local).then_some(host),
        );
        if let Some(answer) = joined {
            env.respond(conn, req_id, answer);
            return self.tell_speaker(env, conn);
        }
        if let Some((peers, producers)) = snapshot {
            let generation = env.key();
            env.mesh.send(
                host,
                PipeMsg::Snapshot {
                    room: self.tag(),
                    from,
                    generation,
                    peers,
                    producers,
                },
            );
            self.send_speaker(env, host);
            self.send_data_producers(env, host);
            if let Role::Home {
                satellites,
                snapshots,
            } = &mut self.role
            {
                satellites.push(host);
                snapshots.retain(|&(w, _)| w != host);
                snapshots.push((host, generation));
            }
        }
        let room = self.tag();
        env.mesh.send(
            host,
            PipeMsg::HostPeer {
                room,
                from,
                peer: info,
                req_id,
            },
        );
        // The host answers it.
        env.answered(conn, req_id);
    }

    /// The room's directory, for a new satellite.
    fn snapshot(&self, env: &Env) -> (Vec<PeerInfo>, Vec<ProducerInfo>) {
        let peers = self
            .peers
            .iter()
            .map(|p| PeerInfo {
                id: p.id.clone(),
                conn: p.conn,
                display_name: p.display_name.clone(),
                worker: p.worker,
            })
            .collect();
        let producers = self
            .peers
            .iter()
            .flat_map(|p| p.producers.values())
            .filter_map(|&key| {
                let p = self.producers.get(&key)?;
                Some(p.info(Origin {
                    worker: env.worker,
                    key,
                }))
            })
            .collect();
        (peers, producers)
    }

    /// A new replica from the home's snapshot.
    pub fn from_snapshot(
        env: &mut Env,
        room: &RoomTag,
        home: usize,
        generation: u64,
        peers: &[PeerInfo],
        producers: Vec<ProducerInfo>,
    ) -> Self {
        let mut replica = Router::replica(room.id.clone(), room.epoch, home, generation);
        for p in peers {
            replica.add_remote_peer(env, p);
        }
        for p in producers {
            replica.add_piped_producer(env, p, false);
        }
        replica
    }

    /// A directory entry for a peer hosted on another worker; tells this worker's peers.
    pub fn add_remote_peer(&mut self, env: &Env, info: &PeerInfo) {
        // A peer of this worker is never a directory entry here.
        if self.peer(&info.id).is_some() || info.worker == env.worker {
            return;
        }
        // Media towards the peer leaves from its own worker, which caps it.
        self.peers.push(Peer::new(info, shared_bucket(0)));
        self.notify_others(
            env,
            &info.id,
            Notice::PeerJoined {
                peer_id: info.id.clone(),
                display_name: info.display_name.clone(),
            },
        );
    }

    /// Home → satellites: a peer joined on another worker.
    pub fn on_peer_joined(&mut self, env: &Env, room: &RoomTag, from: usize, peer: &PeerInfo) {
        if self.is_replica_of(env, room, from) {
            self.add_remote_peer(env, peer);
        }
    }

    /// From the home, or (at the home) from the worker hosting that peer.
    pub fn on_peer_left(&mut self, env: &mut Env, room: &RoomTag, from: usize, peer_id: &Arc<str>) {
        if self.epoch != room.epoch {
            return;
        }
        let Some(worker) = self.peer(peer_id).map(|p| p.worker) else {
            return;
        };
        let current = match &self.role {
            Role::Home { .. } => worker == from,
            Role::Replica { home, .. } => *home == from && worker != env.worker,
        };
        if !current || worker == env.worker {
            return;
        }
        self.relay(env, from, |room, me| PipeMsg::PeerLeft {
            room,
            from: me,
            peer_id: peer_id.clone(),
        });
        self.remove_peer(env, peer_id);
    }

    pub fn on_producer_added(
        &mut self,
        env: &mut Env,
        room: &RoomTag,
        from: usize,
        producer: Box<ProducerInfo>,
    ) {
        let relayed = |room, me| PipeMsg::ProducerAdded {
            room,
            from: me,
            producer: producer.clone(),
        };
        if self.accept(env, room, from, relayed) {
            self.add_piped_producer(env, *producer, true);
        }
    }

    pub fn on_producer_closed(
        &mut self,
        env: &mut Env,
        room: &RoomTag,
        from: usize,
        producer_id: &str,
    ) {
        let relayed = |room, me| PipeMsg::ProducerClosed {
            room,
            from: me,
            producer_id: producer_id.to_string(),
        };
        if !self.accept(env, room, from, relayed) {
            return;
        }
        if let Some(pkey) = self.piped_key(producer_id) {
            self.close_producer(env, pkey);
        }
    }

    pub fn on_producer_paused(
        &mut self,
        env: &mut Env,
        room: &RoomTag,
        from: usize,
        producer_id: &str,
        paused: bool,
        now: Instant,
    ) {
        let relayed = |room, me| PipeMsg::ProducerPaused {
            room,
            from: me,
            producer_id: producer_id.to_string(),
            paused,
        };
        if !self.accept(env, room, from, relayed) {
            return;
        }
        if let Some(pkey) = self.piped_key(producer_id) {
            self.apply_producer_paused(env, pkey, paused, now);
        }
    }

    /// Satellite → home: the replica (from snapshot `generation`) is gone: the room failed
    /// there. Only the replica the home last sent a snapshot for counts: a join placed there
    /// since brought a fresh one.
    pub fn on_replica_dropped(&mut self, room: &RoomTag, from: usize, generation: u64) {
        if self.epoch != room.epoch {
            return;
        }
        if let Role::Home {
            satellites,
            snapshots,
        } = &mut self.role
        {
            if snapshots.contains(&(from, generation)) {
                satellites.retain(|&w| w != from);
                snapshots.retain(|&(w, _)| w != from);
            }
        }
    }

    /// Home → satellite: a peer this worker hosts closed its socket.
    pub fn on_disconnect(&mut self, env: &mut Env, room: &RoomTag, from: usize, peer_id: &str) {
        let local = self.is_replica_of(env, room, from)
            && self.peer(peer_id).is_some_and(|p| p.worker == env.worker);
        if local {
            self.remove_peer(env, peer_id);
        }
    }

    /// The socket of a peer closed (sent to the room's home, after any join of that peer).
    pub fn disconnect(&mut self, env: &mut Env, peer_id: &Arc<str>) {
        let Some(worker) = self.peer(peer_id).map(|p| p.worker) else {
            return;
        };
        if worker == env.worker {
            self.remove_peer(env, peer_id);
        } else {
            env.mesh.send(
                worker,
                PipeMsg::Disconnect {
                    room: self.tag(),
                    from: env.worker,
                    peer_id: peer_id.clone(),
                },
            );
        }
    }

    fn piped_key(&self, producer_id: &str) -> Option<PKey> {
        let pkey = *self.producers_by_id.get(producer_id)?;
        self.producers
            .get(&pkey)
            .filter(|p| p.is_piped())
            .map(|_| pkey)
    }
}

/// Home → this satellite: host this peer and answer its join-room request (`replica`: this
/// worker's copy of the room, if it has one). Refused when the room moved meanwhile; the
/// home then drops the peer from the directory.
pub fn host_peer(
    replica: Option<&mut Router>,
    env: &mut Env,
    room: &RoomTag,
    from: usize,
    peer: PeerInfo,
    req_id: u32,
) {
    let mut replica = replica.filter(|r| r.is_replica_of(env, room, from));
    let result = match replica.as_deref_mut() {
        Some(r) => r.add_local_peer(env, peer.conn, &peer.id, peer.display_name.clone()),
        None => Err(ApiError::internal(
            "the room moved while joining; join again",
        )),
    };
    if result.is_err() {
        env.mesh.send(
            from,
            PipeMsg::PeerLeft {
                room: room.clone(),
                from: env.worker,
                peer_id: peer.id.clone(),
            },
        );
    }
    let joined = result.is_ok();
    env.respond(peer.conn, req_id, result);
    if let Some(r) = replica.filter(|_| joined) {
        r.tell_speaker(env, peer.conn);
    }
}
