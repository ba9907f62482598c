//! The state of one worker: its rooms (routers), peers, transports, producers and consumers,
//! and the request handlers. Sans-IO: packets to send go to `outbox`, messages for the
//! signaling thread go to the `signaling` mailbox. The worker (src/worker) owns the I/O.
//!
//! Ownership: room → peer → transport → producer/consumer. Every object is stored once, in a
//! map here, keyed by a small integer; parents hold keys of their children, and every close
//! removes the children first, updates the live counters and tells the affected peers.

use super::consumer::{Consumer, SeqState};
use super::limits::{shared_bucket, CacheBudget, MediaLimits, SharedBucket};
use super::ortc::{self, MediaKind, OrtcError, RtpCapabilities, RtpParameters};
use super::producer::Producer;
use super::transport::{DtlsState, Transport};
use super::{CKey, PKey, TKey};
use crate::channel::Sender;
use crate::rtc::dtls::{DtlsEvent, DtlsRole, DtlsRuntime, RemoteFingerprint};
use crate::rtc::keyframe::VideoCodec;
use crate::rtc::rtp::ExtIdMap;
use crate::signaling::protocol::{ApiError, DtlsParameters, Kind, Request};
use crate::worker::jobs::{ConnId, Job, JobKind, Outbound};
use crate::worker::stats::{Counted, WorkerStats};
use rand::Rng;
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A DTLS event tagged with the transport it belongs to.
pub struct DtlsMsg {
    pub transport: TKey,
    pub event: DtlsEvent,
}

pub struct Peer {
    pub id: Arc<str>,
    pub conn: ConnId,
    pub display_name: String,
    /// The worker that owns the peer's transports. A peer of another worker is a directory
    /// entry here: no transports, its producers piped in (see span.rs).
    pub worker: usize,
    pub transports: HashMap<String, TKey>,
    pub producers: HashMap<String, PKey>,
    pub consumers: HashMap<String, CKey>,
    /// The bit rate sent towards this peer, all its transports together (room/limits.rs).
    pub egress: SharedBucket,
}

pub struct Room {
    pub id: Arc<str>,
    /// The worker that orders the room's membership changes (see span.rs); this one, or the
    /// home of which this room is a replica.
    pub home: usize,
    /// This incarnation of the room (see span::RoomTag), chosen by the home.
    pub epoch: u64,
    /// On the home worker: the other workers hosting peers of the room.
    pub satellites: Vec<usize>,
    /// On the home worker: the generation of the snapshot each satellite's replica came from;
    /// on a replica: its own (a late `ReplicaDropped` of an older replica is ignored).
    pub snapshots: Vec<(usize, u64)>,
    /// Peers in join order (of every worker the room spans).
    pub peers: Vec<Peer>,
    pub producers_by_id: HashMap<String, PKey>,
}

impl Room {
    pub(crate) fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| &*p.id == id)
    }
    pub(crate) fn peer_mut(&mut self, id: &str) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| &*p.id == id)
    }
    pub(crate) fn new(id: Arc<str>, home: usize, epoch: u64) -> Self {
        Self {
            id,
            home,
            epoch,
            satellites: Vec::new(),
            snapshots: Vec::new(),
            peers: Vec::new(),
            producers_by_id: HashMap::new(),
        }
    }
}

/// Everything a worker owns, and the handlers that change it.
pub struct WorkerCore {
    pub id: usize,
    pub(crate) rooms: HashMap<Arc<str>, Room>,
    pub(crate) transports: HashMap<TKey, Transport>,
    pub(crate) by_ufrag: HashMap<String, TKey>,
    pub(crate) by_addr: HashMap<SocketAddr, TKey>,
    pub(crate) producers: HashMap<PKey, Producer>,
    pub(crate) consumers: HashMap<CKey, Consumer>,
    /// HLS taps of producers (plain RTP to the room's FFmpeg).
    pub(crate) taps: HashMap<PKey, Vec<super::tap::Tap>>,
    pub(crate) caps: RtpCapabilities,
    pub(crate) dtls: Arc<DtlsRuntime>,
    pub(crate) fingerprint: String,
    pub(crate) dtls_events: Sender<DtlsMsg>,
    pub(crate) signaling: Sender<Outbound>,
    pub(crate) stats: Arc<WorkerStats>,
    /// The media address announced in ICE candidates.
    pub(crate) announced: SocketAddr,
    /// Datagrams to send: (destination, bytes).
    pub outbox: super::outbox::Outbox,
    pub(crate) scratch: Vec<u8>,
    /// Transport-wide congestion control state of each sending transport (see media.rs).
    pub(crate) twcc: HashMap<TKey, super::media::TransportFeedback>,
    /// The other workers (rooms spanning workers) and the media batches queued for them.
    pub(crate) mesh: super::span::Mesh,
    pub(crate) pipe_out: Vec<Option<super::span::PipeBatch>>,
    /// What one peer may make this worker hold or send (room/limits.rs).
    pub(crate) limits: MediaLimits,
    pub(crate) cache_budget: CacheBudget,
    /// The request the job being handled must still answer (conn, request id); cleared when
    /// it is answered, so a panic midway can answer it `internal` (every request gets
    /// exactly one response).
    pub unanswered: Cell<Option<(ConnId, u32)>>,
    next_key: u64,
    /// Which producers send media, for the HLS pipeline (see tap.rs).
    pub(crate) flow: super::tap::FlowWatch,
}

