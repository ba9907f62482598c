//! The FFmpeg command line of a pipeline: SDP input, grid + mix filter graph, H.264/AAC, HLS.

use std::ffi::OsString;

use super::{HlsConfig, PipelineStream, SourceKind};

/// File names inside a room directory (FFmpeg runs with the room directory as its cwd).
pub(crate) const SDP_FILE: &str = "room.sdp";
pub(crate) const PLAYLIST_FILE: &str = "index.m3u8";
pub(crate) const SEGMENT_PATTERN: &str = "seg_%05d.ts";
pub(crate) const LOG_FILE: &str = "ffmpeg.log";

/// How the video sources are tiled: `cols` x `cols` cells of `tile` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub cols: u32,
    pub tile: (u32, u32),
}

impl Grid {
    /// 1 source: one tile; 2–4: 2x2; 5–9: 3x3 with tiles two thirds the size.
    pub fn for_sources(n: usize, tile: (u32, u32)) -> Grid {
        let even = |v: u32| (v / 2 * 2).max(2);
        match n {
            0 | 1 => Grid {
                cols: 1,
                tile: (even(tile.0), even(tile.1)),
            },
            2..=4 => Grid {
                cols: 2,
                tile: (even(tile.0), even(tile.1)),
            },
            _ => Grid {
                cols: 3,
                tile: (even(tile.0 * 2 / 3), even(tile.1 * 2 / 3)),
            },
        }
    }

    pub fn canvas(&self) -> (u32, u32) {
        (self.cols * self.tile.0, self.cols * self.tile.1)
    }
}

/// The `-filter_complex` graph producing `[vout]` and `[aout]`. Input `0:v:i` / `0:a:i` are the
/// SDP's video / audio streams in order.
pub(crate) fn filter_graph(videos: usize, audios: usize, fps: u32, tile: (u32, u32)) -> String {
    let grid = Grid::for_sources(videos, tile);
    let (w, h) = grid.tile;
    let mut chains = Vec::new();
    match videos {
        0 => chains.push(format!(
            "color=c=black:s={w}x{h}:r={fps},format=yuv420p[vout]"
        )),
        _ => {
            for i in 0..videos {
                let label = if videos == 1 {
                    "vout".to_string()
                } else {
                    format!("v{i}")
                };
                chains.push(format!(
                    "[0:v:{i}]fps={fps},scale={w}:{h}:force_original_aspect_ratio=decrease:\
                     force_divisible_by=2,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:black,setsar=1,\
                     format=yuv420p[{label}]"
                ));
            }
        }
    }
    if videos > 1 {
        let inputs: String = (0..videos).map(|i| format!("[v{i}]")).collect();
        let layout: Vec<String> = (0..videos as u32)
            .map(|i| format!("{}_{}", (i % grid.cols) * w, (i / grid.cols) * h))
            .collect();
        let (cw, ch) = grid.canvas();
        chains.push(format!(
            "{inputs}xstack=inputs={videos}:layout={}:fill=black,pad={cw}:{ch}:0:0:black[vout]",
            layout.join("|")
        ));
    }
    let resample = "aresample=48000:async=1,aformat=sample_rates=48000:channel_layouts=stereo";
    match audios {
        0 => chains.push("anullsrc=r=48000:cl=stereo[aout]".to_string()),
        1 => chains.push(format!("[0:a:0]{resample}[aout]")),
        _ => {
            let inputs: String = (0..audios).map(|i| format!("[0:a:{i}]")).collect();
            chains.push(format!(
                "{inputs}amix=inputs={audios}:duration=longest:dropout_transition=0:normalize=0,\
                 {resample}[aout]"
            ));
        }
    }
    chains.join(";")
}

/// FFmpeg's arguments for `streams`; paths are relative to the room directory. `continuing`:
/// a playlist from an earlier run exists and is appended to (after a discontinuity).
pub fn ffmpeg_args(cfg: &HlsConfig, streams: &[PipelineStream], continuing: bool) -> Vec<OsString> {
    let videos = streams
        .iter()
        .filter(|s| s.source.kind == SourceKind::Video)
        .count();
    let audios = streams.len() - videos;
    let gop = (cfg.fps * cfg.segment_secs.max(1)).to_string();
    let flags = if continuing {
        "delete_segments+independent_segments+temp_file+append_list+discont_start+omit_endlist"
    } else {
        // discont_start on a fresh playlist would only add a pointless leading tag.
        "delete_segments+independent_segments+temp_file+append_list+omit_endlist"
    };
    let args: Vec<String> = vec![
        "-hide_banner".into(),
        "-nostdin".into(),
        "-nostats".into(),
        "-loglevel".into(),
        "warning".into(),
        // Input: start quickly, tolerate a little reordering.
        "-protocol_whitelist".into(),
        "file,rtp,udp".into(),
        "-fflags".into(),
        "+genpts".into(),
        // Probing ends as soon as every stream has decoded a frame; the limit only matters when a
        // key frame is late.
        "-analyzeduration".into(),
        "4000000".into(),
        "-probesize".into(),
        "5000000".into(),
        "-reorder_queue_size".into(),
        "64".into(),
        "-max_delay".into(),
        "300000".into(),
        "-buffer_size".into(),
        "1048576".into(),
        "-thread_queue_size".into(),
        "1024".into(),
        // Receive on loopback only (the default is 0.0.0.0).
        "-localaddr".into(),
        "127.0.0.1".into(),
        "-i".into(),
        SDP_FILE.into(),
        "-filter_complex".into(),
        filter_graph(videos, audios, cfg.fps, cfg.tile),
        "-map".into(),
        "[vout]".into(),
        "-map".into(),
        "[aout]".into(),
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "veryfast".into(),
        "-tune".into(),
        "zerolatency".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
        "-crf".into(),
        "23".into(),
        "-maxrate".into(),
        "3000k".into(),
        "-bufsize".into(),
        "3000k".into(),
        "-g".into(),
        gop.clone(),
        "-keyint_min".into(),
        gop,
        "-sc_threshold".into(),
        "0".into(),
        "-c:a".into(),
        "aac".into(),
        "-b:a".into(),
        "128k".into(),
        "-ar".into(),
        "48000".into(),
        "-ac".into(),
        "2".into(),
        "-f".into(),
        "hls".into(),
        "-hls_time".into(),
        cfg.segment_secs.max(1).to_string(),
        "-hls_list_size".into(),
        "6".into(),
        "-hls_flags".into(),
        flags.into(),
        "-hls_segment_filename".into(),
        SEGMENT_PATTERN.into(),
        PLAYLIST_FILE.into(),
    ];
    args.into_iter().map(OsString::from).collect()
}
