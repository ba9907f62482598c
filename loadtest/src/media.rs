//! Synthetic media: publishers send paced, SRTP-protected RTP with a send stamp in the payload
//! (the subscribers' side is [`crate::receive`]); and the clock both sides stamp with.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sfu::rtc::dtls::DtlsSession;
use sfu::rtc::rtcp;
use sfu::rtc::srtp::SrtpSession;

use crate::transport::Link;
/// How often publishers read (and drop) what the server sends them over ICE-TCP (RTCP, STUN
/// answers): left unread it would fill the server's send buffer. Over UDP the kernel drops it.
const PUBLISHER_DRAIN: Duration = Duration::from_millis(50);
/// How often publishers send RTCP sender reports (Chromium: about every second).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
/// The mid header extension id publishers use (as Chromium does).
const MID_EXT_ID: u8 = 4;
/// VP8: payload descriptor (4 bytes: X, S, 15-bit picture id) + a 10-byte key-frame header;
/// the stamp follows. mediasoup only parses descriptors with X set, as Chromium sends them.
pub const VIDEO_STAMP_OFFSET: usize = 14;
pub const AUDIO_STAMP_OFFSET: usize = 0;
const AUDIO_PAYLOAD_LEN: usize = 80;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Every n-th video packet is a key frame so new consumers sync quickly.
const KEYFRAME_EVERY: u64 = 30;
/// The rtp-stream-id (rid) header extension id of simulcast publishers.
const RID_EXT_ID: u8 = 10;
/// Simulcast encodings, lowest first: rid, kbit/s, width, height (like Chromium's 1/4, 1/2, 1).
pub const SIMULCAST_LAYERS: [(&str, u32, u16, u16); 3] = [
    ("r0", 150, 320, 180),
    ("r1", 500, 640, 360),
    ("r2", 1500, 1280, 720),
];

pub const PHASE_WARMUP: u8 = 0;
pub const PHASE_MEASURE: u8 = 1;
pub const PHASE_STOP: u8 = 2;

/// Nanoseconds since the process's first call: the clock both stamps and receipts use.
pub fn now_ns() -> u64 {
    start().0.elapsed().as_nanos() as u64
}

/// The instant a `now_ns` reading stands for.
pub fn instant_of(ns: u64) -> Instant {
    start().0 + Duration::from_nanos(ns)
}

/// The clock's origin: an `Instant` and the wall-clock time (ns since the epoch) at that moment.
fn start() -> &'static (Instant, u64) {
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    START.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (Instant::now(), wall)
    })
}

/// A kernel receive timestamp (`SO_TIMESTAMPNS`, wall clock) on the `now_ns` scale.
pub(crate) fn wall_to_now_ns(wall_ns: u64) -> u64 {
    wall_ns.saturating_sub(start().1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

impl Kind {
    pub fn stamp_offset(self) -> usize {
        match self {
            Kind::Video => VIDEO_STAMP_OFFSET,
            Kind::Audio => AUDIO_STAMP_OFFSET,
        }
    }
}

/// RTP parameters as mediasoup-client (Chromium) sends them for VP8 with RTX.
pub fn vp8_rtp_parameters(ssrc: u32, cname: &str) -> Value {
    json!({
        "mid": "0",
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": VIDEO_PT, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""},
                              {"type": "ccm", "parameter": "fir"}, {"type": "nack", "parameter": ""},
                              {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": VIDEO_PT + 1, "clockRate": 90000, "parameters": {"apt": VIDEO_PT}, "rtcpFeedback": []}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_EXT_ID, "encrypt": false, "parameters": {}},
            {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {}},
            {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}}
        ],
        "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": ssrc + 1}}],
        "rtcp": {"cname": cname, "reducedSize": true}
    })
}

/// The same with three simulcast encodings (lowest first), each with its SSRC (RTX the next
/// one), its rid and its maximum bitrate; packets carry the rid extension too, so a server
/// may bind them by SSRC or by rid.
pub fn vp8_simulcast_rtp_parameters(ssrcs: [u32; 3], cname: &str) -> Value {
    let mut params = vp8_rtp_parameters(ssrcs[0], cname);
    params["headerExtensions"]
        .as_array_mut()
        .expect("an array")
        .push(
            json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID_EXT_ID,
                     "encrypt": false, "parameters": {}}),
        );
    params["encodings"] = ssrcs
        .iter()
        .zip(SIMULCAST_LAYERS)
        .map(|(&ssrc, (rid, kbps, _, _))| {
            json!({"ssrc": ssrc, "rid": rid, "rtx": {"ssrc": ssrc + 1},
                   "maxBitrate": kbps * 1000, "active": true})
        })
        .collect();
    params
}

