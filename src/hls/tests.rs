//! HLS pipeline tests against the real FFmpeg (skipped with a note when it is absent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;

/// End-to-end tests share two cores: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn ffmpeg_available() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: ffmpeg not found; HLS end-to-end test skipped");
    }
    ok
}

fn source(kind: SourceKind, producer: &str, peer: &str, mime: &str) -> MediaSource {
    MediaSource {
        producer_id: producer.into(),
        peer_id: peer.into(),
        kind,
        mime_type: mime.into(),
        clock_rate: if kind == SourceKind::Audio {
            48000
        } else {
            90000
        },
        channels: (kind == SourceKind::Audio).then_some(2),
        fmtp: Vec::new(),
        paused: false,
        last_packet_at: Some(Instant::now()),
    }
}

fn vp8(producer: &str, peer: &str) -> MediaSource {
    source(SourceKind::Video, producer, peer, "video/VP8")
}

fn opus(producer: &str, peer: &str) -> MediaSource {
    source(SourceKind::Audio, producer, peer, "audio/opus")
}

fn test_config(name: &str, port_base: u16) -> HlsConfig {
    let root = std::env::temp_dir().join(format!("sfu-hls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    HlsConfig {
        root,
        port_base,
        tile: (320, 180),
        fps: 15,
        idle_timeout: Duration::from_secs(30),
        // The sources here are reported once: they count as sending for the whole test (the
        // media window has its own tests).
        media_window: Duration::from_secs(3600),
        ..HlsConfig::default()
    }
}

/// Deletes a test's root directory (declared before the manager, so dropped after it).
struct RootGuard(PathBuf);

impl Drop for RootGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Plays the media workers: one FFmpeg per tap sending a test pattern or a sine as RTP.
#[derive(Default)]
struct Senders {
    kinds: HashMap<String, SourceKind>,
    running: HashMap<String, (TapTarget, Child)>,
    taps_set: usize,
    key_frame_requests: usize,
    last_taps: Vec<TapTarget>,
}

impl Senders {
    fn new(sources: &[MediaSource]) -> Senders {
        let mut senders = Senders::default();
        senders.add_sources(sources);
        senders
    }

    fn add_sources(&mut self, sources: &[MediaSource]) {
        for s in sources {
            self.kinds.insert(s.producer_id.clone(), s.kind);
        }
    }

    fn apply(&mut self, actions: Vec<HlsAction>) {
        for action in actions {
            match action {
                HlsAction::SetTaps { taps, .. } => {
                    self.taps_set += 1;
                    self.last_taps = taps.clone();
                    let keep: Vec<String> = self
                        .running
                        .iter()
                        .filter(|(_, (t, _))| taps.contains(t))
                        .map(|(id, _)| id.clone())
                        .collect();
                    self.running.retain(|id, (_, child)| {
                        let kept = keep.contains(id);
                        if !kept {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        kept
                    });
                    for tap in taps.into_iter().filter(|t| !keep.contains(&t.producer_id)) {
                        let child = spawn_sender(self.kinds[&tap.producer_id], &tap);
                        self.running.insert(tap.producer_id.clone(), (tap, child));
                    }
                }
                HlsAction::RequestKeyFrames { .. } => self.key_frame_requests += 1,
            }
        }
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for (_, (_, mut child)) in self.running.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_sender(kind: SourceKind, tap: &TapTarget) -> Child {
    let mut command = Command::new("ffmpeg");
    command.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-re",
        "-f",
        "lavfi",
        "-i",
    ]);
    match kind {
        SourceKind::Video => command.args([
            "testsrc=size=320x240:rate=15",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "300k",
            "-g",
            "15",
        ]),
        SourceKind::Audio => command.args([
            "sine=frequency=440:sample_rate=48000",
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
        ]),
    };
    command
        // FFmpeg's -ssrc is a signed int: pass the same 32 bits.
        .args([
            "-f",
            "rtp",
            "-payload_type",
            &tap.payload_type.to_string(),
            "-ssrc",
            &(tap.ssrc as i32).to_string(),
        ])
        .arg(format!("rtp://{}", tap.dest))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sender ffmpeg starts")
}

/// Ticks every 100 ms (as the signaling thread does), keeping a viewer when `viewing`, until
/// `done` holds or `limit` passes.
fn drive(
    manager: &mut HlsManager,
    senders: &mut Senders,
    room: &str,
    viewing: bool,
    limit: Duration,
    mut done: impl FnMut(&HlsManager, &Senders) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let now = Instant::now();
        if viewing {
            manager.viewer_request(room, now);
        }
        let actions = manager.tick(now);
        senders.apply(actions);
        if done(manager, senders) {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

fn playlist(dir: &Path) -> PlaylistInfo {
    PlaylistInfo::parse(&std::fs::read_to_string(dir.join("index.m3u8")).unwrap_or_default())
}

/// `codec_type:codec_name[:width]` per stream, as ffprobe reports it.
fn probe(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches(',').to_string())
        .collect()
}

/// The playlist and FFmpeg's log, for failure messages.
fn report(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!(
        "playlist:\n{}\nlog:\n{}",
        read("index.m3u8"),
        read("ffmpeg.log")
    )
}

/// A segment newer than `last_before` starts after a discontinuity tag.
fn new_run_marked(after: &PlaylistInfo, last_before: u64) -> bool {
    after
        .discontinuous_segments
        .iter()
        .any(|s| playlist::segment_number(s).is_some_and(|n| n > last_before))
}

fn live_with_segments(dir: PathBuf, n: usize) -> impl FnMut(&HlsManager, &Senders) -> bool {
    move |m, _| m.is_live("r1") && playlist(&dir).segments.len() >= n
}

#[test]
fn sdp_for_vp8_opus_and_h264_has_one_media_line_per_source_on_loopback() {
    let mut h264 = source(SourceKind::Video, "p3", "b", "video/H264");
    h264.fmtp = vec![
        ("packetization-mode".into(), "1".into()),
        ("profile-level-id".into(), "42e01f".into()),
        ("evil".into(), "x\r\nm=video 1 RTP/AVP 1".into()),
    ];
    let streams = [
        PipelineStream {
            source: vp8("p1", "a"),
            port: 48000,
            payload_type: 96,
            ssrc: 11,
        },
        PipelineStream {
            source: opus("p2", "a"),
            port: 48002,
            payload_type: 97,
            ssrc: 22,
        },
        PipelineStream {
            source: h264,
            port: 48004,
            payload_type: 98,
            ssrc: 33,
        },
    ];
    let sdp = sdp_text("room-1", &streams);
    let lines: Vec<&str> = sdp.split("\r\n").collect();
    for expected in [
        "v=0",
        "c=IN IP4 127.0.0.1",
        "s=hls-room-1",
        "m=video 48000 RTP/AVP 96",
        "a=rtpmap:96 VP8/90000",
        "m=audio 48002 RTP/AVP 97",
        "a=rtpmap:97 opus/48000/2",
        "m=video 48004 RTP/AVP 98",
        "a=rtpmap:98 H264/90000",
        "a=fmtp:98 packetization-mode=1;profile-level-id=42e01f",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{sdp}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("m=")).count(), 3);
    assert!(!sdp.contains("evil"));
}

#[test]
fn the_filter_graph_tiles_videos_in_a_grid_and_fills_missing_kinds() {
    let one = command::filter_graph(1, 0, 30, (640, 360));
    assert!(
        one.contains("[0:v:0]fps=30,scale=640:360") && one.contains("anullsrc"),
        "{one}"
    );
    let three = command::filter_graph(3, 2, 30, (640, 360));
    assert!(
        three.contains("xstack=inputs=3:layout=0_0|640_0|0_360"),
        "{three}"
    );
    assert!(
        three.contains("pad=1280:720") && three.contains("amix=inputs=2"),
        "{three}"
    );
    let none = command::filter_graph(0, 1, 30, (640, 360));
    assert!(
        none.contains("color=c=black:s=640x360") && none.contains("[0:a:0]"),
        "{none}"
    );
    assert_eq!(Grid::for_sources(9, (640, 360)).canvas(), (1278, 720));
}

#[test]
fn one_video_source_becomes_a_live_playlist_of_h264_and_aac() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ffmpeg_available() {
        return;
    }
    let cfg = test_config("one", 46000);
    let _root = RootGuard(cfg.root.clone());
    let dir = cfg.root.join("r1");
    let mut manager = HlsManager::new(cfg);
    let sources = vec![vp8("cam", "alice")];
    let mut senders = Senders::new(&sources);
    manager.viewer_request("r1", Instant::now()); // unknown room: ignored
    manager.room_sources("r1", sources, Instant::now());
    let live = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(20),
        live_with_segments(dir.clone(), 2),
    );
    assert!(live, "no live playlist; {}", report(&dir));
    assert_eq!(senders.taps_set, 1);
    assert!(senders.key_frame_requests >= 1);
    let tap = &senders.last_taps[0];
    assert!(
        tap.dest.ip().is_loopback()
            && tap.dest.port() >= 46000
            && tap.dest.port().is_multiple_of(2)
    );
    let streams = probe(&dir.join("index.m3u8"));
    assert!(
        streams.iter().any(|s| s.starts_with("h264,video,320")),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.starts_with("aac,audio")),
        "{streams:?}"
    );
    let names_ok = std::fs::read_dir(&dir).unwrap().flatten().all(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        !name.ends_with(".ts")
            || name
                .strip_suffix(".ts")
                .is_some_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    });
    assert!(names_ok);
    manager.shutdown();
    assert!(!dir.exists());
}

