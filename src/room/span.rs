//! Rooms spanning workers: mediasoup's pipeToRouter idea inside one process.
//!
//! A room lives on its **home** worker. When the signaling thread places a joining peer on
//! another worker (the room outgrew one core, see `room_spill_peers`), that worker becomes a
//! **satellite** of the room: it holds a replica of the room's directory (every peer, with the
//! worker hosting it, and every producer) and owns the transports, producers and consumers of
//! the peers it hosts. Producers of other workers appear in a replica as *piped* producers:
//! `Producer::origin` says where they live, their packets (plain RTP, after SRTP decryption)
//! arrive in batches over a bounded lock-free queue, and from there on they are forwarded
//! exactly like local ones (same rewrite, same retransmission cache, same taps).
//!
//! Ordering: the home worker orders membership changes. Joins always go to the home; it adds
//! the peer to the directory and, for a peer hosted elsewhere, sends the satellite a snapshot
//! (first time) and then `HostPeer`, in one FIFO queue. A change made on a satellite (produce,
//! pause, close, leave) is applied there, sent to the home, and forwarded by the home to the
//! other satellites. Every worker notifies only the peers it hosts, when the change reaches
//! it, so each client sees a consistent sequence: whatever its join answer did not contain
//! arrives later as a notification.
//!
//! Media: a worker that creates a piped producer subscribes to the origin (`Subscribe`, with
//! its own key); the origin then appends every packet of that producer to a per-destination
//! batch, sent once per received datagram. Batches are recycled through a per-origin pool,
//! so steady-state piping allocates nothing. A full queue drops the batch (counted in
//! `pipeDrops`): real-time media is never queued without bound.

use super::core::{Peer, Room, WorkerCore};
use super::ortc::MediaKind;
use super::producer::{Producer, ProducerQuality};
use super::PKey;
use crate::channel::{bounded_task_mailbox, task_mailbox, Receiver, Sender};
use crate::rtc::keyframe::VideoCodec;
use crate::rtc::rtp;
use crate::signaling::protocol::ApiError;
use crate::worker::jobs::{ConnId, Outbound};
use crate::worker::stats::Counted;
use crossbeam_queue::ArrayQueue;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Media batches a worker may have waiting from the others before new ones are dropped.
const MEDIA_QUEUE: usize = 4096;
/// Spare batches kept per origin worker.
const POOL: usize = 256;

/// A room as named in messages between workers: its id and the incarnation of the room (a
/// room that closes and is created again, maybe on another home, is a new incarnation;
/// messages of an old one are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTag {
    pub id: Arc<str>,
    pub epoch: u64,
}

impl std::ops::Deref for RoomTag {
    type Target = str;
    fn deref(&self) -> &str {
        &self.id
    }
}

/// Where a piped producer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub worker: usize,
    pub key: PKey,
}

/// A peer as the directory knows it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub id: Arc<str>,
    pub conn: ConnId,
    pub display_name: String,
    pub worker: usize,
}

/// A producer as another worker needs it to pipe it in and create consumers of it.
#[derive(Debug, Clone)]
pub struct ProducerInfo {
    pub id: String,
    pub peer: Arc<str>,
    pub kind: MediaKind,
    pub paused: bool,
    pub mapping: super::ortc::ProducerMapping,
    pub video_codec: VideoCodec,
    pub clock_rate: u32,
    pub cname: String,
    pub origin: Origin,
}

