//! The packet path of a worker: demultiplex a datagram (STUN / DTLS / SRTP / SRTCP), decrypt,
//! forward RTP from a producer to its consumers with per-consumer rewrite, and handle RTCP
//! feedback. No JSON, no sockets: datagrams to send are appended to `outbox`.

use super::core::{DtlsMsg, WorkerCore};
use super::ortc::MediaKind;
use super::transport::{DtlsState, MAX_EARLY_DTLS};
use super::{PKey, TKey};
use crate::rtc::dtls::{DtlsEvent, DtlsRole, SrtpProfileId};
use crate::rtc::keyframe::is_keyframe;
use crate::rtc::rtcp::{self, RtcpEvent};
use crate::rtc::rtp::{self, Rewrite};
use crate::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
use crate::rtc::{classify, ice, PacketClass};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn srtp_profile(id: SrtpProfileId) -> SrtpProfile {
    match id {
        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProfileId::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfileId::Aes128CmHmacSha1_32 => SrtpProfile::Aes128CmHmacSha1_32,
    }
}

/// SSRC we use as the sender of RTCP feedback (PLI/FIR) towards producers.
const FEEDBACK_SSRC: u32 = 1;

impl WorkerCore {
    /// Handles one datagram received from `from`.
    pub fn handle_datagram(&mut self, buf: &[u8], from: SocketAddr, now: Instant) {
        self.stats.packets_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        match classify(buf) {
            PacketClass::Stun => self.handle_stun(buf, from, now),
            PacketClass::Dtls => self.handle_dtls_record(buf, from),
            PacketClass::Rtp => {
                if let Some(tkey) = self.by_addr.get(&from).copied() {
                    self.handle_rtp(tkey, buf, now);
                }
            }
            PacketClass::Rtcp => {
                if let Some(tkey) = self.by_addr.get(&from).copied() {
                    self.handle_rtcp(tkey, buf, now);
                }
            }
            PacketClass::Unknown => {}
        }
    }

    /// The room a datagram from `from` belongs to (to evict it after a panic).
    pub fn room_of_addr(&self, from: &SocketAddr) -> Option<String> {
        let t = self.by_addr.get(from)?;
        self.transports.get(t).map(|t| t.room.to_string())
    }

