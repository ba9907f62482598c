//! Data channels of a room (shared/protocol.md item 12): data producers (one SCTP stream of a
//! peer's transport) and data consumers (a stream the server chose on another transport),
//! owned by the room's router like producers and consumers. The SCTP association itself
//! runs on the dtls thread (src/rtc/sctp.rs); it hands each received message here, and this
//! module queues a copy (sharing the payload) on each consumer's transport.
//!
//! Limits: a peer has at most [`MAX_DATA_PRODUCERS_PER_PEER`] data producers, a transport at
//! most [`MAX_DATA_CONSUMERS_PER_TRANSPORT`] data consumers; stream ids are below
//! `sctp::SCTP_MIS`. Rooms spanning workers: data producers reach the consumers of peers
//! hosted on the same worker only (docs/architecture.md, "Data channels").

use super::api::{
    Answer, ApiError, DataConsumed, DataProducerSummary, Notice, SctpStreamParameters,
};
use super::env::Env;
use super::router::Router;
use super::transport::DtlsState;
use super::TKey;
use crate::rtc::sctp::{self, Outgoing, SctpMessage};
use crate::stats::Counted;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const MAX_DATA_PRODUCERS_PER_PEER: usize = sctp::MAX_READ_STREAMS;
pub const MAX_DATA_CONSUMERS_PER_TRANSPORT: usize = 256;

/// Keys of data producers and consumers, unique within a router.
pub type DKey = u64;

pub struct DataProducer {
    pub id: String,
    pub peer: Arc<str>,
    pub transport: TKey,
    pub stream: SctpStreamParameters,
    pub label: String,
    pub protocol: String,
    pub consumers: Vec<DKey>,
}

pub struct DataConsumer {
    pub id: String,
    pub peer: Arc<str>,
    pub transport: TKey,
    pub producer: DKey,
    pub stream_id: u16,
}

/// A router's data producers and consumers, and the index that routes a received message.
#[derive(Default)]
pub struct DataChannels {
    next_key: DKey,
    pub producers: HashMap<DKey, DataProducer>,
    pub producer_ids: HashMap<String, DKey>,
    pub consumers: HashMap<DKey, DataConsumer>,
    pub consumer_ids: HashMap<String, DKey>,
    /// (transport, stream id) → data producer.
    by_stream: HashMap<(TKey, u16), DKey>,
}

impl DataChannels {
    fn key(&mut self) -> DKey {
        self.next_key += 1;
        self.next_key
    }

    /// The lowest stream id no data consumer of `transport` uses.
    fn free_stream_id(&self, transport: TKey) -> Option<u16> {
        let used: std::collections::HashSet<u16> = self
            .consumers
            .values()
            .filter(|c| c.transport == transport)
            .map(|c| c.stream_id)
            .collect();
        (0..sctp::SCTP_MIS).find(|id| !used.contains(id))
    }

    /// The live data producers, oldest first, for a join-room answer.
    pub fn summaries(&self) -> Vec<DataProducerSummary> {
        let mut all: Vec<(&DKey, &DataProducer)> = self.producers.iter().collect();
        all.sort_by_key(|(k, _)| **k);
        all.into_iter().map(|(_, p)| summary(p)).collect()
    }
}

fn summary(p: &DataProducer) -> DataProducerSummary {
    DataProducerSummary {
        data_producer_id: p.id.clone(),
        peer_id: p.peer.clone(),
        label: p.label.clone(),
        protocol: p.protocol.clone(),
    }
}

impl Router {
    fn sctp_transport(
        &self,
        peer_id: &str,
        transport_id: &str,
        me: usize,
    ) -> Result<TKey, ApiError> {
        let key = self.own_transport(peer_id, transport_id, me)?;
        match self.transports.get(&key) {
            Some(t) if t.sctp => Ok(key),
            Some(_) => Err(ApiError::invalid_state(
                "this transport was created without sctp: true",
            )),
            None => Err(ApiError::not_found("transport")),
        }
    }

    pub fn produce_data(
        &mut self,
        env: &mut Env,
        peer_id: &Arc<str>,
        transport_id: &str,
        stream: SctpStreamParameters,
        label: String,
        protocol: String,
    ) -> Result<Answer, ApiError> {
        let tkey = self.sctp_transport(peer_id, transport_id, env.worker)?;
        let own = self
            .data
            .producers
            .values()
            .filter(|p| &p.peer == peer_id)
            .count();
        if own >= MAX_DATA_PRODUCERS_PER_PEER {
            return Err(ApiError::limit(format!(
                "at most {MAX_DATA_PRODUCERS_PER_PEER} data producers per peer"
            )));
        }
        if self.data.by_stream.contains_key(&(tkey, stream.stream_id)) {
            return Err(ApiError::bad_request(format!(
                "produce-data: stream {} is already used on this transport",
                stream.stream_id
            )));
        }
        let key = self.data.key();
        let id = crate::ids::uuid_v4();
        let producer = DataProducer {
            id: id.clone(),
            peer: peer_id.clone(),
            transport: tkey,
            stream,
            label,
            protocol,
            consumers: Vec::new(),
        };
        self.notify_others(env, peer_id, Notice::NewDataProducer(summary(&producer)));
        self.data.by_stream.insert((tkey, stream.stream_id), key);
        self.data.producer_ids.insert(id.clone(), key);
        self.data.producers.insert(key, producer);
        env.stats.inc(Counted::DataProducer);
        Ok(Answer::DataProduced {
            data_producer_id: id,
        })
    }

