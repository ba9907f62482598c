//! The send path of a router: one producer packet to each of its consumers (the
//! [`Forwarder`](super::forward::Forwarder) decides, this file applies: rewrite, egress cap,
//! in-place SRTP protect, outbox), retransmissions answering NACKs, key-frame requests to
//! producers, sender reports, and the consent timeout of silent transports.

use super::api::Notice;
use super::env::Env;
use super::forward::{target_layer, Packet};
use super::limits::{take_shared, SharedBucket};
use super::mesh::PipeMsg;
use super::ortc::MediaKind;
use super::packet::FEEDBACK_SSRC;
use super::producer::Source;
use super::router::Router;
use super::{CKey, PKey, TKey};
use crate::rtc::keyframe::{is_keyframe, VideoCodec};
use crate::rtc::rtcp;
use crate::rtc::rtp::{self, Rewrite};
use crate::rtc::srtp::MAX_RTP_TAG_LEN;
use crate::rtc::vp8;
use crate::stats::WorkerStats;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A connected transport that has received neither STUN (consent) nor media for this long is
/// considered dead and closed.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Packets retransmitted for one NACK packet at most.
const MAX_RETRANSMISSIONS_PER_NACK: usize = 64;

/// Whether the egress cap of a transport's peer lets `bytes` more go out now; a refusal is
/// counted in the worker's stats.
fn egress_allows(bucket: &SharedBucket, bytes: usize, now: Instant, stats: &WorkerStats) -> bool {
    if take_shared(bucket, bytes, now) {
        return true;
    }
    stats.egress_dropped_packets.fetch_add(1, Ordering::Relaxed);
    stats
        .egress_dropped_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
    false
}

impl Router {
    /// Forwards one producer packet of simulcast `layer` (decrypted and parsed) to every
    /// consumer of the producer that is resumed and connected.
    pub(crate) fn forward_rtp(
        &mut self,
        env: &mut Env,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let drop_percent = u32::from(env.faults.drop_out_percent);
        let Router {
            consumers,
            transports,
            producers,
            probing,
            ..
        } = self;
        let Some(p) = producers.get(&pkey) else {
            return;
        };
        if p.paused {
            return;
        }
        let codec = p.video_codec;
        let layers = p.ssrcs.len();
        let active = p.quality.active_layers(now);
        let video = p.kind == MediaKind::Video;
        let pkt = Packet::new(hdr.sequence, hdr.timestamp, layer, video);
        let payload = hdr.payload(plain);
        let mut keyframe: Option<bool> = None;
        // Where its VP8 picture numbers are: the same in every copy (rewritten per consumer).
        let vp8 = (codec == VideoCodec::Vp8)
            .then(|| vp8::parse(payload))
            .flatten();
        let mut need_keyframe = 0u32;
        let mut layer_changes: Vec<(CKey, usize)> = Vec::new();
        for ckey in &p.consumers {
            let Some(c) = consumers.get_mut(ckey) else {
                continue;
            };
            if c.paused || c.bw_paused {
                continue;
            }
            // Not connected yet: do not sync on a key frame the consumer would never get.
            let Some(t) = transports.get_mut(&c.transport) else {
                continue;
            };
            let (Some(to), Some(srtp)) = (t.remote, t.srtp.as_mut()) else {
                continue;
            };
            let pt = match c.pt_map.get(usize::from(hdr.payload_type)) {
                Some(&pt) if pt != 0xFF => pt,
                _ => continue,
            };
            // The preferred layer, within what the subscriber's bandwidth allows (room/alloc.rs).
            let cap = match (c.preferred_spatial_layer, c.bw_layer) {
                (Some(p), Some(b)) => Some(p.min(u8::try_from(b).unwrap_or(u8::MAX))),
                (p, None) => p,
                (None, Some(b)) => Some(u8::try_from(b).unwrap_or(u8::MAX)),
            };
            let target = target_layer(cap, layers, active);
            let d = c.fwd.decide(&pkt, target, now, || {
                *keyframe.get_or_insert_with(|| is_keyframe(codec, payload))
            });
            if d.need_keyframe {
                need_keyframe |= 1 << target.min(31);
            }
            if let Some(l) = d.switched_to.filter(|_| layers > 1) {
                layer_changes.push((*ckey, l));
            }
            let Some((seq, ts)) = d.send else {
                continue;
            };
            c.packets_sent = c.packets_sent.wrapping_add(1);
            c.octets_sent = c
                .octets_sent
                .wrapping_add((hdr.payload_end - hdr.payload_start) as u32);
            if drop_percent > 0 && rand::random::<u32>() % 100 < drop_percent {
                continue;
            }
            // The peer's outgoing cap: beyond it, media towards the peer is dropped (its
            // receiver sees loss and adapts), never queued.
            if !egress_allows(&t.egress, plain.len(), now, &env.stats) {
                continue;
            }
            let twcc = c
                .twcc_ext
                .and_then(|id| t.bwe.as_mut().map(|b| (id, b.next_seq())));
            let rw = Rewrite {
                ssrc: c.ssrc,
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ext_map: &c.ext_map,
                mid: c.mid(),
                twcc,
            };
            let out = &mut env.scratch;
            rtp::rewrite_into(plain, hdr, &rw, out);
            if let Some(d) = &vp8 {
                let at = out.len() - (plain.len() - hdr.payload_start);
                c.fwd.rewrite_vp8(&mut out[at..], d);
            }
            out.reserve(MAX_RTP_TAG_LEN);
            if srtp.protect_rtp_in_place(out).is_ok() {
                env.stats.packets_out.fetch_add(1, Ordering::Relaxed);
                env.stats
                    .bytes_out
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
                if let (Some((_, seq)), Some(b)) = (twcc, t.bwe.as_mut()) {
                    b.estimator.on_sent(seq, out.len(), now);
                    b.sent.media += out.len() as u64;
                    b.video_sent(now);
                    if b.probing() {
                        probing.push((c.transport, *ckey));
                    }
                }
                env.outbox.push(to, out);
            }
        }
        for (ckey, layer) in layer_changes {
            self.notify_layers_changed(env, ckey, layer);
        }
        let mut probing = std::mem::take(&mut self.probing);
        for &(tkey, ckey) in &probing {
            self.pad_probe(env, tkey, ckey, now, false);
        }
        probing.clear();
        self.probing = probing;
        if need_keyframe != 0 {
            self.request_keyframe_of(env, pkey, now, true, need_keyframe);
        }
    }

