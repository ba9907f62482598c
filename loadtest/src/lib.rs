//! A WebRTC load generator for the SFU (and any server speaking shared/protocol.md): N rooms ×
//! P publishers × S subscribers with real ICE, DTLS and SRTP. See docs/performance.md.

pub mod cpu;
pub mod downlink;
pub mod feedback;
pub mod inbound;
pub mod joins;
pub mod media;
pub mod probe;
pub mod receive;
pub mod report;
pub mod signaling;
pub mod tcp;
pub mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use media::{Kind, Publisher, Track, PHASE_MEASURE, PHASE_STOP};
use receive::{Stream, Subscriber};
use report::{Layers, StepResult};
use signaling::Signaling;
use transport::{DtlsClient, Protocol};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadtest",
    about = "WebRTC load generator: real ICE, DTLS and SRTP against the SFU"
)]
pub struct Args {
    /// Signaling URL: ws://HOST:PORT/ws or http://HOST:PORT
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws")]
    pub url: String,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Publishers per room
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers per room (each consumes every publisher's tracks)
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Measured seconds (after the warmup)
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of media before measuring (consumers sync on a key frame meanwhile)
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Video bitrate per publisher
    #[arg(long, default_value_t = 1000)]
    pub bitrate_kbps: u32,
    /// Video RTP packet size in bytes (before SRTP)
    #[arg(long, default_value_t = 1200)]
    pub packet_size: usize,
    /// Also publish Opus audio (50 packets/s)
    #[arg(long)]
    pub audio: bool,
    /// Decrypt every n-th packet of each subscriber for latency (all are counted for loss)
    #[arg(long, default_value_t = 4)]
    pub sample: u64,
    /// Receive threads for the subscribers' sockets
    #[arg(long, default_value_t = 1)]
    pub recv_threads: usize,
    /// Receive threads poll their sockets every N µs instead of waking per packet (0 = wake
    /// per packet). Over loopback the kernel charges waking a sleeping receiver to the sender:
    /// pacing keeps the load generator's wake-ups out of the server's CPU figure. UDP latency
    /// is measured from the kernel's receive timestamp, so pacing does not add to it.
    #[arg(long, default_value_t = 0)]
    pub recv_interval_us: u64,
    /// Threads setting up subscribers (signaling, ICE, DTLS) in parallel
    #[arg(long, default_value_t = 4)]
    pub setup_threads: usize,
    /// Server pid(s) for CPU per thread (default: the process listening on the URL's port, and
    /// its children)
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Write the results as JSON
    #[arg(long)]
    pub json: Option<String>,
    /// Write an SVG plot of latency percentiles vs consumers (with --sweep)
    #[arg(long)]
    pub plot: Option<String>,
    /// Subscriber counts per room, one run each, e.g. "50,100,200" (overrides --subscribers)
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<usize>,
    /// A name for this run in the output (e.g. the server under test)
    #[arg(long, default_value = "sfu")]
    pub label: String,
    /// Publishers and subscribers connect over ICE-TCP (the server's passive TCP candidate,
    /// RFC 4571 framing) instead of UDP
    #[arg(long)]
    pub tcp: bool,
    /// Every track starts its pacing at the same instant, so all publishers send at once each
    /// interval (synchronised bursts, as loadtest did before spreading the tracks' phases)
    #[arg(long)]
    pub aligned_start: bool,
    /// Conference rooms of this many peers: every peer publishes (video, plus audio with
    /// --audio) and consumes every other peer's tracks (overrides --publishers/--subscribers)
    #[arg(long)]
    pub conference: Option<usize>,
    /// Room counts, one run each, e.g. "10,25,50" (overrides --rooms)
    #[arg(long, value_delimiter = ',')]
    pub rooms_sweep: Vec<usize>,
    /// More signaling URLs (a cluster's other nodes, comma-separated): peers enter through
    /// --url and these in turn, and follow `moved` to the room's node
    #[arg(long, value_delimiter = ',')]
    pub entry: Vec<String>,
    /// Each video publisher sends three simulcast encodings (rids r0, r1, r2, each with its own
    /// SSRC) at about 150 / 500 / 1500 kbit/s, a key frame about every second on each, instead
    /// of one encoding at --bitrate-kbps
    #[arg(long)]
    pub simulcast: bool,
    /// Caps each subscriber's downlink inside the load generator, modelled like `tc tbf rate N
    /// burst 16kb latency 300ms` (what would queue longer is lost); see --capped-share
    #[arg(long, value_name = "KBPS")]
    pub downlink_kbps: Option<u32>,
    /// Percent of the subscribers of each room that --downlink-kbps caps (every k-th one,
    /// deterministic); default 100
    #[arg(long, value_name = "PERCENT")]
    pub capped_share: Option<u32>,
    /// Subscribers send no RTCP (receiver reports, NACKs, transport-cc feedback), as the load
    /// generator did before it behaved like a browser
    #[arg(long)]
    pub no_feedback: bool,
    /// Join benchmark instead of media: this many join-room calls (connect, join, stay) over
    /// --rooms rooms from --setup-threads threads; reports joins/s and join latency
    #[arg(long)]
    pub joins: Option<usize>,
}

/// Joins so far, for the round robin over the entry URLs.
static ENTERED: AtomicUsize = AtomicUsize::new(0);

/// The shape of one step of a run.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub rooms: usize,
    /// Subscribers per room (or, in conference rooms, peers per room).
    pub subscribers: usize,
}

