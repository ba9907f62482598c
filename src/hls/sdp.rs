//! The SDP file through which FFmpeg receives the tapped RTP streams.

use std::fmt::Write;

use super::{MediaSource, SourceKind};

/// One source as FFmpeg receives it: its loopback port and the payload type and SSRC the worker
/// rewrites its RTP to.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineStream {
    pub source: MediaSource,
    pub port: u16,
    pub payload_type: u8,
    pub ssrc: u32,
}

/// The rtpmap encoding name, clock rate and channel count of a supported codec.
pub(crate) fn rtpmap(source: &MediaSource) -> Option<(&'static str, u32, Option<u8>)> {
    let (kind, codec) = source.mime_type.split_once('/')?;
    match (source.kind, kind.to_ascii_lowercase().as_str()) {
        (SourceKind::Video, "video") | (SourceKind::Audio, "audio") => {}
        _ => return None,
    }
    match codec.to_ascii_lowercase().as_str() {
        "vp8" => Some(("VP8", 90000, None)),
        "vp9" => Some(("VP9", 90000, None)),
        "h264" => Some(("H264", 90000, None)),
        // RFC 7587: always opus/48000/2, whatever the stream carries.
        "opus" => Some(("opus", 48000, Some(2))),
        "pcmu" => Some(("PCMU", 8000, None)),
        "pcma" => Some(("PCMA", 8000, None)),
        _ => None,
    }
}

/// Codec parameters come from clients: keep only pairs that cannot break the SDP syntax.
fn safe_fmtp(fmtp: &[(String, String)]) -> String {
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    };
    let value_ok = |v: &str| {
        v.len() <= 512
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.,/+=:".contains(&b))
    };
    fmtp.iter()
        .filter(|(k, v)| key_ok(k) && value_ok(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The SDP text describing `streams`, one `m=` line each, all on 127.0.0.1.
/// Streams with an unsupported codec must have been filtered out by the caller.
pub fn sdp_text(session_name: &str, streams: &[PipelineStream]) -> String {
    let name: String = session_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
        .take(64)
        .collect();
    let mut sdp = String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        sdp,
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=hls-{name}\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    );
    for stream in streams {
        let Some((codec, clock, channels)) = rtpmap(&stream.source) else {
            continue;
        };
        let media = match stream.source.kind {
            SourceKind::Audio => "audio",
            SourceKind::Video => "video",
        };
        let pt = stream.payload_type;
        let _ = write!(sdp, "m={media} {} RTP/AVP {pt}\r\n", stream.port);
        match channels {
            Some(ch) => {
                let _ = write!(sdp, "a=rtpmap:{pt} {codec}/{clock}/{ch}\r\n");
            }
            None => {
                let _ = write!(sdp, "a=rtpmap:{pt} {codec}/{clock}\r\n");
            }
        }
        let fmtp = safe_fmtp(&stream.source.fmtp);
        if !fmtp.is_empty() {
            let _ = write!(sdp, "a=fmtp:{pt} {fmtp}\r\n");
        }
        let _ = write!(
            sdp,
            "a=ssrc:{} cname:{}\r\na=recvonly\r\n",
            stream.ssrc, name
        );
    }
    sdp
}