    /// Tells a consumer's peer which layer it now receives.
    fn notify_layers_changed(&self, env: &Env, ckey: CKey, layer: usize) {
        let Some(c) = self.consumers.get(&ckey) else {
            return;
        };
        let temporal = self
            .producers
            .get(&c.producer)
            .and_then(|p| p.quality.layers.get(layer))
            .map_or(0, |l| l.max_temporal_layer);
        if let Some(conn) = self.conn_of(&c.peer, env.worker) {
            env.notify(
                conn,
                Notice::ConsumerLayersChanged {
                    consumer_id: c.id.clone(),
                    spatial_layer: Some(layer),
                    temporal_layer: Some(temporal),
                },
            );
        }
    }

    /// Answers a consumer's NACK from its producer's packet cache: as RTX when the consumer
    /// negotiated it, else as the original packet again.
    pub(crate) fn retransmit(
        &mut self,
        env: &mut Env,
        ckey: CKey,
        media_ssrc: u32,
        lost: &[u16],
        now: Instant,
    ) {
        let Router {
            consumers,
            producers,
            transports,
            ..
        } = self;
        let Some(c) = consumers.get_mut(&ckey) else {
            return;
        };
        if c.ssrc != media_ssrc || !c.fwd.started() {
            return;
        }
        let (Some(p), Some(layer)) = (producers.get(&c.producer), c.fwd.layer()) else {
            return;
        };
        let Some(cache) = p.quality.layers.get(layer).and_then(|l| l.cache.as_deref()) else {
            return;
        };
        let Some(t) = transports.get_mut(&c.transport) else {
            return;
        };
        let (Some(to), Some(srtp)) = (t.remote, t.srtp.as_mut()) else {
            return;
        };
        let scratch = &mut env.scratch;
        let stats = &env.stats;
        for &seq in lost.iter().take(MAX_RETRANSMISSIONS_PER_NACK) {
            // Packets from before the current sync point came from another layer or offset.
            let Some(producer_seq) = c.fwd.producer_seq(seq) else {
                continue;
            };
            let Some(packet) = cache.get(producer_seq) else {
                continue;
            };
            if !c.retransmits.take(now) {
                break;
            }
            if !egress_allows(&t.egress, packet.len(), now, stats) {
                break;
            }
            let Some(hdr) = rtp::parse_rtp(packet) else {
                continue;
            };
            let Some(&media_pt) = c.pt_map.get(usize::from(hdr.payload_type)) else {
                continue;
            };
            if media_pt == 0xFF {
                continue;
            }
            let rtx_pt = p
                .mapping
                .codec_by_payload_type(hdr.payload_type)
                .and_then(|codec| codec.rtx_payload_type)
                .and_then(|pt| c.pt_map.get(usize::from(pt)).copied())
                .filter(|&pt| pt != 0xFF);
            let rtx = c.rtx_ssrc.zip(rtx_pt);
            let (ssrc, payload_type, sequence) = match rtx {
                Some((rtx_ssrc, rtx_pt)) => (rtx_ssrc, rtx_pt, c.fwd.next_rtx_seq()),
                None => (c.ssrc, media_pt, seq),
            };
            let twcc = c
                .twcc_ext
                .and_then(|id| t.bwe.as_mut().map(|b| (id, b.next_seq())));
            let rw = Rewrite {
                ssrc,
                payload_type,
                sequence,
                timestamp: c.fwd.map_ts(hdr.timestamp),
                ext_map: &c.ext_map,
                mid: c.mid(),
                twcc,
            };
            rtp::rewrite_into(packet, &hdr, &rw, scratch);
            let payload_at = scratch.len() - (packet.len() - hdr.payload_start);
            if p.video_codec == VideoCodec::Vp8 {
                c.fwd.rewrite_vp8_retransmit(&mut scratch[payload_at..]);
            }
            if rtx.is_some() {
                // RTX payload: the original (consumer) sequence number first.
                scratch.splice(payload_at..payload_at, seq.to_be_bytes());
            }
            scratch.reserve(MAX_RTP_TAG_LEN);
            if srtp.protect_rtp_in_place(scratch).is_ok() {
                if let (Some((_, seq)), Some(b)) = (twcc, t.bwe.as_mut()) {
                    b.estimator.on_sent(seq, scratch.len(), now);
                    b.sent.rtx += scratch.len() as u64;
                }
                stats.retransmissions_sent.fetch_add(1, Ordering::Relaxed);
                stats.packets_out.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_out
                    .fetch_add(scratch.len() as u64, Ordering::Relaxed);
                env.outbox.push(to, scratch);
            }
        }
    }

