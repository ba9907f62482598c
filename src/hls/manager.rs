//! [`HlsManager`]: starts, supervises, rebuilds and stops one FFmpeg pipeline per watched room.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use super::command::{LOG_FILE, PLAYLIST_FILE};
use super::process::{create_room_dir, open_in_room, spawn_ffmpeg};
use super::sdp::{rtpmap, PipelineStream};
use super::{HlsAction, HlsConfig, MediaSource, SourceKind, TapTarget};

/// More tiles would be unreadable; more mixed voices are noise.
const MAX_VIDEO: usize = 9;
const MAX_AUDIO: usize = 8;
const FIRST_PAYLOAD_TYPE: u8 = 96;
const LOG_LIMIT: u64 = 1 << 20;
/// Without a sign that FFmpeg bound its ports, key frames are requested after this long anyway.
const PORTS_READY_FALLBACK: Duration = Duration::from_secs(2);
/// A run this long is healthy: its crash restarts from the shortest backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Owns every FFmpeg child and room directory; see the module docs.
pub struct HlsManager {
    cfg: HlsConfig,
    rooms: HashMap<String, Room>,
    /// Killed children not reaped yet; they hold their ports (and maybe their directory).
    dying: Vec<Dying>,
}

struct Room {
    dir: PathBuf,
    /// Every producer as the worker last reported it (with when it last sent, if it was
    /// sending then), and when that report came.
    reported: Vec<MediaSource>,
    reported_at: Instant,
    /// Usable sources in pipeline order (see [`usable_sources`]), without their send times.
    sources: Vec<MediaSource>,
    sources_changed_at: Instant,
    last_viewer: Option<Instant>,
    pipeline: Option<Pipeline>,
}

/// A started pipeline: its streams (and thus taps) plus the FFmpeg run, if one is up.
struct Pipeline {
    streams: Vec<PipelineStream>,
    run: Option<Run>,
    failures: u32,
    restart_at: Instant,
    no_sources_since: Option<Instant>,
}

struct Run {
    child: Child,
    started_at: Instant,
    ports_ready: bool,
    next_key_frame: Option<Instant>,
    playlist_stamp: Option<(SystemTime, u64)>,
    last_progress: Instant,
    killed: bool,
}

struct Dying {
    child: Child,
    ports: Vec<u16>,
    /// Deleted once the child is reaped, so FFmpeg cannot recreate files in it.
    delete_dir: Option<PathBuf>,
}

impl HlsManager {
    pub fn new(cfg: HlsConfig) -> Self {
        HlsManager {
            cfg,
            rooms: HashMap::new(),
            dying: Vec::new(),
        }
    }

