//! The links between workers for rooms that span them: control messages (membership, pipe
//! subscriptions, key-frame requests) and batches of plain RTP of piped producers. The
//! protocol over them is in room/directory.rs (membership) and room/piping.rs (media).
//!
//! Media batches are recycled through a per-origin pool, so steady-state piping allocates
//! nothing. A full queue drops the batch (counted in `pipeDrops`): real-time media is never
//! queued without bound.

use super::api::ConnId;
use super::ortc::{MediaKind, ProducerMapping};
use super::PKey;
use crate::channel::{bounded_task_mailbox, task_mailbox, Receiver, Sender};
use crate::rtc::keyframe::VideoCodec;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::time::Instant;

/// Media batches a worker may have waiting from the others before new ones are dropped.
pub(crate) const MEDIA_QUEUE: usize = 4096;
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
    pub label: super::api::SourceLabel,
    pub paused: bool,
    pub mapping: ProducerMapping,
    pub video_codec: VideoCodec,
    pub clock_rate: u32,
    pub cname: String,
    pub origin: Origin,
}

/// A data producer as the other workers of its room know it (room/data.rs): enough to list
/// it, announce it and create data consumers of it; its messages follow as `DataMessage`s.
#[derive(Debug, Clone)]
pub struct DataProducerInfo {
    pub id: Arc<str>,
    pub peer: Arc<str>,
    pub stream: super::api::SctpStreamParameters,
    pub label: String,
    pub protocol: String,
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
    /// A data producer was made on the sending worker (or, from the home, anywhere).
    DataProducerAdded {
        room: RoomTag,
        from: usize,
        producer: DataProducerInfo,
    },
    DataProducerClosed {
        room: RoomTag,
        from: usize,
        data_producer_id: Arc<str>,
    },
    /// One message of a data producer, for that producer's data consumers on other workers.
    DataMessage {
        room: RoomTag,
        from: usize,
        data_producer_id: Arc<str>,
        ppid: u32,
        data: bytes::Bytes,
    },
    /// Home → satellites: the room's dominant speaker changed (room/speaker.rs).
    ActiveSpeaker {
        room: RoomTag,
        from: usize,
        speaker: super::speaker::Announced,
    },
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
            | PipeMsg::Evict { room, .. }
            | PipeMsg::ActiveSpeaker { room, .. }
            | PipeMsg::DataProducerAdded { room, .. }
            | PipeMsg::DataProducerClosed { room, .. }
            | PipeMsg::DataMessage { room, .. } => Some(room),
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
    pub fn push(&mut self, key: PKey, layer: usize, packet: &[u8], arrived: Instant) {
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

    pub fn take_batch(&self, origin: usize) -> PipeBatch {
        let mut b = self
            .pools
            .get(origin)
            .and_then(|p| p.pop())
            .unwrap_or_default();
        b.origin = origin;
        b
    }

    /// Hands a batch of media to `worker`; a full queue gives it back.
    pub fn send_media(&self, worker: usize, batch: PipeBatch) -> Result<(), PipeBatch> {
        match self.media.get(worker) {
            Some(tx) => tx.send(batch),
            None => Ok(()),
        }
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
