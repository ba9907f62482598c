//! The room contract (src/room/api.rs) in and out of JSON: validated requests become typed
//! commands, typed answers and notices become the `data` objects of shared/protocol.md, and
//! a worker's counters become its `/api/stats` entry. The only place the two meet.

use super::protocol::{self, Request};
use crate::room::api::{
    Answer, ApiError, CandidateProtocol, Command, DataProducerSummary, DtlsParameters,
    DtlsRoleParam, Fingerprint, IceCandidate, IceParameters, Notice, SctpStreamParameters,
    SourceLabel, TransportCreated, TransportDirection,
};
use crate::room::ortc::{MediaKind, RtpCapabilities, RtpParameters};
use crate::rtc::sctp::{self, Reliability};
use crate::stats::{Counted, WorkerStats};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// The command a request of a joined peer gives its room (join-room is the edge's own).
pub fn command(request: Request) -> Result<Command, ApiError> {
    Ok(match request {
        Request::JoinRoom { .. } => {
            return Err(ApiError::invalid_state(
                "this socket already joined a room; leave-room first",
            ))
        }
        Request::CreateTransport { direction, sctp } => Command::CreateTransport {
            direction: match direction {
                protocol::Direction::Send => TransportDirection::Send,
                protocol::Direction::Recv => TransportDirection::Recv,
            },
            sctp,
        },
        Request::ConnectTransport {
            transport_id,
            dtls_parameters,
        } => Command::ConnectTransport {
            transport_id,
            dtls: DtlsParameters {
                role: dtls_parameters.role.map(|r| match r {
                    protocol::DtlsRole::Auto => DtlsRoleParam::Auto,
                    protocol::DtlsRole::Client => DtlsRoleParam::Client,
                    protocol::DtlsRole::Server => DtlsRoleParam::Server,
                }),
                fingerprints: dtls_parameters
                    .fingerprints
                    .into_iter()
                    .map(|f| Fingerprint {
                        algorithm: f.algorithm,
                        value: f.value,
                    })
                    .collect(),
            },
        },
        Request::Produce {
            transport_id,
            kind,
            rtp_parameters,
            app_data,
        } => {
            let rtp_parameters: RtpParameters = serde_json::from_value(rtp_parameters)
                .map_err(|e| ApiError::bad_request(format!("produce: rtpParameters: {e}")))?;
            let kind = match kind {
                protocol::Kind::Audio => MediaKind::Audio,
                protocol::Kind::Video => MediaKind::Video,
            };
            Command::Produce {
                transport_id,
                kind,
                rtp_parameters,
                label: source_label(&app_data, kind)?,
            }
        }
        Request::ConsumeMedia {
            transport_id,
            producer_id,
            rtp_capabilities,
        } => {
            let rtp_capabilities: RtpCapabilities = serde_json::from_value(rtp_capabilities)
                .map_err(|e| {
                    ApiError::bad_request(format!("consume-media: rtpCapabilities: {e}"))
                })?;
            Command::Consume {
                transport_id,
                producer_id,
                rtp_capabilities,
            }
        }
        Request::ResumeConsumer { consumer_id } => Command::ResumeConsumer { consumer_id },
        Request::PauseConsumer { consumer_id } => Command::PauseConsumer { consumer_id },
        Request::PauseProducer { producer_id } => Command::PauseProducer { producer_id },
        Request::ResumeProducer { producer_id } => Command::ResumeProducer { producer_id },
        Request::CloseProducer { producer_id } => Command::CloseProducer { producer_id },
        Request::RestartIce { transport_id } => Command::RestartIce { transport_id },
        Request::SetConsumerPreferredLayers {
            consumer_id,
            spatial_layer,
            temporal_layer,
        } => Command::SetConsumerPreferredLayers {
            consumer_id,
            spatial_layer,
            temporal_layer,
        },
        Request::LeaveRoom => Command::LeaveRoom,
        Request::ProduceData {
            transport_id,
            sctp_stream_parameters: p,
            label,
            protocol,
        } => Command::ProduceData {
            transport_id,
            stream: SctpStreamParameters {
                stream_id: p.stream_id,
                reliability: Reliability {
                    // mediasoup: unordered when a partial-reliability limit is given.
                    ordered: p
                        .ordered
                        .unwrap_or(p.max_packet_life_time.is_none() && p.max_retransmits.is_none()),
                    max_packet_life_time: p.max_packet_life_time,
                    max_retransmits: p.max_retransmits,
                },
            },
            label,
            protocol,
        },
        Request::ConsumeData {
            transport_id,
            data_producer_id,
        } => Command::ConsumeData {
            transport_id,
            data_producer_id,
        },
        Request::CloseDataProducer { data_producer_id } => {
            Command::CloseDataProducer { data_producer_id }
        }
    })
}

