//! Media piping between workers: mediasoup's pipeToRouter inside one process.
//!
//! A worker that creates a piped producer (room/directory.rs) subscribes to its origin with
//! its own key; the origin then appends every packet of that producer to a per-destination
//! batch, handed over once per received datagram ([`Env::flush_pipes`]). From there on a
//! piped producer is forwarded exactly like a local one (same rewrite, same retransmission
//! cache, same taps); its origin asks the publisher for lost packets and key frames.

use super::api::Notice;
use super::env::Env;
use super::mesh::{Origin, PipeMsg, ProducerInfo};
use super::ortc::MediaKind;
use super::producer::Producer;
use super::router::Router;
use super::PKey;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Router {
    /// A producer of another worker, piped in: created here, subscribed at its origin;
    /// `tell`: this worker's peers hear of it (not for a snapshot, which their join lists).
    pub fn add_piped_producer(&mut self, env: &mut Env, info: ProducerInfo, tell: bool) {
        if info.origin.worker == env.worker
            || self.producers_by_id.contains_key(&info.id)
            || self.peer(&info.peer).is_none()
        {
            return;
        }
        let pkey = env.key();
        env.mesh.send(
            info.origin.worker,
            PipeMsg::Subscribe {
                origin_key: info.origin.key,
                worker: env.worker,
                key: pkey,
            },
        );
        let notice = Notice::NewProducer {
            producer_id: info.id.clone(),
            peer_id: info.peer.clone(),
            kind: info.kind,
            label: info.label,
        };
        let peer = info.peer.clone();
        self.insert_producer(env, pkey, Producer::piped(info));
        if tell {
            self.notify_others(env, &peer, notice);
            self.announce_sources(env);
        }
    }

    /// At the origin: worker `worker` wants the packets of local producer `pkey` (its key for
    /// it: `key`).
    pub fn on_subscribe(&mut self, pkey: PKey, worker: usize, key: PKey) {
        let Some(p) = self.producers.get_mut(&pkey) else {
            return;
        };
        let video = p.kind == MediaKind::Video;
        let Some(pipes) = p.pipes_mut() else {
            return;
        };
        if !pipes.contains(&(worker, key)) {
            pipes.push((worker, key));
        }
        // The new subscriber's consumers start at a key frame.
        if video {
            p.keyframes.defer(true);
        }
    }

    pub fn on_unsubscribe(&mut self, pkey: PKey, worker: usize, key: PKey) {
        if let Some(pipes) = self.producers.get_mut(&pkey).and_then(|p| p.pipes_mut()) {
            pipes.retain(|&pipe| pipe != (worker, key));
        }
    }

    /// At the origin: a subscriber's consumers need a key frame of local producer `pkey`.
    pub fn on_keyframe_wanted(&mut self, env: &mut Env, pkey: PKey, force: bool, now: Instant) {
        if self.producers.get(&pkey).is_some_and(|p| !p.is_piped()) {
            self.request_keyframe(env, pkey, now, force);
        }
    }

    /// Queues a packet of a local producer for the workers it is piped to.
    pub(crate) fn pipe_packet(
        &mut self,
        env: &mut Env,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        now: Instant,
    ) {
        let Some(p) = self.producers.get(&pkey) else {
            return;
        };
        let me = env.worker;
        for &(w, key) in p.pipes() {
            if let Some(slot) = env.pipe_out.get_mut(w) {
                slot.get_or_insert_with(|| env.mesh.take_batch(me))
                    .push(key, layer, plain, now);
            }
        }
    }
}

impl Env {
    /// Tells a piped producer's origin (this worker's key for it: `key`) to stop sending.
    pub fn unsubscribe(&self, key: PKey, origin: Origin) {
        self.mesh.send(
            origin.worker,
            PipeMsg::Unsubscribe {
                origin_key: origin.key,
                worker: self.worker,
                key,
            },
        );
    }

    /// Hands the queued batches to their workers (after each received datagram).
    pub fn flush_pipes(&mut self) {
        for (w, slot) in self.pipe_out.iter_mut().enumerate() {
            let Some(batch) = slot.take() else {
                continue;
            };
            let n = batch.len() as u64;
            match self.mesh.send_media(w, batch) {
                Ok(()) => {
                    self.stats.pipe_packets_out.fetch_add(n, Ordering::Relaxed);
                }
                Err(batch) => {
                    self.stats.pipe_drops.fetch_add(1, Ordering::Relaxed);
                    self.mesh.recycle(batch);
                }
            }
        }
    }
}
