//! Producer RTP parameters: validation against the router's capabilities and the mapping
//! the forwarder needs (mediasoup's validateRtpParameters + getProducerRtpParametersMapping).

use std::collections::HashSet;

use super::h264;
use super::matching::{codecs_match, is_rtx, mime_kind, MatchMode};
use super::types::{
    is_parameter_value, CodecParameters, MediaKind, RtpCapabilities, RtpCodecCapability,
    RtpCodecParameters, RtpParameters,
};
use super::{uri, OrtcError};

pub const MAX_CODECS: usize = 32;
pub const MAX_HEADER_EXTENSIONS: usize = 32;
pub const MAX_ENCODINGS: usize = 4;
pub const MAX_STRING_LEN: usize = 256;

/// One media codec the producer sends, and what it maps to in the router.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerCodec {
    /// The producer's payload type.
    pub payload_type: u8,
    /// The producer's RTX payload type for this codec, if it sends RTX.
    pub rtx_payload_type: Option<u8>,
    /// The producer's codec parameters (H264 profile-level-id normalized like mediasoup);
    /// consumers are offered these.
    pub parameters: CodecParameters,
    /// The matched router codec (its `preferredPayloadType` is what consumers use).
    pub router_codec: RtpCodecCapability,
    /// The router's RTX codec for `router_codec` (video only).
    pub router_rtx_codec: Option<RtpCodecCapability>,
}

/// One encoding (stream) of the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEncoding {
    pub ssrc: Option<u32>,
    pub rid: Option<String>,
    pub rtx_ssrc: Option<u32>,
    pub codec_payload_type: Option<u8>,
    pub scalability_mode: Option<String>,
    pub max_bitrate: Option<u32>,
}

/// What the router and forwarder need to know about a validated producer.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerMapping {
    pub kind: MediaKind,
    /// Media codecs in the producer's order (the first is the preferred one).
    pub codecs: Vec<ProducerCodec>,
    pub encodings: Vec<ProducerEncoding>,
    /// The producer's header extensions: (id, uri).
    pub header_extensions: Vec<(u8, String)>,
    pub cname: Option<String>,
}