/// `sctpStreamParameters` as mediasoup-client reads them.
fn sctp_stream_parameters(s: &SctpStreamParameters) -> Value {
    let mut v = json!({"streamId": s.stream_id, "ordered": s.reliability.ordered});
    if let Some(ms) = s.reliability.max_packet_life_time {
        v["maxPacketLifeTime"] = json!(ms);
    }
    if let Some(n) = s.reliability.max_retransmits {
        v["maxRetransmits"] = json!(n);
    }
    v
}

fn data_producer_summary(p: &DataProducerSummary) -> Value {
    json!({
        "dataProducerId": p.data_producer_id,
        "peerId": &*p.peer_id,
        "label": p.label,
        "protocol": p.protocol,
    })
}

fn ice_parameters(ice: &IceParameters) -> Value {
    json!({
        "usernameFragment": ice.username_fragment,
        "password": ice.password,
        "iceLite": true,
    })
}

/// The `data` of a successful response.
/// The `create-transport` answer; `iceServers` only when TURN is configured.
fn transport_created(t: &TransportCreated) -> Value {
    let candidate = |c: &IceCandidate| {
        let mut v = json!({
            "foundation": c.foundation,
            "priority": c.priority,
            "ip": c.address.ip().to_string(),
            "address": c.address.ip().to_string(),
            "protocol": match c.protocol {
                CandidateProtocol::Udp => "udp",
                CandidateProtocol::Tcp => "tcp",
            },
            "port": c.address.port(),
            "type": "host",
        });
        if c.protocol == CandidateProtocol::Tcp {
            v["tcpType"] = json!("passive");
        }
        v
    };
    let mut v = json!({
        "id": t.id,
        "iceParameters": ice_parameters(&t.ice),
        "iceCandidates": t.candidates.iter().map(candidate).collect::<Vec<_>>(),
        "dtlsParameters": {
            "role": "auto",
            "fingerprints": [{"algorithm": "sha-256", "value": t.sha256_fingerprint}],
        },
    });
    if t.sctp {
        v["sctpParameters"] = json!({
            "port": sctp::SCTP_PORT,
            "OS": sctp::SCTP_OS,
            "MIS": sctp::SCTP_MIS,
            "maxMessageSize": sctp::MAX_MESSAGE_SIZE,
        });
    }
    if !t.ice_servers.is_empty() {
        v["iceServers"] = t
            .ice_servers
            .iter()
            .map(|s| {
                json!({
                    "urls": s.urls,
                    "username": s.username,
                    "credential": s.credential,
                })
            })
            .collect();
    }
    v
}