impl Args {
    /// The signaling URL the next peer enters through (--url, then each --entry, in turn).
    pub fn entry(&self) -> &str {
        let i = ENTERED.fetch_add(1, Ordering::Relaxed) % (1 + self.entry.len());
        if i == 0 {
            &self.url
        } else {
            &self.entry[i - 1]
        }
    }

    /// The downlink cap of the `i`-th subscriber of a room, if it is capped: `capped_share`
    /// percent of them, spread evenly (20 % caps subscribers 4, 9, 14, ...).
    pub fn downlink_of(&self, i: usize) -> Option<u32> {
        let kbps = self.downlink_kbps?;
        let share = self.capped_share.unwrap_or(100).min(100) as usize;
        ((i + 1) * share / 100 > i * share / 100).then_some(kbps)
    }

    /// Flags that contradict each other or make no sense.
    pub fn check(&self) -> Result<(), String> {
        if self.downlink_kbps == Some(0) {
            return Err("--downlink-kbps must be above 0".into());
        }
        if self.capped_share.is_some() && self.downlink_kbps.is_none() {
            return Err("--capped-share needs --downlink-kbps".into());
        }
        if self.capped_share.is_some_and(|p| p > 100) {
            return Err("--capped-share is a percentage (0..=100)".into());
        }
        if self.tcp && self.downlink_kbps.is_some() {
            // The model drops what queues too long; TCP would retransmit it instead.
            return Err(
                "--downlink-kbps models a UDP path; it cannot be combined with --tcp".into(),
            );
        }
        Ok(())
    }

    /// The transport every peer's media uses.
    pub fn protocol(&self) -> Protocol {
        if self.tcp {
            Protocol::Tcp
        } else {
            Protocol::Udp
        }
    }
}

/// The steps of a run: one, or one per --sweep / --rooms-sweep entry.
pub fn steps(args: &Args) -> Result<Vec<Step>, String> {
    let per_room = args.conference.unwrap_or(args.subscribers);
    if args.conference.is_some_and(|n| n < 2) {
        return Err("--conference needs at least 2 peers per room".into());
    }
    match (args.sweep.is_empty(), args.rooms_sweep.is_empty()) {
        (false, false) => Err("--sweep and --rooms-sweep cannot be combined".into()),
        (false, true) if args.conference.is_some() => {
            Err("--sweep varies subscribers; with --conference use --rooms-sweep".into())
        }
        (false, true) => Ok(args
            .sweep
            .iter()
            .map(|&subscribers| Step {
                rooms: args.rooms,
                subscribers,
            })
            .collect()),
        (true, false) => Ok(args
            .rooms_sweep
            .iter()
            .map(|&rooms| Step {
                rooms,
                subscribers: per_room,
            })
            .collect()),
        (true, true) => Ok(vec![Step {
            rooms: args.rooms,
            subscribers: per_room,
        }]),
    }
}

