//! The commands of a room's peers (shared/protocol.md's methods after join-room), one
//! handler per command. Each checks what it is given before it changes anything and answers
//! with a typed [`Answer`]; ownership checks (this peer's transport, producer, consumer) come
//! first, so a peer can never touch another's objects.

use super::api::{
    Answer, ApiError, CandidateProtocol, Command, Consumed, DtlsParameters, DtlsRoleParam,
    IceCandidate, IceParameters, Joined, Notice, PeerSummary, ProducerSummary, SourceLabel,
    TransportCreated, TransportDirection,
};
use super::consumer::{Consumer, ConsumerSpec};
use super::env::{Env, Route};
use super::mesh::{Origin, PeerInfo, PipeMsg};
use super::ortc::{self, MediaKind, RtpCapabilities, RtpParameters};
use super::producer::Producer;
use super::router::{Peer, Router};
use super::transport::{DtlsMsg, DtlsState, Transport};
use super::{CKey, PKey, TKey};
use crate::rtc::dtls::{DtlsRole, RemoteFingerprint};
use crate::rtc::ice::IceCredentials;
use crate::stats::Counted;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The priority of our UDP host candidate (mediasoup's for a UDP host candidate).
const UDP_CANDIDATE_PRIORITY: u32 = 1_076_302_079;
/// The passive TCP candidate's, lower (mediasoup's with `preferUdp`): browsers use it only
/// when UDP fails.
const TCP_CANDIDATE_PRIORITY: u32 = 1_076_276_479;

/// A transport's candidates: UDP on the worker's announced media address and, unless
/// ICE-TCP is off, passive TCP on the same port number.
fn candidates(env: &Env) -> Vec<IceCandidate> {
    let mut all = vec![IceCandidate {
        foundation: "udpcandidate",
        priority: UDP_CANDIDATE_PRIORITY,
        address: env.announced,
        protocol: CandidateProtocol::Udp,
    }];
    if env.ice_tcp {
        all.push(IceCandidate {
            foundation: "tcpcandidate",
            priority: TCP_CANDIDATE_PRIORITY,
            address: env.announced,
            protocol: CandidateProtocol::Tcp,
        });
    }
    all
}

impl Router {
    /// Runs one command of peer `peer_id` (hosted on this worker).
    pub fn handle_command(
        &mut self,
        env: &mut Env,
        peer_id: &Arc<str>,
        command: Command,
        now: Instant,
    ) -> Result<Answer, ApiError> {
        self.local_peer(peer_id, env.worker)?;
        match command {
            Command::CreateTransport { direction, sctp } => {
                self.create_transport(env, peer_id, (direction, sctp), now)
            }
            Command::ConnectTransport { transport_id, dtls } => {
                self.connect_transport(env, peer_id, &transport_id, dtls)
            }
            Command::Produce {
                transport_id,
                kind,
                rtp_parameters,
                label,
            } => self.produce(env, peer_id, &transport_id, (kind, label), rtp_parameters),
            Command::Consume {
                transport_id,
                producer_id,
                rtp_capabilities,
            } => self.consume(env, peer_id, &transport_id, &producer_id, rtp_capabilities),
            Command::ResumeConsumer { consumer_id } => {
                self.set_consumer_paused(env, peer_id, &consumer_id, false, now)
            }
            Command::PauseConsumer { consumer_id } => {
                self.set_consumer_paused(env, peer_id, &consumer_id, true, now)
            }
            Command::PauseProducer { producer_id } => {
                self.set_producer_paused(env, peer_id, &producer_id, true, now)
            }
            Command::ResumeProducer { producer_id } => {
                self.set_producer_paused(env, peer_id, &producer_id, false, now)
            }
            Command::CloseProducer { producer_id } => {
                let pkey = self.own_producer(peer_id, &producer_id, env.worker)?;
                self.close_producer(env, pkey);
                Ok(Answer::Done)
            }
            Command::RestartIce { transport_id } => self.restart_ice(env, peer_id, &transport_id),
            Command::SetConsumerPreferredLayers {
                consumer_id,
                spatial_layer,
                temporal_layer,
            } => {
                let ckey = self.own_consumer(peer_id, &consumer_id, env.worker)?;
                if let Some(c) = self.consumers.get_mut(&ckey) {
                    c.preferred_spatial_layer = Some(spatial_layer);
                    c.preferred_temporal_layer = temporal_layer;
                }
                Ok(Answer::Done)
            }
            Command::LeaveRoom => {
                self.remove_peer(env, peer_id);
                Ok(Answer::Done)
            }
            Command::ProduceData {
                transport_id,
                stream,
                label,
                protocol,
            } => self.produce_data(env, peer_id, &transport_id, stream, label, protocol),
            Command::ConsumeData {
                transport_id,
                data_producer_id,
            } => self.consume_data(env, peer_id, &transport_id, &data_producer_id),
            Command::CloseDataProducer { data_producer_id } => {
                self.close_own_data_producer(env, peer_id, &data_producer_id)
            }
        }
    }

    /// Adds a peer hosted on this worker (the room is homed here, or a replica); the answer
    /// to its join-room lists everyone already in the room and their producers.
    pub fn add_local_peer(
        &mut self,
        env: &mut Env,
        conn: super::api::ConnId,
        peer_id: &Arc<str>,
        display_name: String,
    ) -> Result<Answer, ApiError> {
        if self.peer(peer_id).is_some() {
            return Err(ApiError::invalid_state("already joined"));
        }
        let peers = self
            .peers
            .iter()
            .map(|p| PeerSummary {
                peer_id: p.id.clone(),
                display_name: p.display_name.clone(),
            })
            .collect();
        let mut producers = Vec::new();
        for p in &self.peers {
            for (pid, pkey) in &p.producers {
                if let Some(prod) = self.producers.get(pkey) {
                    producers.push(ProducerSummary {
                        producer_id: pid.clone(),
                        peer_id: p.id.clone(),
                        kind: prod.kind,
                        label: prod.label,
                        paused: prod.paused,
                    });
                }
            }
        }
        self.notify_others(
            env,
            peer_id,
            Notice::PeerJoined {
                peer_id: peer_id.clone(),
                display_name: display_name.clone(),
            },
        );
        let info = PeerInfo {
            id: peer_id.clone(),
            conn,
            display_name,
            worker: env.worker,
        };
        let egress = super::limits::shared_bucket(env.limits.peer_egress_bitrate);
        self.peers.push(Peer::new(&info, egress));
        env.stats.inc(Counted::Peer);
        Ok(Answer::Joined(Box::new(Joined {
            peer_id: peer_id.clone(),
            router_rtp_capabilities: env.caps.clone(),
            peers,
            producers,
            data_producers: self.data.summaries(),
        })))
    }

    fn create_transport(
        &mut self,
        env: &mut Env,
        peer_id: &Arc<str>,
        (direction, sctp): (TransportDirection, bool),
        now: Instant,
    ) -> Result<Answer, ApiError> {
        let peer = self.local_peer(peer_id, env.worker)?;
        let max = env.limits.max_transports_per_peer;
        if peer.transports.len() >= max {
            return Err(ApiError::limit(format!(
                "at most {max} transports per peer"
            )));
        }
        let egress = peer.egress.clone();
        let key = env.key();
        let mut t = Transport::new(key, peer_id.clone(), direction, egress, now);
        t.sctp = sctp;
        let answer = TransportCreated {
            id: t.id.clone(),
            ice: ice_parameters(&t.ice),
            candidates: candidates(env),
            sha256_fingerprint: env.fingerprint.clone(),
            ice_servers: env
                .turn
                .iter()
                .map(|turn| turn.ice_server_now(peer_id))
                .collect(),
            sctp,
        };
        env.index
            .by_ufrag
            .insert(t.ice.ufrag.clone(), self.route(key));
        if let Some(p) = self.peer_mut(peer_id) {
            p.transports.insert(t.id.clone(), key);
        }
        self.transports.insert(key, t);
        env.stats.inc(Counted::Transport);
        Ok(Answer::TransportCreated(Box::new(answer)))
    }

    /// An index entry pointing at one of this room's transports.
    pub fn route(&self, transport: TKey) -> Route {
        Route {
            room: self.id.clone(),
            transport,
        }
    }

    fn connect_transport(
        &mut self,
        env: &mut Env,
        peer_id: &str,
        transport_id: &str,
        params: DtlsParameters,
    ) -> Result<Answer, ApiError> {
        let key = self.own_transport(peer_id, transport_id, env.worker)?;
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
            Some(DtlsRoleParam::Client) => DtlsRole::Server,
            Some(DtlsRoleParam::Server) | Some(DtlsRoleParam::Auto) | None => DtlsRole::Client,
        };
        t.dtls = DtlsState::Pending { role, remote };
        self.maybe_start_dtls(env, key);
        Ok(Answer::Done)
    }

    /// Starts the DTLS handshake once connect-transport gave a role and ICE selected a tuple
    /// (to send the ClientHello to, and to count against the per-IP handshake cap).
    pub fn maybe_start_dtls(&mut self, env: &Env, key: TKey) {
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
        let events = env.dtls_events.clone();
        let room = self.id.clone();
        let sink: crate::rtc::dtls::DtlsSink = Arc::new(move |event| {
            let _ = events.send(DtlsMsg {
                room: room.clone(),
                transport: key,
                event,
            });
        });
        let sctp = t.sctp.then_some(crate::rtc::sctp::SctpRole::Listen);
        let session = env
            .dtls
            .new_session_with(role, remote, Some(peer.ip()), sctp, sink);
        for rec in t.early_dtls.drain(..) {
            session.feed(&rec);
        }
        t.dtls = DtlsState::Handshaking(session);
    }

    fn produce(
        &mut self,
        env: &mut Env,
        peer_id: &Arc<str>,
        transport_id: &str,
        (kind, label): (MediaKind, SourceLabel),
        params: RtpParameters,
    ) -> Result<Answer, ApiError> {
        let tkey = self.own_transport(peer_id, transport_id, env.worker)?;
        let max = env.limits.max_producers_per_peer;
        if self.local_peer(peer_id, env.worker)?.producers.len() >= max {
            return Err(ApiError::limit(format!("at most {max} producers per peer")));
        }
        let mapping = ortc::validate_produce(kind, &params, &env.caps)?;
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
        let id = crate::ids::uuid_v4();
        let producer = Producer::local(id.clone(), peer_id.clone(), tkey, kind, label, mapping)?;
        let pkey = env.key();
        if let Some(t) = self.transports.get_mut(&tkey) {
            for s in ssrcs {
                t.producers_by_ssrc.insert(s, pkey);
            }
        }
        let info = producer.info(Origin {
            worker: env.worker,
            key: pkey,
        });
        self.insert_producer(env, pkey, producer);
        self.notify_others(
            env,
            peer_id,
            Notice::NewProducer {
                producer_id: id.clone(),
                peer_id: peer_id.clone(),
                kind,
                label,
            },
        );
        self.announce_sources(env);
        let from = env.worker;
        self.propagate(
            env,
            |room| PipeMsg::ProducerAdded {
                room,
                from,
                producer: Box::new(info.clone()),
            },
            None,
        );
        Ok(Answer::Produced { producer_id: id })
    }

    /// Adds a producer (local or piped in) to the room, its peer and the worker's index.
    pub fn insert_producer(&mut self, env: &mut Env, pkey: PKey, producer: Producer) {
        env.stats.inc(if producer.is_piped() {
            Counted::PipedProducer
        } else {
            Counted::Producer
        });
        env.index.producers.insert(pkey, self.id.clone());
        self.producers_by_id.insert(producer.id.clone(), pkey);
        if let Some(p) = self.peer_mut(&producer.peer) {
            p.producers.insert(producer.id.clone(), pkey);
        }
        self.producers.insert(pkey, producer);
    }

    fn consume(
        &mut self,
        env: &mut Env,
        peer_id: &Arc<str>,
        transport_id: &str,
        producer_id: &str,
        remote: RtpCapabilities,
    ) -> Result<Answer, ApiError> {
        let tkey = self.own_transport(peer_id, transport_id, env.worker)?;
        let max = env.limits.max_consumers_per_peer;
        if self.local_peer(peer_id, env.worker)?.consumers.len() >= max {
            return Err(ApiError::limit(format!("at most {max} consumers per peer")));
        }
        let pkey = self
            .producers_by_id
            .get(producer_id)
            .copied()
            .ok_or_else(|| {
                ApiError::not_found(format!("no producer \"{producer_id}\" in this room"))
            })?;
        let producer = self
            .producers
            .get(&pkey)
            .ok_or_else(|| ApiError::not_found("producer"))?;
        // One consumer per (transport, producer): a second copy of the same stream on the same
        // transport is only amplification (the worker would send every packet twice).
        let duplicate = producer
            .consumers
            .iter()
            .any(|c| self.consumers.get(c).is_some_and(|c| c.transport == tkey));
        if duplicate {
            return Err(ApiError::limit(
                "this transport already consumes that producer",
            ));
        }
        ortc::validate_capabilities(&remote)?;
        if !ortc::can_consume(&producer.mapping, &remote) {
            return Err(ApiError::unsupported(
                "cannot consume this producer with the given rtpCapabilities",
            ));
        }
        let t = self
            .transports
            .get_mut(&tkey)
            .ok_or_else(|| ApiError::not_found("transport"))?;
        let ssrc = fresh_ssrc(&t.consumers_by_ssrc);
        let rtx_ssrc = fresh_ssrc(&t.consumers_by_ssrc);
        let mid = t.take_mid();
        let params = ortc::consumer_params(
            &producer.mapping,
            producer.kind,
            &env.caps,
            &remote,
            mid.clone(),
            ssrc,
            rtx_ssrc,
            producer.cname.clone(),
        )?;
        let id = crate::ids::uuid_v4();
        let consumer = Consumer::new(ConsumerSpec {
            id: id.clone(),
            peer: peer_id.clone(),
            transport: tkey,
            producer_key: pkey,
            producer,
            params: &params,
            ssrc,
            rtx_ssrc,
            mid: &mid,
        });
        let answer = Consumed {
            consumer_id: id.clone(),
            producer_id: producer_id.to_string(),
            peer_id: producer.peer.clone(),
            label: producer.label,
            kind: producer.kind,
            rtp_parameters: params,
            producer_paused: producer.paused,
        };
        let ckey = env.key();
        for s in consumer.ssrcs() {
            t.consumers_by_ssrc.insert(s, ckey);
        }
        self.consumers.insert(ckey, consumer);
        if let Some(p) = self.producers.get_mut(&pkey) {
            p.consumers.push(ckey);
        }
        if let Some(p) = self.peer_mut(peer_id) {
            p.consumers.insert(id, ckey);
        }
        env.stats.inc(Counted::Consumer);
        Ok(Answer::Consumed(Box::new(answer)))
    }

    fn set_consumer_paused(
        &mut self,
        env: &mut Env,
        peer_id: &str,
        consumer_id: &str,
        paused: bool,
        now: Instant,
    ) -> Result<Answer, ApiError> {
        let ckey: CKey = self.own_consumer(peer_id, consumer_id, env.worker)?;
        let c = self
            .consumers
            .get_mut(&ckey)
            .ok_or_else(|| ApiError::not_found("consumer"))?;
        c.paused = paused;
        if paused {
            return Ok(Answer::Done);
        }
        c.fwd.resync();
        let (pkey, tkey) = (c.producer, c.transport);
        // A key frame sent before the transport connects would be wasted (and the browser
        // ignores PLIs shortly after one): DTLS completion asks for it then.
        if self.transports.get(&tkey).is_some_and(|t| t.is_connected()) {
            self.request_keyframe(env, pkey, now, true);
        }
        Ok(Answer::Done)
    }

    fn set_producer_paused(
        &mut self,
        env: &mut Env,
        peer_id: &str,
        producer_id: &str,
        paused: bool,
        now: Instant,
    ) -> Result<Answer, ApiError> {
        let pkey = self.own_producer(peer_id, producer_id, env.worker)?;
        if self.apply_producer_paused(env, pkey, paused, now) {
            let from = env.worker;
            self.propagate(
                env,
                |room| PipeMsg::ProducerPaused {
                    room,
                    from,
                    producer_id: producer_id.to_string(),
                    paused,
                },
                None,
            );
        }
        Ok(Answer::Done)
    }

    /// Pauses or resumes a producer (this worker's, or one piped in), telling this worker's
    /// peers; true if that changed anything.
    pub fn apply_producer_paused(
        &mut self,
        env: &mut Env,
        pkey: PKey,
        paused: bool,
        now: Instant,
    ) -> bool {
        let Some(p) = self.producers.get_mut(&pkey) else {
            return false;
        };
        if p.paused == paused {
            return false;
        }
        p.paused = paused;
        let (peer_id, producer_id) = (p.peer.clone(), p.id.clone());
        if !paused {
            // Consumers restart at the next key frame.
            for ckey in &p.consumers {
                if let Some(c) = self.consumers.get_mut(ckey) {
                    c.fwd.resync();
                }
            }
            self.request_keyframe(env, pkey, now, true);
        }
        let notice = if paused {
            Notice::ProducerPaused { producer_id }
        } else {
            Notice::ProducerResumed { producer_id }
        };
        self.notify_others(env, &peer_id, notice);
        self.announce_sources(env);
        true
    }

    fn restart_ice(
        &mut self,
        env: &mut Env,
        peer_id: &str,
        transport_id: &str,
    ) -> Result<Answer, ApiError> {
        let key = self.own_transport(peer_id, transport_id, env.worker)?;
        let route = self.route(key);
        let t = self
            .transports
            .get_mut(&key)
            .ok_or_else(|| ApiError::not_found("transport"))?;
        env.index.by_ufrag.remove(&t.ice.ufrag);
        t.ice = IceCredentials::random();
        env.index.by_ufrag.insert(t.ice.ufrag.clone(), route);
        Ok(Answer::IceRestarted(ice_parameters(&t.ice)))
    }
}

fn ice_parameters(ice: &IceCredentials) -> IceParameters {
    IceParameters {
        username_fragment: ice.ufrag.clone(),
        password: ice.pwd.clone(),
    }
}

/// A random SSRC not yet used by a consumer of the transport.
fn fresh_ssrc(taken: &HashMap<u32, CKey>) -> u32 {
    let mut rng = rand::thread_rng();
    loop {
        let s: u32 = rng.gen_range(100_000_000..900_000_000);
        if !taken.contains_key(&s) {
            break s;
        }
    }
}