/// Control messages between workers (membership, pipe subscriptions, key-frame requests).
#[derive(Debug)]
pub enum PipeMsg {
    /// Home → new satellite: the room's directory, before its first `HostPeer`.
    Snapshot {
        room: RoomTag,
        from: usize,
        generation: u64,
        peers: Vec<PeerInfo>,
        producers: Vec<ProducerInfo>,
    },
    /// Home → satellite: host this peer and answer its join-room request.
    HostPeer {
        room: RoomTag,
        from: usize,
        peer: PeerInfo,
        req_id: u32,
    },
    /// Home → satellites: a peer joined on another worker.
    PeerJoined {
        room: RoomTag,
        from: usize,
        peer: PeerInfo,
    },
    PeerLeft {
        room: RoomTag,
        from: usize,
        peer_id: Arc<str>,
    },
    ProducerAdded {
        room: RoomTag,
        from: usize,
        producer: Box<ProducerInfo>,
    },
    ProducerClosed {
        room: RoomTag,
        from: usize,
        producer_id: String,
    },
    ProducerPaused {
        room: RoomTag,
        from: usize,
        producer_id: String,
        paused: bool,
    },
    /// Home → satellite: you host no peer of the room any more; drop the replica.
    DropReplica { room: RoomTag, from: usize },
    /// Satellite → home: the replica (from snapshot `generation`) is gone: the room failed there.
    ReplicaDropped {
        room: RoomTag,
        from: usize,
        generation: u64,
    },
    /// Home → satellite: a peer you host closed its socket.
    Disconnect {
        room: RoomTag,
        from: usize,
        peer_id: Arc<str>,
    },
    /// Home → satellites: the room failed on the home worker; evict it.
    Evict { room: RoomTag, from: usize },
    /// Subscriber → origin: send me the packets of `origin_key` (my key for it: `key`).
    Subscribe {
        origin_key: PKey,
        worker: usize,
        key: PKey,
    },
    Unsubscribe {
        origin_key: PKey,
        worker: usize,
        key: PKey,
    },
    /// Subscriber → origin: a consumer needs a key frame.
    KeyFrame { origin_key: PKey, force: bool },
}

impl PipeMsg {
    /// The client request a message answers (a join hosted here), if any.
    pub fn request(&self) -> Option<(ConnId, u32)> {
        match self {
            PipeMsg::HostPeer { peer, req_id, .. } => Some((peer.conn, *req_id)),
            _ => None,
        }
    }

    /// The room a message concerns (to evict it if handling it panics).
    pub fn room(&self) -> Option<&str> {
        match self {
            PipeMsg::Snapshot { room, .. }
            | PipeMsg::HostPeer { room, .. }
            | PipeMsg::PeerJoined { room, .. }
            | PipeMsg::PeerLeft { room, .. }
            | PipeMsg::ProducerAdded { room, .. }
            | PipeMsg::ProducerClosed { room, .. }
            | PipeMsg::ProducerPaused { room, .. }
            | PipeMsg::DropReplica { room, .. }
            | PipeMsg::ReplicaDropped { room, .. }
            | PipeMsg::Disconnect { room, .. }
            | PipeMsg::Evict { room, .. } => Some(room),
            PipeMsg::Subscribe { .. } | PipeMsg::Unsubscribe { .. } | PipeMsg::KeyFrame { .. } => {
                None
            }
        }
    }
}

struct PipeItem {
    key: PKey,
    layer: u8,
    start: u32,
    end: u32,
    arrived: Instant,
}

/// Plain RTP packets of piped producers, from one origin worker to one other worker.
#[derive(Default)]
pub struct PipeBatch {
    origin: usize,
    items: Vec<PipeItem>,
    data: Vec<u8>,
}