fn ortc_error(e: OrtcError) -> ApiError {
    match e {
        OrtcError::BadRequest(m) => ApiError::bad_request(m),
        OrtcError::Unsupported(m) => {
            ApiError::new(crate::signaling::protocol::ErrorCode::Unsupported, m)
        }
        OrtcError::Limit(m) => ApiError::limit(m),
    }
}

impl WorkerCore {
    pub fn new(
        id: usize,
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
        let cache_budget = CacheBudget::new(limits.retransmit_cache_budget, stats.clone());
        Self {
            id,
            rooms: HashMap::new(),
            transports: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            taps: HashMap::new(),
            caps,
            dtls,
            fingerprint,
            dtls_events,
            signaling,
            stats,
            announced,
            outbox: super::outbox::Outbox::with_capacity(64),
            scratch: Vec::with_capacity(1500),
            twcc: HashMap::new(),
            mesh: super::span::Mesh::default(),
            pipe_out: Vec::new(),
            limits,
            cache_budget,
            unanswered: Cell::new(None),
            next_key: 1,
            flow: Default::default(),
        }
    }

    /// Replaces the default limits (before any room exists).
    pub fn set_limits(&mut self, limits: MediaLimits) {
        self.cache_budget = CacheBudget::new(limits.retransmit_cache_budget, self.stats.clone());
        self.limits = limits;
    }

    /// Connects this worker to the others (rooms spanning workers); without it, every room
    /// stays on this worker.
    pub fn set_mesh(&mut self, mesh: super::span::Mesh) {
        self.pipe_out = (0..mesh.workers()).map(|_| None).collect();
        self.mesh = mesh;
    }

    pub(crate) fn key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    pub(crate) fn notify(&self, conn: ConnId, method: &'static str, data: Value) {
        let _ = self.signaling.send(Outbound::Notify { conn, method, data });
    }

    /// Notifies every peer of `room` hosted on this worker except `except` (the workers hosting
    /// the others notify theirs when the change reaches them).
    pub(crate) fn notify_others(
        &self,
        room: &Room,
        except: &str,
        method: &'static str,
        data: Value,
    ) {
        for p in room
            .peers
            .iter()
            .filter(|p| &*p.id != except && p.worker == self.id)
        {
            self.notify(p.conn, method, data.clone());
        }
    }

    /// Notes that request `req_id` of `conn` got its response (see `unanswered`).
    pub(crate) fn answered(&self, conn: ConnId, req_id: u32) {
        if self.unanswered.get() == Some((conn, req_id)) {
            self.unanswered.set(None);
        }
    }

    pub fn rooms_len(&self) -> usize {
        self.rooms.len()
    }

    /// Runs one job from the signaling thread.
    pub fn handle_job(&mut self, job: Job, now: Instant) {
        match job.kind {
            JobKind::Request { req_id, request } => {
                let result = self.handle_request(&job.room_id, &job.peer_id, request, now);
                let _ = self.signaling.send(Outbound::Response {
                    conn: job.conn,
                    req_id,
                    result,
                });
                self.answered(job.conn, req_id);
            }
            JobKind::Join {
                req_id,
                display_name,
                host,
            } => self.join_job(
                job.conn,
                &job.room_id,
                &job.peer_id,
                display_name,
                host,
                req_id,
            ),
            JobKind::Disconnected => self.disconnect(&job.room_id, &job.peer_id),
            JobKind::SetTaps(taps) => self.set_taps(&job.room_id, taps, now),
            JobKind::RequestKeyFrames => self.request_room_keyframes(&job.room_id, now),
            JobKind::Crash { .. } => panic!("crash requested for room {}", job.room_id),
        }
    }

