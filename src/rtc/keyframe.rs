//! Key frame detection from an RTP payload, so a consumer can start on a key frame.

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

/// RFC 7741 §4.2 payload descriptor, then the VP8 frame tag's P bit (RFC 6386 §9.1).
fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut offset = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(offset) else {
            return false;
        };
        offset += 1;
        if ext & 0x80 != 0 {
            // PictureID: 7 bits, or 15 bits when its M bit is set.
            let Some(&pid) = payload.get(offset) else {
                return false;
            };
            offset += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            offset += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(offset).is_some_and(|tag| tag & 0x01 == 0)
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