#[test]
fn a_killed_ffmpeg_is_restarted_and_the_media_sequence_never_goes_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ffmpeg_available() {
        return;
    }
    let cfg = test_config("crash", 46100);
    let _root = RootGuard(cfg.root.clone());
    let dir = cfg.root.join("r1");
    let mut manager = HlsManager::new(cfg);
    let sources = vec![vp8("cam", "alice"), opus("mic", "alice")];
    let mut senders = Senders::new(&sources);
    manager.room_sources("r1", sources, Instant::now());
    manager.viewer_request("r1", Instant::now());
    let live = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(20),
        live_with_segments(dir.clone(), 2),
    );
    assert!(live, "not live; {}", report(&dir));
    let before = playlist(&dir);
    let old_pid = manager.ffmpeg_pid("r1").unwrap();
    unsafe { libc::kill(old_pid as i32, libc::SIGKILL) };
    let before_last = before.last_segment_number().unwrap();
    let restarted = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(20),
        |m, _| {
            m.ffmpeg_pid("r1").is_some_and(|pid| pid != old_pid)
                && playlist(&dir)
                    .last_segment_number()
                    .is_some_and(|n| n >= before_last + 2)
        },
    );
    assert!(restarted, "no restart; {}", report(&dir));
    let after = playlist(&dir);
    assert!(
        after.media_sequence >= before.media_sequence,
        "{before:?} -> {after:?}"
    );
    assert!(new_run_marked(&after, before_last), "{after:?}");
    assert_eq!(senders.taps_set, 1, "a restart keeps the taps");
    let streams = probe(&dir.join(after.segments.last().unwrap()));
    assert!(
        streams.iter().any(|s| s.starts_with("aac,audio")),
        "{streams:?}"
    );
}