impl PipeBatch {
    fn push(&mut self, key: PKey, layer: usize, packet: &[u8], arrived: Instant) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(packet);
        self.items.push(PipeItem {
            key,
            layer: layer.min(255) as u8,
            start,
            end: self.data.len() as u32,
            arrived,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item `i`: (subscriber's producer key, layer, packet, arrival time at the origin).
    pub fn get(&self, i: usize) -> Option<(PKey, usize, &[u8], Instant)> {
        let it = self.items.get(i)?;
        let data = self.data.get(it.start as usize..it.end as usize)?;
        Some((it.key, usize::from(it.layer), data, it.arrived))
    }
}

/// A worker's links to every worker (itself included, unused).
#[derive(Default)]
pub struct Mesh {
    control: Vec<Sender<PipeMsg>>,
    media: Vec<Sender<PipeBatch>>,
    pools: Vec<Arc<ArrayQueue<PipeBatch>>>,
}

/// What one worker receives from the others.
pub struct MeshInbox {
    pub control: Receiver<PipeMsg>,
    pub media: Receiver<PipeBatch>,
}

impl Mesh {
    /// Links for `n` workers: one `(Mesh, MeshInbox)` per worker, in worker order.
    pub fn connect(n: usize) -> Vec<(Mesh, MeshInbox)> {
        let mut control = Vec::new();
        let mut media = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..n {
            let (ctx, crx) = task_mailbox();
            let (mtx, mrx) = bounded_task_mailbox(MEDIA_QUEUE);
            control.push(ctx);
            media.push(mtx);
            inboxes.push(MeshInbox {
                control: crx,
                media: mrx,
            });
        }
        let pools: Vec<_> = (0..n).map(|_| Arc::new(ArrayQueue::new(POOL))).collect();
        inboxes
            .into_iter()
            .map(|inbox| {
                (
                    Mesh {
                        control: control.clone(),
                        media: media.clone(),
                        pools: pools.clone(),
                    },
                    inbox,
                )
            })
            .collect()
    }

    pub fn workers(&self) -> usize {
        self.control.len()
    }

    pub fn send(&self, worker: usize, msg: PipeMsg) {
        if let Some(tx) = self.control.get(worker) {
            if tx.send(msg).is_err() {
                tracing::warn!(worker, "worker mailbox closed; message to it dropped");
            }
        }
    }

    fn take_batch(&self, origin: usize) -> PipeBatch {
        let mut b = self
            .pools
            .get(origin)
            .and_then(|p| p.pop())
            .unwrap_or_default();
        b.origin = origin;
        b
    }

    /// Returns a used batch to its origin's pool.
    pub fn recycle(&self, mut batch: PipeBatch) {
        batch.items.clear();
        batch.data.clear();
        if let Some(pool) = self.pools.get(batch.origin) {
            let _ = pool.push(batch);
        }
    }
}

impl WorkerCore {
    /// Sends a change made on this worker to the rest of the room: from the home to every
    /// satellite (but `except`), from a satellite to the home.
    pub(crate) fn propagate(
        &self,
        room_id: &str,
        msg: impl Fn(RoomTag) -> PipeMsg,
        except: Option<usize>,
    ) {
        let (Some(room), Some(tag)) = (self.rooms.get(room_id), self.tag(room_id)) else {
            return;
        };
        if room.home == self.id {
            for &w in room.satellites.iter().filter(|&&w| Some(w) != except) {
                self.mesh.send(w, msg(tag.clone()));
            }
        } else {
            self.mesh.send(room.home, msg(tag));
        }
    }

    /// The tag of a room that exists here (for messages about it).
    pub(crate) fn tag(&self, room_id: &str) -> Option<RoomTag> {
        self.rooms.get(room_id).map(|r| RoomTag {
            id: r.id.clone(),
            epoch: r.epoch,
        })
    }

    /// At the home: passes a change that came from satellite `from` on to the other satellites.
    fn relay(&self, room: &RoomTag, from: usize, msg: impl Fn(RoomTag, usize) -> PipeMsg) {
        if self.is_home(room) {
            let me = self.id;
            self.propagate(room, |tag| msg(tag, me), Some(from));
        }
    }

    pub(crate) fn producer_info(&self, pkey: PKey) -> Option<ProducerInfo> {
        let p = self.producers.get(&pkey)?;
        Some(ProducerInfo {
            id: p.id.clone(),
            peer: p.peer.clone(),
            kind: p.kind,
            paused: p.paused,
            mapping: p.mapping.clone(),
            video_codec: p.video_codec,
            clock_rate: p.clock_rate,
            cname: p.cname.clone(),
            origin: p.origin.unwrap_or(Origin {
                worker: self.id,
                key: pkey,
            }),
        })
    }

    fn respond(&self, conn: ConnId, req_id: u32, result: Result<serde_json::Value, ApiError>) {
        let _ = self.signaling.send(Outbound::Response {
            conn,
            req_id,
            result,
        });
        self.answered(conn, req_id);
    }

    /// join-room on the room's home worker; `host` is the worker placed to own the peer.
    pub(crate) fn join_job(
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
        if self.rooms.get(room_id).is_some_and(|r| r.home != self.id) {
            self.drop_replica(room_id);
        }
        if !self.rooms.contains_key(room_id) {
            // Unique across workers: the home's id in the top bits, a fresh key below.
            let epoch = ((self.id as u64) << 48) | self.key();
            self.rooms
                .insert(room_id.clone(), Room::new(room_id.clone(), self.id, epoch));
            self.stats.inc(Counted::Room);
        }
        let Some(tag) = self.tag(room_id) else {
            return;
        };
        if host == self.id || host >= self.mesh.workers() {
            let result = self.add_local_peer(conn, room_id, peer_id, display_name.clone());
            if result.is_ok() {
                let info = PeerInfo {
                    id: peer_id.clone(),
                    conn,
                    display_name,
                    worker: self.id,
                };
                let from = self.id;
                self.propagate(
                    room_id,
                    |room| PipeMsg::PeerJoined {
                        room,
                        from,
                        peer: info.clone(),
                    },
                    None,
                );
            }
            let failed = result.is_err();
            self.respond(conn, req_id, result);
            if failed && self.rooms.get(room_id).is_some_and(|r| r.peers.is_empty()) {
                self.discard_room(room_id);
            }
            return;
        }
        let snapshot = {
            let room = &self.rooms[room_id];
            (!room.satellites.contains(&host)).then(|| self.snapshot(room))
        };
        let info = PeerInfo {
            id: peer_id.clone(),
            conn,
            display_name: display_name.clone(),
            worker: host,
        };
        self.add_remote_peer(room_id, &info);
        let from = self.id;
        self.propagate(
            room_id,
            |room| PipeMsg::PeerJoined {
                room,
                from,
                peer: info.clone(),
            },
            Some(host),
        );
        if let Some((peers, producers)) = snapshot {
            let generation = self.key();
            self.mesh.send(
                host,
                PipeMsg::Snapshot {
                    room: tag.clone(),
                    from,
                    generation,
                    peers,
                    producers,
                },
            );
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.satellites.push(host);
                room.snapshots.retain(|&(w, _)| w != host);
                room.snapshots.push((host, generation));
            }
        }
        self.mesh.send(
            host,
            PipeMsg::HostPeer {
                room: tag,
                from,
                peer: info,
                req_id,
            },
        );
        // The host answers it.
        self.answered(conn, req_id);
    }

    fn snapshot(&self, room: &Room) -> (Vec<PeerInfo>, Vec<ProducerInfo>) {
        let peers = room
            .peers
            .iter()
            .map(|p| PeerInfo {
                id: p.id.clone(),
                conn: p.conn,
                display_name: p.display_name.clone(),
                worker: p.worker,
            })
            .collect();
        let producers = room
            .peers
            .iter()
            .flat_map(|p| p.producers.values())
            .filter_map(|k| self.producer_info(*k))
            .collect();
        (peers, producers)
    }

    /// A directory entry for a peer hosted on another worker; tells this worker's peers.
    fn add_remote_peer(&mut self, room_id: &str, info: &PeerInfo) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        // A peer of this worker is never a directory entry here.
        if room.peer(&info.id).is_some() || info.worker == self.id {
            return;
        }
        room.peers.push(Peer {
            id: info.id.clone(),
            conn: info.conn,
            display_name: info.display_name.clone(),
            worker: info.worker,
            transports: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            // Media towards the peer leaves from its own worker, which caps it.
            egress: super::limits::shared_bucket(0),
        });
        let room = &self.rooms[room_id];
        self.notify_others(
            room,
            &info.id,
            "peer-joined",
            json!({"peerId": &*info.id, "displayName": info.display_name}),
        );
    }

    /// A producer of another worker, piped in: created here, subscribed at its origin.
    fn add_piped_producer(&mut self, room_id: &Arc<str>, info: ProducerInfo, tell: bool) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        if info.origin.worker == self.id
            || room.producers_by_id.contains_key(&info.id)
            || room.peer(&info.peer).is_none()
        {
            return;
        }
        let pkey = self.key();
        let encodings = info.mapping.encodings.len();
        let producer = Producer {
            id: info.id.clone(),
            kind: info.kind,
            transport: 0,
            room: room_id.clone(),
            peer: info.peer.clone(),
            ssrcs: vec![None; encodings],
            active_encoding: encodings.saturating_sub(1),
            video_codec: info.video_codec,
            clock_rate: info.clock_rate,
            keyframes: Default::default(),
            cname: info.cname,
            paused: info.paused,
            consumers: Vec::new(),
            quality: ProducerQuality::new(&info.mapping),
            mapping: info.mapping,
            origin: Some(info.origin),
            pipes: Vec::new(),
        };
        self.producers.insert(pkey, producer);
        self.stats.inc(Counted::PipedProducer);
        let room = self.rooms.get_mut(room_id).expect("checked above");
        room.producers_by_id.insert(info.id.clone(), pkey);
        if let Some(p) = room.peer_mut(&info.peer) {
            p.producers.insert(info.id.clone(), pkey);
        }
        self.mesh.send(
            info.origin.worker,
            PipeMsg::Subscribe {
                origin_key: info.origin.key,
                worker: self.id,
                key: pkey,
            },
        );
        if tell {
            let room = &self.rooms[room_id];
            self.notify_others(
                room,
                &info.peer,
                "new-producer",
                json!({"producerId": info.id, "peerId": &*info.peer, "kind": info.kind.as_str()}),
            );
            self.announce_sources(room_id);
        }
    }