    /// A viewer asked for `/hls/<room_id>/...`. Starts the pipeline (on the next tick) when the
    /// room has producers; a room never reported by [`room_sources`](Self::room_sources) is ignored,
    /// so requests for unknown rooms cost nothing.
    pub fn viewer_request(&mut self, room_id: &str, now: Instant) {
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.last_viewer = Some(now);
        }
    }

    /// The room's producers changed, or started or stopped sending; `sources` is the full list.
    /// Empty = room gone or silent. A room whose producers send nothing is remembered (so a
    /// viewer can wait for it) but starts no pipeline.
    pub fn room_sources(&mut self, room_id: &str, sources: Vec<MediaSource>, now: Instant) {
        if !self.rooms.contains_key(room_id) {
            if !has_candidates(&sources) || !safe_dir_name(room_id) {
                return;
            }
            let room = Room {
                dir: self.cfg.root.join(room_id),
                reported: Vec::new(),
                reported_at: now,
                sources: Vec::new(),
                sources_changed_at: now,
                last_viewer: None,
                pipeline: None,
            };
            self.rooms.insert(room_id.to_string(), room);
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.reported = sources;
        room.reported_at = now;
        self.refresh(room_id, now);
        let room = &self.rooms[room_id];
        if room.pipeline.is_none() && !has_candidates(&room.reported) {
            self.rooms.remove(room_id);
        }
    }

    /// Recomputes a room's usable sources: those that were sending, within the media window,
    /// when the worker last reported the room. The report is not aged against `now`: the
    /// worker reports again as soon as a producer stops sending, and a source that keeps
    /// sending must not drop out because nothing changed.
    fn refresh(&mut self, room_id: &str, now: Instant) {
        let window = self.cfg.media_window;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let reported_at = room.reported_at;
        let flowing = room
            .reported
            .iter()
            .filter(|s| {
                s.last_packet_at
                    .is_some_and(|t| reported_at.saturating_duration_since(t) < window)
            })
            .map(|s| MediaSource {
                // Send times change all the time; the pipeline only cares which sources send.
                last_packet_at: None,
                ..s.clone()
            })
            .collect();
        let usable = usable_sources(flowing);
        if room.sources != usable {
            room.sources = usable;
            room.sources_changed_at = now;
        }
        if let Some(pipeline) = &mut room.pipeline {
            if room.sources.is_empty() {
                pipeline.no_sources_since.get_or_insert(now);
            } else {
                pipeline.no_sources_since = None;
            }
        }
    }

    /// Supervises the pipelines; returns what the signaling thread must apply.
    pub fn tick(&mut self, now: Instant) -> Vec<HlsAction> {
        let mut actions = Vec::new();
        self.reap_dying();
        let ids: Vec<String> = self.rooms.keys().cloned().collect();
        for id in ids {
            self.refresh(&id, now);
            if self.rooms[&id].pipeline.is_some() {
                self.supervise(&id, now, &mut actions);
            } else {
                self.maybe_start(&id, now, &mut actions);
            }
            let room = &self.rooms[&id];
            if room.pipeline.is_none() && !has_candidates(&room.reported) {
                self.rooms.remove(&id);
            }
        }
        actions
    }

    /// The playlist exists and FFmpeg is running.
    pub fn is_live(&self, room_id: &str) -> bool {
        let Some(room) = self.rooms.get(room_id) else {
            return false;
        };
        let running = room
            .pipeline
            .as_ref()
            .and_then(|p| p.run.as_ref())
            .is_some_and(|run| !run.killed);
        running && room.dir.join(PLAYLIST_FILE).is_file()
    }

    /// The room's directory (whether or not it exists yet).
    pub fn room_dir(&self, room_id: &str) -> PathBuf {
        self.cfg.root.join(room_id)
    }

    /// The process id of the room's FFmpeg, if one runs.
    pub fn ffmpeg_pid(&self, room_id: &str) -> Option<u32> {
        let run = self.rooms.get(room_id)?.pipeline.as_ref()?.run.as_ref()?;
        Some(run.child.id())
    }

    /// Number of rooms with a started pipeline (running or waiting to restart).
    pub fn pipeline_count(&self) -> usize {
        self.rooms.values().filter(|r| r.pipeline.is_some()).count()
    }

    /// Kills and reaps every FFmpeg child and deletes the room directories. Blocks briefly (the
    /// children were sent SIGKILL); meant for server shutdown. Also run on drop.
    pub fn shutdown(&mut self) {
        for (_, room) in self.rooms.drain() {
            if let Some(mut run) = room.pipeline.and_then(|p| p.run) {
                let _ = run.child.kill();
                let _ = run.child.wait();
            }
            remove_dir(&room.dir);
        }
        for mut dying in self.dying.drain(..) {
            let _ = dying.child.kill();
            let _ = dying.child.wait();
            if let Some(dir) = dying.delete_dir {
                remove_dir(&dir);
            }
        }
    }

    fn reap_dying(&mut self) {
        self.dying.retain_mut(|dying| match dying.child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                if let Some(dir) = &dying.delete_dir {
                    remove_dir(dir);
                }
                false
            }
        });
    }

    fn wants_pipeline(&self, room: &Room, now: Instant) -> bool {
        room.last_viewer
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.idle_timeout)
    }

    fn maybe_start(&mut self, id: &str, now: Instant, actions: &mut Vec<HlsAction>) {
        let room = &self.rooms[id];
        if room.sources.is_empty() || !self.wants_pipeline(room, now) {
            return;
        }
        if self.pipeline_count() >= self.cfg.max_rooms {
            tracing::debug!(room = id, "HLS pipeline limit reached; room waits");
            return;
        }
        // The directory of an earlier pipeline is deleted once its FFmpeg is reaped: wait.
        if self
            .dying
            .iter()
            .any(|d| d.delete_dir.as_deref() == Some(room.dir.as_path()))
        {
            return;
        }
        let Some(streams) = self.new_streams(&room.sources) else {
            tracing::warn!(room = id, "no free UDP ports for HLS");
            return;
        };
        let dir = room.dir.clone();
        remove_dir(&dir); // a stale playlist from an earlier server run must not be appended to
        let created = fs::create_dir_all(&self.cfg.root)
            .and_then(|()| create_room_dir(&dir, self.cfg.run_as));
        if let Err(e) = created {
            tracing::warn!(room = id, dir = %dir.display(), error = %e, "HLS directory not created");
            return;
        }
        tracing::info!(room = id, streams = streams.len(), "HLS pipeline starting");
        actions.push(HlsAction::SetTaps {
            room_id: id.to_string(),
            taps: taps_of(&streams),
        });
        let room = self.rooms.get_mut(id).expect("room exists");
        room.pipeline = Some(Pipeline {
            streams,
            run: None,
            failures: 0,
            restart_at: now,
            no_sources_since: None,
        });
        self.spawn(id, now);
    }

    fn supervise(&mut self, id: &str, now: Instant, actions: &mut Vec<HlsAction>) {
        let cfg = self.cfg.clone();
        let room = self.rooms.get_mut(id).expect("room exists");
        let idle = room
            .last_viewer
            .is_none_or(|t| now.saturating_duration_since(t) >= cfg.idle_timeout);
        let pipeline = room.pipeline.as_mut().expect("pipeline exists");
        let sourceless = pipeline
            .no_sources_since
            .is_some_and(|t| now.saturating_duration_since(t) >= cfg.source_grace);
        if idle || sourceless {
            tracing::info!(room = id, idle, sourceless, "HLS pipeline stopping");
            self.stop(id, actions);
            return;
        }

        // Watch the running FFmpeg.
        let dir = room.dir.clone();
        if let Some(run) = &mut pipeline.run {
            match run.child.try_wait() {
                Ok(None) => {
                    watch_run(run, &dir, &pipeline.streams, &cfg, now, id, actions);
                }
                exited => {
                    let status = exited.ok().flatten();
                    let ran = now.saturating_duration_since(run.started_at);
                    pipeline.failures = if ran >= HEALTHY_RUN {
                        1
                    } else {
                        pipeline.failures + 1
                    };
                    let delay = backoff(pipeline.failures);
                    tracing::warn!(
                        room = id, ?status, killed_for_stall = run.killed, restart_in = ?delay,
                        log_tail = %log_tail(&dir), "HLS FFmpeg exited"
                    );
                    pipeline.restart_at = now + delay;
                    pipeline.run = None;
                }
            }
        }

        // Apply a source change once it has settled.
        let settled =
            now.saturating_duration_since(room.sources_changed_at) >= cfg.rebuild_debounce;
        let current: Vec<&MediaSource> = pipeline.streams.iter().map(|s| &s.source).collect();
        let changed = !room.sources.is_empty() && room.sources.iter().ne(current.iter().copied());
        if changed && settled {
            let sources = room.sources.clone();
            let Some(streams) = self.new_streams(&sources) else {
                tracing::warn!(room = id, "no free UDP ports for the HLS rebuild");
                return;
            };
            tracing::info!(
                room = id,
                streams = streams.len(),
                "HLS pipeline rebuilding"
            );
            actions.push(HlsAction::SetTaps {
                room_id: id.to_string(),
                taps: taps_of(&streams),
            });
            let room = self.rooms.get_mut(id).expect("room exists");
            let pipeline = room.pipeline.as_mut().expect("pipeline exists");
            let old_ports: Vec<u16> = pipeline.streams.iter().map(|s| s.port).collect();
            pipeline.streams = streams;
            pipeline.failures = 0;
            pipeline.restart_at = now;
            if let Some(mut run) = pipeline.run.take() {
                let _ = run.child.kill();
                self.dying.push(Dying {
                    child: run.child,
                    ports: old_ports,
                    delete_dir: None,
                });
            }
        }

        let pipeline = self.rooms[id].pipeline.as_ref().expect("pipeline exists");
        if pipeline.run.is_none() && now >= pipeline.restart_at {
            self.spawn(id, now);
        }
    }

    /// Writes the SDP and starts FFmpeg for the room's current streams.
    fn spawn(&mut self, id: &str, now: Instant) {
        let cfg = &self.cfg;
        let room = self.rooms.get_mut(id).expect("room exists");
        let pipeline = room.pipeline.as_mut().expect("pipeline exists");
        let continuing = room.dir.join(PLAYLIST_FILE).is_file();
        let started = spawn_ffmpeg(cfg, id, &room.dir, &pipeline.streams, continuing);
        match started {
            Ok(child) => {
                tracing::debug!(
                    room = id,
                    pid = child.id(),
                    continuing,
                    "HLS FFmpeg started"
                );
                pipeline.run = Some(Run {
                    child,
                    started_at: now,
                    ports_ready: false,
                    next_key_frame: None,
                    playlist_stamp: None,
                    last_progress: now,
                    killed: false,
                });
            }
            Err(e) => {
                pipeline.failures += 1;
                let delay = backoff(pipeline.failures);
                tracing::warn!(room = id, error = %e, restart_in = ?delay, "HLS FFmpeg not started");
                pipeline.restart_at = now + delay;
            }
        }
    }

    /// Stops tapping, kills FFmpeg and deletes the room directory (after the reap).
    fn stop(&mut self, id: &str, actions: &mut Vec<HlsAction>) {
        let room = self.rooms.get_mut(id).expect("room exists");
        let Some(pipeline) = room.pipeline.take() else {
            return;
        };
        actions.push(HlsAction::SetTaps {
            room_id: id.to_string(),
            taps: Vec::new(),
        });
        match pipeline.run {
            Some(mut run) => {
                let _ = run.child.kill();
                let ports = pipeline.streams.iter().map(|s| s.port).collect();
                self.dying.push(Dying {
                    child: run.child,
                    ports,
                    delete_dir: Some(room.dir.clone()),
                });
            }
            None => remove_dir(&room.dir),
        }
    }

    /// Streams for `sources` on fresh ports, with fresh SSRCs.
    fn new_streams(&self, sources: &[MediaSource]) -> Option<Vec<PipelineStream>> {
        let mut taken = HashSet::new();
        let pipelines = self.rooms.values().filter_map(|r| r.pipeline.as_ref());
        let in_use = pipelines
            .flat_map(|p| p.streams.iter().map(|s| s.port))
            .chain(self.dying.iter().flat_map(|d| d.ports.iter().copied()));
        for port in in_use {
            taken.insert(port);
            taken.insert(port.wrapping_add(1));
        }
        let ports = super::ports::allocate(self.cfg.port_base, sources.len(), &taken)?;
        let streams = sources
            .iter()
            .zip(ports)
            .enumerate()
            .map(|(i, (source, port))| PipelineStream {
                source: source.clone(),
                port,
                payload_type: FIRST_PAYLOAD_TYPE + i as u8,
                ssrc: rand::random::<u32>() | 1,
            })
            .collect();
        Some(streams)
    }
}