/// RTP parameters as mediasoup-client (Chromium) sends them for Opus.
pub fn opus_rtp_parameters(ssrc: u32, cname: &str) -> Value {
    json!({
        "mid": "1",
        "codecs": [
            {"mimeType": "audio/opus", "payloadType": AUDIO_PT, "clockRate": 48000, "channels": 2,
             "parameters": {"minptime": 10, "useinbandfec": 1},
             "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_EXT_ID, "encrypt": false, "parameters": {}},
            {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {}}
        ],
        "encodings": [{"ssrc": ssrc, "dtx": false}],
        "rtcp": {"cname": cname, "reducedSize": true}
    })
}

/// One outgoing track of a publisher.
pub struct Track {
    pub kind: Kind,
    pub ssrc: u32,
    pub mid: u8,
    pub interval: Duration,
    pub payload_len: usize,
    /// Simulcast: the encoding's rid, sent in a header extension.
    rid: Option<&'static str>,
    keyframe_every: u64,
    /// Key frames announce this size.
    width: u16,
    height: u16,
    seq: u16,
    ts_base: u32,
    sent: u64,
    /// Payload octets sent (for sender reports).
    octets: u64,
    next_due: Instant,
}

impl Track {
    pub fn video(ssrc: u32, bitrate_kbps: u32, packet_size: usize) -> Self {
        let bits = packet_size as f64 * 8.0;
        let interval = Duration::from_secs_f64(bits / (bitrate_kbps.max(1) as f64 * 1000.0));
        // 12-byte header + 4-byte mid extension block + 4-byte extension header.
        let payload_len = packet_size.saturating_sub(20).max(VIDEO_STAMP_OFFSET + 8);
        Self::new(Kind::Video, ssrc, b'0', interval, payload_len)
    }

    /// Encoding `layer` of [`SIMULCAST_LAYERS`], with a key frame about every second.
    pub fn simulcast(ssrc: u32, layer: usize, packet_size: usize) -> Self {
        let (rid, kbps, width, height) = SIMULCAST_LAYERS[layer.min(SIMULCAST_LAYERS.len() - 1)];
        let mut track = Self::video(ssrc, kbps, packet_size);
        // The rid element (3 bytes) takes the extension block to two words.
        track.payload_len = packet_size.saturating_sub(24).max(VIDEO_STAMP_OFFSET + 8);
        track.rid = Some(rid);
        track.keyframe_every = (1.0 / track.interval.as_secs_f64()).round().max(1.0) as u64;
        (track.width, track.height) = (width, height);
        track
    }

    pub fn audio(ssrc: u32) -> Self {
        Self::new(Kind::Audio, ssrc, b'1', AUDIO_INTERVAL, AUDIO_PAYLOAD_LEN)
    }

    fn new(kind: Kind, ssrc: u32, mid: u8, interval: Duration, payload_len: usize) -> Self {
        Self {
            kind,
            ssrc,
            mid,
            interval,
            payload_len,
            rid: None,
            keyframe_every: KEYFRAME_EVERY,
            width: 640,
            height: 480,
            seq: rand::random::<u16>() & 0x3fff,
            ts_base: rand::random(),
            sent: 0,
            octets: 0,
            next_due: Instant::now(),
        }
    }

    /// Writes the next plain RTP packet into `out`.
    pub fn next_packet(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let pt = match self.kind {
            Kind::Video => VIDEO_PT,
            Kind::Audio => AUDIO_PT,
        };
        out.push(0x90); // V=2, X=1
        out.push(0x80 | pt); // every packet ends a "frame"
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp_at(now_ns()).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        match self.rid {
            None => out.extend_from_slice(&[0xBE, 0xDE, 0, 1, MID_EXT_ID << 4, self.mid, 0, 0]),
            Some(rid) => {
                out.extend_from_slice(&[0xBE, 0xDE, 0, 2, MID_EXT_ID << 4, self.mid]);
                out.push(RID_EXT_ID << 4 | (rid.len() as u8 - 1));
                out.extend_from_slice(rid.as_bytes());
                out.resize(24, 0);
            }
        }
        let payload_start = out.len();
        if self.kind == Kind::Video {
            let key = self.sent.is_multiple_of(self.keyframe_every);
            let picture_id = (self.sent & 0x7fff) as u16 | 0x8000;
            // VP8 payload descriptor: X=1, S=1, partition 0; I=1 with a 15-bit picture id.
            out.extend_from_slice(&[0x90, 0x80]);
            out.extend_from_slice(&picture_id.to_be_bytes());
            if key {
                // Frame tag with P=0, start code, width and height (14 bits, little-endian).
                out.extend_from_slice(&[0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a]);
                out.extend_from_slice(&self.width.to_le_bytes());
                out.extend_from_slice(&self.height.to_le_bytes());
            } else {
                out.extend_from_slice(&[0x51, 0x2a, 0x00, 0, 0, 0, 0, 0, 0, 0]);
            }
        }
        out.extend_from_slice(&now_ns().to_be_bytes());
        out.resize(payload_start + self.payload_len, 0xa5);
        self.seq = self.seq.wrapping_add(1);
        self.sent += 1;
        self.octets += self.payload_len as u64;
    }

    /// The RTP timestamp of the instant `ns` (on the `now_ns` scale).
    fn timestamp_at(&self, ns: u64) -> u32 {
        let us = ns / 1000;
        let ticks = match self.kind {
            Kind::Video => us * 90 / 1000,
            Kind::Audio => us * 48 / 1000,
        };
        self.ts_base.wrapping_add(ticks as u32)
    }

    /// Appends a sender report for the track as of now: what a browser sends about every
    /// second, and what mediasoup needs of each simulcast stream (NTP ↔ RTP time) before it
    /// switches a consumer between them.
    pub fn sender_report(&self, out: &mut Vec<u8>) {
        let rtp_time = self.timestamp_at(now_ns());
        rtcp::build_sender_report(
            self.ssrc,
            rtcp::ntp_now(),
            rtp_time,
            self.sent as u32,
            self.octets as u32,
            out,
        );
    }
}

pub struct Publisher {
    pub socket: Link,
    pub srtp: SrtpSession,
    pub tracks: Vec<Track>,
    /// Dropping it would close the server's transport.
    pub _dtls: DtlsSession,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SendTotals {
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// Paces every publisher's tracks until `phase` says stop. Counts only the measured phase.
pub fn send_loop(mut publishers: Vec<Publisher>, phase: &AtomicU8, aligned: bool) -> SendTotals {
    let mut totals = SendTotals::default();
    let mut plain = Vec::with_capacity(2048);
    let start = Instant::now();
    // Tracks start spread over their interval, as independent browsers are: all of them due
    // at the same instant (`aligned`) hit the server as one burst per interval, which no room
    // of real peers sends.
    let tracks: usize = publishers.iter().map(|p| p.tracks.len()).sum();
    let mut k = 0u32;
    for p in &mut publishers {
        for t in &mut p.tracks {
            let phase = if aligned {
                0.0
            } else {
                f64::from(k) / tracks.max(1) as f64
            };
            t.next_due = start + t.interval.mul_f64(phase);
            k += 1;
        }
    }
    let mut measuring = false;
    let mut sink = Vec::new();
    let mut next_drain = start;
    // The first reports once every track has sent a little.
    let mut next_report = start + Duration::from_millis(200);
    let mut report = Vec::with_capacity(512);
    for p in &mut publishers {
        if let Link::Tcp(link) = &mut p.socket {
            // One publisher's full socket must not hold up the others' pacing.
            let _ = link.stream.set_nonblocking(true);
            sink.resize(64 * 1024, 0);
        }
    }
    loop {
        let now_phase = phase.load(Ordering::Relaxed);
        if now_phase == PHASE_STOP {
            return totals;
        }
        if now_phase == PHASE_MEASURE && !measuring {
            measuring = true;
            totals = SendTotals::default();
        }
        let now = Instant::now();
        let mut earliest = now + Duration::from_millis(20);
        if !sink.is_empty() && next_drain <= now {
            next_drain = now + PUBLISHER_DRAIN;
            for p in &mut publishers {
                if let Link::Tcp(link) = &mut p.socket {
                    let _ = link.discard_input(&mut sink);
                }
            }
        }
        if next_report <= now {
            next_report = now + SENDER_REPORT_INTERVAL;
            for p in &mut publishers {
                report.clear();
                p.tracks.iter().for_each(|t| t.sender_report(&mut report));
                let sent = match p.srtp.encrypt_rtcp(&report) {
                    Ok(packet) => match &mut p.socket {
                        Link::Udp(socket) => socket.send(&packet).is_ok(),
                        Link::Tcp(link) => matches!(link.send(&packet), Ok(true)),
                    },
                    Err(_) => false,
                };
                if !sent {
                    totals.errors += 1;
                }
            }
        }
        for p in &mut publishers {
            if let Link::Tcp(link) = &mut p.socket {
                if link.writer.pending() > 0 && link.flush().is_err() {
                    totals.errors += 1;
                }
            }
            for t in &mut p.tracks {
                while t.next_due <= now {
                    t.next_packet(&mut plain);
                    // Behind by more than a second (a stalled machine): skip rather than burst.
                    t.next_due += t.interval;
                    if now.duration_since(t.next_due) > Duration::from_secs(1) {
                        t.next_due = now;
                    }
                    match &mut p.socket {
                        Link::Udp(socket) => match p.srtp.encrypt_rtp(&plain) {
                            Ok(packet) => match socket.send(&packet) {
                                Ok(n) => {
                                    totals.packets += 1;
                                    totals.bytes += n as u64;
                                }
                                Err(_) => totals.errors += 1,
                            },
                            Err(_) => totals.errors += 1,
                        },
                        // In place (`plain` has room for the tag) and framed into the
                        // link's queue: no allocation per packet.
                        Link::Tcp(link) => match p.srtp.protect_rtp_in_place(&mut plain) {
                            Ok(()) => match link.send(&plain) {
                                Ok(true) => {
                                    totals.packets += 1;
                                    totals.bytes += plain.len() as u64;
                                }
                                // Dropped whole (queue full) or a broken connection.
                                Ok(false) | Err(_) => totals.errors += 1,
                            },
                            Err(_) => totals.errors += 1,
                        },
                    }
                }
                earliest = earliest.min(t.next_due);
            }
        }
        if let Some(wait) = earliest.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::rtc::keyframe::{is_keyframe, VideoCodec};
    use sfu::rtc::rtp::{find_extension, parse_rtp};

    #[test]
    fn every_thirtieth_video_packet_is_a_key_frame_carrying_the_send_stamp() {
        let mut track = Track::video(42, 1000, 1200);
        let mut packet = Vec::new();
        let mut keys = 0;
        for i in 0..60 {
            let before = now_ns();
            track.next_packet(&mut packet);
            assert_eq!(packet.len(), 1200);
            let h = parse_rtp(&packet).expect("valid RTP");
            assert_eq!((h.ssrc, h.payload_type), (42, VIDEO_PT));
            let payload = h.payload(&packet);
            let key = is_keyframe(VideoCodec::from_mime("video/VP8"), payload);
            assert_eq!(key, i % 30 == 0, "packet {i}");
            keys += usize::from(key);
            let at = VIDEO_STAMP_OFFSET;
            let stamp = u64::from_be_bytes(payload[at..at + 8].try_into().unwrap());
            assert!(stamp >= before && stamp <= now_ns());
        }
        assert_eq!(keys, 2);
    }

    #[test]
    fn simulcast_tracks_carry_their_rid_and_a_key_frame_about_every_second() {
        let mut packet = Vec::new();
        for (layer, (rid, kbps, width, _)) in SIMULCAST_LAYERS.into_iter().enumerate() {
            let mut track = Track::simulcast(100 + layer as u32, layer, 1200);
            let per_second = (kbps as f64 * 1000.0 / 9600.0).round() as u64;
            let mut keys = Vec::new();
            for i in 0..2 * per_second {
                track.next_packet(&mut packet);
                assert_eq!(packet.len(), 1200);
                let h = parse_rtp(&packet).expect("valid RTP");
                assert_eq!(
                    find_extension(&packet, &h, RID_EXT_ID),
                    Some(rid.as_bytes())
                );
                assert_eq!(find_extension(&packet, &h, MID_EXT_ID), Some(&b"0"[..]));
                let payload = h.payload(&packet);
                if is_keyframe(VideoCodec::from_mime("video/VP8"), payload) {
                    assert_eq!(u16::from_le_bytes([payload[10], payload[11]]), width);
                    keys.push(i);
                }
                let at = VIDEO_STAMP_OFFSET;
                assert!(u64::from_be_bytes(payload[at..at + 8].try_into().unwrap()) > 0);
            }
            assert_eq!(keys, vec![0, per_second], "layer {layer}");
        }
        let params = vp8_simulcast_rtp_parameters([10, 12, 14], "c");
        let encodings = params["encodings"].as_array().unwrap();
        assert_eq!(encodings.len(), 3);
        assert_eq!(encodings[2]["rid"], "r2");
        assert_eq!(encodings[1]["rtx"]["ssrc"], 13);
    }
}
