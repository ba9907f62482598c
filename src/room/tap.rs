//! Taps: a room's producers forwarded as plain RTP to loopback (the HLS pipeline's FFmpeg).
//!
//! A tap is a consumer without a transport: no ICE, no SRTP, no RTCP from the other side. It
//! gets its own SSRC and payload type and a continuous sequence space, starts at a key frame
//! like a WebRTC consumer, and carries no header extensions.

use super::consumer::SeqState;
use super::core::WorkerCore;
use super::ortc::{MediaKind, RtpCodecCapability};
use super::PKey;
use crate::hls::{MediaSource, SourceKind, TapTarget};
use crate::rtc::keyframe::is_keyframe;
use crate::rtc::rtp::{self, ExtIdMap, Rewrite};
use crate::worker::jobs::Outbound;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

/// Which producers were sending at the last look, so the HLS pipeline hears when a room's
/// media starts or stops (it starts FFmpeg only for producers that send).
#[derive(Default)]
pub struct FlowWatch {
    sending: HashSet<PKey>,
}

pub struct Tap {
    pub dest: SocketAddr,
    pub payload_type: u8,
    pub ssrc: u32,
    pub seq: SeqState,
    /// The simulcast layer forwarded (the highest active one; switched at its key frame).
    pub layer: Option<usize>,
    pub last_sent_at: Option<Instant>,
}

fn codec_fmtp(codec: &RtpCodecCapability) -> Vec<(String, String)> {
    codec
        .parameters
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

impl WorkerCore {
    /// The media sources of a room, as the HLS pipeline needs them.
    pub fn room_sources(&self, room_id: &str) -> Vec<MediaSource> {
        let Some(room) = self.rooms.get(room_id) else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out = Vec::new();
        for peer in &room.peers {
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
                    fmtp: codec_fmtp(&codec.router_codec),
                    paused: p.paused,
                    last_packet_at,
                });
            }
        }
        out
    }

    /// Tells the signaling thread (and so the HLS pipeline) that a room's media changed.
    pub(crate) fn announce_sources(&self, room_id: &str) {
        // The home worker speaks for the room (its directory has every producer).
        if !self.is_home(room_id) {
            return;
        }
        let _ = self.signaling.send(Outbound::RoomSources {
            room_id: room_id.into(),
            sources: self.room_sources(room_id),
        });
    }

    /// Announces the rooms (homed here) in which a producer started or stopped sending since
    /// the last call. Called from the periodic tick: O(producers), no per-packet work.
    pub(crate) fn announce_flow_changes(&mut self, now: Instant) {
        let mut changed: Vec<std::sync::Arc<str>> = Vec::new();
        let flow = &mut self.flow;
        flow.sending.retain(|k| self.producers.contains_key(k));
        for (pkey, p) in &self.producers {
            let sending = p.quality.active_layers(now) != 0;
            let was = flow.sending.contains(pkey);
            if sending != was {
                if sending {
                    flow.sending.insert(*pkey);
                } else {
                    flow.sending.remove(pkey);
                }
                if !changed.contains(&p.room) {
                    changed.push(p.room.clone());
                }
            }
        }
        for room in changed {
            self.announce_sources(&room);
        }
    }

    /// Replaces the taps of a room.
    pub fn set_taps(&mut self, room_id: &str, targets: Vec<TapTarget>, now: Instant) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let room_producers: Vec<PKey> = room.producers_by_id.values().copied().collect();
        for p in &room_producers {
            self.taps.remove(p);
        }
        for t in targets {
            // Only loopback destinations: taps feed a local FFmpeg, never the network.
            if !t.dest.ip().is_loopback() {
                continue;
            }
            let Some(&pkey) = room.producers_by_id.get(&t.producer_id) else {
                continue;
            };
            self.taps.entry(pkey).or_default().push(Tap {
                dest: t.dest,
                payload_type: t.payload_type,
                ssrc: t.ssrc,
                seq: SeqState::new(rand::random::<u16>() & 0x3fff),
                layer: None,
                last_sent_at: None,
            });
        }
        for p in room_producers {
            if self.taps.contains_key(&p) {
                self.request_keyframe(p, now, true);
            }
        }
    }

    /// Asks every video producer of a room for a key frame (HLS segment boundaries).
    pub fn request_room_keyframes(&mut self, room_id: &str, now: Instant) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let keys: Vec<PKey> = room.producers_by_id.values().copied().collect();
        for p in keys {
            self.request_keyframe(p, now, false);
        }
    }

    /// Forwards one producer packet of simulcast `layer` (already decrypted and parsed) to the
    /// producer's taps.
    pub(crate) fn forward_to_taps(
        &mut self,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let Some(taps) = self.taps.get_mut(&pkey) else {
            return;
        };
        let Some(p) = self.producers.get(&pkey) else {
            return;
        };
        let is_media = p
            .mapping
            .codecs
            .first()
            .is_some_and(|c| c.payload_type == hdr.payload_type);
        if !is_media {
            return;
        }
        let active = p.quality.active_layers(now);
        let target = if active == 0 {
            layer
        } else {
            (31 - active.leading_zeros()) as usize
        };
        let payload = plain.get(hdr.payload_start..hdr.payload_end).unwrap_or(&[]);
        let mut keyframe: Option<bool> = None;
        let mut need_keyframe = false;
        let no_ext = ExtIdMap::new();
        for tap in taps.iter_mut() {
            let switching = tap.layer != Some(layer);
            if switching && layer != target {
                continue;
            }
            if switching || !tap.seq.synced {
                if p.kind == MediaKind::Video
                    && !*keyframe.get_or_insert_with(|| is_keyframe(p.video_codec, payload))
                {
                    need_keyframe = true;
                    continue;
                }
                tap.seq.sync_after(
                    hdr.sequence,
                    hdr.timestamp,
                    tap.last_sent_at,
                    now,
                    p.clock_rate,
                );
                tap.layer = Some(layer);
            }
            let Some((seq, ts)) = tap.seq.map(hdr.sequence, hdr.timestamp) else {
                continue;
            };
            let rw = Rewrite {
                ssrc: tap.ssrc,
                payload_type: tap.payload_type,
                sequence: seq,
                timestamp: ts,
                ext_map: &no_ext,
                mid: None,
            };
            rtp::rewrite_into(plain, hdr, &rw, &mut self.scratch);
            tap.last_sent_at = Some(now);
            self.outbox.push(tap.dest, &self.scratch);
        }
        if need_keyframe {
            self.request_keyframe(pkey, now, true);
        }
    }
}
