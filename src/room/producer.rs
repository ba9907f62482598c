//! A producer: one media track a peer sends, with the mapping `ortc` derived from its
//! parameters. Owns the list of its consumers (closing it closes them).

use super::api::{ApiError, SourceLabel};
use super::limits::LeasedCache;
use super::mesh::{Origin, ProducerInfo};
use super::ortc::{self, MediaKind, ProducerMapping};
use super::speaker::LevelMeter;
use super::{CKey, PKey, TKey};
use crate::rtc::keyframe::{KeyframeSpacer, VideoCodec};
use crate::rtc::nack::NackGenerator;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Producer {
    pub id: String,
    pub kind: MediaKind,
    pub peer: Arc<str>,
    pub source: Source,
    /// What it shows (`appData.source`): camera, microphone, screen, screen-audio.
    pub label: SourceLabel,
    pub mapping: ProducerMapping,
    pub paused: bool,
    pub consumers: Vec<CKey>,
    /// The SSRC of each encoding, index = encoding index (learned from the rid for simulcast;
    /// unknown for a piped producer, whose packets arrive by key).
    pub ssrcs: Vec<Option<u32>>,
    pub video_codec: VideoCodec,
    pub clock_rate: u32,
    /// When key-frame requests may go to the producer (spaced even when forced).
    pub keyframes: KeyframeSpacer,
    /// The layers the pending key-frame request is for (bit `i`: encoding `i`; 0: all).
    pub keyframe_layers: u32,
    /// The producer's CNAME, reused for its consumers' RTCP.
    pub cname: String,
    /// Loss recovery and layer state.
    pub quality: ProducerQuality,
    /// The simulcast layers its publisher was last asked for (room/adapt.rs).
    pub dynacast: crate::room::adapt::Dynacast,
    /// Speech seen in its audio levels (room/speaker.rs; counted on the room's home only).
    pub level: LevelMeter,
}

/// Where a producer's packets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Published on this worker over one of the room's transports; `pipes`: the other workers
    /// it is piped to, with their key for it (room/piping.rs).
    Local {
        transport: TKey,
        pipes: Vec<(usize, PKey)>,
    },
    /// Published on another worker and piped in: its packets arrive from `origin`, which
    /// also asks the publisher for lost packets and key frames.
    Piped { origin: Origin },
}

impl Producer {
    /// A producer published on `transport`, from the mapping `ortc::validate_produce` derived.
    pub fn local(
        id: String,
        peer: Arc<str>,
        transport: TKey,
        kind: MediaKind,
        label: SourceLabel,
        mapping: ProducerMapping,
    ) -> Result<Self, ApiError> {
        let first = mapping
            .codecs
            .first()
            .ok_or_else(|| ApiError::bad_request("produce: no media codec"))?;
        let video_codec = VideoCodec::from_mime(&first.router_codec.mime_type);
        let clock_rate = first.router_codec.clock_rate;
        // Simulcast offers carry no a=ssrc lines, so mediasoup-client sends an empty cname.
        let cname = mapping
            .cname
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "sfu".into());
        Ok(Self {
            id,
            kind,
            peer,
            label,
            source: Source::Local {
                transport,
                pipes: Vec::new(),
            },
            ssrcs: mapping.encodings.iter().map(|e| e.ssrc).collect(),
            video_codec,
            clock_rate,
            keyframes: Default::default(),
            keyframe_layers: 0,
            dynacast: Default::default(),
            cname,
            paused: false,
            consumers: Vec::new(),
            quality: ProducerQuality::new(&mapping),
            level: LevelMeter::new(kind, &mapping),
            mapping,
        })
    }

    /// A producer of another worker, as that worker described it.
    pub fn piped(info: ProducerInfo) -> Self {
        let encodings = info.mapping.encodings.len();
        Self {
            id: info.id,
            kind: info.kind,
            peer: info.peer,
            source: Source::Piped {
                origin: info.origin,
            },
            label: info.label,
            ssrcs: vec![None; encodings],
            video_codec: info.video_codec,
            clock_rate: info.clock_rate,
            keyframes: Default::default(),
            keyframe_layers: 0,
            dynacast: Default::default(),
            cname: info.cname,
            paused: info.paused,
            consumers: Vec::new(),
            quality: ProducerQuality::new(&info.mapping),
            level: LevelMeter::new(info.kind, &info.mapping),
            mapping: info.mapping,
        }
    }

    /// How another worker pipes this producer in (`origin`: this worker and its key).
    pub fn info(&self, origin: Origin) -> ProducerInfo {
        ProducerInfo {
            id: self.id.clone(),
            peer: self.peer.clone(),
            kind: self.kind,
            label: self.label,
            paused: self.paused,
            mapping: self.mapping.clone(),
            video_codec: self.video_codec,
            clock_rate: self.clock_rate,
            cname: self.cname.clone(),
            origin: self.origin().unwrap_or(origin),
        }
    }

    /// The transport a local producer is published on.
    pub fn transport(&self) -> Option<TKey> {
        match self.source {
            Source::Local { transport, .. } => Some(transport),
            Source::Piped { .. } => None,
        }
    }

    /// Where a piped producer lives.
    pub fn origin(&self) -> Option<Origin> {
        match self.source {
            Source::Piped { origin } => Some(origin),
            Source::Local { .. } => None,
        }
    }

    pub fn is_piped(&self) -> bool {
        matches!(self.source, Source::Piped { .. })
    }

    /// The other workers a local producer is piped to (empty for a piped one).
    pub fn pipes(&self) -> &[(usize, PKey)] {
        match &self.source {
            Source::Local { pipes, .. } => pipes,
            Source::Piped { .. } => &[],
        }
    }

    pub fn pipes_mut(&mut self) -> Option<&mut Vec<(usize, PKey)>> {
        match &mut self.source {
            Source::Local { pipes, .. } => Some(pipes),
            Source::Piped { .. } => None,
        }
    }
}