    /// Asks a video producer for a key frame (PLI), spaced by the producer's
    /// [`KeyframeSpacer`](crate::rtc::keyframe::KeyframeSpacer): at most once a second, or
    /// twice when `force`d (a consumer just resumed, or still waits for its first frame: the
    /// previous key frame may have gone out before its transport could carry it). A request
    /// within the spacing is deferred to its end by [`Self::tick`], never lost.
    pub fn request_keyframe(&mut self, env: &mut Env, pkey: PKey, now: Instant, force: bool) {
        self.request_keyframe_of(env, pkey, now, force, u32::MAX);
    }

    /// [`Self::request_keyframe`] for the simulcast layers in `layers` (bit `i`: encoding `i`)
    /// only: every PLI costs the publisher a key frame of that encoding.
    pub fn request_keyframe_of(
        &mut self,
        env: &mut Env,
        pkey: PKey,
        now: Instant,
        force: bool,
        layers: u32,
    ) {
        let Some(p) = self.producers.get_mut(&pkey) else {
            return;
        };
        if p.kind != MediaKind::Video {
            return;
        }
        p.keyframe_layers |= layers;
        if !p.keyframes.request(now, force) {
            return;
        }
        self.send_keyframe_request(env, pkey, force);
    }

    /// Sends a key-frame request the spacer allowed: PLIs to the producer's publisher, or,
    /// for a producer piped in from another worker, a message to its origin (which spaces
    /// them again for all its subscribers together).
    fn send_keyframe_request(&mut self, env: &mut Env, pkey: PKey, force: bool) {
        let Some(p) = self.producers.get(&pkey) else {
            return;
        };
        let tkey = match &p.source {
            Source::Piped { origin } => {
                env.mesh.send(
                    origin.worker,
                    PipeMsg::KeyFrame {
                        origin_key: origin.key,
                        force,
                    },
                );
                return;
            }
            Source::Local { transport, .. } => *transport,
        };
        // The layers asked for since the last request (all when none were named).
        let mask = match p.keyframe_layers {
            0 => u32::MAX,
            m => m,
        };
        let mut pkt = Vec::with_capacity(12 * p.ssrcs.len());
        for (i, ssrc) in p.ssrcs.iter().enumerate() {
            if let Some(ssrc) = ssrc.filter(|_| i >= 32 || mask & (1 << i) != 0) {
                rtcp::build_pli(FEEDBACK_SSRC, ssrc, &mut pkt);
            }
        }
        if let Some(p) = self.producers.get_mut(&pkey) {
            p.keyframe_layers = 0;
        }
        if !pkt.is_empty() {
            env.stats
                .keyframe_requests_sent
                .fetch_add(1, Ordering::Relaxed);
            self.send_rtcp(env, tkey, &pkt);
        }
    }

