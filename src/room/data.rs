//! Data channels of a room (shared/protocol.md item 12): data producers (one SCTP stream of a
//! peer's transport) and data consumers (a stream the server chose on another transport),
//! owned by the room's router like producers and consumers. The SCTP association itself
//! runs on the dtls thread (src/rtc/sctp.rs); it hands each received message here, and this
//! module queues a copy (sharing the payload) on each consumer's transport.
//!
//! Limits: a peer has at most [`MAX_DATA_PRODUCERS_PER_PEER`] data producers, a transport at
//! most [`MAX_DATA_CONSUMERS_PER_TRANSPORT`] data consumers; stream ids are below
//! `sctp::SCTP_MIS`.
//!
//! Rooms spanning workers: a data producer is announced to the room's other workers
//! (`PipeMsg::DataProducerAdded`, relayed by the home; a new satellite gets the home's list
//! after its snapshot), which keep a piped copy (`transport: None`) that their peers can list
//! and consume. Each message then goes once to each other worker (`PipeMsg::DataMessage`, the
//! payload shared), which queues it on its own consumers' transports.

use super::api::{
    Answer, ApiError, DataConsumed, DataProducerSummary, Notice, SctpStreamParameters,
};
use super::env::Env;
use super::mesh::{DataProducerInfo, PipeMsg, RoomTag};
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
    pub id: Arc<str>,
    pub peer: Arc<str>,
    /// Its transport here; None: piped in from the worker hosting its peer.
    pub transport: Option<TKey>,
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
    pub producer_ids: HashMap<Arc<str>, DKey>,
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
        data_producer_id: p.id.to_string(),
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
            .filter(|p| &p.peer == peer_id && p.transport.is_some())
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
        let id: Arc<str> = Arc::from(crate::ids::uuid_v4());
        let producer = DataProducer {
            id: id.clone(),
            peer: peer_id.clone(),
            transport: Some(tkey),
            stream,
            label,
            protocol,
            consumers: Vec::new(),
        };
        self.notify_others(env, peer_id, Notice::NewDataProducer(summary(&producer)));
        let info = info(&producer);
        let from = env.worker;
        self.propagate(
            env,
            |room| PipeMsg::DataProducerAdded {
                room,
                from,
                producer: info.clone(),
            },
            None,
        );
        self.data.by_stream.insert((tkey, stream.stream_id), key);
        self.data.producer_ids.insert(id.clone(), key);
        self.data.producers.insert(key, producer);
        env.stats.inc(Counted::DataProducer);
        Ok(Answer::DataProduced {
            data_producer_id: id.to_string(),
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
            data_producer_id: p.id.to_string(),
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
                    .is_some_and(|p| &*p.peer == peer_id && p.transport.is_some())
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
        self.data.producer_ids.remove(&p.id);
        if let Some(tkey) = p.transport {
            env.stats.dec(Counted::DataProducer);
            self.data.by_stream.remove(&(tkey, p.stream.stream_id));
            let (from, id) = (env.worker, p.id.clone());
            self.propagate(
                env,
                |room| PipeMsg::DataProducerClosed {
                    room,
                    from,
                    data_producer_id: id.clone(),
                },
                None,
            );
        }
        for c in &p.consumers {
            self.close_data_consumer(env, *c, true);
        }
        self.notify_others(
            env,
            &p.peer,
            Notice::DataProducerClosed {
                data_producer_id: p.id.to_string(),
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
            .filter(|(_, p)| p.transport == Some(tkey))
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
        let local = self
            .data
            .producers
            .values()
            .filter(|p| p.transport.is_some())
            .count();
        env.stats.sub(Counted::DataProducer, local);
        env.stats
            .sub(Counted::DataConsumer, self.data.consumers.len());
        self.data = DataChannels::default();
    }

    /// A message received on stream `message.stream_id` of transport `tkey`: queued on each
    /// of its data producer's consumers (their outboxes are bounded; a full one drops).
    pub fn on_data_message(&mut self, env: &Env, tkey: TKey, message: SctpMessage) {
        let Some(key) = self.data.by_stream.get(&(tkey, message.stream_id)).copied() else {
            sctp::COUNTERS.dropped_other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(p) = self.data.producers.get(&key) {
            if self.spans_workers() {
                let (from, id) = (env.worker, p.id.clone());
                self.propagate(
                    env,
                    |room| PipeMsg::DataMessage {
                        room,
                        from,
                        data_producer_id: id.clone(),
                        ppid: message.ppid,
                        data: message.data.clone(),
                    },
                    None,
                );
            }
        }
        self.deliver_data(key, message.ppid, &message.data);
    }

    /// Queues one copy (payload shared) on each data consumer of `key` hosted here.
    fn deliver_data(&self, key: DKey, ppid: u32, data: &bytes::Bytes) {
        let Some(p) = self.data.producers.get(&key) else {
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
                    ppid,
                    data: data.clone(),
                },
                reliability: p.stream.reliability,
            });
        }
    }
}