// Memory bound: the packet caches of one video producer stay within 4 MiB.
const _: () = assert!(
    ortc::MAX_ENCODINGS * crate::rtc::nack::CACHE_SLOTS * crate::rtc::nack::CACHE_SLOT_LEN
        <= 4 << 20
);

/// A simulcast layer (or the only encoding) counts as sending when a packet came this recently.
pub const LAYER_ACTIVE_WINDOW: Duration = Duration::from_millis(1500);

/// Per-producer state for bandwidth estimation, loss recovery and simulcast.
pub struct ProducerQuality {
    /// The transport-wide-cc header extension id the producer negotiated.
    pub twcc_ext_id: Option<u8>,
    /// Per encoding (index = encoding index).
    pub layers: Vec<LayerState>,
    /// RTX payload type → media payload type (0xFF: not an RTX payload type).
    pub rtx_apt: [u8; 128],
    /// Reused buffer for the packet recovered from an RTX packet.
    pub rtx_buf: Vec<u8>,
}

pub struct LayerState {
    pub rtx_ssrc: Option<u32>,
    pub last_packet_at: Option<Instant>,
    /// Recent packets for retransmission (video only; allocated at the first packet, if the
    /// worker's cache budget allows: see room/limits.rs; its share returns when dropped).
    pub cache: Option<LeasedCache>,
    /// The budget was spent when the cache was wanted: this layer gets none.
    pub cache_denied: bool,
    pub nack: NackGenerator,
    /// The encoding's bit rate as received (the allocator's cost of the layer).
    pub rate: crate::room::alloc::RateMeter,
    /// Highest temporal layer of the encoding (from its scalability mode, `L1T3` → 2).
    pub max_temporal_layer: u8,
}

impl ProducerQuality {
    pub fn new(mapping: &ProducerMapping) -> Self {
        let mut rtx_apt = [0xFF; 128];
        for c in &mapping.codecs {
            if let Some(rtx) = c.rtx_payload_type.filter(|&pt| pt < 128) {
                rtx_apt[usize::from(rtx)] = c.payload_type;
            }
        }
        Self {
            twcc_ext_id: mapping.ext_id(ortc::uri::TRANSPORT_WIDE_CC),
            layers: mapping
                .encodings
                .iter()
                .map(|e| LayerState {
                    rtx_ssrc: e.rtx_ssrc,
                    last_packet_at: None,
                    cache: None,
                    cache_denied: false,
                    nack: NackGenerator::default(),
                    rate: Default::default(),
                    max_temporal_layer: e
                        .scalability_mode
                        .as_deref()
                        .and_then(temporal_layers)
                        .map_or(0, |n| n.saturating_sub(1)),
                })
                .collect(),
            rtx_apt,
            rtx_buf: Vec::new(),
        }
    }

    /// Bit `i` set: encoding `i` sent a packet within [`LAYER_ACTIVE_WINDOW`].
    pub fn active_layers(&self, now: Instant) -> u32 {
        let mut mask = 0;
        for (i, l) in self.layers.iter().enumerate().take(32) {
            if l.last_packet_at
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_ACTIVE_WINDOW)
            {
                mask |= 1 << i;
            }
        }
        mask
    }
}

/// The number of temporal layers in a scalability mode such as `L1T3` or `S3T3_KEY`.
fn temporal_layers(mode: &str) -> Option<u8> {
    let t = mode.find('T')?;
    let digits: String = mode[t + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl Producer {
    /// The encoding `ssrc` belongs to, and whether it is that encoding's RTX stream.
    pub fn layer_of(&self, ssrc: u32) -> Option<(usize, bool)> {
        if let Some(i) = self.ssrcs.iter().position(|s| *s == Some(ssrc)) {
            return Some((i, false));
        }
        self.quality
            .layers
            .iter()
            .position(|l| l.rtx_ssrc == Some(ssrc))
            .map(|i| (i, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalability_modes_give_their_temporal_layer_count() {
        assert_eq!(temporal_layers("L1T3"), Some(3));
        assert_eq!(temporal_layers("S3T3_KEY"), Some(3));
        assert_eq!(temporal_layers("L1"), None);
    }
}
