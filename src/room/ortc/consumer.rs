//! Consumer side: whether a remote can receive a producer, and the `rtpParameters` a
//! consumer gets (mediasoup's getConsumableRtpParameters + canConsume +
//! getConsumerRtpParameters, for a non-pipe consumer).

use super::matching::{codecs_match, is_rtx, CodecLike, MatchMode};
use super::producer::{apt, ProducerMapping};
use super::types::{
    Direction, MediaKind, RtcpParameters, RtpCapabilities, RtpCodecCapability, RtpCodecParameters,
    RtpEncodingParameters, RtpHeaderExtensionParameters, RtpParameters, RtxParameters,
};
use super::{uri, OrtcError};

/// The codecs every consumer of this producer could get: each media codec with the
/// router's payload type and the producer's parameters, followed by its RTX codec.
fn consumable_codecs(mapping: &ProducerMapping) -> Vec<RtpCodecParameters> {
    let mut codecs = Vec::new();
    for codec in &mapping.codecs {
        let router = &codec.router_codec;
        codecs.push(RtpCodecParameters {
            mime_type: router.mime_type.clone(),
            payload_type: router.preferred_payload_type.unwrap_or_default(),
            clock_rate: router.clock_rate,
            channels: router.channels,
            parameters: codec.parameters.clone(),
            rtcp_feedback: router.rtcp_feedback.clone(),
        });
        if let Some(rtx) = &codec.router_rtx_codec {
            codecs.push(RtpCodecParameters {
                mime_type: rtx.mime_type.clone(),
                payload_type: rtx.preferred_payload_type.unwrap_or_default(),
                clock_rate: rtx.clock_rate,
                channels: None,
                parameters: rtx.parameters.clone(),
                rtcp_feedback: rtx.rtcp_feedback.clone(),
            });
        }
    }
    codecs
}

fn remote_match<'a>(
    remote: &'a RtpCapabilities,
    codec: &RtpCodecParameters,
) -> Option<&'a RtpCodecCapability> {
    remote
        .codecs
        .iter()
        .find(|cap| codecs_match(*cap, codec, MatchMode::Strict))
}

/// Whether `remote` can receive the producer (mediasoup's `canConsume`).
pub fn can_consume(mapping: &ProducerMapping, remote: &RtpCapabilities) -> bool {
    let first_matching = consumable_codecs(mapping)
        .into_iter()
        .find(|codec| remote_match(remote, codec).is_some());
    first_matching.is_some_and(|codec| !is_rtx(codec.mime_type()))
}

/// The `rtpParameters` of a consumer of the producer `mapping` for a remote with
/// `remote` capabilities: one encoding with `ssrc` (and `rtx_ssrc` when RTX is negotiated).
#[allow(clippy::too_many_arguments)]
pub fn consumer_params(
    mapping: &ProducerMapping,
    producer_kind: MediaKind,
    caps: &RtpCapabilities,
    remote: &RtpCapabilities,
    mid: String,
    ssrc: u32,
    rtx_ssrc: u32,
    cname: String,
) -> Result<RtpParameters, OrtcError> {
    // mediasoup enables RTX (and plain NACK) for video consumers only.
    let enable_rtx = producer_kind == MediaKind::Video;
    let mut codecs: Vec<RtpCodecParameters> = Vec::new();
    for mut codec in consumable_codecs(mapping) {
        if !enable_rtx && is_rtx(&codec.mime_type) {
            continue;
        }
        let Some(matched) = remote_match(remote, &codec) else {
            continue;
        };
        codec.rtcp_feedback = matched
            .rtcp_feedback
            .iter()
            .filter(|fb| enable_rtx || fb.kind != "nack" || !fb.parameter.is_empty())
            .cloned()
            .collect();
        codecs.push(codec);
    }
    // Drop RTX codecs whose media codec did not make it.
    let media_pts: Vec<u8> = codecs
        .iter()
        .filter(|c| !is_rtx(&c.mime_type))
        .map(|c| c.payload_type)
        .collect();
    codecs.retain(|c| {
        !is_rtx(&c.mime_type)
            || apt(&c.parameters).is_some_and(|a| media_pts.iter().any(|pt| i64::from(*pt) == a))
    });
    let rtx_supported = codecs.iter().any(|c| is_rtx(&c.mime_type));
    if codecs.first().is_none_or(|c| is_rtx(&c.mime_type)) {
        return Err(OrtcError::Unsupported("no compatible media codecs".into()));
    }

    let header_extensions: Vec<RtpHeaderExtensionParameters> = caps
        .header_extensions
        .iter()
        .filter(|ext| {
            ext.kind == producer_kind
                && matches!(ext.direction, Direction::Sendrecv | Direction::Sendonly)
        })
        .filter(|ext| {
            remote
                .header_extensions
                .iter()
                .any(|r| r.preferred_id == ext.preferred_id && r.uri == ext.uri)
        })
        .map(|ext| RtpHeaderExtensionParameters {
            uri: ext.uri.clone(),
            id: ext.preferred_id,
            encrypt: ext.preferred_encrypt,
            parameters: Default::default(),
        })
        .collect();

    // Use transport-cc if negotiated, else REMB (with abs-send-time), else neither.
    let has_ext = |u: &str| header_extensions.iter().any(|e| e.uri == u);
    let drop_feedback: &[&str] = if has_ext(uri::TRANSPORT_WIDE_CC) {
        &["goog-remb"]
    } else if has_ext(uri::ABS_SEND_TIME) {
        &["transport-cc"]
    } else {
        &["transport-cc", "goog-remb"]
    };
    for codec in &mut codecs {
        codec
            .rtcp_feedback
            .retain(|fb| !drop_feedback.contains(&fb.kind.as_str()));
    }

    Ok(RtpParameters {
        mid: Some(mid),
        codecs,
        header_extensions,
        encodings: vec![consumer_encoding(
            mapping,
            ssrc,
            rtx_supported.then_some(rtx_ssrc),
        )],
        rtcp: RtcpParameters {
            cname: Some(cname),
            reduced_size: Some(true),
            mux: Some(true),
        },
    })
}