    fn handle_request(
        &mut self,
        room_id: &Arc<str>,
        peer_id: &Arc<str>,
        request: Request,
        now: Instant,
    ) -> Result<Value, ApiError> {
        self.peer(room_id, peer_id)?;
        match request {
            Request::JoinRoom { .. } => Err(ApiError::invalid_state(
                "this socket already joined a room; leave-room first",
            )),
            Request::CreateTransport { direction } => {
                let peer = self.peer(room_id, peer_id)?;
                let max = self.limits.max_transports_per_peer;
                if peer.transports.len() >= max {
                    return Err(ApiError::limit(format!(
                        "at most {max} transports per peer"
                    )));
                }
                let egress = peer.egress.clone();
                let key = self.key();
                let mut t = Transport::new(key, room_id.clone(), peer_id.clone(), direction, now);
                t.egress = Some(egress);
                let answer = json!({
                    "id": t.id,
                    "iceParameters": {
                        "usernameFragment": t.ice.ufrag,
                        "password": t.ice.pwd,
                        "iceLite": true,
                    },
                    "iceCandidates": [{
                        "foundation": "udpcandidate",
                        "priority": 1076302079u32,
                        "ip": self.announced.ip().to_string(),
                        "address": self.announced.ip().to_string(),
                        "protocol": "udp",
                        "port": self.announced.port(),
                        "type": "host",
                    }],
                    "dtlsParameters": {
                        "role": "auto",
                        "fingerprints": [{"algorithm": "sha-256", "value": self.fingerprint}],
                    },
                });
                self.by_ufrag.insert(t.ice.ufrag.clone(), key);
                let id = t.id.clone();
                self.transports.insert(key, t);
                self.peer_mut(room_id, peer_id)?.transports.insert(id, key);
                self.stats.inc(Counted::Transport);
                Ok(answer)
            }
            Request::ConnectTransport {
                transport_id,
                dtls_parameters,
            } => {
                let key = self.own_transport(room_id, peer_id, &transport_id)?;
                self.connect_transport(key, dtls_parameters)?;
                Ok(json!({}))
            }
            Request::Produce {
                transport_id,
                kind,
                rtp_parameters,
                ..
            } => self.produce(room_id, peer_id, &transport_id, kind, rtp_parameters),
            Request::ConsumeMedia {
                transport_id,
                producer_id,
                rtp_capabilities,
            } => self.consume(
                room_id,
                peer_id,
                &transport_id,
                &producer_id,
                rtp_capabilities,
            ),
            Request::ResumeConsumer { consumer_id } => {
                let ckey = self.own_consumer(room_id, peer_id, &consumer_id)?;
                let c = self
                    .consumers
                    .get_mut(&ckey)
                    .ok_or_else(|| ApiError::not_found("consumer"))?;
                c.paused = false;
                c.seq.synced = false;
                let (pkey, tkey) = (c.producer, c.transport);
                // A key frame sent before the transport connects would be wasted (and the
                // browser ignores PLIs shortly after one): DTLS completion asks for it then.
                if self.transports.get(&tkey).is_some_and(|t| t.is_connected()) {
                    self.request_keyframe(pkey, now, true);
                }
                Ok(json!({}))
            }
            Request::PauseConsumer { consumer_id } => {
                let ckey = self.own_consumer(room_id, peer_id, &consumer_id)?;
                if let Some(c) = self.consumers.get_mut(&ckey) {
                    c.paused = true;
                }
                Ok(json!({}))
            }
            Request::PauseProducer { producer_id } => {
                self.set_producer_paused(room_id, peer_id, &producer_id, true, now)
            }
            Request::ResumeProducer { producer_id } => {
                self.set_producer_paused(room_id, peer_id, &producer_id, false, now)
            }
            Request::CloseProducer { producer_id } => {
                let pkey = self.own_producer(room_id, peer_id, &producer_id)?;
                self.close_producer(pkey);
                Ok(json!({}))
            }
            Request::RestartIce { transport_id } => {
                let key = self.own_transport(room_id, peer_id, &transport_id)?;
                let t = self
                    .transports
                    .get_mut(&key)
                    .ok_or_else(|| ApiError::not_found("transport"))?;
                self.by_ufrag.remove(&t.ice.ufrag);
                t.ice = crate::rtc::ice::IceCredentials::random();
                self.by_ufrag.insert(t.ice.ufrag.clone(), key);
                Ok(json!({"usernameFragment": t.ice.ufrag, "password": t.ice.pwd, "iceLite": true}))
            }
            Request::SetConsumerPreferredLayers {
                consumer_id,
                spatial_layer,
                temporal_layer,
            } => {
                let ckey = self.own_consumer(room_id, peer_id, &consumer_id)?;
                if let Some(c) = self.consumers.get_mut(&ckey) {
                    c.preferred_spatial_layer = Some(spatial_layer);
                    c.preferred_temporal_layer = temporal_layer;
                }
                Ok(json!({}))
            }
            Request::LeaveRoom => {
                self.remove_peer(room_id, peer_id);
                Ok(json!({}))
            }
        }
    }
}