/// Every step of a run (one unless --sweep or --rooms-sweep).
pub fn run(args: &Args) -> Result<Vec<StepResult>, String> {
    args.check()?;
    let steps = steps(args)?;
    let dtls = DtlsClient::start()?;
    let mut results = Vec::new();
    for (i, &step) in steps.iter().enumerate() {
        if i > 0 {
            // Let the server finish closing the previous step's peers.
            std::thread::sleep(Duration::from_secs(2));
        }
        let result = run_step(args, step, &dtls)?;
        eprintln!("{}", result.summary_line());
        results.push(result);
    }
    Ok(results)
}

struct RoomSetup {
    signaling: Vec<Signaling>,
    publishers: Vec<Publisher>,
    subscribers: Vec<Subscriber>,
}

/// A joined peer publishing video (and audio with --audio) on a send transport.
struct Published {
    sig: Signaling,
    caps: Value,
    producer_ids: Vec<Value>,
    publisher: Publisher,
}

fn setup_publisher(
    args: &Args,
    room: &str,
    dtls: &DtlsClient,
    name: &str,
) -> Result<Published, String> {
    let (mut sig, joined, _) = Signaling::join(args.entry(), room, name)?;
    let t = transport::open_link(&mut sig, "send", dtls, args.protocol())?;
    let cname = format!("lt{}", rand::random::<u32>());
    let (video_params, mut tracks, audio_ssrc) = if args.simulcast {
        // Each encoding's SSRC, its RTX the next one; the audio SSRC after them.
        let base = rand::random::<u32>() & !7;
        let ssrcs = [base, base + 2, base + 4];
        let tracks = (0..ssrcs.len())
            .map(|layer| Track::simulcast(ssrcs[layer], layer, args.packet_size))
            .collect();
        (
            media::vp8_simulcast_rtp_parameters(ssrcs, &cname),
            tracks,
            base + 6,
        )
    } else {
        let video_ssrc = rand::random::<u32>() & !1;
        (
            media::vp8_rtp_parameters(video_ssrc, &cname),
            vec![Track::video(
                video_ssrc,
                args.bitrate_kbps,
                args.packet_size,
            )],
            video_ssrc.wrapping_add(2),
        )
    };
    let video = sig.request(
        "produce",
        json!({"transportId": t.id, "kind": "video", "rtpParameters": video_params}),
    )?;
    let mut producer_ids = vec![video["producerId"].clone()];
    if args.audio {
        let audio = sig.request(
            "produce",
            json!({"transportId": t.id, "kind": "audio",
                   "rtpParameters": media::opus_rtp_parameters(audio_ssrc, &cname)}),
        )?;
        producer_ids.push(audio["producerId"].clone());
        tracks.push(Track::audio(audio_ssrc));
    }
    Ok(Published {
        sig,
        caps: joined["routerRtpCapabilities"].clone(),
        producer_ids,
        publisher: Publisher {
            socket: t.socket,
            srtp: t.srtp,
            tracks,
            _dtls: t._dtls,
        },
    })
}

fn setup_subscriber(
    args: &Args,
    room: &str,
    dtls: &DtlsClient,
) -> Result<(Signaling, Subscriber), String> {
    let (mut sig, joined, _) = Signaling::join(args.entry(), room, "loadtest-sub")?;
    let caps = joined["routerRtpCapabilities"].clone();
    let producers: Vec<Value> = joined["producers"]
        .as_array()
        .map(|ps| ps.iter().map(|p| p["producerId"].clone()).collect())
        .unwrap_or_default();
    let subscriber = attach_subscriber(args, &mut sig, &caps, &producers, dtls)?;
    Ok((sig, subscriber))
}