#[test]
fn adding_a_second_video_rebuilds_with_a_discontinuity_and_no_sequence_regression() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ffmpeg_available() {
        return;
    }
    let cfg = test_config("rebuild", 46200);
    let _root = RootGuard(cfg.root.clone());
    let dir = cfg.root.join("r1");
    let mut manager = HlsManager::new(cfg);
    let mut senders = Senders::new(&[vp8("cam-a", "alice"), vp8("cam-b", "bob")]);
    manager.room_sources("r1", vec![vp8("cam-a", "alice")], Instant::now());
    manager.viewer_request("r1", Instant::now());
    let live = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(20),
        live_with_segments(dir.clone(), 2),
    );
    assert!(live, "not live; {}", report(&dir));
    let before = playlist(&dir);
    let before_last = before.last_segment_number().unwrap();
    manager.room_sources(
        "r1",
        vec![vp8("cam-a", "alice"), vp8("cam-b", "bob")],
        Instant::now(),
    );
    let rebuilt = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(25),
        |m, s| {
            s.last_taps.len() == 2
                && m.is_live("r1")
                && playlist(&dir)
                    .last_segment_number()
                    .is_some_and(|n| n >= before_last + 2)
        },
    );
    assert!(rebuilt, "no rebuild; {}", report(&dir));
    assert_eq!(senders.taps_set, 2);
    let after = playlist(&dir);
    assert!(
        after.media_sequence >= before.media_sequence,
        "{before:?} -> {after:?}"
    );
    assert!(new_run_marked(&after, before_last), "{after:?}");
    // The newest segment shows the 2x2 grid of 320x180 tiles.
    let streams = probe(&dir.join(after.segments.last().unwrap()));
    assert!(
        streams.iter().any(|s| s.starts_with("h264,video,640")),
        "{streams:?}"
    );
}

