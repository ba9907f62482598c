//! A consumer: one producer's media forwarded to one transport, with its own SSRC, payload
//! types, header-extension ids, and a continuous sequence-number space.

use super::forward::Forwarder;
use super::ortc::{self, MediaKind, RtpParameters};
use super::producer::Producer;
use super::{PKey, TKey};
use crate::rtc::rtp::ExtIdMap;
use rand::Rng;
use std::sync::Arc;
use std::time::Instant;

pub struct Consumer {
    pub id: String,
    pub kind: MediaKind,
    pub transport: TKey,
    pub producer: PKey,
    pub peer: Arc<str>,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// Producer payload type → consumer payload type (0xFF: not forwarded).
    pub pt_map: [u8; 128],
    pub ext_map: ExtIdMap,
    /// The consumer's mid extension id and value, written into every packet.
    pub mid_ext: Option<(u8, Vec<u8>)>,
    pub paused: bool,
    /// The consumer's transport-wide-cc extension id: every packet sent carries the
    /// transport's own sequence number there (room/adapt.rs).
    pub twcc_ext: Option<u8>,
    /// The consumer's RTX payload type (bandwidth probes are padding on the RTX stream).
    pub rtx_pt: Option<u8>,
    /// The highest layer the subscriber's bandwidth allows (room/alloc.rs); None: no limit.
    pub bw_layer: Option<usize>,
    /// Video paused because not even the lowest layer fits the subscriber's bandwidth.
    pub bw_paused: bool,
    /// Since when the allocation has been below what the consumer gets (room/adapt.rs).
    pub bw_down_since: Option<Instant>,
    /// The layer it would get were all of its producer's layers sending (dynacast).
    pub want_layer: usize,
    pub preferred_spatial_layer: Option<u8>,
    pub preferred_temporal_layer: Option<u8>,
    /// Which layer goes out, and the sequence/timestamp mapping (room/forward.rs).
    pub fwd: Forwarder,
    pub packets_sent: u32,
    pub octets_sent: u32,
    pub retransmits: RetransmitBudget,
}

/// What a consumer is made of: the producer it forwards and the parameters `ortc` derived
/// for the subscriber.
pub struct ConsumerSpec<'a> {
    pub id: String,
    pub peer: Arc<str>,
    pub transport: TKey,
    pub producer_key: PKey,
    pub producer: &'a Producer,
    pub params: &'a RtpParameters,
    pub ssrc: u32,
    pub rtx_ssrc: u32,
    pub mid: &'a str,
}

impl Consumer {
    /// A paused consumer (mediasoup-client resumes it once its track exists), with the
    /// payload-type and header-extension maps from the producer's to the consumer's ids.
    pub fn new(spec: ConsumerSpec<'_>) -> Self {
        let ConsumerSpec {
            producer, params, ..
        } = spec;
        let mut pt_map = [0xFFu8; 128];
        for (from, to) in ortc::payload_type_pairs(&producer.mapping, params) {
            if from < 128 {
                pt_map[usize::from(from)] = to;
            }
        }
        let mut ext_map = ExtIdMap::new();
        for (from, to) in ortc::ext_id_pairs(&producer.mapping, params) {
            ext_map.set(from, to);
        }
        // The producer's own mid/rid values must never reach the consumer.
        // Nor its transport-wide sequence numbers: ours go out instead.
        for id in [
            producer.mapping.ext_id(ortc::uri::TRANSPORT_WIDE_CC),
            producer.mapping.mid_ext_id(),
            producer.mapping.rid_ext_id(),
            producer.mapping.repaired_rid_ext_id(),
        ]
        .into_iter()
        .flatten()
        {
            ext_map.set(id, 0);
        }
        let mid_ext = ortc::find_ext_id(&params.header_extensions, ortc::uri::MID)
            .map(|id| (id, spec.mid.as_bytes().to_vec()));
        let has_rtx = params
            .encodings
            .first()
            .and_then(|e| e.rtx.as_ref())
            .is_some();
        Self {
            id: spec.id,
            kind: producer.kind,
            transport: spec.transport,
            producer: spec.producer_key,
            peer: spec.peer,
            ssrc: spec.ssrc,
            rtx_ssrc: has_rtx.then_some(spec.rtx_ssrc),
            pt_map,
            ext_map,
            mid_ext,
            paused: true,
            twcc_ext: ortc::find_ext_id(&params.header_extensions, ortc::uri::TRANSPORT_WIDE_CC),
            rtx_pt: params
                .codecs
                .iter()
                .find(|c| c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
                .map(|c| c.payload_type),
            bw_layer: None,
            bw_paused: false,
            bw_down_since: None,
            want_layer: usize::MAX,
            preferred_spatial_layer: None,
            preferred_temporal_layer: None,
            fwd: Forwarder::new(
                rand::thread_rng().gen_range(1000..20000),
                producer.clock_rate,
            ),
            packets_sent: 0,
            octets_sent: 0,
            retransmits: RetransmitBudget::default(),
        }
    }

    /// The SSRCs the consumer sends with (media, and RTX if negotiated).
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> {
        std::iter::once(self.ssrc).chain(self.rtx_ssrc)
    }

    pub fn mid(&self) -> Option<(u8, &[u8])> {
        self.mid_ext.as_ref().map(|(id, v)| (*id, v.as_slice()))
    }
}

/// Bounds what NACKs can make us retransmit to one consumer (a few bytes: the packets
/// themselves are cached once per producer).
#[derive(Debug, Default)]
pub struct RetransmitBudget {
    window: Option<Instant>,
    used: u16,
}

/// At most this many retransmissions per consumer per [`RETRANSMIT_WINDOW`] (≈ 10 Mbps).
pub const MAX_RETRANSMISSIONS_PER_WINDOW: u16 = 100;
pub const RETRANSMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

impl RetransmitBudget {
    /// Takes one retransmission from the budget; false when it is spent for this window.
    pub fn take(&mut self, now: Instant) -> bool {
        let fresh = self
            .window
            .is_none_or(|t| now.saturating_duration_since(t) >= RETRANSMIT_WINDOW);
        if fresh {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= MAX_RETRANSMISSIONS_PER_WINDOW {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_are_bounded_per_window() {
        let t0 = Instant::now();
        let mut q = RetransmitBudget::default();
        let sent = (0..500).filter(|_| q.take(t0)).count();
        assert_eq!(sent, usize::from(MAX_RETRANSMISSIONS_PER_WINDOW));
        assert!(q.take(t0 + RETRANSMIT_WINDOW));
    }
}