/// A recv transport on `sig`'s peer consuming (and resuming) `producers`.
fn attach_subscriber(
    args: &Args,
    sig: &mut Signaling,
    caps: &Value,
    producers: &[Value],
    dtls: &DtlsClient,
) -> Result<Subscriber, String> {
    let t = transport::open_link(sig, "recv", dtls, args.protocol())?;
    let mut streams = Vec::new();
    let mut transport_cc_id = None;
    for producer_id in producers {
        let consumer = sig.request(
            "consume-media",
            json!({"transportId": t.id, "producerId": producer_id, "rtpCapabilities": caps}),
        )?;
        let params = &consumer["rtpParameters"];
        let ssrc = params["encodings"][0]["ssrc"]
            .as_u64()
            .ok_or("consume-media: no ssrc")? as u32;
        let rtx_ssrc = params["encodings"][0]["rtx"]["ssrc"]
            .as_u64()
            .map(|s| s as u32);
        // One id per transport: the server stamps every consumer's packets alike.
        transport_cc_id = transport_cc_id.or_else(|| {
            params["headerExtensions"]
                .as_array()?
                .iter()
                .find(|e| e["uri"] == feedback::TRANSPORT_WIDE_CC_URI)?["id"]
                .as_u64()
                .and_then(|id| u8::try_from(id).ok())
        });
        let kind = if consumer["kind"] == "audio" {
            Kind::Audio
        } else {
            Kind::Video
        };
        sig.request(
            "resume-consumer",
            json!({"consumerId": consumer["consumerId"]}),
        )?;
        let consumer_id = consumer["consumerId"].as_str().unwrap_or_default();
        streams.push(Stream::new(ssrc, kind).of_consumer(consumer_id.to_owned(), rtx_ssrc));
    }
    let mut subscriber = Subscriber::new(t.socket, t.srtp, streams, t._dtls, t.consent);
    if !args.no_feedback {
        subscriber.inbound.enable_feedback(transport_cc_id);
    }
    Ok(subscriber)
}

/// A conference room: every peer publishes first, then consumes every other peer's tracks.
fn setup_conference_room(
    args: &Args,
    room: &str,
    peers: usize,
    dtls: &DtlsClient,
) -> Result<RoomSetup, String> {
    let published = (0..peers)
        .map(|_| setup_publisher(args, room, dtls, "loadtest-peer"))
        .collect::<Result<Vec<_>, String>>()?;
    let all: Vec<Vec<Value>> = published.iter().map(|p| p.producer_ids.clone()).collect();
    let mut setup = RoomSetup {
        signaling: Vec::new(),
        publishers: Vec::new(),
        subscribers: Vec::new(),
    };
    for (i, mut p) in published.into_iter().enumerate() {
        let others: Vec<Value> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        let subscriber = attach_subscriber(args, &mut p.sig, &p.caps, &others, dtls)?;
        setup.subscribers.push(subscriber);
        setup.publishers.push(p.publisher);
        setup.signaling.push(p.sig);
    }
    Ok(setup)
}

fn setup_room(
    args: &Args,
    room: &str,
    subscribers: usize,
    dtls: &DtlsClient,
) -> Result<RoomSetup, String> {
    let mut setup = RoomSetup {
        signaling: Vec::new(),
        publishers: Vec::new(),
        subscribers: Vec::new(),
    };
    for _ in 0..args.publishers {
        let p = setup_publisher(args, room, dtls, "loadtest-pub")?;
        setup.publishers.push(p.publisher);
        setup.signaling.push(p.sig);
    }
    let threads = args.setup_threads.clamp(1, subscribers.max(1));
    let made: Vec<Result<Vec<(Signaling, Subscriber)>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let count = subscribers / threads + usize::from(k < subscribers % threads);
                scope.spawn(move || {
                    (0..count)
                        .map(|_| setup_subscriber(args, room, dtls))
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("setup thread panicked".into()))
            })
            .collect()
    });
    for batch in made {
        for (sig, sub) in batch? {
            setup.signaling.push(sig);
            setup.subscribers.push(sub);
        }
    }
    Ok(setup)
}

