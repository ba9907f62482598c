//! mediasoup's `matchCodecs`: when two codec descriptions are the same codec.

use super::h264;
use super::types::{
    parameter_as_i64, CodecParameters, MediaKind, RtpCodecCapability, RtpCodecParameters,
};

/// The media kind of a mime type ("audio/..." or "video/...", case-insensitive).
pub(crate) fn mime_kind(mime: &str) -> Option<MediaKind> {
    let (kind, subtype) = mime.split_once('/')?;
    if subtype.is_empty() {
        return None;
    }
    if kind.eq_ignore_ascii_case("audio") {
        Some(MediaKind::Audio)
    } else if kind.eq_ignore_ascii_case("video") {
        Some(MediaKind::Video)
    } else {
        None
    }
}

pub(crate) fn is_rtx(mime: &str) -> bool {
    mime.len() > 4 && mime.to_ascii_lowercase().ends_with("/rtx")
}

pub(crate) trait CodecLike {
    fn mime_type(&self) -> &str;
    fn clock_rate(&self) -> u32;
    fn raw_channels(&self) -> Option<u8>;
    fn parameters(&self) -> &CodecParameters;

    /// Channels as mediasoup normalizes them: audio defaults to 1, video has none.
    fn channels(&self) -> Option<u8> {
        match mime_kind(self.mime_type()) {
            Some(MediaKind::Audio) => Some(self.raw_channels().unwrap_or(1)),
            _ => None,
        }
    }
}

impl CodecLike for RtpCodecCapability {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn raw_channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &CodecParameters {
        &self.parameters
    }
}

impl CodecLike for RtpCodecParameters {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn raw_channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &CodecParameters {
        &self.parameters
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchMode {
    /// Mime type, clock rate and channels (used to pick a supported codec).
    Loose,
    /// Also H264 packetization-mode/profile and VP9 profile-id.
    Strict,
}

pub(crate) fn codecs_match(a: &impl CodecLike, b: &impl CodecLike, mode: MatchMode) -> bool {
    let mime = a.mime_type().to_ascii_lowercase();
    if mime != b.mime_type().to_ascii_lowercase()
        || a.clock_rate() != b.clock_rate()
        || a.channels() != b.channels()
    {
        return false;
    }
    let (pa, pb) = (a.parameters(), b.parameters());
    let int_or_zero = |p: &CodecParameters, key: &str| parameter_as_i64(p.get(key)).unwrap_or(0);
    match mime.as_str() {
        "audio/multiopus" => ["num_streams", "coupled_streams"]
            .iter()
            .all(|k| int_or_zero(pa, k) == int_or_zero(pb, k)),
        "video/h264" | "video/h264-svc" if mode == MatchMode::Strict => {
            int_or_zero(pa, "packetization-mode") == int_or_zero(pb, "packetization-mode")
                && h264::is_same_profile(pa, pb)
                && h264::profile_level_id_for_answer(pa, pb).is_ok()
        }
        "video/vp9" if mode == MatchMode::Strict => {
            int_or_zero(pa, "profile-id") == int_or_zero(pb, "profile-id")
        }
        _ => true,
    }
}
