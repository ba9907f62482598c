//! Key frames: detection from an RTP payload, so a consumer can start on a key frame, and the
//! spacing of key-frame requests (PLI) sent to a producer.

use std::time::{Duration, Instant};

/// Spacing of ordinary key-frame requests to one producer (a consumer's PLI, HLS segments).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(1000);
/// Spacing of forced requests (a consumer resumed or is waiting for its first frame). Forced
/// requests are still spaced: every resume-consumer asks for one, and a client may send
/// thousands; each PLI costs the publisher a key frame (many times a delta frame's size).
pub const FORCED_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// When key-frame requests may go to one producer: at most one per interval; a request
/// within the interval is deferred to its end (kept, never lost), and several deferred
/// requests become one.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyframeSpacer {
    last_sent: Option<Instant>,
    /// A deferred request; true if any of the requests it stands for was forced.
    pending: Option<bool>,
}

impl KeyframeSpacer {
    fn ready(&self, now: Instant, forced: bool) -> bool {
        let spacing = if forced {
            FORCED_KEYFRAME_INTERVAL
        } else {
            KEYFRAME_INTERVAL
        };
        self.last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= spacing)
    }

    /// A request: true means send one now; false means it was deferred (see [`Self::poll`]).
    pub fn request(&mut self, now: Instant, forced: bool) -> bool {
        let forced = forced || self.pending == Some(true);
        if self.ready(now, forced) {
            self.last_sent = Some(now);
            self.pending = None;
            true
        } else {
            self.defer(forced);
            false
        }
    }

    /// Remembers a request for later without sending one now.
    pub fn defer(&mut self, forced: bool) {
        self.pending = Some(self.pending.unwrap_or(false) || forced);
    }

    /// The deferred request, if it is due now: `Some(forced)` means send it.
    pub fn poll(&mut self, now: Instant) -> Option<bool> {
        let forced = self.pending?;
        if !self.ready(now, forced) {
            return None;
        }
        self.last_sent = Some(now);
        self.pending = None;
        Some(forced)
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub fn last_sent(&self) -> Option<Instant> {
        self.last_sent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
    Other,
}

impl VideoCodec {
    /// From a mediasoup `mimeType` such as "video/VP8" (case-insensitive).
    pub fn from_mime(mime: &str) -> Self {
        let Some((kind, name)) = mime.split_once('/') else {
            return Self::Other;
        };
        if !kind.eq_ignore_ascii_case("video") {
            return Self::Other;
        }
        match name.to_ascii_uppercase().as_str() {
            "VP8" => Self::Vp8,
            "VP9" => Self::Vp9,
            "H264" => Self::H264,
            "AV1" => Self::Av1,
            _ => Self::Other,
        }
    }
}

/// Whether `payload` (the RTP payload, header stripped) starts a key frame.
pub fn is_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_is_keyframe(payload),
        VideoCodec::Vp9 => vp9_is_keyframe(payload),
        VideoCodec::H264 => h264_is_keyframe(payload),
        VideoCodec::Av1 => av1_is_keyframe(payload),
        VideoCodec::Other => false,
    }
}

/// RFC 7741 §4.2 payload descriptor (`rtc/vp8.rs`), then the VP8 frame tag's P bit (RFC 6386
/// §9.1).
fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    super::vp8::parse(payload)
        .and_then(|d| payload.get(d.header_at))
        .is_some_and(|tag| tag & 0x01 == 0)
}

/// draft-ietf-payload-vp9 §4.2: B (beginning of frame) set, P (inter-picture predicted) clear.
fn vp9_is_keyframe(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|&b| b & 0x08 != 0 && b & 0x40 == 0)
}

const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;
const H264_STAP_A: u8 = 24;
const H264_FU_A: u8 = 28;

fn h264_is_key_nal(nal_type: u8) -> bool {
    nal_type == H264_IDR || nal_type == H264_SPS
}

/// RFC 6184: a single IDR/SPS NAL unit, a STAP-A holding one, or the first FU-A fragment of one.
fn h264_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        H264_STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(nal) = rest.get(2..2 + size) else {
                    return false;
                };
                if nal.first().is_some_and(|&h| h264_is_key_nal(h & 0x1f)) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        H264_FU_A => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && h264_is_key_nal(fu & 0x1f)),
        nal_type => h264_is_key_nal(nal_type),
    }
}

