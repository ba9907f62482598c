//! Taps: a room's producers forwarded as plain RTP to loopback (the HLS pipeline's FFmpeg),
//! and the reports that tell the pipeline which producers exist and send.
//!
//! A tap is a consumer without a transport: no ICE, no SRTP, no RTCP from the other side. It
//! gets its own SSRC and payload type and a continuous sequence space, starts at a key frame
//! like a WebRTC consumer, follows the highest active simulcast layer, and carries no header
//! extensions.

use super::api::{MediaSource, Outbound, SourceKind, TapTarget};
use super::env::Env;
use super::forward::{target_layer, Forwarder, Packet};
use super::ortc::MediaKind;
use super::remote::Remote;
use super::router::Router;
use super::PKey;
use crate::rtc::keyframe::is_keyframe;
use crate::rtc::rtp::{self, ExtIdMap, Rewrite};
use std::net::SocketAddr;
use std::time::Instant;

pub struct Tap {
    pub dest: SocketAddr,
    pub payload_type: u8,
    pub ssrc: u32,
    pub fwd: Forwarder,
}

impl Router {
    /// The media sources of the room, as the HLS pipeline needs them.
    pub fn sources(&self, now: Instant) -> Vec<MediaSource> {
        let mut out = Vec::new();
        for peer in &self.peers {
            let mut keys: Vec<(&String, &PKey)> = peer.producers.iter().collect();
            keys.sort();
            for (id, pkey) in keys {
                let Some(p) = self.producers.get(pkey) else {
                    continue;
                };
                let Some(codec) = p.mapping.codecs.first() else {
                    continue;
                };
                // Only a producer sending now reports a send time: the worker reports the room
                // again whenever one of its producers starts or stops sending
                // (`announce_flow_changes`), so the pipeline can trust the latest report
                // instead of aging it.
                let sending = p.quality.active_layers(now) != 0;
                let last_packet_at = p
                    .quality
                    .layers
                    .iter()
                    .filter_map(|l| l.last_packet_at)
                    .max()
                    .filter(|_| sending);
                out.push(MediaSource {
                    producer_id: id.clone(),
                    peer_id: peer.id.to_string(),
                    kind: match p.kind {
                        MediaKind::Audio => SourceKind::Audio,
                        MediaKind::Video => SourceKind::Video,
                    },
                    mime_type: codec.router_codec.mime_type.clone(),
                    clock_rate: codec.router_codec.clock_rate,
                    channels: codec.router_codec.channels,
                    fmtp: codec.router_codec.fmtp(),
                    paused: p.paused,
                    last_packet_at,
                });
            }
        }
        out
    }

    /// Tells the signaling thread (and so the HLS pipeline) that the room's media changed.
    pub fn announce_sources(&self, env: &Env) {
        // The home worker speaks for the room (its directory has every producer).
        if !self.is_home() {
            return;
        }
        let _ = env.signaling.send(Outbound::RoomSources {
            room_id: self.id.to_string(),
            sources: self.sources(Instant::now()),
        });
    }

    /// Announces the room if one of its producers started or stopped sending since the last
    /// call. Called from the periodic tick: O(producers), no per-packet work.
    pub(crate) fn announce_flow_changes(&mut self, env: &Env, now: Instant) {
        let mut changed = false;
        for (pkey, p) in &self.producers {
            let sending = p.quality.active_layers(now) != 0;
            if sending != self.sending.contains(pkey) {
                changed = true;
                if sending {
                    self.sending.insert(*pkey);
                } else {
                    self.sending.remove(pkey);
                }
            }
        }
        if changed {
            self.announce_sources(env);
        }
    }

    /// Replaces the taps of the room.
    pub fn set_taps(&mut self, env: &mut Env, targets: Vec<TapTarget>, now: Instant) {
        self.taps.clear();
        for t in targets {
            // Only loopback destinations: taps feed a local FFmpeg, never the network.
            if !t.dest.ip().is_loopback() {
                continue;
            }
            let Some(&pkey) = self.producers_by_id.get(&t.producer_id) else {
                continue;
            };
            let Some(clock_rate) = self.producers.get(&pkey).map(|p| p.clock_rate) else {
                continue;
            };
            self.taps.entry(pkey).or_default().push(Tap {
                dest: t.dest,
                payload_type: t.payload_type,
                ssrc: t.ssrc,
                fwd: Forwarder::new(rand::random::<u16>() & 0x3fff, clock_rate),
            });
        }
        let tapped: Vec<PKey> = self.taps.keys().copied().collect();
        for p in tapped {
            self.request_keyframe(env, p, now, true);
        }
    }

    /// Forwards one producer packet of simulcast `layer` (already decrypted and parsed) to the
    /// producer's taps.
    pub(crate) fn forward_to_taps(
        &mut self,
        env: &mut Env,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let Router {
            taps, producers, ..
        } = self;
        let Some(taps) = taps.get_mut(&pkey) else {
            return;
        };
        let Some(p) = producers.get(&pkey) else {
            return;
        };
        let is_media = p
            .mapping
            .codecs
            .first()
            .is_some_and(|c| c.payload_type == hdr.payload_type);
        if p.paused || !is_media {
            return;
        }
        let target = target_layer(None, p.ssrcs.len(), p.quality.active_layers(now));
        let video = p.kind == MediaKind::Video;
        let pkt = Packet::new(hdr.sequence, hdr.timestamp, layer, video);
        let payload = hdr.payload(plain);
        let mut keyframe: Option<bool> = None;
        let mut need_keyframe = false;
        let no_ext = ExtIdMap::new();
        for tap in taps.iter_mut() {
            let d = tap.fwd.decide(&pkt, target, now, || {
                *keyframe.get_or_insert_with(|| is_keyframe(p.video_codec, payload))
            });
            need_keyframe |= d.need_keyframe;
            let Some((seq, ts)) = d.send else {
                continue;
            };
            let rw = Rewrite {
                ssrc: tap.ssrc,
                payload_type: tap.payload_type,
                sequence: seq,
                timestamp: ts,
                ext_map: &no_ext,
                mid: None,
                twcc: None,
            };
            rtp::rewrite_into(plain, hdr, &rw, &mut env.scratch);
            env.outbox.push(Remote::Udp(tap.dest), &env.scratch);
        }
        if need_keyframe {
            self.request_keyframe(env, pkey, now, true);
        }
    }
}