    pub fn consume_data(
        &mut self,
        env: &mut Env,
        peer_id: &Arc<str>,
        transport_id: &str,
        data_producer_id: &str,
    ) -> Result<Answer, ApiError> {
        let tkey = self.sctp_transport(peer_id, transport_id, env.worker)?;
        let pkey = *self
            .data
            .producer_ids
            .get(data_producer_id)
            .ok_or_else(|| {
                ApiError::not_found(format!("no data producer \"{data_producer_id}\""))
            })?;
        let on_transport = self
            .data
            .consumers
            .values()
            .filter(|c| c.transport == tkey)
            .count();
        if on_transport >= MAX_DATA_CONSUMERS_PER_TRANSPORT {
            return Err(ApiError::limit(format!(
                "at most {MAX_DATA_CONSUMERS_PER_TRANSPORT} data consumers per transport"
            )));
        }
        let stream_id = self
            .data
            .free_stream_id(tkey)
            .ok_or_else(|| ApiError::limit("no free SCTP stream on this transport"))?;
        let key = self.data.key();
        let id = crate::ids::uuid_v4();
        let Some(p) = self.data.producers.get_mut(&pkey) else {
            return Err(ApiError::not_found("data producer"));
        };
        p.consumers.push(key);
        let answer = DataConsumed {
            data_consumer_id: id.clone(),
            data_producer_id: p.id.clone(),
            stream: SctpStreamParameters {
                stream_id,
                reliability: p.stream.reliability,
            },
            label: p.label.clone(),
            protocol: p.protocol.clone(),
        };
        self.data.consumer_ids.insert(id.clone(), key);
        self.data.consumers.insert(
            key,
            DataConsumer {
                id,
                peer: peer_id.clone(),
                transport: tkey,
                producer: pkey,
                stream_id,
            },
        );
        env.stats.inc(Counted::DataConsumer);
        Ok(Answer::DataConsumed(Box::new(answer)))
    }

    /// close-data-producer of one of the peer's own data producers.
    pub fn close_own_data_producer(
        &mut self,
        env: &mut Env,
        peer_id: &str,
        data_producer_id: &str,
    ) -> Result<Answer, ApiError> {
        self.local_peer(peer_id, env.worker)?;
        let key = self
            .data
            .producer_ids
            .get(data_producer_id)
            .copied()
            .filter(|k| {
                self.data
                    .producers
                    .get(k)
                    .is_some_and(|p| &*p.peer == peer_id)
            })
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no data producer \"{data_producer_id}\" of this peer"
                ))
            })?;
        self.close_data_producer(env, key);
        Ok(Answer::Done)
    }

    /// Closes a data producer and its consumers: each consumer's peer gets
    /// `data-consumer-closed`, the other peers `data-producer-closed`.
    pub fn close_data_producer(&mut self, env: &mut Env, key: DKey) {
        let Some(p) = self.data.producers.remove(&key) else {
            return;
        };
        env.stats.dec(Counted::DataProducer);
        self.data.producer_ids.remove(&p.id);
        self.data
            .by_stream
            .remove(&(p.transport, p.stream.stream_id));
        for c in &p.consumers {
            self.close_data_consumer(env, *c, true);
        }
        self.notify_others(
            env,
            &p.peer,
            Notice::DataProducerClosed {
                data_producer_id: p.id,
            },
        );
    }

    fn close_data_consumer(&mut self, env: &mut Env, key: DKey, tell: bool) {
        let Some(c) = self.data.consumers.remove(&key) else {
            return;
        };
        env.stats.dec(Counted::DataConsumer);
        self.data.consumer_ids.remove(&c.id);
        if let Some(p) = self.data.producers.get_mut(&c.producer) {
            p.consumers.retain(|k| *k != key);
        }
        if tell {
            if let Some(conn) = self.conn_of(&c.peer, env.worker) {
                env.notify(
                    conn,
                    Notice::DataConsumerClosed {
                        data_consumer_id: c.id,
                    },
                );
            }
        }
    }

    /// A transport is closing: its data producers (cascading to their consumers) and its
    /// own data consumers go with it.
    pub fn close_data_of_transport(&mut self, env: &mut Env, tkey: TKey) {
        let producers: Vec<DKey> = self
            .data
            .producers
            .iter()
            .filter(|(_, p)| p.transport == tkey)
            .map(|(k, _)| *k)
            .collect();
        for p in producers {
            self.close_data_producer(env, p);
        }
        let consumers: Vec<DKey> = self
            .data
            .consumers
            .iter()
            .filter(|(_, c)| c.transport == tkey)
            .map(|(k, _)| *k)
            .collect();
        for c in consumers {
            self.close_data_consumer(env, c, false);
        }
    }

    /// What the router's live data counters must lose when it is dropped.
    pub fn release_data(&mut self, env: &Env) {
        env.stats
            .sub(Counted::DataProducer, self.data.producers.len());
        env.stats
            .sub(Counted::DataConsumer, self.data.consumers.len());
        self.data = DataChannels::default();
    }

    /// A message received on stream `message.stream_id` of transport `tkey`: queued on each
    /// of its data producer's consumers (their outboxes are bounded; a full one drops).
    pub fn on_data_message(&mut self, tkey: TKey, message: SctpMessage) {
        let Some(p) = self
            .data
            .by_stream
            .get(&(tkey, message.stream_id))
            .and_then(|k| self.data.producers.get(k))
        else {
            sctp::COUNTERS.dropped_other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        for ckey in &p.consumers {
            let Some(c) = self.data.consumers.get(ckey) else {
                continue;
            };
            let Some(DtlsState::Connected(session)) =
                self.transports.get(&c.transport).map(|t| &t.dtls)
            else {
                continue;
            };
            session.send_sctp(Outgoing {
                message: SctpMessage {
                    stream_id: c.stream_id,
                    ppid: message.ppid,
                    data: message.data.clone(),
                },
                reliability: p.stream.reliability,
            });
        }
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