#[test]
fn an_idle_room_stops_its_pipeline_deletes_its_dir_and_leaves_no_child() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ffmpeg_available() {
        return;
    }
    let mut cfg = test_config("idle", 46300);
    let _root = RootGuard(cfg.root.clone());
    cfg.idle_timeout = Duration::from_secs(3);
    let dir = cfg.root.join("r1");
    let mut manager = HlsManager::new(cfg);
    let sources = vec![vp8("cam", "alice")];
    let mut senders = Senders::new(&sources);
    manager.room_sources("r1", sources, Instant::now());
    manager.viewer_request("r1", Instant::now());
    let live = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(20),
        |m, _| m.is_live("r1"),
    );
    assert!(live, "not live; {}", report(&dir));
    let pid = manager.ffmpeg_pid("r1").unwrap() as i32;
    let stopped = drive(
        &mut manager,
        &mut senders,
        "r1",
        false,
        Duration::from_secs(8),
        |m, s| m.pipeline_count() == 0 && s.last_taps.is_empty() && !dir.exists(),
    );
    assert!(stopped, "still running");
    // ESRCH: the child is gone and reaped (a zombie would still accept signal 0).
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ESRCH)
    );
}

/// A stand-in for FFmpeg running `body` (no media: for the supervision logic).
fn fake_ffmpeg_config(name: &str, port_base: u16, body: &str) -> HlsConfig {
    let mut cfg = test_config(name, port_base);
    std::fs::create_dir_all(&cfg.root).unwrap();
    let script = cfg.root.join("fake-ffmpeg.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    cfg.ffmpeg = script;
    cfg
}

fn taps_of(actions: &[HlsAction], room: &str) -> Option<Vec<TapTarget>> {
    actions.iter().find_map(|a| match a {
        HlsAction::SetTaps { room_id, taps } if room_id == room => Some(taps.clone()),
        _ => None,
    })
}

#[test]
fn a_room_beyond_max_rooms_waits_for_a_free_slot_and_rooms_never_share_ports() {
    // Serial with the other HLS tests: a fork elsewhere while the script is being written
    // makes its exec fail with ETXTBSY.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = fake_ffmpeg_config("slots", 46400, "exec sleep 30");
    let _root = RootGuard(cfg.root.clone());
    cfg.max_rooms = 2;
    cfg.idle_timeout = Duration::from_secs(1);
    let mut manager = HlsManager::new(cfg);
    let t0 = Instant::now();
    for room in ["r1", "r2", "r3"] {
        manager.room_sources(room, vec![vp8("cam", room), opus("mic", room)], t0);
        manager.viewer_request(room, t0);
    }
    let actions = manager.tick(t0);
    assert_eq!(manager.pipeline_count(), 2);
    let started: Vec<&str> = ["r1", "r2", "r3"]
        .into_iter()
        .filter(|r| manager.ffmpeg_pid(r).is_some())
        .collect();
    let mut ports: Vec<u16> = started
        .iter()
        .flat_map(|r| taps_of(&actions, r).unwrap())
        .map(|t| t.dest.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{actions:?}");
    let waiting = ["r1", "r2", "r3"]
        .into_iter()
        .find(|r| !started.contains(r))
        .unwrap();
    // Only the waiting room keeps a viewer: the others go idle and free their slots.
    let later = t0 + Duration::from_millis(1500);
    manager.viewer_request(waiting, later);
    let mut actions = manager.tick(later);
    actions.extend(manager.tick(later));
    for room in &started {
        assert_eq!(
            taps_of(&actions, room),
            Some(Vec::new()),
            "{room} stops tapping"
        );
    }
    assert!(manager.ffmpeg_pid(waiting).is_some());
    assert_eq!(manager.pipeline_count(), 1);
}

#[test]
fn paused_and_unsupported_sources_are_left_out_and_start_nothing() {
    // Serial with the other HLS tests: a fork elsewhere while the script is being written
    // makes its exec fail with ETXTBSY.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = fake_ffmpeg_config("unusable", 46500, "exec sleep 30");
    let _root = RootGuard(cfg.root.clone());
    let mut manager = HlsManager::new(cfg);
    let mut paused = vp8("cam", "alice");
    paused.paused = true;
    let av1 = source(SourceKind::Video, "cam2", "bob", "video/AV1");
    let t0 = Instant::now();
    manager.room_sources("r1", vec![paused, av1], t0);
    manager.viewer_request("r1", t0);
    assert!(manager.tick(t0).is_empty());
    assert_eq!(manager.pipeline_count(), 0);
}

#[test]
fn a_room_without_sources_for_the_grace_period_stops_and_deletes_its_dir() {
    // Serial with the other HLS tests: a fork elsewhere while the script is being written
    // makes its exec fail with ETXTBSY.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = fake_ffmpeg_config("grace", 46600, "exec sleep 30");
    let _root = RootGuard(cfg.root.clone());
    cfg.source_grace = Duration::from_secs(1);
    let dir = cfg.root.join("r1");
    let mut manager = HlsManager::new(cfg);
    let t0 = Instant::now();
    manager.room_sources("r1", vec![vp8("cam", "alice")], t0);
    manager.viewer_request("r1", t0);
    manager.tick(t0);
    assert!(dir.exists() && manager.ffmpeg_pid("r1").is_some());
    manager.room_sources("r1", Vec::new(), t0);
    assert!(
        manager.tick(t0 + Duration::from_millis(900)).is_empty(),
        "a short gap keeps the pipeline"
    );
    let actions = manager.tick(t0 + Duration::from_millis(1100));
    assert_eq!(taps_of(&actions, "r1"), Some(Vec::new()));
    assert_eq!(manager.pipeline_count(), 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while dir.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
        manager.tick(Instant::now());
    }
    assert!(!dir.exists(), "deleted once FFmpeg is reaped");
}

#[test]
fn a_crashing_ffmpeg_is_restarted_with_a_doubling_backoff() {
    // Serial with the other HLS tests: a fork elsewhere while the script is being written
    // makes its exec fail with ETXTBSY.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = fake_ffmpeg_config("backoff", 46700, "exit 1");
    let _root = RootGuard(cfg.root.clone());
    let mut manager = HlsManager::new(cfg);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    manager.room_sources("r1", vec![vp8("cam", "alice")], t0);
    manager.viewer_request("r1", t0);
    let actions = manager.tick(t0);
    assert_eq!(taps_of(&actions, "r1").map(|t| t.len()), Some(1));
    let first = manager.ffmpeg_pid("r1").unwrap();
    sleep(Duration::from_millis(300));
    manager.tick(at(100)); // exit seen: restart at 600 ms
    assert_eq!(manager.ffmpeg_pid("r1"), None);
    manager.tick(at(599));
    assert_eq!(manager.ffmpeg_pid("r1"), None);
    manager.tick(at(600));
    let second = manager.ffmpeg_pid("r1").unwrap();
    assert_ne!(first, second);
    sleep(Duration::from_millis(300));
    let actions = manager.tick(at(700)); // second exit: restart after 1 s
    assert!(
        taps_of(&actions, "r1").is_none(),
        "a restart keeps the taps"
    );
    manager.tick(at(1699));
    assert_eq!(manager.ffmpeg_pid("r1"), None);
    manager.tick(at(1700));
    assert!(manager.ffmpeg_pid("r1").is_some());
}

#[test]
fn producers_that_send_nothing_start_no_pipeline_and_one_whose_media_stops_frees_its_slot() {
    // Serial with the other HLS tests: a fork elsewhere while the script is being written
    // makes its exec fail with ETXTBSY.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = fake_ffmpeg_config("flow", 46800, "exec sleep 30");
    let _root = RootGuard(cfg.root.clone());
    cfg.media_window = Duration::from_secs(3);
    cfg.source_grace = Duration::from_secs(1);
    cfg.max_rooms = 1;
    let mut manager = HlsManager::new(cfg);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut silent = vp8("cam", "mallory");
    silent.last_packet_at = None;
    manager.room_sources("fake", vec![silent], t0);
    manager.viewer_request("fake", t0);
    assert!(manager.tick(t0).is_empty(), "no media, no pipeline");
    assert_eq!(manager.pipeline_count(), 0);

    let mut sending = vp8("cam", "bob");
    sending.last_packet_at = Some(t0);
    manager.room_sources("real", vec![sending], t0);
    for ms in [0, 100] {
        manager.viewer_request("real", at(ms));
        manager.viewer_request("fake", at(ms));
        manager.tick(at(ms));
    }
    assert!(
        manager.ffmpeg_pid("real").is_some(),
        "the room with media takes the slot"
    );
    assert!(manager.ffmpeg_pid("fake").is_none());

    // Media that keeps flowing keeps its source, however long ago the last report came.
    manager.viewer_request("real", at(2900));
    assert!(taps_of(&manager.tick(at(2900)), "real").is_none());
    assert!(manager.ffmpeg_pid("real").is_some(), "no report, no change");

    // The real room's media stops: the worker reports it (no send time any more), the room
    // has no source, and after the grace period its pipeline gives the slot up.
    let mut stopped = vp8("cam", "bob");
    stopped.last_packet_at = None;
    manager.room_sources("real", vec![stopped], at(3000));
    manager.viewer_request("real", at(3500));
    let actions = manager.tick(at(3500));
    assert!(
        taps_of(&actions, "real").is_none(),
        "still within the grace period"
    );
    manager.viewer_request("real", at(4600));
    let actions = manager.tick(at(4600));
    assert_eq!(taps_of(&actions, "real"), Some(Vec::new()));
    assert_eq!(manager.pipeline_count(), 0);
    assert!(
        manager.ffmpeg_pid("fake").is_none(),
        "the fake room still gets nothing"
    );
}

#[test]
fn as_root_ffmpeg_runs_as_nobody_inside_a_private_root_and_still_writes_the_playlist() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid has no preconditions.
    if !ffmpeg_available() || unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root; the privilege drop is not exercised");
        return;
    }
    let mut cfg = test_config("nobody", 46900);
    let _root = RootGuard(cfg.root.clone());
    cfg.run_as = root::ffmpeg_identity("nobody").expect("user nobody");
    let (uid, _) = cfg.run_as.expect("root drops to nobody");
    // The root is private to the server: FFmpeg reaches its folder only as its cwd.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(&cfg.root).unwrap();
    std::fs::set_permissions(&cfg.root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = cfg.root.join("r1");
    let mut manager = HlsManager::new(cfg);
    let sources = vec![vp8("cam", "alice")];
    let mut senders = Senders::new(&sources);
    manager.room_sources("r1", sources, Instant::now());
    let live = drive(
        &mut manager,
        &mut senders,
        "r1",
        true,
        Duration::from_secs(20),
        live_with_segments(dir.clone(), 1),
    );
    assert!(live, "no live playlist as nobody; {}", report(&dir));
    let pid = manager.ffmpeg_pid("r1").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let real_uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok());
    assert_eq!(real_uid, Some(uid), "FFmpeg runs as nobody");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
    manager.shutdown();
    assert!(!dir.exists());
}
