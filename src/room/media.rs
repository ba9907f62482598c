//! The packet path of a worker: demultiplex a datagram (STUN / DTLS / SRTP / SRTCP), decrypt,
//! forward RTP from a producer to its consumers with per-consumer rewrite, and handle RTCP
//! feedback. No JSON, no sockets: datagrams to send are appended to `outbox`.

use super::consumer::{seq_newer, ConsumerQuality};
use super::core::{DtlsMsg, WorkerCore};
use super::ortc::MediaKind;
use super::transport::RouteMiss;
use super::transport::{DtlsState, MAX_EARLY_DTLS};
use super::{consent, CKey, PKey, TKey};
use crate::rtc::dtls::{DtlsEvent, DtlsRole, SrtpProfileId};
use crate::rtc::keyframe::is_keyframe;
use crate::rtc::nack;
use crate::rtc::rtcp::{self, RtcpEvent};
use crate::rtc::rtp::{self, Rewrite};
use crate::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession, MAX_RTP_TAG_LEN};
use crate::rtc::twcc::TwccRecorder;
use crate::rtc::{classify, ice, PacketClass};
use crate::worker::jobs::Outbound;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A connected transport that has received neither STUN (consent) nor media for this long is
/// considered dead and closed.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Packets retransmitted for one NACK packet at most.
const MAX_RETRANSMISSIONS_PER_NACK: usize = 64;

/// Test-only: `SFU_TEST_DROP_OUT_PERCENT` (0..=100, read once) drops that share of the RTP
/// packets forwarded to consumers (not retransmissions), to exercise NACK/RTX in the browser
/// tests. Never set it in production.
fn test_drop_out_percent() -> u32 {
    static PERCENT: OnceLock<u32> = OnceLock::new();
    *PERCENT.get_or_init(|| {
        std::env::var("SFU_TEST_DROP_OUT_PERCENT")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map_or(0, |p| p.min(100))
    })
}

/// Transport-wide congestion control feedback state of one sending transport.
pub struct TransportFeedback {
    /// The transport-wide-cc extension id (taken from the first producer that has it).
    pub ext_id: u8,
    pub recorder: TwccRecorder,
}

impl TransportFeedback {
    fn new(ext_id: u8, now: Instant) -> Self {
        Self {
            ext_id,
            recorder: TwccRecorder::new(now),
        }
    }
}

fn srtp_profile(id: SrtpProfileId) -> SrtpProfile {
    match id {
        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProfileId::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfileId::Aes128CmHmacSha1_32 => SrtpProfile::Aes128CmHmacSha1_32,
    }
}

/// A consumer that has sent fewer packets than this is still starting up.
const FRESH_CONSUMER_PACKETS: u32 = 300;

/// An SSRC that matched no simulcast rid is looked up again after this long at the latest (its
/// first packets may lack the rid; a new producer triggers a lookup at once).
const RID_RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// SSRC we use as the sender of RTCP feedback (PLI/FIR) towards producers.
const FEEDBACK_SSRC: u32 = 1;