/// How the other workers of a room know a data producer.
fn info(p: &DataProducer) -> DataProducerInfo {
    DataProducerInfo {
        id: p.id.clone(),
        peer: p.peer.clone(),
        stream: p.stream,
        label: p.label.clone(),
        protocol: p.protocol.clone(),
    }
}

impl Router {
    /// Whether other workers host peers of this room (its data must reach them).
    fn spans_workers(&self) -> bool {
        match &self.role {
            super::router::Role::Home { satellites, .. } => !satellites.is_empty(),
            super::router::Role::Replica { .. } => true,
        }
    }

    /// A new satellite of this (home) room learns every data producer the home knows.
    pub(crate) fn send_data_producers(&self, env: &Env, worker: usize) {
        let mut all: Vec<(&DKey, &DataProducer)> = self.data.producers.iter().collect();
        all.sort_by_key(|(k, _)| **k);
        for (_, p) in all {
            env.mesh.send(
                worker,
                PipeMsg::DataProducerAdded {
                    room: self.tag(),
                    from: env.worker,
                    producer: info(p),
                },
            );
        }
    }

    /// A data producer of another worker: kept here so this worker's peers can consume it.
    pub fn on_data_producer_added(
        &mut self,
        env: &Env,
        room: &RoomTag,
        from: usize,
        producer: DataProducerInfo,
    ) {
        let relayed = |room, me| PipeMsg::DataProducerAdded {
            room,
            from: me,
            producer: producer.clone(),
        };
        if !self.accept(env, room, from, relayed)
            || self.data.producer_ids.contains_key(&producer.id)
            || self
                .peer(&producer.peer)
                .is_none_or(|p| p.worker == env.worker)
        {
            return;
        }
        let key = self.data.key();
        let p = DataProducer {
            id: producer.id,
            peer: producer.peer,
            transport: None,
            stream: producer.stream,
            label: producer.label,
            protocol: producer.protocol,
            consumers: Vec::new(),
        };
        self.notify_others(env, &p.peer, Notice::NewDataProducer(summary(&p)));
        self.data.producer_ids.insert(p.id.clone(), key);
        self.data.producers.insert(key, p);
    }

    pub fn on_data_producer_closed(
        &mut self,
        env: &mut Env,
        room: &RoomTag,
        from: usize,
        id: &Arc<str>,
    ) {
        let relayed = |room, me| PipeMsg::DataProducerClosed {
            room,
            from: me,
            data_producer_id: id.clone(),
        };
        if !self.accept(env, room, from, relayed) {
            return;
        }
        let piped = self.data.producer_ids.get(id).copied().filter(|k| {
            self.data
                .producers
                .get(k)
                .is_some_and(|p| p.transport.is_none())
        });
        if let Some(key) = piped {
            self.close_data_producer(env, key);
        }
    }

    /// A message of a data producer on another worker, for its data consumers here.
    pub fn on_piped_data_message(
        &mut self,
        env: &Env,
        room: &RoomTag,
        from: usize,
        id: Arc<str>,
        ppid: u32,
        data: bytes::Bytes,
    ) {
        let relayed = |room, me| PipeMsg::DataMessage {
            room,
            from: me,
            data_producer_id: id.clone(),
            ppid,
            data: data.clone(),
        };
        if !self.accept(env, room, from, relayed) {
            return;
        }
        if let Some(key) = self.data.producer_ids.get(&id).copied() {
            self.deliver_data(key, ppid, &data);
        }
    }

    /// A peer hosted elsewhere left: its piped data producers (and their consumers here) go.
    pub(crate) fn close_piped_data_of_peer(&mut self, env: &mut Env, peer_id: &str) {
        let piped: Vec<DKey> = self
            .data
            .producers
            .iter()
            .filter(|(_, p)| p.transport.is_none() && &*p.peer == peer_id)
            .map(|(k, _)| *k)
            .collect();
        for key in piped {
            self.close_data_producer(env, key);
        }
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