pub fn answer(answer: &Answer) -> Value {
    match answer {
        Answer::Joined(j) => json!({
            "peerId": &*j.peer_id,
            "routerRtpCapabilities": j.router_rtp_capabilities,
            "peers": j.peers.iter().map(|p| json!({
                "peerId": &*p.peer_id,
                "displayName": p.display_name,
            })).collect::<Vec<_>>(),
            "producers": j.producers.iter().map(|p| json!({
                "producerId": p.producer_id,
                "peerId": &*p.peer_id,
                "kind": p.kind.as_str(),
                "source": p.label.as_str(),
                "paused": p.paused,
            })).collect::<Vec<_>>(),
            "dataProducers": j.data_producers.iter().map(data_producer_summary).collect::<Vec<_>>(),
        }),
        Answer::TransportCreated(t) => transport_created(t),
        Answer::IceRestarted(ice) => ice_parameters(ice),
        Answer::Produced { producer_id } => json!({ "producerId": producer_id }),
        Answer::Consumed(c) => json!({
            "consumerId": c.consumer_id,
            "producerId": c.producer_id,
            "kind": c.kind.as_str(),
            "rtpParameters": c.rtp_parameters,
            "appData": {"source": c.label.as_str(), "peerId": &*c.peer_id},
            "producerPaused": c.producer_paused,
        }),
        Answer::DataProduced { data_producer_id } => {
            json!({ "dataProducerId": data_producer_id })
        }
        Answer::DataConsumed(c) => json!({
            "dataConsumerId": c.data_consumer_id,
            "dataProducerId": c.data_producer_id,
            "sctpStreamParameters": sctp_stream_parameters(&c.stream),
            "label": c.label,
            "protocol": c.protocol,
        }),
        Answer::Done => json!({}),
    }
}

/// `appData.source` of a produce request: one of the four labels, or the kind's default
/// when absent.
fn source_label(app_data: &Value, kind: MediaKind) -> Result<SourceLabel, ApiError> {
    match app_data.get("source") {
        None | Some(Value::Null) => Ok(SourceLabel::default_for(kind)),
        Some(Value::String(s)) => SourceLabel::parse(s).ok_or_else(|| bad_source(s)),
        Some(other) => Err(bad_source(&other.to_string())),
    }
}

fn bad_source(got: &str) -> ApiError {
    let got: String = got.chars().take(40).collect();
    ApiError::bad_request(format!(
        "produce: appData.source must be camera, microphone, screen or screen-audio (got {got:?})"
    ))
}

/// The method and `data` of a notification.
pub fn notice(notice: &Notice) -> (&'static str, Value) {
    match notice {
        Notice::PeerJoined {
            peer_id,
            display_name,
        } => (
            "peer-joined",
            json!({"peerId": &**peer_id, "displayName": display_name}),
        ),
        Notice::PeerLeft { peer_id } => ("peer-left", json!({"peerId": &**peer_id})),
        Notice::NewProducer {
            producer_id,
            peer_id,
            kind,
            label,
        } => (
            "new-producer",
            json!({"producerId": producer_id, "peerId": &**peer_id, "kind": kind.as_str(),
                   "source": label.as_str()}),
        ),
        Notice::ProducerClosed { producer_id } => {
            ("producer-closed", json!({"producerId": producer_id}))
        }
        Notice::ProducerPaused { producer_id } => {
            ("producer-paused", json!({"producerId": producer_id}))
        }
        Notice::ProducerResumed { producer_id } => {
            ("producer-resumed", json!({"producerId": producer_id}))
        }
        Notice::ConsumerClosed { consumer_id } => {
            ("consumer-closed", json!({"consumerId": consumer_id}))
        }
        Notice::ConsumerLayersChanged {
            consumer_id,
            spatial_layer,
            temporal_layer,
        } => (
            "consumer-layers-changed",
            json!({
                "consumerId": consumer_id,
                "spatialLayer": spatial_layer,
                "temporalLayer": temporal_layer,
            }),
        ),
        Notice::ProducerMaxSpatialLayer {
            producer_id,
            spatial_layer,
        } => (
            "producer-max-spatial-layer",
            json!({"producerId": producer_id, "spatialLayer": spatial_layer}),
        ),
        Notice::TransportClosed { transport_id } => {
            ("transport-closed", json!({"transportId": transport_id}))
        }
        Notice::RoomFailed => (
            "error",
            json!({"code": "internal", "message": "the room failed on the server; join again"}),
        ),
        Notice::ActiveSpeaker {
            peer_id: Some(peer_id),
            producer_id,
        } => (
            "active-speaker",
            json!({"peerId": &**peer_id, "producerId": producer_id}),
        ),
        Notice::ActiveSpeaker { peer_id: None, .. } => ("active-speaker", json!({"peerId": null})),
        Notice::NewDataProducer(p) => ("new-data-producer", data_producer_summary(p)),
        Notice::DataProducerClosed { data_producer_id } => (
            "data-producer-closed",
            json!({"dataProducerId": data_producer_id}),
        ),
        Notice::DataConsumerClosed { data_consumer_id } => (
            "data-consumer-closed",
            json!({"dataConsumerId": data_consumer_id}),
        ),
    }
}

