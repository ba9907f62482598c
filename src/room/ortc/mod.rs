//! ORTC rules: mediasoup-client's parameter objects, the router's capabilities, and the
//! checks and derivations mediasoup applies to producers and consumers (its `ortc.ts`).
//!
//! - [`router_capabilities`]: what `join-room` returns as `routerRtpCapabilities`.
//! - [`validate_produce`]: checks a `produce` request, giving a [`ProducerMapping`].
//! - [`can_consume`] / [`consumer_params`]: the `consume-media` answer.

mod consumer;
mod h264;
mod matching;
mod producer;
mod router;
mod types;

#[cfg(test)]
mod tests;

pub use consumer::{can_consume, consumer_params, ext_id_pairs, find_ext_id, payload_type_pairs};
pub use producer::{
    validate_produce, ProducerCodec, ProducerEncoding, ProducerMapping, MAX_CODECS, MAX_ENCODINGS,
    MAX_HEADER_EXTENSIONS, MAX_STRING_LEN,
};
pub use router::{default_media_codecs, router_capabilities, MediaCodecConfig};
pub use types::{
    CodecParameters, Direction, MediaKind, RtcpFeedback, RtcpParameters, RtpCapabilities,
    RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtension,
    RtpHeaderExtensionParameters, RtpParameters, RtxParameters,
};

/// Errors of this layer; the signaling edge maps them to `bad-request`, `unsupported`
/// and `limit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrtcError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Limit(String),
}

/// Header extension URIs the SFU cares about.
pub mod uri {
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    pub const RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    pub const REPAIRED_RTP_STREAM_ID: &str =
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    pub const TRANSPORT_WIDE_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    pub const FRAMEMARKING_07: &str =
        "http://tools.ietf.org/html/draft-ietf-avtext-framemarking-07";
    pub const FRAMEMARKING: &str = "urn:ietf:params:rtp-hdrext:framemarking";
    pub const SSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
    pub const TOFFSET: &str = "urn:ietf:params:rtp-hdrext:toffset";
    pub const ABS_CAPTURE_TIME: &str =
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
}

/// Size and shape checks of a client's `rtpCapabilities` (consume-media, join).
pub fn validate_capabilities(caps: &RtpCapabilities) -> Result<(), OrtcError> {
    if caps.codecs.len() > MAX_CODECS || caps.header_extensions.len() > MAX_HEADER_EXTENSIONS {
        return Err(OrtcError::Limit(
            "too many codecs or headerExtensions in rtpCapabilities".into(),
        ));
    }
    for codec in &caps.codecs {
        if codec.mime_type.len() > MAX_STRING_LEN || codec.parameters.len() > MAX_CODECS {
            return Err(OrtcError::Limit("rtpCapabilities codec too large".into()));
        }
        if matching::mime_kind(&codec.mime_type).is_none() {
            return Err(OrtcError::BadRequest(format!(
                "invalid codec.mimeType {}",
                codec.mime_type
            )));
        }
        if codec
            .parameters
            .values()
            .any(|v| !types::is_parameter_value(v))
        {
            return Err(OrtcError::BadRequest(format!(
                "invalid parameters of {}",
                codec.mime_type
            )));
        }
    }
    if caps
        .header_extensions
        .iter()
        .any(|e| e.uri.len() > MAX_STRING_LEN)
    {
        return Err(OrtcError::Limit("headerExtensions.uri too long".into()));
    }
    Ok(())
}
