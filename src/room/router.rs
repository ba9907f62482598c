//! A room on one worker, mediasoup's `Router`: it owns the room's peers, transports,
//! producers, consumers and HLS taps. Nothing outside holds them; the worker keeps only an
//! index from addresses, ufrags and producer keys to (room, key), and dropping a router
//! ([`Router::release`]) drops everything it owns and every index entry naming it.
//!
//! The router's behaviour is split by concern: requests.rs (the commands of its peers),
//! close.rs (cascades), packet.rs (received datagrams), fanout.rs (forwarding, feedback,
//! retransmission), tap.rs (HLS taps), directory.rs and piping.rs (rooms spanning workers).

use super::api::{ApiError, ConnId, Notice};
use super::consumer::Consumer;
use super::env::Env;
use super::limits::SharedBucket;
use super::mesh::{PeerInfo, PipeMsg, RoomTag};
use super::producer::Producer;
use super::speaker::ActiveSpeaker;
use super::tap::Tap;
use super::transport::Transport;
use super::{CKey, PKey, TKey};
use crate::stats::Counted;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct Peer {
    pub id: Arc<str>,
    pub conn: ConnId,
    pub display_name: String,
    /// The worker that owns the peer's transports. A peer of another worker is a directory
    /// entry here: no transports, its producers piped in (room/directory.rs).
    pub worker: usize,
    pub transports: HashMap<String, TKey>,
    pub producers: HashMap<String, PKey>,
    pub consumers: HashMap<String, CKey>,
    /// The bit rate sent towards this peer, all its transports together (room/limits.rs).
    pub egress: SharedBucket,
}

impl Peer {
    /// A peer as the directory describes it; `egress` caps what this worker sends it.
    pub fn new(info: &PeerInfo, egress: SharedBucket) -> Self {
        Self {
            id: info.id.clone(),
            conn: info.conn,
            display_name: info.display_name.clone(),
            worker: info.worker,
            transports: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            egress,
        }
    }
}

/// Which worker orders the room's membership changes (room/directory.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This worker. `satellites`: the other workers hosting peers of the room, with the
    /// generation of the snapshot each one's replica came from.
    Home {
        satellites: Vec<usize>,
        snapshots: Vec<(usize, u64)>,
    },
    /// Another worker; this is a replica made from snapshot `generation` (a late
    /// `ReplicaDropped` of an older replica is ignored by the home).
    Replica { home: usize, generation: u64 },
}

pub struct Router {
    pub id: Arc<str>,
    /// This incarnation of the room, chosen by the home (see mesh::RoomTag).
    pub epoch: u64,
    pub role: Role,
    /// Peers in join order (of every worker the room spans).
    pub peers: Vec<Peer>,
    pub transports: HashMap<TKey, Transport>,
    pub producers: HashMap<PKey, Producer>,
    pub producers_by_id: HashMap<String, PKey>,
    pub consumers: HashMap<CKey, Consumer>,
    /// HLS taps of producers (plain RTP to the room's FFmpeg).
    pub taps: HashMap<PKey, Vec<Tap>>,
    /// Which producers were sending at the last look (tap.rs tells the HLS pipeline).
    pub sending: HashSet<PKey>,
    /// The dominant speaker (decided on the home, relayed to replicas: room/speaker.rs).
    pub speaker: ActiveSpeaker,
    /// Data producers and consumers (src/room/data.rs).
    pub data: super::data::DataChannels,
    /// Consumers whose transport probes, gathered while a packet fans out (reused: no
    /// allocation per packet).
    pub probing: Vec<(TKey, CKey)>,
}

/// What a router holds, as the worker's live counters count it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    pub peers: usize,
    pub transports: usize,
    pub producers: usize,
    pub piped_producers: usize,
    pub consumers: usize,
}

impl Router {
    /// A room homed on this worker.
    pub fn home(id: Arc<str>, epoch: u64) -> Self {
        Self::new(
            id,
            epoch,
            Role::Home {
                satellites: Vec::new(),
                snapshots: Vec::new(),
            },
        )
    }

    /// A replica of a room homed on worker `home`.
    pub fn replica(id: Arc<str>, epoch: u64, home: usize, generation: u64) -> Self {
        Self::new(id, epoch, Role::Replica { home, generation })
    }

    fn new(id: Arc<str>, epoch: u64, role: Role) -> Self {
        Self {
            id,
            epoch,
            role,
            peers: Vec::new(),
            transports: HashMap::new(),
            producers: HashMap::new(),
            producers_by_id: HashMap::new(),
            consumers: HashMap::new(),
            taps: HashMap::new(),
            sending: HashSet::new(),
            speaker: ActiveSpeaker::default(),
            data: Default::default(),
            probing: Vec::new(),
        }
    }

