//! What a router needs of its worker: settings, the outlets (datagrams to send, messages to
//! the signaling thread and to other workers), fault injection, and the worker's index from
//! addresses, ufrags and producer keys to (room, key). The index lives here, beside the
//! outlets, so a close inside a router drops its own entries; dropping a whole room drops
//! every entry that names it ([`Index::forget_room`]).

use super::api::{Answer, ApiError, ConnId, Notice, Outbound};
use super::limits::{CacheBudget, MediaLimits};
use super::mesh::{Mesh, PipeBatch};
use super::ortc::{self, RtpCapabilities};
use super::outbox::Outbox;
use super::remote::Remote;
use super::transport::DtlsMsg;
use super::{PKey, TKey};
use crate::channel::Sender;
use crate::rtc::dtls::DtlsRuntime;
use crate::stats::WorkerStats;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Test-only faults a worker injects on purpose (docs/config.md, "Fault injection"); all off
/// by default. They exercise loss recovery and panic containment against the real server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Share (0..=100) of the RTP packets forwarded to consumers that are dropped
    /// (retransmissions are not), to exercise NACK/RTX.
    pub drop_out_percent: u8,
    /// Requests of peers in the room with this id panic before they are answered.
    pub panic_room: Option<Arc<str>>,
    /// Closing a consumer in the room with this id panics (a close cascade breaking midway).
    pub panic_close_room: Option<Arc<str>>,
}

impl Faults {
    pub fn panics_requests_of(&self, room: &str) -> bool {
        self.panic_room.as_deref() == Some(room)
    }

    pub fn panics_closes_of(&self, room: &str) -> bool {
        self.panic_close_room.as_deref() == Some(room)
    }
}

/// Where an index entry points: a room on this worker, and an object key in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub room: Arc<str>,
    pub transport: TKey,
}

/// The worker's lookups from what arrives without a room (a datagram's address, a STUN
/// ufrag, a piped packet's producer key) to the room that owns it.
#[derive(Debug, Default)]
pub struct Index {
    pub by_ufrag: HashMap<String, Route>,
    pub by_addr: HashMap<Remote, Route>,
    /// Every producer of this worker (local and piped in) → its room.
    pub producers: HashMap<PKey, Arc<str>>,
}

impl Index {
    /// Removes every entry of a room (it was dropped).
    pub fn forget_room(&mut self, room: &str) {
        self.by_ufrag.retain(|_, r| &*r.room != room);
        self.by_addr.retain(|_, r| &*r.room != room);
        self.producers.retain(|_, r| &**r != room);
    }

    /// How many entries name `room` (zero once it is gone).
    pub fn entries_of(&self, room: &str) -> usize {
        self.by_ufrag.values().filter(|r| &*r.room == room).count()
            + self.by_addr.values().filter(|r| &*r.room == room).count()
            + self.producers.values().filter(|r| &***r == room).count()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ufrag.is_empty() && self.by_addr.is_empty() && self.producers.is_empty()
    }

    /// Removes a tuple from the address index if it still points at `tkey`.
    pub fn forget_tuple(&mut self, tkey: TKey, tuple: Option<Remote>) {
        if let Some(a) = tuple.filter(|a| self.by_addr.get(a).is_some_and(|r| r.transport == tkey))
        {
            self.by_addr.remove(&a);
        }
    }

    /// Removes every address and the ufrag of a transport that closed.
    pub fn forget_transport(&mut self, tkey: TKey, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, r| r.transport != tkey);
    }
}

/// Everything of a worker that its routers share.
pub struct Env {
    pub worker: usize,
    pub caps: RtpCapabilities,
    pub dtls: Arc<DtlsRuntime>,
    /// The worker certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    pub dtls_events: Sender<DtlsMsg>,
    /// The media address announced in ICE candidates.
    pub announced: SocketAddr,
    /// Whether the worker accepts ICE-TCP on its media port (transports offer a TCP candidate).
    pub ice_tcp: bool,
    /// What one peer may make this worker hold or send (room/limits.rs).
    pub limits: MediaLimits,
    pub cache_budget: CacheBudget,
    pub faults: Faults,
    /// TURN servers handed to every new transport (room/turn.rs); None: not configured.
    pub turn: Option<super::turn::TurnConfig>,
    pub stats: Arc<WorkerStats>,
    pub index: Index,
    /// Datagrams to send: (destination, bytes).
    pub outbox: Outbox,
    pub scratch: Vec<u8>,
    pub signaling: Sender<Outbound>,
    /// The other workers (rooms spanning workers) and the media batches queued for them.
    pub mesh: Mesh,
    pub pipe_out: Vec<Option<PipeBatch>>,
    /// The request the job being handled must still answer (conn, request id); cleared when
    /// it is answered, so a panic midway can answer it `internal` (every request gets
    /// exactly one response).
    pub unanswered: Cell<Option<(ConnId, u32)>>,
    next_key: u64,
}

impl Env {
    pub fn new(
        worker: usize,
        announced: SocketAddr,
        dtls: Arc<DtlsRuntime>,
        fingerprint: String,
        dtls_events: Sender<DtlsMsg>,
        signaling: Sender<Outbound>,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let caps = ortc::router_capabilities(&ortc::default_media_codecs())
            .expect("the built-in codec list is valid");
        let limits = MediaLimits::default();
        Self {
            worker,
            caps,
            dtls,
            fingerprint,
            dtls_events,
            announced,
            ice_tcp: false,
            cache_budget: CacheBudget::new(limits.retransmit_cache_budget, stats.clone()),
            limits,
            faults: Faults::default(),
            turn: None,
            stats,
            index: Index::default(),
            outbox: Outbox::with_capacity(64),
            scratch: Vec::with_capacity(1500),
            signaling,
            mesh: Mesh::default(),
            pipe_out: Vec::new(),
            unanswered: Cell::new(None),
            next_key: 1,
        }
    }

    /// A fresh object key (never reused within a worker).
    pub fn key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    pub fn notify(&self, conn: ConnId, notice: Notice) {
        let _ = self.signaling.send(Outbound::Notify { conn, notice });
    }

    /// Sends the one response of request `req_id` of `conn`.
    pub fn respond(&self, conn: ConnId, req_id: u32, result: Result<Answer, ApiError>) {
        let _ = self.signaling.send(Outbound::Response {
            conn,
            req_id,
            result,
        });
        self.answered(conn, req_id);
    }

    /// Notes that request `req_id` of `conn` got its response (see `unanswered`).
    pub fn answered(&self, conn: ConnId, req_id: u32) {
        if self.unanswered.get() == Some((conn, req_id)) {
            self.unanswered.set(None);
        }
    }
}