    fn handle_stun(&mut self, buf: &[u8], from: SocketAddr, now: Instant) {
        let req = match ice::parse_binding_request(buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::trace!(%from, error = ?e, "STUN ignored");
                return;
            }
        };
        let Some(&tkey) = self.by_ufrag.get(req.local_ufrag.as_str()) else {
            tracing::trace!(%from, ufrag = %req.local_ufrag, "STUN for an unknown ufrag");
            return;
        };
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        self.scratch.clear();
        if let Err(e) = ice::answer_binding_request(buf, &t.ice.pwd, from, &mut self.scratch) {
            tracing::trace!(%from, error = ?e, "STUN binding request rejected");
            return;
        }
        t.last_seen = now;
        self.outbox
            .push((from, bytes::Bytes::copy_from_slice(&self.scratch)));
        // ICE-lite: the controlling browser nominates; until it does, take the first tuple.
        if req.use_candidate || t.remote.is_none() {
            if let Some(old) = t.remote.replace(from) {
                if old != from {
                    self.by_addr.remove(&old);
                }
            }
            self.by_addr.insert(from, tkey);
            self.maybe_start_dtls(tkey);
        }
    }

    fn handle_dtls_record(&mut self, buf: &[u8], from: SocketAddr) {
        let Some(&tkey) = self.by_addr.get(&from) else {
            return;
        };
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        tracing::trace!(transport = %t.id, len = buf.len(), "dtls record in");
        match &t.dtls {
            DtlsState::Handshaking(s) | DtlsState::Connected(s) => s.feed(buf),
            DtlsState::New | DtlsState::Pending { .. } => {
                if t.early_dtls.len() < MAX_EARLY_DTLS && buf.len() <= 2048 {
                    t.early_dtls.push(buf.to_vec());
                }
            }
            DtlsState::Failed => {}
        }
    }

    /// Handles an event of a transport's DTLS session (from the DTLS thread).
    pub fn handle_dtls_msg(&mut self, msg: DtlsMsg) {
        let tkey = msg.transport;
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        match msg.event {
            DtlsEvent::Transmit(data) => {
                tracing::trace!(transport = %t.id, len = data.len(), remote = ?t.remote, "dtls record out");
                if let Some(to) = t.remote {
                    self.outbox.push((to, bytes::Bytes::from(data)));
                }
            }
            DtlsEvent::Connected(material) => {
                let session = match std::mem::replace(&mut t.dtls, DtlsState::Failed) {
                    DtlsState::Handshaking(s) | DtlsState::Connected(s) => s,
                    other => {
                        t.dtls = other;
                        return;
                    }
                };
                t.dtls = DtlsState::Connected(session);
                let keys = split_keying_material(
                    srtp_profile(material.profile),
                    &material.material,
                    material.role == DtlsRole::Client,
                );
                match keys.and_then(|k| SrtpSession::new(&k)) {
                    Ok(s) => {
                        t.srtp = Some(s);
                        tracing::debug!(transport = %t.id, "transport connected");
                    }
                    Err(e) => {
                        tracing::warn!(transport = %t.id, error = %e, "SRTP setup failed");
                        t.close();
                    }
                }
                // Consumers on this transport start with a key frame.
                let pkeys: Vec<PKey> = t
                    .consumers_by_ssrc
                    .values()
                    .filter_map(|c| self.consumers.get(c))
                    .filter(|c| !c.paused)
                    .map(|c| c.producer)
                    .collect();
                let now = Instant::now();
                for p in pkeys {
                    self.request_keyframe(p, now, true);
                }
            }
            DtlsEvent::Failed(reason) => {
                tracing::info!(transport = %t.id, %reason, "DTLS failed; the transport stops carrying media");
                t.close();
            }
            DtlsEvent::Closed => {
                t.srtp = None;
            }
        }
    }

    fn handle_rtp(&mut self, tkey: TKey, buf: &[u8], now: Instant) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let Some(srtp) = t.srtp.as_mut() else {
            return;
        };
        let Ok(plain) = srtp.decrypt_rtp(buf) else {
            return;
        };
        let Some(hdr) = rtp::parse_rtp(&plain) else {
            return;
        };
        t.last_seen = now;
        let pkey = match t.producers_by_ssrc.get(&hdr.ssrc) {
            Some(&p) => p,
            None => match self.learn_rid_ssrc(tkey, &plain, &hdr) {
                Some(p) => p,
                None => return,
            },
        };
        self.forward_rtp(pkey, &plain, &hdr, now);
    }

    /// Simulcast producers announce rids, not SSRCs: bind an unknown SSRC by its rid.
    fn learn_rid_ssrc(&mut self, tkey: TKey, plain: &[u8], hdr: &rtp::RtpHeader) -> Option<PKey> {
        let candidates: Vec<PKey> = self
            .producers
            .iter()
            .filter(|(_, p)| p.transport == tkey && p.mapping.rid_ext_id().is_some())
            .map(|(k, _)| *k)
            .collect();
        let t = self.transports.get_mut(&tkey)?;
        for pkey in candidates {
            let p = self.producers.get_mut(&pkey)?;
            let Some(rid_id) = p.mapping.rid_ext_id() else {
                continue;
            };
            let Some(rid) = rtp::find_extension(plain, hdr, rid_id) else {
                continue;
            };
            let Some(idx) = p
                .mapping
                .encodings
                .iter()
                .position(|e| e.rid.as_deref().map(str::as_bytes) == Some(rid))
            else {
                continue;
            };
            if p.ssrcs.get(idx).copied().flatten().is_none() && t.producers_by_ssrc.len() < 16 {
                p.ssrcs[idx] = Some(hdr.ssrc);
                t.producers_by_ssrc.insert(hdr.ssrc, pkey);
                return Some(pkey);
            }
        }
        None
    }

    fn forward_rtp(&mut self, pkey: PKey, plain: &[u8], hdr: &rtp::RtpHeader, now: Instant) {
        let Some(p) = self.producers.get(&pkey) else {
            return;
        };
        if p.paused || p.media_ssrc() != Some(hdr.ssrc) {
            // Paused, or RTX / a simulcast layer that is not forwarded.
            return;
        }
        let kind = p.kind;
        let codec = p.video_codec;
        let mut keyframe: Option<bool> = None;
        let mut need_keyframe = false;
        let payload = plain.get(hdr.payload_start..hdr.payload_end).unwrap_or(&[]);
        let WorkerCore {
            consumers,
            transports,
            outbox,
            scratch,
            stats,
            producers,
            ..
        } = self;
        let Some(p) = producers.get(&pkey) else {
            return;
        };
        for ckey in &p.consumers {
            let Some(c) = consumers.get_mut(ckey) else {
                continue;
            };
            if c.paused {
                continue;
            }
            let pt = match c.pt_map.get(usize::from(hdr.payload_type)) {
                Some(&pt) if pt != 0xFF => pt,
                _ => continue,
            };
            if !c.seq.synced {
                if kind == MediaKind::Video
                    && !*keyframe.get_or_insert_with(|| is_keyframe(codec, payload))
                {
                    need_keyframe = true;
                    continue;
                }
                c.seq.sync(hdr.sequence, hdr.timestamp);
            }
            let Some((seq, ts)) = c.seq.map(hdr.sequence, hdr.timestamp) else {
                continue;
            };
            let Some(t) = transports.get_mut(&c.transport) else {
                continue;
            };
            let (Some(to), Some(srtp)) = (t.remote, t.srtp.as_mut()) else {
                continue;
            };
            let rw = Rewrite {
                ssrc: c.ssrc,
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ext_map: &c.ext_map,
                mid: c.mid(),
            };
            rtp::rewrite_into(plain, hdr, &rw, scratch);
            if let Ok(out) = srtp.encrypt_rtp(scratch) {
                c.packets_sent = c.packets_sent.wrapping_add(1);
                c.octets_sent = c
                    .octets_sent
                    .wrapping_add((hdr.payload_end - hdr.payload_start) as u32);
                c.last_sent_at = Some(now);
                stats.packets_out.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_out
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
                outbox.push((to, out));
            }
        }
        if need_keyframe {
            self.request_keyframe(pkey, now, false);
        }
        self.forward_to_taps(pkey, plain, hdr);
    }

    fn handle_rtcp(&mut self, tkey: TKey, buf: &[u8], now: Instant) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let Some(srtp) = t.srtp.as_mut() else {
            return;
        };
        let Ok(plain) = srtp.decrypt_rtcp(buf) else {
            return;
        };
        t.last_seen = now;
        let mut events = Vec::new();
        if rtcp::parse_compound(&plain, &mut events).is_err() {
            return;
        }
        for ev in events {
            match ev {
                RtcpEvent::Pli { media_ssrc, .. } | RtcpEvent::Fir { media_ssrc, .. } => {
                    let pkey = self
                        .transports
                        .get(&tkey)
                        .and_then(|t| t.consumers_by_ssrc.get(&media_ssrc))
                        .and_then(|c| self.consumers.get(c))
                        .map(|c| c.producer);
                    if let Some(pkey) = pkey {
                        self.request_keyframe(pkey, now, false);
                    }
                }
                _ => {}
            }
        }
    }

    /// Asks a video producer for a key frame (PLI), at most once a second; `force` bypasses
    /// the spacing (a consumer just resumed and waits for its first frame).
    pub(crate) fn request_keyframe(&mut self, pkey: PKey, now: Instant, force: bool) {
        let Some(p) = self.producers.get_mut(&pkey) else {
            return;
        };
        if p.kind != MediaKind::Video {
            return;
        }
        if force {
            p.last_keyframe_request = None;
        }
        if !p.take_keyframe_slot(now) {
            return;
        }
        let Some(media_ssrc) = p
            .media_ssrc()
            .or_else(|| p.ssrcs.iter().flatten().next().copied())
        else {
            return;
        };
        let tkey = p.transport;
        let mut pkt = Vec::with_capacity(12);
        rtcp::build_pli(FEEDBACK_SSRC, media_ssrc, &mut pkt);
        self.send_rtcp(tkey, &pkt);
    }

    fn send_rtcp(&mut self, tkey: TKey, plain: &[u8]) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let (Some(to), Some(srtp)) = (t.remote, t.srtp.as_mut()) else {
            return;
        };
        if let Ok(out) = srtp.encrypt_rtcp(plain) {
            self.outbox.push((to, out));
        }
    }

    /// Periodic work (about every 250 ms): deferred key-frame requests and sender reports.
    pub fn tick(&mut self, now: Instant, send_reports: bool) {
        let pending: Vec<PKey> = self
            .producers
            .iter()
            .filter(|(_, p)| p.keyframe_request_pending)
            .map(|(k, _)| *k)
            .collect();
        for p in pending {
            self.request_keyframe(p, now, false);
        }
        if !send_reports {
            return;
        }
        let ntp = rtcp::ntp_now();
        let mut reports: Vec<(TKey, Vec<u8>)> = Vec::new();
        for c in self.consumers.values() {
            let (Some(at), true) = (c.last_sent_at, c.seq.started) else {
                continue;
            };
            let elapsed = now.duration_since(at).as_secs_f64();
            let rtp_time = c
                .seq
                .last_ts
                .wrapping_add((elapsed * f64::from(c.clock_rate)) as u32);
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
            self.send_rtcp(tkey, &pkt);
        }
    }
}

impl WorkerCore {
    /// The room of a transport (to evict it after a panic).
    pub fn transport_room(&self, tkey: TKey) -> Option<String> {
        self.transports.get(&tkey).map(|t| t.room.to_string())
    }
}