impl WorkerCore {
    /// A peer hosted on this worker.
    fn peer(&self, room_id: &str, peer_id: &str) -> Result<&Peer, ApiError> {
        self.rooms
            .get(room_id)
            .and_then(|r| r.peer(peer_id))
            .filter(|p| p.worker == self.id)
            .ok_or_else(|| ApiError::invalid_state("not in a room; join-room first"))
    }

    fn peer_mut(&mut self, room_id: &str, peer_id: &str) -> Result<&mut Peer, ApiError> {
        self.rooms
            .get_mut(room_id)
            .and_then(|r| r.peer_mut(peer_id))
            .ok_or_else(|| ApiError::invalid_state("not in a room; join-room first"))
    }

    fn own_transport(&self, room_id: &str, peer_id: &str, id: &str) -> Result<TKey, ApiError> {
        self.peer(room_id, peer_id)?
            .transports
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no transport \"{id}\" of this peer")))
    }

    fn own_producer(&self, room_id: &str, peer_id: &str, id: &str) -> Result<PKey, ApiError> {
        self.peer(room_id, peer_id)?
            .producers
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no producer \"{id}\" of this peer")))
    }

    fn own_consumer(&self, room_id: &str, peer_id: &str, id: &str) -> Result<CKey, ApiError> {
        self.peer(room_id, peer_id)?
            .consumers
            .get(id)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no consumer \"{id}\" of this peer")))
    }

    /// Adds a peer hosted on this worker to a room that exists here (homed here, or a
    /// replica); the answer to its join-room.
    pub(crate) fn add_local_peer(
        &mut self,
        conn: ConnId,
        room_id: &Arc<str>,
        peer_id: &Arc<str>,
        display_name: String,
    ) -> Result<Value, ApiError> {
        let room = self
            .rooms
            .get(room_id)
            .ok_or_else(|| ApiError::internal("the room is gone; join again"))?;
        if room.peer(peer_id).is_some() {
            return Err(ApiError::invalid_state("already joined"));
        }
        let peers: Vec<Value> = room
            .peers
            .iter()
            .map(|p| json!({"peerId": &*p.id, "displayName": p.display_name}))
            .collect();
        let mut producers = Vec::new();
        for p in &room.peers {
            for (pid, pkey) in &p.producers {
                if let Some(prod) = self.producers.get(pkey) {
                    producers.push(json!({
                        "producerId": pid,
                        "peerId": &*p.id,
                        "kind": prod.kind.as_str(),
                        "paused": prod.paused,
                    }));
                }
            }
        }
        self.notify_others(
            room,
            peer_id,
            "peer-joined",
            json!({"peerId": &**peer_id, "displayName": display_name}),
        );
        let worker = self.id;
        let room = self.rooms.get_mut(room_id).expect("checked above");
        room.peers.push(Peer {
            id: peer_id.clone(),
            conn,
            display_name,
            worker,
            transports: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            egress: shared_bucket(self.limits.peer_egress_bitrate),
        });
        self.stats.inc(Counted::Peer);
        Ok(json!({
            "peerId": &**peer_id,
            "routerRtpCapabilities": self.caps,
            "peers": peers,
            "producers": producers,
        }))
    }

    fn connect_transport(&mut self, key: TKey, params: DtlsParameters) -> Result<(), ApiError> {
        use crate::signaling::protocol::DtlsRole as Wire;
        let t = self
            .transports
            .get_mut(&key)
            .ok_or_else(|| ApiError::not_found("transport"))?;
        if !matches!(t.dtls, DtlsState::New) {
            return Err(ApiError::invalid_state("transport is already connected"));
        }
        let supported = ["sha-1", "sha-224", "sha-256", "sha-384", "sha-512"];
        let remote: Vec<RemoteFingerprint> = params
            .fingerprints
            .iter()
            .filter(|f| supported.contains(&f.algorithm.to_ascii_lowercase().as_str()))
            .map(|f| RemoteFingerprint {
                algorithm: f.algorithm.to_ascii_lowercase(),
                value: f.value.clone(),
            })
            .collect();
        if remote.is_empty() {
            return Err(ApiError::bad_request(
                "connect-transport: no fingerprint with a supported algorithm (sha-256, ...)",
            ));
        }
        // mediasoup's rule: the remote's role decides ours; `auto` makes us the client.
        let role = match params.role {
            Some(Wire::Client) => DtlsRole::Server,
            Some(Wire::Server) | Some(Wire::Auto) | None => DtlsRole::Client,
        };
        t.dtls = DtlsState::Pending { role, remote };
        self.maybe_start_dtls(key);
        Ok(())
    }

    /// Starts the DTLS handshake once connect-transport gave a role and ICE selected a tuple
    /// (to send the ClientHello to, and to count against the per-IP handshake cap).
    pub(crate) fn maybe_start_dtls(&mut self, key: TKey) {
        let Some(t) = self.transports.get_mut(&key) else {
            return;
        };
        if !matches!(t.dtls, DtlsState::Pending { .. }) {
            return;
        }
        // Both roles wait for a checked tuple: no record can arrive before one anyway, and
        // the peer's address counts against the per-IP handshake cap.
        let Some(peer) = t.remote else {
            return;
        };
        let DtlsState::Pending { role, remote } = std::mem::replace(&mut t.dtls, DtlsState::Failed)
        else {
            return;
        };
        let events = self.dtls_events.clone();
        let sink: crate::rtc::dtls::DtlsSink = Arc::new(move |event| {
            let _ = events.send(DtlsMsg {
                transport: key,
                event,
            });
        });
        let session = self
            .dtls
            .new_session_from(role, remote, Some(peer.ip()), sink);
        for rec in t.early_dtls.drain(..) {
            session.feed(&rec);
        }
        t.dtls = DtlsState::Handshaking(session);
    }

    fn produce(
        &mut self,
        room_id: &Arc<str>,
        peer_id: &Arc<str>,
        transport_id: &str,
        kind: Kind,
        rtp_parameters: Value,
    ) -> Result<Value, ApiError> {
        let tkey = self.own_transport(room_id, peer_id, transport_id)?;
        let max = self.limits.max_producers_per_peer;
        if self.peer(room_id, peer_id)?.producers.len() >= max {
            return Err(ApiError::limit(format!("at most {max} producers per peer")));
        }
        let params: RtpParameters = serde_json::from_value(rtp_parameters)
            .map_err(|e| ApiError::bad_request(format!("produce: rtpParameters: {e}")))?;
        let kind = match kind {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        };
        let mapping = ortc::validate_produce(kind, &params, &self.caps).map_err(ortc_error)?;
        let t = self
            .transports
            .get(&tkey)
            .ok_or_else(|| ApiError::not_found("transport"))?;
        let mut ssrcs = Vec::new();
        for e in &mapping.encodings {
            for s in [e.ssrc, e.rtx_ssrc].into_iter().flatten() {
                if t.producers_by_ssrc.contains_key(&s) || ssrcs.contains(&s) {
                    return Err(ApiError::bad_request(format!(
                        "produce: ssrc {s} is already used on this transport"
                    )));
                }
                ssrcs.push(s);
            }
        }
        let first = mapping
            .codecs
            .first()
            .ok_or_else(|| ApiError::bad_request("produce: no media codec"))?;
        let video_codec = VideoCodec::from_mime(&first.router_codec.mime_type);
        let clock_rate = first.router_codec.clock_rate;
        let pkey = self.key();
        let id = crate::ids::uuid_v4();
        let producer = Producer {
            id: id.clone(),
            kind,
            transport: tkey,
            room: room_id.clone(),
            peer: peer_id.clone(),
            ssrcs: mapping.encodings.iter().map(|e| e.ssrc).collect(),
            active_encoding: mapping.encodings.len().saturating_sub(1),
            video_codec,
            clock_rate,
            keyframes: Default::default(),
            // Simulcast offers carry no a=ssrc lines, so mediasoup-client sends an empty cname.
            cname: mapping
                .cname
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "sfu".into()),
            paused: false,
            consumers: Vec::new(),
            quality: crate::room::producer::ProducerQuality::new(&mapping),
            mapping,
            origin: None,
            pipes: Vec::new(),
        };
        let t = self.transports.get_mut(&tkey).expect("checked above");
        for s in ssrcs {
            t.producers_by_ssrc.insert(s, pkey);
        }
        self.producers.insert(pkey, producer);
        self.stats.inc(Counted::Producer);
        let room = self.rooms.get_mut(room_id).expect("peer checked above");
        room.producers_by_id.insert(id.clone(), pkey);
        if let Some(p) = room.peer_mut(peer_id) {
            p.producers.insert(id.clone(), pkey);
        }
        let room = self.rooms.get(room_id).expect("peer checked above");
        self.notify_others(
            room,
            peer_id,
            "new-producer",
            json!({"producerId": id, "peerId": &**peer_id, "kind": kind.as_str()}),
        );
        self.announce_sources(room_id);
        if let Some(info) = self.producer_info(pkey) {
            let from = self.id;
            self.propagate(
                room_id,
                |room| super::span::PipeMsg::ProducerAdded {
                    room,
                    from,
                    producer: Box::new(info.clone()),
                },
                None,
            );
        }
        Ok(json!({ "producerId": id }))
    }

    fn consume(
        &mut self,
        room_id: &Arc<str>,
        peer_id: &Arc<str>,
        transport_id: &str,
        producer_id: &str,
        rtp_capabilities: Value,
    ) -> Result<Value, ApiError> {
        let tkey = self.own_transport(room_id, peer_id, transport_id)?;
        let max = self.limits.max_consumers_per_peer;
        if self.peer(room_id, peer_id)?.consumers.len() >= max {
            return Err(ApiError::limit(format!("at most {max} consumers per peer")));
        }
        let pkey = self
            .rooms
            .get(room_id)
            .and_then(|r| r.producers_by_id.get(producer_id))
            .copied()
            .ok_or_else(|| {
                ApiError::not_found(format!("no producer \"{producer_id}\" in this room"))
            })?;
        // One consumer per (transport, producer): a second copy of the same stream on the same
        // transport is only amplification (the worker would send every packet twice).
        let duplicate = self.producers.get(&pkey).is_some_and(|p| {
            p.consumers
                .iter()
                .any(|c| self.consumers.get(c).is_some_and(|c| c.transport == tkey))
        });
        if duplicate {
            return Err(ApiError::limit(
                "this transport already consumes that producer",
            ));
        }
        let remote: RtpCapabilities = serde_json::from_value(rtp_capabilities)
            .map_err(|e| ApiError::bad_request(format!("consume-media: rtpCapabilities: {e}")))?;
        ortc::validate_capabilities(&remote).map_err(ortc_error)?;
        let ckey = self.key();
        let producer = self
            .producers
            .get(&pkey)
            .ok_or_else(|| ApiError::not_found("producer"))?;
        if !ortc::can_consume(&producer.mapping, &remote) {
            return Err(ortc_error(OrtcError::Unsupported(
                "cannot consume this producer with the given rtpCapabilities".into(),
            )));
        }
        let t = self
            .transports
            .get(&tkey)
            .ok_or_else(|| ApiError::not_found("transport"))?;
        let mut rng = rand::thread_rng();
        let mut fresh_ssrc = |taken: &HashMap<u32, CKey>| loop {
            let s: u32 = rng.gen_range(100_000_000..900_000_000);
            if !taken.contains_key(&s) {
                break s;
            }
        };
        let ssrc = fresh_ssrc(&t.consumers_by_ssrc);
        let rtx_ssrc = fresh_ssrc(&t.consumers_by_ssrc);
        let kind = producer.kind;
        let producer_paused = producer.paused;
        let cname = producer.cname.clone();
        let t = self.transports.get_mut(&tkey).expect("checked above");
        let mid = t.take_mid();
        let params = ortc::consumer_params(
            &producer.mapping,
            kind,
            &self.caps,
            &remote,
            mid.clone(),
            ssrc,
            rtx_ssrc,
            cname,
        )
        .map_err(ortc_error)?;
        let mut pt_map = [0xFFu8; 128];
        for (from, to) in ortc::payload_type_pairs(&producer.mapping, &params) {
            if from < 128 {
                pt_map[from as usize] = to;
            }
        }
        let mut ext_map = ExtIdMap::new();
        for (from, to) in ortc::ext_id_pairs(&producer.mapping, &params) {
            ext_map.set(from, to);
        }
        let mid_ext = ortc::find_ext_id(&params.header_extensions, ortc::uri::MID)
            .map(|id| (id, mid.into_bytes()));
        // The producer's own mid/rid values must never reach the consumer.
        for id in [
            producer.mapping.mid_ext_id(),
            producer.mapping.rid_ext_id(),
            producer.mapping.repaired_rid_ext_id(),
        ]
        .into_iter()
        .flatten()
        {
            ext_map.set(id, 0);
        }
        let has_rtx = params
            .encodings
            .first()
            .and_then(|e| e.rtx.as_ref())
            .is_some();
        let id = crate::ids::uuid_v4();
        let consumer = Consumer {
            id: id.clone(),
            kind,
            transport: tkey,
            producer: pkey,
            room: room_id.clone(),
            peer: peer_id.clone(),
            ssrc,
            rtx_ssrc: has_rtx.then_some(rtx_ssrc),
            pt_map,
            ext_map,
            mid_ext,
            clock_rate: producer.clock_rate,
            paused: true,
            preferred_spatial_layer: None,
            preferred_temporal_layer: None,
            seq: SeqState::new(rand::thread_rng().gen_range(1000..20000)),
            packets_sent: 0,
            octets_sent: 0,
            last_sent_at: None,
            quality: Default::default(),
        };
        let t = self.transports.get_mut(&tkey).expect("checked above");
        t.consumers_by_ssrc.insert(ssrc, ckey);
        if has_rtx {
            t.consumers_by_ssrc.insert(rtx_ssrc, ckey);
        }
        self.consumers.insert(ckey, consumer);
        if let Some(p) = self.producers.get_mut(&pkey) {
            p.consumers.push(ckey);
        }
        self.peer_mut(room_id, peer_id)?
            .consumers
            .insert(id.clone(), ckey);
        self.stats.inc(Counted::Consumer);
        Ok(json!({
            "consumerId": id,
            "producerId": producer_id,
            "kind": kind.as_str(),
            "rtpParameters": params,
            "producerPaused": producer_paused,
        }))
    }

    fn set_producer_paused(
        &mut self,
        room_id: &Arc<str>,
        peer_id: &Arc<str>,
        producer_id: &str,
        paused: bool,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let pkey = self.own_producer(room_id, peer_id, producer_id)?;
        if self.apply_producer_paused(pkey, paused, now) {
            let from = self.id;
            self.propagate(
                room_id,
                |room| super::span::PipeMsg::ProducerPaused {
                    room,
                    from,
                    producer_id: producer_id.to_string(),
                    paused,
                },
                None,
            );
        }
        Ok(json!({}))
    }

    /// Pauses or resumes a producer (this worker's, or one piped in), telling this worker's
    /// peers; true if that changed anything.
    pub(crate) fn apply_producer_paused(&mut self, pkey: PKey, paused: bool, now: Instant) -> bool {
        let Some(p) = self.producers.get_mut(&pkey) else {
            return false;
        };
        let (room_id, peer_id, producer_id) = (p.room.clone(), p.peer.clone(), p.id.clone());
        let changed = p.paused != paused;
        p.paused = paused;
        if changed {
            if !paused {
                // Consumers restart at the next key frame.
                for ckey in p.consumers.clone() {
                    if let Some(c) = self.consumers.get_mut(&ckey) {
                        c.seq.synced = false;
                    }
                }
                self.request_keyframe(pkey, now, true);
            }
            let method = if paused {
                "producer-paused"
            } else {
                "producer-resumed"
            };
            if let Some(room) = self.rooms.get(&room_id) {
                self.notify_others(room, &peer_id, method, json!({"producerId": producer_id}));
            }
            self.announce_sources(&room_id);
        }
        changed
    }
}
