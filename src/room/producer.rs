//! A producer: one media track a peer sends, with the mapping `ortc` derived from its
//! parameters. Owns the list of its consumers (closing it closes them).

use super::ortc::{MediaKind, ProducerMapping};
use super::{CKey, TKey};
use crate::rtc::keyframe::VideoCodec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Minimum spacing of key-frame requests sent to one producer.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(1000);

pub struct Producer {
    pub id: String,
    pub kind: MediaKind,
    pub transport: TKey,
    pub room: Arc<str>,
    pub peer: Arc<str>,
    pub mapping: ProducerMapping,
    pub paused: bool,
    pub consumers: Vec<CKey>,
    /// The SSRC of each encoding, index = encoding index (learned from the rid for simulcast).
    pub ssrcs: Vec<Option<u32>>,
    /// The encoding forwarded to consumers (the highest for now).
    pub active_encoding: usize,
    pub video_codec: VideoCodec,
    pub clock_rate: u32,
    pub last_keyframe_request: Option<Instant>,
    pub keyframe_request_pending: bool,
    /// The producer's CNAME, reused for its consumers' RTCP.
    pub cname: String,
}

impl Producer {
    /// Whether a key-frame request may be sent now; otherwise it is remembered for later.
    pub fn take_keyframe_slot(&mut self, now: Instant) -> bool {
        if self.kind != MediaKind::Video {
            return false;
        }
        let ready = self
            .last_keyframe_request
            .is_none_or(|t| now.duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if ready {
            self.last_keyframe_request = Some(now);
            self.keyframe_request_pending = false;
        } else {
            self.keyframe_request_pending = true;
        }
        ready
    }

    pub fn media_ssrc(&self) -> Option<u32> {
        self.ssrcs.get(self.active_encoding).copied().flatten()
    }
}