impl Drop for HlsManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Per-tick checks of a live FFmpeg: port binding, key frames, progress, log size.
fn watch_run(
    run: &mut Run,
    dir: &Path,
    streams: &[PipelineStream],
    cfg: &HlsConfig,
    now: Instant,
    id: &str,
    actions: &mut Vec<HlsAction>,
) {
    if run.killed {
        return;
    }
    if !run.ports_ready {
        let waited = now.saturating_duration_since(run.started_at);
        run.ports_ready = waited >= PORTS_READY_FALLBACK || ports_bound(streams);
        if run.ports_ready {
            run.next_key_frame = Some(now);
        }
    }
    if let Some(at) = run.next_key_frame.filter(|at| now >= *at) {
        let has_video = streams.iter().any(|s| s.source.kind == SourceKind::Video);
        if has_video {
            actions.push(HlsAction::RequestKeyFrames {
                room_id: id.to_string(),
            });
        }
        let period = Duration::from_secs(u64::from(cfg.segment_secs.max(1)));
        run.next_key_frame = Some((at + period).max(now));
    }
    let stamp = fs::metadata(dir.join(PLAYLIST_FILE))
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    if stamp.is_some() && stamp != run.playlist_stamp {
        run.playlist_stamp = stamp;
        run.last_progress = now;
    }
    if now.saturating_duration_since(run.last_progress) >= cfg.stall_timeout {
        tracing::warn!(room = id, "HLS playlist stalled; killing FFmpeg");
        let _ = run.child.kill();
        run.killed = true;
    }
    let log = dir.join(LOG_FILE);
    if fs::metadata(&log).is_ok_and(|m| m.len() > LOG_LIMIT) {
        // FFmpeg's stderr is in append mode: it continues at the new end.
        let _ =
            open_in_room(dir, LOG_FILE, OpenOptions::new().write(true)).and_then(|f| f.set_len(0));
    }
}