/// One worker's entry in `/api/stats`.
pub fn worker_stats(s: &WorkerStats) -> Value {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    serde_json::json!({
        "id": s.id,
        "core": s.core,
        "rooms": s.get(Counted::Room),
        "peers": s.get(Counted::Peer),
        "transports": s.get(Counted::Transport),
        "producers": s.get(Counted::Producer),
        "consumers": s.get(Counted::Consumer),
        "roomReplicas": s.get(Counted::RoomReplica),
        "pipedProducers": s.get(Counted::PipedProducer),
        "dataProducers": s.get(Counted::DataProducer),
        "dataConsumers": s.get(Counted::DataConsumer),
        "pipePacketsOut": l(&s.pipe_packets_out),
        "pipePacketsIn": l(&s.pipe_packets_in),
        "pipeDrops": l(&s.pipe_drops),
        "packetsIn": l(&s.packets_in),
        "packetsOut": l(&s.packets_out),
        "bytesIn": l(&s.bytes_in),
        "bytesOut": l(&s.bytes_out),
        "panics": l(&s.panics),
        "nacksReceived": l(&s.nacks_received),
        "retransmissionsSent": l(&s.retransmissions_sent),
        "nacksSent": l(&s.nacks_sent),
        "rtxPacketsReceived": l(&s.rtx_received),
        "retransmitCacheBytes": l(&s.retransmit_cache_bytes),
        "retransmitCacheDenied": l(&s.retransmit_cache_denied),
        "egressDroppedPackets": l(&s.egress_dropped_packets),
        "egressDroppedBytes": l(&s.egress_dropped_bytes),
        "keyframeRequestsSent": l(&s.keyframe_requests_sent),
        "bandwidthPauses": l(&s.bandwidth_pauses),
        "paddingPacketsSent": l(&s.padding_sent),
        "tupleSwitches": l(&s.tuple_switches),
        "iceTcp": {
            "connections": s.tcp_connections.load(Ordering::Relaxed),
            "refused": l(&s.tcp_refused),
            "idleClosed": l(&s.tcp_idle_closed),
            "framingErrors": l(&s.tcp_framing_errors),
            "sendDropped": l(&s.tcp_send_dropped),
        },
        "dataChannels": data_channel_stats(),
        "forwardLatencyNs": percentiles(&s.latency_total),
        "latency": {
            "sinceStart": {
                "handoffNs": percentiles(&s.handoff_total),
                "kernelNs": percentiles(&s.kernel_total),
            },
            "window": {
                "seconds": l(&s.window_secs),
                "completed": l(&s.windows),
                "handoffNs": percentiles(&s.window_handoff),
                "kernelNs": percentiles(&s.window_kernel),
                "totalNs": percentiles(&s.window_total),
            },
        },
    })
}

/// One latency histogram's published percentiles (src/stats.rs).
fn percentiles(p: &crate::stats::Percentiles) -> Value {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "p50": l(&p.p50_ns),
        "p99": l(&p.p99_ns),
        "p999": l(&p.p999_ns),
        "max": l(&p.max_ns),
        "samples": l(&p.samples),
    })
}

/// The process-wide SCTP counters (src/rtc/sctp.rs; the same in every worker's entry).
fn data_channel_stats() -> Value {
    let c = &sctp::COUNTERS;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "associations": l(&c.associations),
        "messagesIn": l(&c.messages_in),
        "messagesOut": l(&c.messages_out),
        "bytesIn": l(&c.bytes_in),
        "bytesOut": l(&c.bytes_out),
        "droppedOversize": l(&c.dropped_oversize),
        "droppedRate": l(&c.dropped_rate),
        "droppedQueue": l(&c.dropped_queue),
        "droppedOther": l(&c.dropped_other),
    })
}
