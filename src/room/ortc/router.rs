//! Router RTP capabilities generated from the configured media codecs, exactly as
//! mediasoup's `generateRouterRtpCapabilities` (3.12) does.

use serde_json::Value;

use super::matching::{codecs_match, mime_kind, MatchMode};
use super::types::{
    CodecParameters, Direction, MediaKind, RtcpFeedback, RtpCapabilities, RtpCodecCapability,
    RtpHeaderExtension,
};
use super::{uri, OrtcError};

/// One codec the router offers (mediasoup's `RtpCodecCapability` in `mediaCodecs`).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaCodecConfig {
    pub kind: MediaKind,
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    pub parameters: CodecParameters,
}

/// The reference server's codecs: opus, VP8 and H264 (constrained baseline 3.1).
pub fn default_media_codecs() -> Vec<MediaCodecConfig> {
    let params = |pairs: &[(&str, Value)]| -> CodecParameters {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    vec![
        MediaCodecConfig {
            kind: MediaKind::Audio,
            mime_type: "audio/opus".into(),
            clock_rate: 48000,
            channels: Some(2),
            parameters: CodecParameters::new(),
        },
        MediaCodecConfig {
            kind: MediaKind::Video,
            mime_type: "video/VP8".into(),
            clock_rate: 90000,
            channels: None,
            parameters: params(&[("x-google-start-bitrate", 1000.into())]),
        },
        MediaCodecConfig {
            kind: MediaKind::Video,
            mime_type: "video/H264".into(),
            clock_rate: 90000,
            channels: None,
            parameters: params(&[
                ("packetization-mode", 1.into()),
                ("profile-level-id", "42e01f".into()),
                ("level-asymmetry-allowed", 1.into()),
                ("x-google-start-bitrate", 1000.into()),
            ]),
        },
    ]
}

const DYNAMIC_PAYLOAD_TYPES: [u8; 32] = [
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118,
    119, 120, 121, 122, 123, 124, 125, 126, 127, 96, 97, 98, 99,
];

#[derive(Clone, Copy)]
enum Feedback {
    None,
    TransportCc,
    Opus,
    Video,
}

impl Feedback {
    fn list(self) -> Vec<RtcpFeedback> {
        let pairs: &[(&str, &str)] = match self {
            Feedback::None => &[],
            Feedback::TransportCc => &[("transport-cc", "")],
            Feedback::Opus => &[("nack", ""), ("transport-cc", "")],
            Feedback::Video => &[
                ("nack", ""),
                ("nack", "pli"),
                ("ccm", "fir"),
                ("goog-remb", ""),
                ("transport-cc", ""),
            ],
        };
        pairs.iter().map(|(t, p)| RtcpFeedback::new(t, p)).collect()
    }
}

/// (mime type, static payload type, clock rate, channels, feedback, extra parameters) of
/// mediasoup's supportedRtpCapabilities (multiopus is left out).
type Supported = (
    &'static str,
    Option<u8>,
    u32,
    Option<u8>,
    Feedback,
    &'static [(&'static str, i64)],
);
const LEVEL_ASYMMETRY: &[(&str, i64)] = &[("level-asymmetry-allowed", 1)];
const SUPPORTED_CODECS: &[Supported] = &[
    ("audio/opus", None, 48000, Some(2), Feedback::Opus, &[]),
    (
        "audio/PCMU",
        Some(0),
        8000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/PCMA",
        Some(8),
        8000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/ISAC",
        None,
        32000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/ISAC",
        None,
        16000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/G722",
        Some(9),
        8000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/iLBC",
        None,
        8000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/SILK",
        None,
        24000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/SILK",
        None,
        16000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/SILK",
        None,
        12000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    (
        "audio/SILK",
        None,
        8000,
        Some(1),
        Feedback::TransportCc,
        &[],
    ),
    ("audio/CN", Some(13), 32000, Some(1), Feedback::None, &[]),
    ("audio/CN", Some(13), 16000, Some(1), Feedback::None, &[]),
    ("audio/CN", Some(13), 8000, Some(1), Feedback::None, &[]),
    (
        "audio/telephone-event",
        None,
        48000,
        Some(1),
        Feedback::None,
        &[],
    ),
    (
        "audio/telephone-event",
        None,
        32000,
        Some(1),
        Feedback::None,
        &[],
    ),
    (
        "audio/telephone-event",
        None,
        16000,
        Some(1),
        Feedback::None,
        &[],
    ),
    (
        "audio/telephone-event",
        None,
        8000,
        Some(1),
        Feedback::None,
        &[],
    ),
    ("video/VP8", None, 90000, None, Feedback::Video, &[]),
    ("video/VP9", None, 90000, None, Feedback::Video, &[]),
    (
        "video/H264",
        None,
        90000,
        None,
        Feedback::Video,
        LEVEL_ASYMMETRY,
    ),
    (
        "video/H264-SVC",
        None,
        90000,
        None,
        Feedback::Video,
        LEVEL_ASYMMETRY,
    ),
    (
        "video/H265",
        None,
        90000,
        None,
        Feedback::Video,
        LEVEL_ASYMMETRY,
    ),
];

fn supported_codecs() -> impl Iterator<Item = RtpCodecCapability> {
    SUPPORTED_CODECS.iter().map(
        |&(mime, pt, clock, channels, fb, params)| RtpCodecCapability {
            kind: mime_kind(mime).expect("static mime type"),
            mime_type: mime.to_owned(),
            preferred_payload_type: pt,
            clock_rate: clock,
            channels,
            parameters: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                .collect(),
            rtcp_feedback: fb.list(),
        },
    )
}

/// mediasoup 3.12's header extensions, in its order.
pub(crate) fn supported_header_extensions() -> Vec<RtpHeaderExtension> {
    use Direction::{Recvonly, Sendrecv};
    use MediaKind::{Audio, Video};
    let list: [(MediaKind, &str, u8, Direction); 15] = [
        (Audio, uri::MID, 1, Sendrecv),
        (Video, uri::MID, 1, Sendrecv),
        (Video, uri::RTP_STREAM_ID, 2, Recvonly),
        (Video, uri::REPAIRED_RTP_STREAM_ID, 3, Recvonly),
        (Audio, uri::ABS_SEND_TIME, 4, Sendrecv),
        (Video, uri::ABS_SEND_TIME, 4, Sendrecv),
        (Audio, uri::TRANSPORT_WIDE_CC, 5, Recvonly),
        (Video, uri::TRANSPORT_WIDE_CC, 5, Sendrecv),
        (Video, uri::FRAMEMARKING_07, 6, Sendrecv),
        (Video, uri::FRAMEMARKING, 7, Sendrecv),
        (Audio, uri::SSRC_AUDIO_LEVEL, 10, Sendrecv),
        (Video, uri::VIDEO_ORIENTATION, 11, Sendrecv),
        (Video, uri::TOFFSET, 12, Sendrecv),
        (Audio, uri::ABS_CAPTURE_TIME, 13, Sendrecv),
        (Video, uri::ABS_CAPTURE_TIME, 13, Sendrecv),
    ];
    list.iter()
        .map(|&(kind, uri, preferred_id, direction)| RtpHeaderExtension {
            kind,
            uri: uri.to_owned(),
            preferred_id,
            preferred_encrypt: false,
            direction,
        })
        .collect()
}

/// The router's RTP capabilities for the given media codecs (what `join-room` returns).
pub fn router_capabilities(
    media_codecs: &[MediaCodecConfig],
) -> Result<RtpCapabilities, OrtcError> {
    let mut dynamic = DYNAMIC_PAYLOAD_TYPES.iter().copied();
    let mut codecs: Vec<RtpCodecCapability> = Vec::new();
    let supported: Vec<RtpCodecCapability> = supported_codecs().collect();
    let mut next_dynamic = |codecs: &Vec<RtpCodecCapability>| {
        dynamic.find(|pt| !codecs.iter().any(|c| c.preferred_payload_type == Some(*pt)))
    };
    for media in media_codecs {
        let kind = mime_kind(&media.mime_type).ok_or_else(|| {
            OrtcError::BadRequest(format!("invalid codec mimeType {}", media.mime_type))
        })?;
        if kind != media.kind {
            return Err(OrtcError::BadRequest(format!(
                "codec {} does not match kind {}",
                media.mime_type, media.kind
            )));
        }
        let wanted = RtpCodecCapability {
            kind,
            mime_type: media.mime_type.clone(),
            preferred_payload_type: None,
            clock_rate: media.clock_rate,
            // mediasoup: audio channels default to 1, video has none.
            channels: match kind {
                MediaKind::Audio => Some(media.channels.unwrap_or(1)),
                MediaKind::Video => None,
            },
            parameters: media.parameters.clone(),
            rtcp_feedback: Vec::new(),
        };
        let mut codec = supported
            .iter()
            .find(|s| codecs_match(&wanted, *s, MatchMode::Loose))
            .cloned()
            .ok_or_else(|| {
                OrtcError::Unsupported(format!("media codec not supported {}", media.mime_type))
            })?;
        if codec.preferred_payload_type.is_none() {
            let pt = next_dynamic(&codecs).ok_or_else(|| {
                OrtcError::Limit("cannot allocate more dynamic codec payload types".into())
            })?;
            codec.preferred_payload_type = Some(pt);
        } else if codecs
            .iter()
            .any(|c| c.preferred_payload_type == codec.preferred_payload_type)
        {
            return Err(OrtcError::BadRequest(
                "duplicated codec preferredPayloadType".into(),
            ));
        }
        codec.parameters.extend(media.parameters.clone());
        let apt = codec.preferred_payload_type;
        codecs.push(codec);
        if kind == MediaKind::Video {
            let pt = next_dynamic(&codecs).ok_or_else(|| {
                OrtcError::Limit("cannot allocate more dynamic codec payload types".into())
            })?;
            codecs.push(RtpCodecCapability {
                kind,
                mime_type: "video/rtx".into(),
                preferred_payload_type: Some(pt),
                clock_rate: media.clock_rate,
                channels: None,
                parameters: [("apt".to_owned(), Value::from(apt))].into_iter().collect(),
                rtcp_feedback: Vec::new(),
            });
        }
    }
    Ok(RtpCapabilities {
        codecs,
        header_extensions: supported_header_extensions(),
    })
}