    pub fn is_home(&self) -> bool {
        matches!(self.role, Role::Home { .. })
    }

    /// The worker that orders this room (`me` when it is homed here).
    pub fn home_worker(&self, me: usize) -> usize {
        match self.role {
            Role::Home { .. } => me,
            Role::Replica { home, .. } => home,
        }
    }

    pub fn satellites(&self) -> &[usize] {
        match &self.role {
            Role::Home { satellites, .. } => satellites,
            Role::Replica { .. } => &[],
        }
    }

    pub fn tag(&self) -> RoomTag {
        RoomTag {
            id: self.id.clone(),
            epoch: self.epoch,
        }
    }

    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| &*p.id == id)
    }

    pub fn peer_mut(&mut self, id: &str) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| &*p.id == id)
    }

    /// A peer hosted on this worker (`me`), or the error its request gets.
    pub fn local_peer(&self, id: &str, me: usize) -> Result<&Peer, ApiError> {
        self.peer(id)
            .filter(|p| p.worker == me)
            .ok_or_else(|| ApiError::invalid_state("not in a room; join-room first"))
    }

    pub fn own_transport(&self, peer: &str, id: &str, me: usize) -> Result<TKey, ApiError> {
        self.local_peer(peer, me)?
            .transports
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no transport \"{id}\" of this peer")))
    }

    pub fn own_producer(&self, peer: &str, id: &str, me: usize) -> Result<PKey, ApiError> {
        self.local_peer(peer, me)?
            .producers
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no producer \"{id}\" of this peer")))
    }

    pub fn own_consumer(&self, peer: &str, id: &str, me: usize) -> Result<CKey, ApiError> {
        self.local_peer(peer, me)?
            .consumers
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no consumer \"{id}\" of this peer")))
    }

    /// The connection of a peer hosted on this worker.
    pub fn conn_of(&self, peer: &str, me: usize) -> Option<ConnId> {
        self.peer(peer).filter(|p| p.worker == me).map(|p| p.conn)
    }

    /// Notifies every peer of the room hosted on this worker except `except` (the workers
    /// hosting the others notify theirs when the change reaches them).
    pub fn notify_others(&self, env: &Env, except: &str, notice: Notice) {
        for p in self
            .peers
            .iter()
            .filter(|p| &*p.id != except && p.worker == env.worker)
        {
            env.notify(p.conn, notice.clone());
        }
    }

    /// Sends a change made on this worker to the rest of the room: from the home to every
    /// satellite (but `except`), from a satellite to the home.
    pub fn propagate(&self, env: &Env, msg: impl Fn(RoomTag) -> PipeMsg, except: Option<usize>) {
        match &self.role {
            Role::Home { satellites, .. } => {
                for &w in satellites.iter().filter(|&&w| Some(w) != except) {
                    env.mesh.send(w, msg(self.tag()));
                }
            }
            Role::Replica { home, .. } => env.mesh.send(*home, msg(self.tag())),
        }
    }

    /// What the router holds (what the worker's counters must lose when it is dropped).
    pub fn holdings(&self, me: usize) -> Holdings {
        let piped = self.producers.values().filter(|p| p.is_piped()).count();
        Holdings {
            peers: self.peers.iter().filter(|p| p.worker == me).count(),
            transports: self.transports.len(),
            producers: self.producers.len() - piped,
            piped_producers: piped,
            consumers: self.consumers.len(),
        }
    }

    /// Drops the router with whatever it still holds: its transports' DTLS sessions end, its
    /// piped producers' origins stop sending, the worker's counters and index lose everything
    /// of the room. Used after the graceful close (or after a panic broke it): nothing of the
    /// room survives this.
    pub fn release(mut self, env: &mut Env) {
        for t in self.transports.values_mut() {
            t.close();
        }
        // Producers piped in and still here: their origins would go on sending to nobody.
        for (&key, p) in &self.producers {
            if let Some(origin) = p.origin() {
                env.unsubscribe(key, origin);
            }
        }
        self.release_data(env);
        let h = self.holdings(env.worker);
        let stats = &env.stats;
        stats.sub(Counted::Peer, h.peers);
        stats.sub(Counted::Transport, h.transports);
        stats.sub(Counted::Producer, h.producers);
        stats.sub(Counted::PipedProducer, h.piped_producers);
        stats.sub(Counted::Consumer, h.consumers);
        stats.dec(if self.is_home() {
            Counted::Room
        } else {
            Counted::RoomReplica
        });
        env.index.forget_room(&self.id);
    }
}