/// Whether the egress cap of a transport's peer lets `bytes` more go out now; a refusal is
/// counted in the worker's stats.
fn egress_allows(
    bucket: Option<&super::limits::SharedBucket>,
    bytes: usize,
    now: Instant,
    stats: &crate::worker::stats::WorkerStats,
) -> bool {
    let Some(bucket) = bucket else {
        return true;
    };
    if super::limits::take_shared(bucket, bytes, now) {
        return true;
    }
    stats.egress_dropped_packets.fetch_add(1, Ordering::Relaxed);
    stats
        .egress_dropped_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
    false
}

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
            class @ (PacketClass::Rtp | PacketClass::Rtcp) => {
                self.handle_media_datagram(buf, from, class == PacketClass::Rtcp, now)
            }
            PacketClass::Unknown => {}
        }
        self.flush_pipes();
    }

    /// SRTP/SRTCP is handled only from a transport's selected tuple; from another tuple of
    /// the transport it can only prove that the browser moved there (RFC 7675 consent).
    fn handle_media_datagram(&mut self, buf: &[u8], from: SocketAddr, rtcp: bool, now: Instant) {
        let Some(tkey) = self.by_addr.get(&from).copied() else {
            return;
        };
        let selected = self
            .transports
            .get(&tkey)
            .is_some_and(|t| t.remote == Some(from));
        match (selected, rtcp) {
            (true, false) => self.handle_rtp(tkey, buf, now),
            (true, true) => self.handle_rtcp(tkey, buf, now),
            (false, _) => self.consent_probe(tkey, buf, from, rtcp, now),
        }
    }

    /// The transport a datagram from `from` belongs to (to close it after a panic).
    pub fn transport_of_addr(&self, from: &SocketAddr) -> Option<TKey> {
        self.by_addr.get(from).copied()
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
        // An address another live transport uses stays with it: a forged source address
        // must not steal (or receive) someone else's media.
        let owner = self.by_addr.get(&from).copied();
        let taken = owner.is_some_and(|k| k != tkey && self.transports.contains_key(&k));
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        self.scratch.clear();
        if let Err(e) = ice::answer_binding_request(buf, &t.ice.pwd, from, &mut self.scratch) {
            tracing::trace!(%from, error = ?e, "STUN binding request rejected");
            return;
        }
        // The answer is smaller than a valid request: no amplification, even to a forged source.
        self.outbox.push(from, &self.scratch);
        if taken {
            return;
        }
        // A transport's tuples (selected and candidates) are in the address index, so DTLS
        // (the browser may start it on a pair before nominating it) and consent probes from
        // them find the transport; consent.rs bounds them and says which one to forget.
        let (binding, dropped) = consent::on_binding_request(t, from, req.use_candidate, now);
        if binding != consent::Binding::Refreshed && owner != Some(tkey) {
            self.by_addr.insert(from, tkey);
        }
        self.forget_tuple(tkey, dropped);
        if binding == consent::Binding::Selected {
            self.maybe_start_dtls(tkey);
        }
    }

    /// Removes a tuple a transport no longer keeps from the address index.
    fn forget_tuple(&mut self, tkey: TKey, tuple: Option<SocketAddr>) {
        if let Some(a) = tuple.filter(|a| self.by_addr.get(a) == Some(&tkey)) {
            self.by_addr.remove(&a);
        }
    }

    /// SRTP or SRTCP from a tuple of `tkey` that is not the selected one: if it authenticates
    /// (and the tuple passed a recent binding request), the browser moved there, and media
    /// follows it. The probe packet itself is consumed (its replay index is spent); one
    /// packet at a network change is what that costs.
    fn consent_probe(
        &mut self,
        tkey: TKey,
        buf: &[u8],
        from: SocketAddr,
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
        self.stats.tuple_switches.fetch_add(1, Ordering::Relaxed);
        self.forget_tuple(tkey, dropped);
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
                    self.outbox.push(to, &data);
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
                tracing::info!(transport = %t.id, %reason, "DTLS failed; closing the transport");
                self.close_transport_and_tell(tkey);
            }
            DtlsEvent::Closed => {
                // Only an authenticated close_notify or fatal alert gets here (plaintext alerts
                // are dropped before webrtc-dtls): the peer really ended DTLS. A transport we
                // closed ourselves is gone from the map already.
                tracing::debug!(transport = %t.id, "DTLS closed by the peer; closing the transport");
                self.close_transport_and_tell(tkey);
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

    fn handle_rtp(&mut self, tkey: TKey, buf: &[u8], now: Instant) {
        let Some(plain) = self.unprotect(tkey, buf, false, now) else {
            return;
        };
        self.route_rtp(tkey, &plain, now);
        self.restore_rx_buffer(tkey, plain);
    }

    /// An authenticated RTP packet: find its producer (O(1) per packet, see
    /// [`Self::learn_rid_ssrc`]) and forward it.
    fn route_rtp(&mut self, tkey: TKey, plain: &[u8], now: Instant) {
        // Validates every header-extension element and the padding: whatever parses is safe
        // for everything below.
        let Some(hdr) = rtp::parse_rtp(plain) else {
            return;
        };
        let Some(t) = self.transports.get(&tkey) else {
            return;
        };
        let known = t.producers_by_ssrc.get(&hdr.ssrc).copied();
        self.record_transport_cc(tkey, known, plain, &hdr, now);
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
            self.on_producer_packet(pkey, layer, plain, &hdr, now);
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
        self.stats.rtx_received.fetch_add(1, Ordering::Relaxed);
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
            self.on_producer_packet(pkey, layer, &original, &h, now);
        }
        if let Some(p) = self.producers.get_mut(&pkey) {
            p.quality.rtx_buf = original;
        }
    }

    /// Feeds the transport-wide sequence number of an incoming packet to the transport's
    /// congestion control feedback, and sends the feedback when it is due.
    fn record_transport_cc(
        &mut self,
        tkey: TKey,
        known: Option<PKey>,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let ext_id = known
            .and_then(|p| self.producers.get(&p))
            .and_then(|p| p.quality.twcc_ext_id);
        let fb = match (self.twcc.get_mut(&tkey), ext_id) {
            (Some(fb), _) => fb,
            (None, Some(id)) => self
                .twcc
                .entry(tkey)
                .or_insert_with(|| TransportFeedback::new(id, now)),
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
            self.send_rtcp(tkey, &pkt);
        }
    }

    /// Simulcast producers announce rids, not SSRCs: bind an unknown SSRC by its rid (or, for
    /// an RTX stream, by its repaired rid). Bounded per packet: only packets with extensions,
    /// only the sending peer's producers (at most `MAX_PRODUCERS_PER_PEER`), no allocation;
    /// and an SSRC that matched nothing is not looked at again until a producer was added or
    /// removed on this worker, or [`RID_RESCAN_INTERVAL`] passed (memo on the transport,
    /// which sees only SSRCs that authenticated, within the SRTP budget).
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
        let WorkerCore {
            rooms,
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
        let peer = rooms.get(&t.room).and_then(|r| r.peer(&t.peer));
        for &pkey in peer.into_iter().flat_map(|p| p.producers.values()) {
            let Some(p) = producers.get_mut(&pkey) else {
                continue;
            };
            if p.transport != tkey || p.mapping.rid_ext_id().is_none() {
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

    /// A media packet of encoding `layer` of a producer (original or recovered from RTX):
    /// cache it, look for gaps to NACK, forward it.
    pub(crate) fn on_producer_packet(
        &mut self,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let WorkerCore {
            producers,
            cache_budget,
            ..
        } = self;
        let Some(p) = producers.get_mut(&pkey) else {
            return;
        };
        let kind = p.kind;
        let tkey = p.transport;
        // Piped in from another worker: that worker asks the producer for lost packets.
        let piped = p.origin.is_some();
        let piping = !p.pipes.is_empty() && !p.paused;
        let Some(l) = p.quality.layers.get_mut(layer) else {
            return;
        };
        l.last_packet_at = Some(now);
        if kind == MediaKind::Video && l.cache.is_none() && !l.cache_denied {
            // Once per layer: the budget decides whether it gets a cache at all (a layer
            // without one just leaves its NACKs unanswered).
            l.cache = cache_budget.cache();
            l.cache_denied = l.cache.is_none();
        }
        if let Some(cache) = l.cache.as_mut() {
            cache.insert(hdr.sequence, plain);
        }
        if kind == MediaKind::Video && !piped {
            l.nack.on_packet(hdr.sequence, now);
            let lost = l.nack.poll(now);
            if !lost.is_empty() {
                let mut pkt = Vec::with_capacity(16 + 4 * lost.len());
                rtcp::build_nack(FEEDBACK_SSRC, hdr.ssrc, lost, &mut pkt);
                self.stats.nacks_sent.fetch_add(1, Ordering::Relaxed);
                self.send_rtcp(tkey, &pkt);
            }
        }
        self.forward_rtp(pkey, layer, plain, hdr, now);
        if piping {
            self.pipe_packet(pkey, layer, plain, now);
        }
    }

    fn forward_rtp(
        &mut self,
        pkey: PKey,
        layer: usize,
        plain: &[u8],
        hdr: &rtp::RtpHeader,
        now: Instant,
    ) {
        let drop_percent = test_drop_out_percent();
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
        if p.paused {
            return;
        }
        let kind = p.kind;
        let codec = p.video_codec;
        let layers = p.ssrcs.len();
        let active = p.quality.active_layers(now);
        let mut keyframe: Option<bool> = None;
        let mut need_keyframe = false;
        let mut layer_changes: Vec<(CKey, usize)> = Vec::new();
        let payload = hdr.payload(plain);
        for ckey in &p.consumers {
            let Some(c) = consumers.get_mut(ckey) else {
                continue;
            };
            if c.paused {
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
            let target = ConsumerQuality::target_layer(c.preferred_spatial_layer, layers, active);
            let current = c.quality.layer;
            if !c.seq.synced || current != Some(target) {
                let mut switched = false;
                if layer == target {
                    if kind == MediaKind::Video
                        && !*keyframe.get_or_insert_with(|| is_keyframe(codec, payload))
                    {
                        need_keyframe = true;
                    } else {
                        c.seq.sync_after(
                            hdr.sequence,
                            hdr.timestamp,
                            c.last_sent_at,
                            now,
                            c.clock_rate,
                        );
                        if current != Some(layer) {
                            c.quality.layer = Some(layer);
                            if layers > 1 {
                                layer_changes.push((*ckey, layer));
                            }
                        }
                        switched = true;
                    }
                }
                // Until the switch, keep forwarding the current layer.
                let keeps_current = c.seq.synced && current == Some(layer);
                if !(switched || keeps_current) {
                    continue;
                }
            } else if current != Some(layer) {
                continue;
            }
            let Some((seq, ts)) = c.seq.map(hdr.sequence, hdr.timestamp) else {
                continue;
            };
            c.packets_sent = c.packets_sent.wrapping_add(1);
            c.octets_sent = c
                .octets_sent
                .wrapping_add((hdr.payload_end - hdr.payload_start) as u32);
            c.last_sent_at = Some(now);
            if drop_percent > 0 && rand::random::<u32>() % 100 < drop_percent {
                continue;
            }
            // The peer's outgoing cap: beyond it, media towards the peer is dropped (its
            // receiver sees loss and adapts), never queued.
            if !egress_allows(t.egress.as_ref(), plain.len(), now, stats) {
                continue;
            }
            let rw = Rewrite {
                ssrc: c.ssrc,
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ext_map: &c.ext_map,
                mid: c.mid(),
            };
            rtp::rewrite_into(plain, hdr, &rw, scratch);
            scratch.reserve(MAX_RTP_TAG_LEN);
            if srtp.protect_rtp_in_place(scratch).is_ok() {
                stats.packets_out.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_out
                    .fetch_add(scratch.len() as u64, Ordering::Relaxed);
                outbox.push(to, scratch);
            }
        }
        for (ckey, layer) in layer_changes {
            self.notify_layers_changed(ckey, layer);
        }
        if need_keyframe {
            self.request_keyframe(pkey, now, true);
        }
        self.forward_to_taps(pkey, layer, plain, hdr, now);
    }

    /// Tells a consumer's peer which layer it now receives.
    fn notify_layers_changed(&self, ckey: CKey, layer: usize) {
        let Some(c) = self.consumers.get(&ckey) else {
            return;
        };
        let temporal = self
            .producers
            .get(&c.producer)
            .and_then(|p| p.quality.layers.get(layer))
            .map_or(0, |l| l.max_temporal_layer);
        let conn = self
            .rooms
            .get(&c.room)
            .and_then(|r| r.peers.iter().find(|p| p.id == c.peer))
            .map(|p| p.conn);
        if let Some(conn) = conn {
            let _ = self.signaling.send(Outbound::Notify {
                conn,
                method: "consumer-layers-changed",
                data: json!({
                    "consumerId": c.id,
                    "spatialLayer": layer,
                    "temporalLayer": temporal,
                }),
            });
        }
    }

    fn handle_rtcp(&mut self, tkey: TKey, buf: &[u8], now: Instant) {
        let Some(plain) = self.unprotect(tkey, buf, true, now) else {
            return;
        };
        let mut events = Vec::new();
        let parsed = rtcp::parse_compound(&plain, &mut events);
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
                        .map(|c| (c.producer, c.packets_sent < FRESH_CONSUMER_PACKETS));
                    if let Some((pkey, fresh)) = consumer {
                        if fresh {
                            self.request_keyframe(pkey, now, true);
                        } else {
                            self.request_keyframe(pkey, now, false);
                        }
                    }
                }
                RtcpEvent::Nack {
                    media_ssrc, lost, ..
                } => {
                    self.stats.nacks_received.fetch_add(1, Ordering::Relaxed);
                    let ckey = self
                        .transports
                        .get(&tkey)
                        .and_then(|t| t.consumers_by_ssrc.get(&media_ssrc))
                        .copied();
                    if let Some(ckey) = ckey {
                        self.retransmit(ckey, media_ssrc, &lost, now);
                    }
                }
                _ => {}
            }
        }
    }

    /// Asks a video producer for a key frame (PLI), spaced by the producer's
    /// [`KeyframeSpacer`](crate::rtc::keyframe::KeyframeSpacer): at most once a second, or
    /// twice when `force`d (a consumer just resumed, or still waits for its first frame: the
    /// previous key frame may have gone out before its transport could carry it). A request
    /// within the spacing is deferred to its end by [`Self::tick`], never lost.
    pub(crate) fn request_keyframe(&mut self, pkey: PKey, now: Instant, force: bool) {
        let Some(p) = self.producers.get_mut(&pkey) else {
            return;
        };
        if p.kind != MediaKind::Video || !p.keyframes.request(now, force) {
            return;
        }
        self.send_keyframe_request(pkey, force);
    }

    /// Sends a key-frame request the spacer allowed: PLIs to the producer's publisher, or,
    /// for a producer piped in from another worker, a message to its origin (which spaces
    /// them again for all its subscribers together).
    fn send_keyframe_request(&mut self, pkey: PKey, force: bool) {
        let Some(p) = self.producers.get(&pkey) else {
            return;
        };
        if let Some(origin) = p.origin {
            self.mesh.send(
                origin.worker,
                super::span::PipeMsg::KeyFrame {
                    origin_key: origin.key,
                    force,
                },
            );
            return;
        }
        // Every known layer: consumers may be waiting to switch to any of them.
        let tkey = p.transport;
        let mut pkt = Vec::with_capacity(12 * p.ssrcs.len());
        for &ssrc in p.ssrcs.iter().flatten() {
            rtcp::build_pli(FEEDBACK_SSRC, ssrc, &mut pkt);
        }
        if !pkt.is_empty() {
            self.stats
                .keyframe_requests_sent
                .fetch_add(1, Ordering::Relaxed);
            self.send_rtcp(tkey, &pkt);
        }
    }

    fn send_rtcp(&mut self, tkey: TKey, plain: &[u8]) {
        let Some(t) = self.transports.get_mut(&tkey) else {
            return;
        };
        let (Some(to), Some(srtp)) = (t.remote, t.srtp.as_mut()) else {
            return;
        };
        if let Ok(out) = srtp.encrypt_rtcp(plain) {
            self.outbox.push(to, &out);
        }
    }

    /// Periodic work (about every 250 ms): deferred key-frame requests and sender reports.
    pub fn tick(&mut self, now: Instant, send_reports: bool) {
        self.close_dead_transports(now);
        self.announce_flow_changes(now);
        let due: Vec<(PKey, bool)> = self
            .producers
            .iter_mut()
            .filter_map(|(k, p)| p.keyframes.poll(now).map(|forced| (*k, forced)))
            .collect();
        for (p, forced) in due {
            self.send_keyframe_request(p, forced);
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
    /// Answers a consumer's NACK from its producer's packet cache: as RTX when the consumer
    /// negotiated it, else as the original packet again.
    fn retransmit(&mut self, ckey: CKey, media_ssrc: u32, lost: &[u16], now: Instant) {
        let WorkerCore {
            consumers,
            producers,
            transports,
            outbox,
            scratch,
            stats,
            ..
        } = self;
        let Some(c) = consumers.get_mut(&ckey) else {
            return;
        };
        if c.ssrc != media_ssrc || !c.seq.started {
            return;
        }
        let (Some(p), Some(layer)) = (producers.get(&c.producer), c.quality.layer) else {
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
        for &seq in lost.iter().take(MAX_RETRANSMISSIONS_PER_NACK) {
            let producer_seq = seq.wrapping_sub(c.seq.seq_offset);
            // Packets from before the current sync point came from another layer or offset.
            if producer_seq != c.seq.sync_seq && seq_newer(c.seq.sync_seq, producer_seq) {
                continue;
            }
            let Some(packet) = cache.get(producer_seq) else {
                continue;
            };
            if !c.quality.take_retransmission(now) {
                break;
            }
            if !egress_allows(t.egress.as_ref(), packet.len(), now, stats) {
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
                Some((rtx_ssrc, rtx_pt)) => {
                    let s = c.quality.rtx_seq;
                    c.quality.rtx_seq = s.wrapping_add(1);
                    (rtx_ssrc, rtx_pt, s)
                }
                None => (c.ssrc, media_pt, seq),
            };
            let rw = Rewrite {
                ssrc,
                payload_type,
                sequence,
                timestamp: hdr.timestamp.wrapping_add(c.seq.ts_offset),
                ext_map: &c.ext_map,
                mid: c.mid(),
            };
            rtp::rewrite_into(packet, &hdr, &rw, scratch);
            if rtx.is_some() {
                // RTX payload: the original (consumer) sequence number first.
                let payload_at = scratch.len() - (packet.len() - hdr.payload_start);
                scratch.splice(payload_at..payload_at, seq.to_be_bytes());
            }
            scratch.reserve(MAX_RTP_TAG_LEN);
            if srtp.protect_rtp_in_place(scratch).is_ok() {
                stats.retransmissions_sent.fetch_add(1, Ordering::Relaxed);
                stats.packets_out.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_out
                    .fetch_add(scratch.len() as u64, Ordering::Relaxed);
                outbox.push(to, scratch);
            }
        }
    }

    /// ICE consent: closes connected transports silent for [`CONSENT_TIMEOUT`] (Chromium sends
    /// a consent check every few seconds), with everything on them.
    fn close_dead_transports(&mut self, now: Instant) {
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
            self.close_transport(tkey);
        }
    }
}

#[cfg(test)]
#[path = "rid_learning_tests.rs"]
mod rid_learning_tests;