impl ProducerMapping {
    /// The producer's extension id for `uri`.
    pub fn ext_id(&self, uri: &str) -> Option<u8> {
        self.header_extensions
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
    pub fn mid_ext_id(&self) -> Option<u8> {
        self.ext_id(uri::MID)
    }
    pub fn rid_ext_id(&self) -> Option<u8> {
        self.ext_id(uri::RTP_STREAM_ID)
    }
    pub fn repaired_rid_ext_id(&self) -> Option<u8> {
        self.ext_id(uri::REPAIRED_RTP_STREAM_ID)
    }
    /// The media codec sent with payload type `pt` (media or its RTX).
    pub fn codec_by_payload_type(&self, pt: u8) -> Option<&ProducerCodec> {
        self.codecs
            .iter()
            .find(|c| c.payload_type == pt || c.rtx_payload_type == Some(pt))
    }
}

fn bad(msg: impl Into<String>) -> OrtcError {
    OrtcError::BadRequest(msg.into())
}

fn check_len(field: &str, value: &str) -> Result<(), OrtcError> {
    if value.len() > MAX_STRING_LEN {
        return Err(OrtcError::Limit(format!(
            "{field} longer than {MAX_STRING_LEN} characters"
        )));
    }
    Ok(())
}

fn check_parameters(field: &str, params: &CodecParameters) -> Result<(), OrtcError> {
    if params.len() > MAX_CODECS {
        return Err(OrtcError::Limit(format!("too many {field} entries")));
    }
    for (key, value) in params {
        check_len(field, key)?;
        if !is_parameter_value(value) {
            return Err(bad(format!("invalid {field} {key}")));
        }
        if let Some(s) = value.as_str() {
            check_len(field, s)?;
        }
    }
    Ok(())
}

/// Size caps and per-field shape checks shared by every producer codec.
fn check_codec_shape(codec: &RtpCodecParameters) -> Result<MediaKind, OrtcError> {
    check_len("codec.mimeType", &codec.mime_type)?;
    let kind = mime_kind(&codec.mime_type)
        .ok_or_else(|| bad(format!("invalid codec.mimeType {}", codec.mime_type)))?;
    if codec.payload_type > 127 {
        return Err(bad(format!(
            "invalid codec.payloadType {}",
            codec.payload_type
        )));
    }
    check_parameters("codec.parameters", &codec.parameters)?;
    if codec.rtcp_feedback.len() > MAX_CODECS {
        return Err(OrtcError::Limit(
            "too many codec.rtcpFeedback entries".into(),
        ));
    }
    for fb in &codec.rtcp_feedback {
        check_len("codec.rtcpFeedback.type", &fb.kind)?;
        check_len("codec.rtcpFeedback.parameter", &fb.parameter)?;
        if fb.kind.is_empty() {
            return Err(bad("missing codec.rtcpFeedback.type"));
        }
    }
    Ok(kind)
}

fn check_limits(params: &RtpParameters) -> Result<(), OrtcError> {
    if params.codecs.len() > MAX_CODECS {
        return Err(OrtcError::Limit(format!("more than {MAX_CODECS} codecs")));
    }
    if params.header_extensions.len() > MAX_HEADER_EXTENSIONS {
        return Err(OrtcError::Limit(format!(
            "more than {MAX_HEADER_EXTENSIONS} headerExtensions"
        )));
    }
    if params.encodings.len() > MAX_ENCODINGS {
        return Err(OrtcError::Limit(format!(
            "more than {MAX_ENCODINGS} encodings"
        )));
    }
    if let Some(mid) = &params.mid {
        check_len("mid", mid)?;
    }
    if let Some(cname) = &params.rtcp.cname {
        check_len("rtcp.cname", cname)?;
    }
    Ok(())
}

/// Checks a producer's `rtpParameters` against the router's capabilities and maps them.
pub fn validate_produce(
    kind: MediaKind,
    params: &RtpParameters,
    caps: &RtpCapabilities,
) -> Result<ProducerMapping, OrtcError> {
    check_limits(params)?;
    let mut payload_types = HashSet::new();
    for codec in &params.codecs {
        let codec_kind = check_codec_shape(codec)?;
        if codec_kind != kind {
            return Err(bad(format!(
                "codec {} does not match kind {kind}",
                codec.mime_type
            )));
        }
        if !payload_types.insert(codec.payload_type) {
            return Err(bad(format!(
                "duplicated codec.payloadType {}",
                codec.payload_type
            )));
        }
    }

    let mut codecs = Vec::new();
    for codec in params.codecs.iter().filter(|c| !is_rtx(&c.mime_type)) {
        let router_codec = caps
            .codecs
            .iter()
            .filter(|c| !is_rtx(&c.mime_type))
            .find(|cap| codecs_match(codec, *cap, MatchMode::Strict))
            .ok_or_else(|| {
                bad(format!(
                    "unsupported codec {} (payloadType {})",
                    codec.mime_type, codec.payload_type
                ))
            })?;
        let mut parameters = codec.parameters.clone();
        if codec
            .mime_type
            .to_ascii_lowercase()
            .starts_with("video/h264")
        {
            // mediasoup rewrites the producer's profile-level-id to the negotiated one.
            match h264::profile_level_id_for_answer(&codec.parameters, &router_codec.parameters) {
                Ok(Some(id)) => {
                    parameters.insert("profile-level-id".into(), id.into());
                }
                Ok(None) => {
                    parameters.remove("profile-level-id");
                }
                Err(()) => return Err(bad(format!("unsupported codec {}", codec.mime_type))),
            }
        }
        let router_pt = router_codec.preferred_payload_type;
        let router_rtx_codec = caps
            .codecs
            .iter()
            .find(|c| is_rtx(&c.mime_type) && apt(&c.parameters) == router_pt.map(i64::from))
            .cloned();
        codecs.push(ProducerCodec {
            payload_type: codec.payload_type,
            rtx_payload_type: None,
            parameters,
            router_codec: router_codec.clone(),
            router_rtx_codec,
        });
    }
    if codecs.is_empty() {
        return Err(bad("no media codec in codecs"));
    }

    for rtx in params.codecs.iter().filter(|c| is_rtx(&c.mime_type)) {
        let apt = apt(&rtx.parameters).ok_or_else(|| {
            bad(format!(
                "missing apt in RTX codec payloadType {}",
                rtx.payload_type
            ))
        })?;
        let media = codecs
            .iter_mut()
            .find(|c| i64::from(c.payload_type) == apt)
            .ok_or_else(|| {
                bad(format!(
                    "missing media codec for RTX payloadType {}",
                    rtx.payload_type
                ))
            })?;
        if media.router_rtx_codec.is_none() {
            return Err(bad(format!(
                "no RTX codec for {}",
                media.router_codec.mime_type
            )));
        }
        if media.rtx_payload_type.is_some() {
            return Err(bad(format!("duplicated RTX codec for payloadType {apt}")));
        }
        media.rtx_payload_type = Some(rtx.payload_type);
    }

    let encodings = map_encodings(params, &codecs)?;
    let header_extensions = map_header_extensions(params)?;
    Ok(ProducerMapping {
        kind,
        codecs,
        encodings,
        header_extensions,
        cname: params.rtcp.cname.clone(),
    })
}

pub(crate) fn apt(params: &CodecParameters) -> Option<i64> {
    params.get("apt").and_then(|v| v.as_i64())
}

fn map_encodings(
    params: &RtpParameters,
    codecs: &[ProducerCodec],
) -> Result<Vec<ProducerEncoding>, OrtcError> {
    if params.encodings.is_empty() {
        return Err(bad("missing encodings"));
    }
    let mut ssrcs = HashSet::new();
    let mut rids = HashSet::new();
    let mut encodings = Vec::with_capacity(params.encodings.len());
    for (i, enc) in params.encodings.iter().enumerate() {
        if enc.ssrc.is_none() && enc.rid.is_none() {
            return Err(bad(format!("encodings[{i}] has neither ssrc nor rid")));
        }
        for ssrc in enc.ssrc.iter().chain(enc.rtx.as_ref().map(|r| &r.ssrc)) {
            if !ssrcs.insert(*ssrc) {
                return Err(bad(format!("duplicated ssrc {ssrc} in encodings")));
            }
        }
        if let Some(rid) = &enc.rid {
            check_len("encoding.rid", rid)?;
            if rid.is_empty() || !rids.insert(rid.clone()) {
                return Err(bad(format!("invalid or duplicated encoding.rid {rid:?}")));
            }
        }
        if let Some(mode) = &enc.scalability_mode {
            check_len("encoding.scalabilityMode", mode)?;
        }
        if let Some(pt) = enc.codec_payload_type {
            if !codecs.iter().any(|c| c.payload_type == pt) {
                return Err(bad(format!("invalid encoding.codecPayloadType {pt}")));
            }
        }
        encodings.push(ProducerEncoding {
            ssrc: enc.ssrc,
            rid: enc.rid.clone(),
            rtx_ssrc: enc.rtx.map(|r| r.ssrc),
            codec_payload_type: enc.codec_payload_type,
            scalability_mode: enc.scalability_mode.clone(),
            max_bitrate: enc.max_bitrate,
        });
    }
    Ok(encodings)
}

fn map_header_extensions(params: &RtpParameters) -> Result<Vec<(u8, String)>, OrtcError> {
    let mut ids = HashSet::new();
    let mut exts = Vec::with_capacity(params.header_extensions.len());
    for ext in &params.header_extensions {
        check_len("headerExtensions.uri", &ext.uri)?;
        check_parameters("headerExtensions.parameters", &ext.parameters)?;
        if ext.uri.is_empty() {
            return Err(bad("missing headerExtensions.uri"));
        }
        if ext.id == 0 {
            return Err(bad(format!(
                "invalid headerExtensions.id 0 for {}",
                ext.uri
            )));
        }
        if !ids.insert(ext.id) {
            return Err(bad(format!("duplicated headerExtensions.id {}", ext.id)));
        }
        exts.push((ext.id, ext.uri.clone()));
    }
    Ok(exts)
}