fn consumer_encoding(
    mapping: &ProducerMapping,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> RtpEncodingParameters {
    let mut scalability_mode = mapping
        .encodings
        .iter()
        .find_map(|e| e.scalability_mode.clone());
    if mapping.encodings.len() > 1 {
        // Simulcast: one spatial layer per encoding, temporal layers as the producer has.
        let temporal = scalability_mode.as_deref().map_or(1, temporal_layers);
        scalability_mode = Some(format!("L{}T{}", mapping.encodings.len(), temporal));
    }
    let max_bitrate = mapping
        .encodings
        .iter()
        .filter_map(|e| e.max_bitrate)
        .max()
        .filter(|b| *b > 0);
    RtpEncodingParameters {
        ssrc: Some(ssrc),
        rtx: rtx_ssrc.map(|ssrc| RtxParameters { ssrc }),
        scalability_mode,
        max_bitrate,
        ..Default::default()
    }
}

/// Temporal layers of a scalability mode like "L1T3" / "S3T3_KEY" (1 if unparsable).
fn temporal_layers(mode: &str) -> u32 {
    let parse = || -> Option<u32> {
        let rest = mode.strip_prefix(['L', 'S'])?;
        let (spatial, rest) = rest.split_once('T')?;
        spatial
            .parse::<u32>()
            .ok()
            .filter(|s| (1..=99).contains(s))?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse::<u32>().ok().filter(|t| (1..=99).contains(t))
    };
    parse().unwrap_or(1)
}

/// (producer id, consumer id) for every header extension both sides use, matched by uri.
pub fn ext_id_pairs(mapping: &ProducerMapping, consumer: &RtpParameters) -> Vec<(u8, u8)> {
    mapping
        .header_extensions
        .iter()
        .filter_map(|(id, u)| {
            consumer
                .header_extensions
                .iter()
                .find(|e| &e.uri == u)
                .map(|e| (*id, e.id))
        })
        .collect()
}

/// (producer payload type, consumer payload type) for the media codecs and their RTX.
pub fn payload_type_pairs(mapping: &ProducerMapping, consumer: &RtpParameters) -> Vec<(u8, u8)> {
    let mut pairs = Vec::new();
    for codec in &mapping.codecs {
        let router_pt = codec.router_codec.preferred_payload_type;
        if !consumer
            .codecs
            .iter()
            .any(|c| Some(c.payload_type) == router_pt)
        {
            continue;
        }
        pairs.push((codec.payload_type, router_pt.unwrap_or_default()));
        let rtx_pt = codec
            .router_rtx_codec
            .as_ref()
            .and_then(|c| c.preferred_payload_type);
        if let (Some(producer_rtx), Some(rtx_pt)) = (codec.rtx_payload_type, rtx_pt) {
            if consumer.codecs.iter().any(|c| c.payload_type == rtx_pt) {
                pairs.push((producer_rtx, rtx_pt));
            }
        }
    }
    pairs
}

/// The id of the extension `uri` in a list of negotiated header extensions.
pub fn find_ext_id(exts: &[RtpHeaderExtensionParameters], uri: &str) -> Option<u8> {
    exts.iter().find(|e| e.uri == uri).map(|e| e.id)
}