    /// Drops this worker's replica of a room (its own peers, if any, are told it failed).
    fn drop_replica(&mut self, room_id: &str) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let local: Vec<(Arc<str>, ConnId)> = room
            .peers
            .iter()
            .filter(|p| p.worker == self.id)
            .map(|p| (p.id.clone(), p.conn))
            .collect();
        for (peer_id, conn) in local {
            self.remove_peer(room_id, &peer_id);
            let _ = self.signaling.send(Outbound::PeerGone {
                conn,
                room_id: Arc::from(room_id),
                peer_id,
            });
        }
        self.discard_room(room_id);
    }

    /// The socket of a peer closed (sent to the room's home, after any join of that peer).
    pub(crate) fn disconnect(&mut self, room_id: &Arc<str>, peer_id: &Arc<str>) {
        let Some(peer) = self.rooms.get(room_id).and_then(|r| r.peer(peer_id)) else {
            return;
        };
        if peer.worker == self.id {
            self.remove_peer(room_id, peer_id);
        } else {
            let worker = peer.worker;
            self.mesh.send(
                worker,
                PipeMsg::Disconnect {
                    room: self.tag(room_id).expect("peer found above"),
                    from: self.id,
                    peer_id: peer_id.clone(),
                },
            );
        }
    }

    /// Whether a room message from worker `from` is current: from the home to a satellite,
    /// or from a satellite to the home.
    fn current_sender(&self, room: &RoomTag, from: usize) -> bool {
        self.rooms.get(&room.id).is_some_and(|r| {
            r.epoch == room.epoch
                && ((r.home == from && from != self.id)
                    || (r.home == self.id && r.satellites.contains(&from)))
        })
    }

    /// Whether `room` names this worker's replica of a room homed on `from`.
    fn replica_of(&self, room: &RoomTag, from: usize) -> bool {
        self.rooms
            .get(&room.id)
            .is_some_and(|r| r.epoch == room.epoch && r.home == from && from != self.id)
    }

    pub(crate) fn is_home(&self, room_id: &str) -> bool {
        self.rooms.get(room_id).is_some_and(|r| r.home == self.id)
    }

    /// Handles a control message from another worker.
    pub fn handle_pipe_msg(&mut self, msg: PipeMsg, now: Instant) {
        match msg {
            PipeMsg::Snapshot {
                room,
                from,
                generation,
                peers,
                producers,
            } => {
                if self.rooms.contains_key(&room.id) {
                    self.drop_replica(&room);
                }
                let mut replica = Room::new(room.id.clone(), from, room.epoch);
                replica.snapshots.push((self.id, generation));
                self.rooms.insert(room.id.clone(), replica);
                self.stats.inc(Counted::RoomReplica);
                for p in &peers {
                    self.add_remote_peer(&room, p);
                }
                for p in producers {
                    self.add_piped_producer(&room.id, p, false);
                }
            }
            PipeMsg::HostPeer {
                room,
                from,
                peer,
                req_id,
            } => {
                let result = if self.replica_of(&room, from) {
                    self.add_local_peer(peer.conn, &room.id, &peer.id, peer.display_name)
                } else {
                    Err(ApiError::internal(
                        "the room moved while joining; join again",
                    ))
                };
                if result.is_err() {
                    self.mesh.send(
                        from,
                        PipeMsg::PeerLeft {
                            room: room.clone(),
                            from: self.id,
                            peer_id: peer.id.clone(),
                        },
                    );
                }
                self.respond(peer.conn, req_id, result);
            }
            PipeMsg::PeerJoined { room, from, peer } => {
                // Only ever sent by the home.
                if self.replica_of(&room, from) {
                    self.add_remote_peer(&room, &peer);
                }
            }
            PipeMsg::PeerLeft {
                room,
                from,
                peer_id,
            } => {
                // From the home, or (at the home) from the worker hosting that peer.
                let Some(r) = self.rooms.get(&room.id).filter(|r| r.epoch == room.epoch) else {
                    return;
                };
                let Some(worker) = r.peer(&peer_id).map(|p| p.worker) else {
                    return;
                };
                let home = r.home == self.id;
                let current = if home {
                    worker == from
                } else {
                    r.home == from && worker != self.id
                };
                if !current || worker == self.id {
                    return;
                }
                self.relay(&room, from, |room, me| PipeMsg::PeerLeft {
                    room,
                    from: me,
                    peer_id: peer_id.clone(),
                });
                self.remove_peer(&room, &peer_id);
            }
            PipeMsg::ProducerAdded {
                room,
                from,
                producer,
            } => {
                if !self.current_sender(&room, from) {
                    return;
                }
                self.relay(&room, from, |room, me| PipeMsg::ProducerAdded {
                    room,
                    from: me,
                    producer: producer.clone(),
                });
                self.add_piped_producer(&room.id, *producer, true);
            }
            PipeMsg::ProducerClosed {
                room,
                from,
                producer_id,
            } => {
                if !self.current_sender(&room, from) {
                    return;
                }
                self.relay(&room, from, |room, me| PipeMsg::ProducerClosed {
                    room,
                    from: me,
                    producer_id: producer_id.clone(),
                });
                if let Some(pkey) = self.piped_key(&room, &producer_id) {
                    self.close_producer(pkey);
                }
            }
            PipeMsg::ProducerPaused {
                room,
                from,
                producer_id,
                paused,
            } => {
                if !self.current_sender(&room, from) {
                    return;
                }
                self.relay(&room, from, |room, me| PipeMsg::ProducerPaused {
                    room,
                    from: me,
                    producer_id: producer_id.clone(),
                    paused,
                });
                if let Some(pkey) = self.piped_key(&room, &producer_id) {
                    self.apply_producer_paused(pkey, paused, now);
                }
            }
            PipeMsg::DropReplica { room, from } => {
                if self.replica_of(&room, from) {
                    self.drop_replica(&room);
                }
            }
            PipeMsg::ReplicaDropped {
                room,
                from,
                generation,
            } => {
                // Only the replica the home last sent a snapshot for: a join placed there
                // since brought a fresh one.
                if let Some(r) = self
                    .rooms
                    .get_mut(&room.id)
                    .filter(|r| r.home == self.id && r.epoch == room.epoch)
                {
                    if r.snapshots.contains(&(from, generation)) {
                        r.satellites.retain(|&w| w != from);
                        r.snapshots.retain(|&(w, _)| w != from);
                    }
                }
            }
            PipeMsg::Disconnect {
                room,
                from,
                peer_id,
            } => {
                let local = self
                    .rooms
                    .get(&room.id)
                    .filter(|_| self.replica_of(&room, from))
                    .and_then(|r| r.peer(&peer_id))
                    .is_some_and(|p| p.worker == self.id);
                if local {
                    self.remove_peer(&room, &peer_id);
                }
            }
            PipeMsg::Evict { room, from } => {
                if self.replica_of(&room, from) {
                    self.evict_room(&room);
                }
            }
            PipeMsg::Subscribe {
                origin_key,
                worker,
                key,
            } => {
                if let Some(p) = self
                    .producers
                    .get_mut(&origin_key)
                    .filter(|p| p.origin.is_none())
                {
                    if !p.pipes.contains(&(worker, key)) {
                        p.pipes.push((worker, key));
                    }
                    // The new subscriber's consumers start at a key frame.
                    if p.kind == MediaKind::Video {
                        p.keyframes.defer(true);
                    }
                }
            }
            PipeMsg::Unsubscribe {
                origin_key,
                worker,
                key,
            } => {
                if let Some(p) = self.producers.get_mut(&origin_key) {
                    p.pipes.retain(|&pipe| pipe != (worker, key));
                }
            }
            PipeMsg::KeyFrame { origin_key, force } => {
                if self
                    .producers
                    .get(&origin_key)
                    .is_some_and(|p| p.origin.is_none())
                {
                    self.request_keyframe(origin_key, now, force);
                }
            }
        }
    }

    fn piped_key(&self, room_id: &str, producer_id: &str) -> Option<PKey> {
        let pkey = *self.rooms.get(room_id)?.producers_by_id.get(producer_id)?;
        self.producers
            .get(&pkey)
            .filter(|p| p.origin.is_some())
            .map(|_| pkey)
    }

    /// Queues a packet of a local producer for the workers it is piped to.
    pub(crate) fn pipe_packet(&mut self, pkey: PKey, layer: usize, plain: &[u8], now: Instant) {
        let WorkerCore {
            producers,
            pipe_out,
            mesh,
            id,
            ..
        } = self;
        let Some(p) = producers.get(&pkey) else {
            return;
        };
        for &(w, key) in &p.pipes {
            if let Some(slot) = pipe_out.get_mut(w) {
                slot.get_or_insert_with(|| mesh.take_batch(*id))
                    .push(key, layer, plain, now);
            }
        }
    }

    /// Hands the queued batches to their workers (after each received datagram).
    pub fn flush_pipes(&mut self) {
        for (w, slot) in self.pipe_out.iter_mut().enumerate() {
            let Some(batch) = slot.take() else {
                continue;
            };
            let n = batch.len() as u64;
            match self.mesh.media.get(w).map(|tx| tx.send(batch)) {
                Some(Ok(())) => {
                    self.stats.pipe_packets_out.fetch_add(n, Ordering::Relaxed);
                }
                Some(Err(batch)) => {
                    self.stats.pipe_drops.fetch_add(1, Ordering::Relaxed);
                    self.mesh.recycle(batch);
                }
                None => {}
            }
        }
    }

    /// A packet of a piped producer, from its origin worker.
    pub fn on_piped_packet(&mut self, key: PKey, layer: usize, packet: &[u8], now: Instant) {
        let Some(hdr) = rtp::parse_rtp(packet) else {
            return;
        };
        if self.producers.get(&key).is_none_or(|p| p.origin.is_none()) {
            return;
        }
        self.stats.pipe_packets_in.fetch_add(1, Ordering::Relaxed);
        self.on_producer_packet(key, layer, packet, &hdr, now);
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