    /// Asks every video producer of the room for a key frame (HLS segment boundaries).
    pub fn request_keyframes(&mut self, env: &mut Env, now: Instant) {
        let keys: Vec<PKey> = self.producers_by_id.values().copied().collect();
        for p in keys {
            self.request_keyframe(env, p, now, false);
        }
    }

    pub(crate) fn send_rtcp(&mut self, env: &mut Env, tkey: TKey, plain: &[u8]) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let (Some(to), Some(srtp)) = (t.remote, t.srtp.as_mut()) else {
            return;
        };
        if let Ok(out) = srtp.encrypt_rtcp(plain) {
            env.outbox.push(to, &out);
        }
    }

    /// Periodic work (about every 250 ms): the consent timeout, HLS flow changes, deferred
    /// key-frame requests, the active speaker and (`send_reports`) sender reports.
    pub fn tick(&mut self, env: &mut Env, now: Instant, send_reports: bool) {
        self.close_dead_transports(env, now);
        self.announce_flow_changes(env, now);
        let due: Vec<(PKey, bool)> = self
            .producers
            .iter_mut()
            .filter_map(|(k, p)| p.keyframes.poll(now).map(|forced| (*k, forced)))
            .collect();
        for (p, forced) in due {
            self.send_keyframe_request(env, p, forced);
        }
        self.evaluate_speaker(env, now);
        self.adapt(env, now);
        if !send_reports {
            return;
        }
        let ntp = rtcp::ntp_now();
        let mut reports: Vec<(TKey, Vec<u8>)> = Vec::new();
        for c in self.consumers.values() {
            let Some(rtp_time) = c.fwd.rtp_time_at(now) else {
                continue;
            };
            let mut pkt = Vec::with_capacity(28);
            rtcp::build_sender_report(
                c.ssrc,
                ntp,
                rtp_time,
                c.packets_sent,
                c.octets_sent,
                &mut pkt,
            );
            reports.push((c.transport, pkt));
        }
        for (tkey, pkt) in reports {
            self.send_rtcp(env, tkey, &pkt);
        }
    }

    /// ICE consent: closes connected transports silent for [`CONSENT_TIMEOUT`] (Chromium sends
    /// a consent check every few seconds), with everything on them.
    fn close_dead_transports(&mut self, env: &mut Env, now: Instant) {
        let dead: Vec<TKey> = self
            .transports
            .iter()
            .filter(|(_, t)| {
                t.is_connected() && now.saturating_duration_since(t.last_seen) > CONSENT_TIMEOUT
            })
            .map(|(k, _)| *k)
            .collect();
        for tkey in dead {
            if let Some(t) = self.transports.get(&tkey) {
                tracing::info!(transport = %t.id, "no consent or media for 30 s; closing the transport");
            }
            self.close_transport(env, tkey);
        }
    }
}
