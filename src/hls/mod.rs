//! Server-side HLS: one FFmpeg pipeline per watched room (see docs/hls.md).
//!
//! The media workers forward each room producer's RTP, unencrypted, to loopback UDP ports that
//! [`HlsManager`] picks; FFmpeg reads them through an SDP file, composes a grid of the video
//! sources, mixes the audio sources, encodes H.264 + AAC and writes an HLS playlist into a
//! per-room directory. The manager lives inside the signaling thread: it never blocks, it only
//! spawns processes, polls them with `try_wait()` and does small file-system work in `tick()`.

mod command;
mod manager;
mod playlist;
mod ports;
mod process;
pub mod root;
mod sdp;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use command::{ffmpeg_args, Grid};
pub use manager::HlsManager;
pub use playlist::PlaylistInfo;
pub use sdp::{sdp_text, PipelineStream};

/// Settings of the HLS pipelines.
#[derive(Clone, Debug)]
pub struct HlsConfig {
    /// Per-room directories `<root>/<room_id>/` are created (and deleted) under it.
    pub root: PathBuf,
    /// The FFmpeg binary, `"ffmpeg"` to look it up in `PATH`.
    pub ffmpeg: PathBuf,
    /// Target segment length; also the key frame interval of the encoder and of the requests.
    pub segment_secs: u32,
    /// A pipeline stops after no viewer request for this long.
    pub idle_timeout: Duration,
    /// First loopback UDP port for RTP into FFmpeg; each stream takes an even port and the next
    /// (RTCP) one.
    pub port_base: u16,
    /// Maximum number of concurrent pipelines.
    pub max_rooms: usize,
    /// Size of one video tile for 1–4 sources (3x3 grids use two thirds of it).
    pub tile: (u32, u32),
    /// Output frame rate.
    pub fps: u32,
    /// A pipeline whose room has had no usable source for this long stops.
    pub source_grace: Duration,
    /// Source changes are applied once they have been quiet for this long.
    pub rebuild_debounce: Duration,
    /// A running FFmpeg whose playlist has not changed for this long is restarted.
    pub stall_timeout: Duration,
    /// A producer counts as a source only while its last packet is at most this old: a room
    /// whose producers send nothing starts no FFmpeg (and holds no pipeline slot).
    pub media_window: Duration,
    /// `(uid, gid)` FFmpeg runs as (see `root::ffmpeg_identity`); `None`: the server's own.
    pub run_as: Option<(u32, u32)>,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            root: PathBuf::from("hls"),
            ffmpeg: PathBuf::from("ffmpeg"),
            segment_secs: 1,
            idle_timeout: Duration::from_secs(30),
            port_base: 48000,
            max_rooms: 4,
            tile: (640, 360),
            fps: 30,
            source_grace: Duration::from_secs(10),
            rebuild_debounce: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(15),
            media_window: Duration::from_secs(3),
            run_as: None,
        }
    }
}

// The worker's description of a room's sources, and where it sends their RTP: part of the
// room's typed contract (src/room/api.rs).
pub use crate::room::api::{MediaSource, SourceKind, TapTarget};

/// What the signaling thread must apply for the manager.
#[derive(Clone, Debug, PartialEq)]
pub enum HlsAction {
    /// Replace the taps of a room (empty = stop tapping).
    SetTaps {
        room_id: String,
        taps: Vec<TapTarget>,
    },
    /// Ask the room's video producers for key frames (FFmpeg sends no PLI).
    RequestKeyFrames { room_id: String },
}