/// AV1 RTP spec §4.4: the aggregation header's N bit marks the first packet of a coded video
/// sequence, which starts with a key frame.
fn av1_is_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|&b| b & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::VideoCodec::*;
    use super::*;

    #[test]
    fn a_storm_of_forced_requests_sends_at_most_two_per_second_and_loses_none() {
        let mut s = KeyframeSpacer::default();
        let t0 = Instant::now();
        let mut sent = Vec::new();
        // 2,000 forced requests over 3 s, with the worker's 250 ms tick polling in between.
        for i in 0..2000u64 {
            let now = t0 + Duration::from_micros(i * 1500);
            if s.request(now, true) {
                sent.push(now);
            }
            if i % 166 == 0 && s.poll(now).is_some() {
                sent.push(now);
            }
        }
        let end = t0 + Duration::from_millis(3000);
        // The last request is deferred, not lost: the tick after the spacing sends it.
        assert!(s.is_pending());
        assert_eq!(s.poll(end + FORCED_KEYFRAME_INTERVAL), Some(true));
        assert!(!s.is_pending());
        assert!(sent.len() <= 7, "{} requests in 3 s", sent.len());
        for w in sent.windows(2) {
            assert!(w[1] - w[0] >= FORCED_KEYFRAME_INTERVAL);
        }
    }

    #[test]
    fn ordinary_requests_keep_the_longer_spacing_and_a_forced_one_upgrades_the_deferred() {
        let mut s = KeyframeSpacer::default();
        let t0 = Instant::now();
        assert!(s.request(t0, false));
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!s.request(at(600), false));
        assert_eq!(
            s.poll(at(700)),
            None,
            "an ordinary request waits a full second"
        );
        assert_eq!(s.poll(at(1000)), Some(false));
        assert!(!s.request(at(1200), false));
        assert!(!s.request(at(1300), true));
        assert_eq!(s.poll(at(1499)), None);
        assert_eq!(s.poll(at(1500)), Some(true), "forced: half a second");
        assert_eq!(s.poll(at(5000)), None, "nothing left to send");
    }

    #[test]
    fn codecs_are_recognised_from_mime_types_case_insensitively() {
        assert_eq!(VideoCodec::from_mime("video/VP8"), Vp8);
        assert_eq!(VideoCodec::from_mime("video/vp9"), Vp9);
        assert_eq!(VideoCodec::from_mime("Video/H264"), H264);
        assert_eq!(VideoCodec::from_mime("video/AV1"), Av1);
        assert_eq!(VideoCodec::from_mime("video/rtx"), Other);
        assert_eq!(VideoCodec::from_mime("audio/VP8"), Other);
        assert_eq!(VideoCodec::from_mime("VP8"), Other);
    }

    #[test]
    fn vp8_key_frame_without_extensions_is_detected() {
        assert!(is_keyframe(
            Vp8,
            &[0x10, 0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a]
        ));
    }

    #[test]
    fn vp8_key_frame_with_long_picture_id_tl0picidx_and_tid_is_detected() {
        // X=1 S=1 PID=0 | I L T | M=1 15-bit picture id | TL0PICIDX | TID | frame tag P=0
        let payload = [0x90, 0xe0, 0x80 | 0x12, 0x34, 0x05, 0x20, 0x50, 0x2a];
        assert!(is_keyframe(Vp8, &payload));
        // Same with a 7-bit picture id and only K set.
        assert!(is_keyframe(Vp8, &[0x90, 0x90, 0x12, 0x20, 0x50]));
    }

    #[test]
    fn vp8_inter_frame_or_continuation_is_not_a_key_frame() {
        assert!(!is_keyframe(Vp8, &[0x10, 0x51]), "P bit set");
        assert!(!is_keyframe(Vp8, &[0x00, 0x50]), "S bit clear");
        assert!(!is_keyframe(Vp8, &[0x11, 0x50]), "partition 1");
    }

    #[test]
    fn vp8_truncated_descriptor_is_not_a_key_frame() {
        for payload in [
            &[][..],
            &[0x10],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x80, 0x01],
        ] {
            assert!(!is_keyframe(Vp8, payload), "{payload:?}");
        }
    }

    #[test]
    fn vp9_beginning_of_non_predicted_frame_is_a_key_frame() {
        assert!(is_keyframe(Vp9, &[0x88, 0x80, 0x01]), "I B");
        assert!(!is_keyframe(Vp9, &[0xc8, 0x80, 0x01]), "P set");
        assert!(!is_keyframe(Vp9, &[0x80, 0x80, 0x01]), "B clear");
        assert!(!is_keyframe(Vp9, &[]));
    }

    #[test]
    fn h264_single_idr_and_sps_nal_units_are_key_frames() {
        assert!(is_keyframe(H264, &[0x65, 0x88, 0x84]));
        assert!(is_keyframe(H264, &[0x67, 0x42, 0xc0, 0x1f]));
        assert!(!is_keyframe(H264, &[0x41, 0x9a]), "non-IDR slice");
        assert!(!is_keyframe(H264, &[0x68, 0xce]), "PPS alone");
    }

    #[test]
    fn h264_stap_a_holding_an_sps_is_a_key_frame() {
        let stap = [
            0x78, // STAP-A
            0x00, 0x02, 0x09, 0x10, // AUD
            0x00, 0x04, 0x67, 0x42, 0xc0, 0x1f, // SPS
            0x00, 0x02, 0x68, 0xce, // PPS
        ];
        assert!(is_keyframe(H264, &stap));
        let no_key = [0x78, 0x00, 0x02, 0x09, 0x10, 0x00, 0x02, 0x68, 0xce];
        assert!(!is_keyframe(H264, &no_key));
    }

    #[test]
    fn h264_stap_a_with_overlong_size_is_not_a_key_frame() {
        assert!(!is_keyframe(H264, &[0x78, 0x00, 0x09, 0x67, 0x42]));
        assert!(!is_keyframe(H264, &[0x78, 0x00]));
        assert!(!is_keyframe(H264, &[0x78, 0x00, 0x00, 0x00]));
    }

    #[test]
    fn h264_fu_a_start_of_idr_is_a_key_frame() {
        assert!(is_keyframe(H264, &[0x7c, 0x85, 0x88]), "start, IDR");
        assert!(!is_keyframe(H264, &[0x7c, 0x05, 0x88]), "middle, IDR");
        assert!(!is_keyframe(H264, &[0x7c, 0x81, 0x9a]), "start, non-IDR");
        assert!(!is_keyframe(H264, &[0x7c]), "truncated");
    }

    #[test]
    fn av1_new_coded_video_sequence_is_a_key_frame() {
        assert!(is_keyframe(Av1, &[0x18, 0x0a]));
        assert!(!is_keyframe(Av1, &[0x10, 0x32]));
    }

    #[test]
    fn empty_payloads_and_other_codecs_are_never_key_frames() {
        for codec in [Vp8, Vp9, H264, Av1, Other] {
            assert!(!is_keyframe(codec, &[]));
        }
        assert!(!is_keyframe(Other, &[0x65]));
    }
}
