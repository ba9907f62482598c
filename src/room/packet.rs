//! The receive path of a router: STUN consent, DTLS records and events, SRTP/SRTCP
//! authentication, routing RTP to its producer (simulcast rids, RTX), transport-wide
//! feedback, loss detection, and RTCP from subscribers. No sockets: what goes out is appended
//! to the worker's outbox; forwarding itself is in fanout.rs.

use super::env::Env;
use super::ortc::MediaKind;
use super::remote::Remote;
use super::router::Router;
use super::transport::{DtlsState, RouteMiss, TransportFeedback, MAX_EARLY_DTLS};
use super::{consent, PKey, TKey};
use crate::rtc::dtls::{DtlsEvent, DtlsRole, SrtpProfileId};
use crate::rtc::ice;
use crate::rtc::nack;
use crate::rtc::rtcp::{self, RtcpEvent};
use crate::rtc::rtp;
use crate::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
use crate::rtc::twcc::TwccRecorder;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A consumer that has sent fewer packets than this is still starting up.
const FRESH_CONSUMER_PACKETS: u32 = 300;

/// An SSRC that matched no simulcast rid is looked up again after this long at the latest (its
/// first packets may lack the rid; a new producer triggers a lookup at once).
const RID_RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// SSRC we use as the sender of RTCP feedback (PLI/FIR/NACK/TWCC) towards producers.
pub const FEEDBACK_SSRC: u32 = 1;

fn srtp_profile(id: SrtpProfileId) -> SrtpProfile {
    match id {
        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProfileId::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfileId::Aes128CmHmacSha1_32 => SrtpProfile::Aes128CmHmacSha1_32,
    }
}

impl Router {
    /// Answers a STUN binding request for transport `tkey` (the worker found it by ufrag)
    /// from `from`; false if it does not authenticate.
    pub fn answer_binding(&mut self, env: &mut Env, tkey: TKey, buf: &[u8], from: Remote) -> bool {
        let Some(t) = self.transports.get(&tkey) else {
            return false;
        };
        env.scratch.clear();
        if let Err(e) = ice::answer_binding_request(buf, &t.ice.pwd, from.addr(), &mut env.scratch)
        {
            tracing::trace!(%from, error = ?e, "STUN binding request rejected");
            return false;
        }
        // The answer is smaller than a valid request: no amplification, even to a forged source.
        env.outbox.push(from, &env.scratch);
        true
    }