/// Whether any source could be used once it sends (not paused, a supported codec).
fn has_candidates(sources: &[MediaSource]) -> bool {
    sources.iter().any(|s| !s.paused && rtpmap(s).is_some())
}

/// Non-paused sources with a supported codec, videos first, each kind by peer then producer.
fn usable_sources(mut sources: Vec<MediaSource>) -> Vec<MediaSource> {
    sources.retain(|s| !s.paused && rtpmap(s).is_some());
    sources.sort_by(|a, b| {
        let by_peer = (&a.peer_id, &a.producer_id).cmp(&(&b.peer_id, &b.producer_id));
        b.kind.cmp(&a.kind).then(by_peer)
    });
    let mut videos = 0;
    let mut audios = 0;
    sources.retain(|s| {
        let count = if s.kind == SourceKind::Video {
            &mut videos
        } else {
            &mut audios
        };
        *count += 1;
        *count
            <= if s.kind == SourceKind::Video {
                MAX_VIDEO
            } else {
                MAX_AUDIO
            }
    });
    sources
}

fn taps_of(streams: &[PipelineStream]) -> Vec<TapTarget> {
    streams
        .iter()
        .map(|s| TapTarget {
            producer_id: s.source.producer_id.clone(),
            dest: SocketAddr::from((Ipv4Addr::LOCALHOST, s.port)),
            payload_type: s.payload_type,
            ssrc: s.ssrc,
        })
        .collect()
}

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_MIN * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

/// Room ids are checked by the caller; this only guards the path join.
fn safe_dir_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

fn remove_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "HLS directory not deleted");
        }
    }
}

/// Whether every stream's port is bound on 127.0.0.1 (Linux `/proc/net/udp`).
fn ports_bound(streams: &[PipelineStream]) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    let bound: HashSet<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|local| u16::from_str_radix(local.rsplit(':').next()?, 16).ok())
        .collect();
    streams.iter().all(|s| bound.contains(&s.port))
}

/// The end of FFmpeg's log, for the crash report.
fn log_tail(dir: &Path) -> String {
    let mut tail = String::new();
    // Read-only, but never through a symlink FFmpeg could have planted (it would leak the
    // target's tail into the server log).
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(LOG_FILE));
    if let Ok(mut file) = opened {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(1024)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        tail = String::from_utf8_lossy(&bytes).into_owned();
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_ten() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(8));
        assert_eq!(backoff(6), Duration::from_secs(10));
        assert_eq!(backoff(60), Duration::from_secs(10));
    }
}