/// Sets up the step's rooms; conference rooms in parallel (--setup-threads), fan-out rooms one
/// after the other (their subscribers in parallel).
fn setup_rooms(args: &Args, step: Step, dtls: &DtlsClient) -> Result<Vec<RoomSetup>, String> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let room = |r: usize| format!("lt-{run_id}-{r}");
    let Some(peers) = args.conference else {
        return (0..step.rooms)
            .map(|r| setup_room(args, &room(r), step.subscribers, dtls))
            .collect();
    };
    let threads = args.setup_threads.clamp(1, step.rooms.max(1));
    std::thread::scope(|scope| {
        let room = &room;
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                scope.spawn(move || {
                    (k..step.rooms)
                        .step_by(threads)
                        .map(|r| setup_conference_room(args, &room(r), peers, dtls))
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        let mut rooms = Vec::new();
        for h in handles {
            rooms.extend(
                h.join()
                    .unwrap_or_else(|_| Err("setup thread panicked".into()))?,
            );
        }
        Ok(rooms)
    })
}

fn run_step(args: &Args, step: Step, dtls: &DtlsClient) -> Result<StepResult, String> {
    let setup_started = Instant::now();
    let mut signaling = Vec::new();
    let mut publishers = Vec::new();
    let mut subs = Vec::new();
    for mut setup in setup_rooms(args, step, dtls)? {
        for (i, s) in setup.subscribers.iter_mut().enumerate() {
            if let Some(kbps) = args.downlink_of(i) {
                s.inbound.cap_downlink(kbps);
            }
        }
        signaling.extend(setup.signaling);
        publishers.extend(setup.publishers);
        subs.extend(setup.subscribers);
    }
    let consumers: usize = subs.iter().map(|s| s.inbound.streams.len()).sum();
    let setup_secs = setup_started.elapsed().as_secs_f64();
    for s in &mut signaling {
        s.set_nonblocking();
    }

    let port = signaling::http_host(&args.url)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok());
    let pids = cpu::server_pids(&args.server_pid, port);

    let phase = AtomicU8::new(media::PHASE_WARMUP);
    let threads = args.recv_threads.max(1);
    let mut groups: Vec<Vec<Subscriber>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in subs.into_iter().enumerate() {
        groups[i % threads].push(s);
    }
    let aligned = args.aligned_start;
    let (send, received, cpu) = std::thread::scope(|scope| {
        let phase = &phase;
        let sender = scope.spawn(move || media::send_loop(publishers, phase, aligned));
        let receivers: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let interval = Duration::from_micros(args.recv_interval_us);
                scope.spawn(move || receive::receive_loop(g, args.sample, interval, phase))
            })
            .collect();
        let drain_until = |until: Instant, signaling: &mut Vec<Signaling>| {
            while Instant::now() < until {
                signaling.iter_mut().for_each(Signaling::drain);
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        drain_until(
            Instant::now() + Duration::from_secs_f64(args.warmup),
            &mut signaling,
        );
        phase.store(PHASE_MEASURE, Ordering::Relaxed);
        let before = cpu::snapshot(&pids);
        let own_before = cpu::snapshot(&[std::process::id()]);
        drain_until(
            Instant::now() + Duration::from_secs_f64(args.duration),
            &mut signaling,
        );
        let after = cpu::snapshot(&pids);
        let own_after = cpu::snapshot(&[std::process::id()]);
        phase.store(PHASE_STOP, Ordering::Relaxed);
        let send = sender.join().expect("sender thread");
        let received: Vec<_> = receivers
            .into_iter()
            .map(|r| r.join().expect("receive thread"))
            .collect();
        let own: f64 = cpu::usage(&own_before, &own_after)
            .iter()
            .map(|t| t.percent)
            .sum();
        (send, received, (cpu::usage(&before, &after), own))
    });
    let received = received
        .into_iter()
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("receive: {e}"))?;
    let server_stats = signaling::http_get(&signaling::http_host(&args.url), "/api/stats")
        .ok()
        .and_then(|body| serde_json::from_str::<Value>(&body).ok());

    let mut layers = HashMap::new();
    for s in &signaling {
        layers.extend(s.layers.iter().map(|(id, l)| (id.clone(), *l)));
    }
    let layer_notifications = signaling.iter().map(|s| s.layer_changes).sum();
    drop(signaling);
    Ok(StepResult::new(
        args,
        step,
        consumers,
        setup_secs,
        send,
        received,
        cpu,
        server_stats,
        Layers {
            current: layers,
            notifications: layer_notifications,
        },
    ))
}