    /// An authenticated binding request from `from` (not an address another transport owns):
    /// ICE consent, tuple selection, and the DTLS start once a tuple is selected.
    pub fn on_binding(
        &mut self,
        env: &mut Env,
        tkey: TKey,
        from: Remote,
        use_candidate: bool,
        now: Instant,
    ) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        // A transport's tuples (selected and candidates) are in the address index, so DTLS
        // (the browser may start it on a pair before nominating it) and consent probes from
        // them find the transport; consent.rs bounds them and says which one to forget.
        let (binding, dropped) = consent::on_binding_request(t, from, use_candidate, now);
        let indexed = env
            .index
            .by_addr
            .get(&from)
            .is_some_and(|r| r.transport == tkey);
        if binding != consent::Binding::Refreshed && !indexed {
            env.index.by_addr.insert(from, self.route(tkey));
        }
        env.index.forget_tuple(tkey, dropped);
        if binding == consent::Binding::Selected {
            self.maybe_start_dtls(env, tkey);
        }
    }

    /// SRTP/SRTCP is handled only from a transport's selected tuple; from another tuple of
    /// the transport it can only prove that the browser moved there (RFC 7675 consent).
    pub fn on_media_datagram(
        &mut self,
        env: &mut Env,
        tkey: TKey,
        buf: &[u8],
        from: Remote,
        rtcp: bool,
        now: Instant,
    ) {
        let selected = self
            .transports
            .get(&tkey)
            .is_some_and(|t| t.remote == Some(from));
        match (selected, rtcp) {
            (true, false) => self.handle_rtp(env, tkey, buf, now),
            (true, true) => self.handle_rtcp(env, tkey, buf, now),
            (false, _) => self.consent_probe(env, tkey, buf, from, rtcp, now),
        }
    }

    /// SRTP or SRTCP from a tuple of `tkey` that is not the selected one: if it authenticates
    /// (and the tuple passed a recent binding request), the browser moved there, and media
    /// follows it. The probe packet itself is consumed (its replay index is spent); one
    /// packet at a network change is what that costs.
    fn consent_probe(
        &mut self,
        env: &mut Env,
        tkey: TKey,
        buf: &[u8],
        from: Remote,
        rtcp: bool,
        now: Instant,
    ) {
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        if !consent::may_probe(t, from, now) {
            return;
        }
        // The probe packet itself is used up (it only proves consent); its buffer goes back.
        let Some(plain) = self.unprotect(tkey, buf, rtcp, now) else {
            return;
        };
        self.restore_rx_buffer(tkey, plain);
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let dropped = consent::switch_to(t, from, now);
        tracing::debug!(transport = %t.id, to = %from, "selected tuple moved after authenticated media");
        env.stats.tuple_switches.fetch_add(1, Ordering::Relaxed);
        env.index.forget_tuple(tkey, dropped);
    }

    /// A DTLS record from one of the transport's tuples.
    pub fn on_dtls_record(&mut self, tkey: TKey, buf: &[u8]) {
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

    /// An event of a transport's DTLS session (from the DTLS thread).
    pub fn on_dtls_event(&mut self, env: &mut Env, tkey: TKey, event: DtlsEvent, now: Instant) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        match event {
            DtlsEvent::Transmit(data) => {
                tracing::trace!(transport = %t.id, len = data.len(), remote = ?t.remote, "dtls record out");
                if let Some(to) = t.remote {
                    env.outbox.push(to, &data);
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
                for p in pkeys {
                    self.request_keyframe(env, p, now, true);
                }
            }
            DtlsEvent::Sctp(message) => self.on_data_message(env, tkey, message),
            DtlsEvent::Failed(reason) => {
                tracing::info!(transport = %t.id, %reason, "DTLS failed; closing the transport");
                self.close_transport_and_tell(env, tkey);
            }
            DtlsEvent::Closed => {
                // Only an authenticated close_notify or fatal alert gets here (plaintext alerts
                // are dropped before webrtc-dtls): the peer really ended DTLS. A transport we
                // closed ourselves is gone from the router already.
                tracing::debug!(transport = %t.id, "DTLS closed by the peer; closing the transport");
                self.close_transport_and_tell(env, tkey);
            }
        }
    }

    /// Authenticates and decrypts an SRTP (or, `rtcp`, SRTCP) datagram of a connected
    /// transport, in place in the session's reused receive buffer (give it back with
    /// [`Self::restore_rx_buffer`]). Nothing looks at a byte of it before it authenticated;
    /// one that does counts as a sign of life (ICE consent).
    fn unprotect(&mut self, tkey: TKey, buf: &[u8], rtcp: bool, now: Instant) -> Option<Vec<u8>> {
        let t = self.transports.get_mut(&tkey)?;
        let srtp = t.srtp.as_mut()?;
        let mut plain = srtp.take_rx_buffer();
        plain.extend_from_slice(buf);
        let unprotected = if rtcp {
            srtp.unprotect_rtcp(&mut plain)
        } else {
            srtp.unprotect_rtp(&mut plain)
        };
        if unprotected.is_err() {
            srtp.restore_rx_buffer(plain);
            return None;
        }
        t.last_seen = now;
        Some(plain)
    }

    /// Returns the receive buffer [`Self::unprotect`] lent out, so no packet allocates.
    fn restore_rx_buffer(&mut self, tkey: TKey, buf: Vec<u8>) {
        if let Some(srtp) = self.transports.get_mut(&tkey).and_then(|t| t.srtp.as_mut()) {
            srtp.restore_rx_buffer(buf);
        }
    }

    pub(crate) fn handle_rtp(&mut self, env: &mut Env, tkey: TKey, buf: &[u8], now: Instant) {
        let Some(plain) = self.unprotect(tkey, buf, false, now) else {
            return;
        };
        self.route_rtp(env, tkey, &plain, now);
        self.restore_rx_buffer(tkey, plain);
    }

    /// An authenticated RTP packet: find its producer (O(1) per packet, see
    /// [`Self::learn_rid_ssrc`]) and forward it.
    fn route_rtp(&mut self, env: &mut Env, tkey: TKey, plain: &[u8], now: Instant) {
        // Validates every header-extension element and the padding: whatever parses is safe
        // for everything below.
        let Some(hdr) = rtp::parse_rtp(plain) else {
            return;
        };
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        let known = t.producers_by_ssrc.get(&hdr.ssrc).copied();
        self.record_transport_cc(env, tkey, known, plain, &hdr, now);
        let pkey = match known {
            Some(p) => p,
            None => match self.learn_rid_ssrc(tkey, plain, &hdr, now) {
                Some(p) => p,
                None => return,
            },
        };
        let Some(p) = self.producers.get(&pkey) else {
            return;
        };
        let Some((layer, is_rtx)) = p.layer_of(hdr.ssrc) else {
            return;
        };
        if !is_rtx {
            self.on_producer_packet(env, pkey, layer, plain, &hdr, now);
            return;
        }
        // RTX (RFC 4588): the original sequence number, then the original payload. Padding-only
        // packets (bandwidth probes) carry nothing to forward.
        let media_pt = p
            .quality
            .rtx_apt
            .get(usize::from(hdr.payload_type))
            .copied();
        let media_ssrc = p.ssrcs.get(layer).copied().flatten();
        let (Some(media_pt), Some(media_ssrc)) = (media_pt.filter(|&pt| pt != 0xFF), media_ssrc)
        else {
            return;
        };
        let Some((osn, payload)) = nack::rtx_unwrap(hdr.payload(plain)) else {
            return;
        };
        // Chromium also probes bandwidth by resending old packets over RTX: only what is
        // still missing goes on to the consumers.
        let Some(l) = p.quality.layers.get(layer) else {
            return;
        };
        if payload.is_empty() || !l.nack.wants(osn) {
            return;
        }
        env.stats.rtx_received.fetch_add(1, Ordering::Relaxed);
        let Some(p) = self.producers.get_mut(&pkey) else {
            return;
        };
        let mut original = std::mem::take(&mut p.quality.rtx_buf);
        original.clear();
        original.extend_from_slice(&plain[..hdr.payload_start]);
        original[0] &= !0x20; // the padding went with the RTX packet
        original.extend_from_slice(payload);
        rtp::set_sequence(&mut original, osn);
        rtp::set_payload_type(&mut original, media_pt);
        rtp::set_ssrc(&mut original, media_ssrc);
        if let Some(h) = rtp::parse_rtp(&original) {
            self.on_producer_packet(env, pkey, layer, &original, &h, now);
        }
        if let Some(p) = self.producers.get_mut(&pkey) {
            p.quality.rtx_buf = original;
        }
    }

    /// Feeds the transport-wide sequence number of an incoming packet to the transport's
    /// congestion control feedback, and sends the feedback when it is due.
    fn record_transport_cc(
        &mut self,
        env: &mut Env,
        tkey: TKey,
        known: Option<PKey>,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let ext_id = known
            .and_then(|p| self.producers.get(&p))
            .and_then(|p| p.quality.twcc_ext_id);
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let fb = match (&mut t.feedback, ext_id) {
            (Some(fb), _) => fb,
            (slot @ None, Some(id)) => slot.insert(TransportFeedback {
                ext_id: id,
                recorder: TwccRecorder::new(now),
            }),
            (None, None) => return,
        };
        let Some(v) = rtp::find_extension(plain, hdr, fb.ext_id) else {
            return;
        };
        let Some(seq) = v.first_chunk::<2>() else {
            return;
        };
        fb.recorder.record(u16::from_be_bytes(*seq), now);
        if !fb.recorder.due(now) {
            return;
        }
        let mut pkt = Vec::with_capacity(64);
        fb.recorder
            .build_feedback(FEEDBACK_SSRC, hdr.ssrc, now, &mut pkt);
        if !pkt.is_empty() {
            self.send_rtcp(env, tkey, &pkt);
        }
    }

    /// Simulcast producers announce rids, not SSRCs: bind an unknown SSRC by its rid (or, for
    /// an RTX stream, by its repaired rid). Bounded per packet: only packets with extensions,
    /// only the sending peer's producers (at most `max_producers_per_peer`), no allocation;
    /// and an SSRC that matched nothing is not looked at again until a producer was added or
    /// removed in the room, or [`RID_RESCAN_INTERVAL`] passed (memo on the transport, which
    /// sees only SSRCs that authenticated, within the SRTP budget).
    fn learn_rid_ssrc(
        &mut self,
        tkey: TKey,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) -> Option<PKey> {
        if hdr.ext_len == 0 {
            return None; // no rid to learn from
        }
        let Router {
            peers,
            transports,
            producers,
            ..
        } = self;
        let t = transports.get_mut(&tkey)?;
        if t.producers_by_ssrc.len() >= 32 {
            return None;
        }
        let generation = producers.len();
        // Only authenticated SSRCs get here, so the memo stays within the SRTP budget.
        t.srtp.as_ref()?;
        if let Some(miss) = t.route_misses.get(hdr.ssrc) {
            if miss.generation == generation
                && now.saturating_duration_since(miss.at) < RID_RESCAN_INTERVAL
            {
                return None;
            }
        }
        let peer = peers.iter().find(|p| p.id == t.peer);
        for &pkey in peer.into_iter().flat_map(|p| p.producers.values()) {
            let Some(p) = producers.get_mut(&pkey) else {
                continue;
            };
            if p.transport() != Some(tkey) || p.mapping.rid_ext_id().is_none() {
                continue;
            }
            let rid_ids = [
                (p.mapping.rid_ext_id(), false),
                (p.mapping.repaired_rid_ext_id(), true),
            ];
            for (id, is_rtx) in rid_ids {
                let Some(rid) = id.and_then(|id| rtp::find_extension(plain, hdr, id)) else {
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
                let slot = if is_rtx {
                    p.quality.layers.get_mut(idx).map(|l| &mut l.rtx_ssrc)
                } else {
                    p.ssrcs.get_mut(idx)
                };
                if let Some(slot @ None) = slot {
                    *slot = Some(hdr.ssrc);
                    t.producers_by_ssrc.insert(hdr.ssrc, pkey);
                    t.route_misses.set(hdr.ssrc, None);
                    return Some(pkey);
                }
            }
        }
        t.route_misses.set(
            hdr.ssrc,
            Some(RouteMiss {
                generation,
                at: now,
            }),
        );
        None
    }

    /// A media packet of encoding `layer` of a producer (original, recovered from RTX, or
    /// piped in from its origin worker): cache it, look for gaps to NACK, forward it.
    pub(crate) fn on_producer_packet(
        &mut self,
        env: &mut Env,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        // The room's home decides its active speaker (room/speaker.rs).
        let home = self.is_home();
        let Some(p) = self.producers.get_mut(&pkey) else {
            return;
        };
        let kind = p.kind;
        if home && kind == MediaKind::Audio && !p.paused {
            p.level.on_packet(plain, hdr, now);
        }
        // Piped in from another worker: that worker asks the producer for lost packets.
        let tkey = p.transport();
        let piping = !p.pipes().is_empty() && !p.paused;
        let Some(l) = p.quality.layers.get_mut(layer) else {
            return;
        };
        l.last_packet_at = Some(now);
        l.rate.add(plain.len(), now);
        if kind == MediaKind::Video && l.cache.is_none() && !l.cache_denied {
            // Once per layer: the budget decides whether it gets a cache at all (a layer
            // without one just leaves its NACKs unanswered).
            l.cache = env.cache_budget.cache();
            l.cache_denied = l.cache.is_none();
        }
        if let Some(cache) = l.cache.as_mut() {
            cache.insert(hdr.sequence, plain);
        }
        if let (MediaKind::Video, Some(tkey)) = (kind, tkey) {
            l.nack.on_packet(hdr.sequence, now);
            let lost = l.nack.poll(now);
            if !lost.is_empty() {
                let mut pkt = Vec::with_capacity(16 + 4 * lost.len());
                rtcp::build_nack(FEEDBACK_SSRC, hdr.ssrc, lost, &mut pkt);
                env.stats.nacks_sent.fetch_add(1, Ordering::Relaxed);
                self.send_rtcp(env, tkey, &pkt);
            }
        }
        self.forward_rtp(env, pkey, layer, plain, hdr, now);
        self.forward_to_taps(env, pkey, layer, plain, hdr, now);
        if piping {
            self.pipe_packet(env, pkey, layer, plain, now);
        }
    }

    fn handle_rtcp(&mut self, env: &mut Env, tkey: TKey, buf: &[u8], now: Instant) {
        let Some(plain) = self.unprotect(tkey, buf, true, now) else {
            return;
        };
        let mut events = Vec::new();
        let parsed = rtcp::parse_compound(&plain, &mut events);
        if events
            .iter()
            .any(|e| matches!(e, RtcpEvent::TransportCc { .. }))
        {
            for packet in super::adapt::transport_cc_packets(&plain) {
                self.on_transport_feedback(tkey, packet, now);
            }
        }
        self.restore_rx_buffer(tkey, plain);
        if parsed.is_err() {
            return;
        }
        for ev in events {
            match ev {
                RtcpEvent::Pli { media_ssrc, .. } | RtcpEvent::Fir { media_ssrc, .. } => {
                    let consumer = self
                        .transports
                        .get(&tkey)
                        .and_then(|t| t.consumers_by_ssrc.get(&media_ssrc))
                        .and_then(|c| self.consumers.get(c))
                        .map(|c| {
                            let layer = c.fwd.layer().map_or(u32::MAX, |l| 1 << l.min(31));
                            (c.producer, c.packets_sent < FRESH_CONSUMER_PACKETS, layer)
                        });
                    if let Some((pkey, fresh, layer)) = consumer {
                        self.request_keyframe_of(env, pkey, now, fresh, layer);
                    }
                }
                RtcpEvent::Nack {
                    media_ssrc, lost, ..
                } => {
                    env.stats.nacks_received.fetch_add(1, Ordering::Relaxed);
                    let ckey = self
                        .transports
                        .get(&tkey)
                        .and_then(|t| t.consumers_by_ssrc.get(&media_ssrc))
                        .copied();
                    if let Some(ckey) = ckey {
                        self.retransmit(env, ckey, media_ssrc, &lost, now);
                    }
                }
                _ => {}
            }
        }
    }
}
