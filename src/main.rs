//! `sfu`: serves the web UI, the signaling WebSocket, the JSON API and HLS on one port, and
//! media on one UDP port per worker. See README.md and docs/.

use clap::Parser;
use sfu::channel::mio_mailbox;
use sfu::config::{Cli, Command, Config, TokenArgs};
use sfu::hls::root::{ffmpeg_identity, HlsRoot};
use sfu::hls::{HlsConfig, HlsManager};
use sfu::rtc::dtls::{DtlsCertificate, DtlsLimits, DtlsRuntime};
use sfu::signaling::edge::{Edge, EdgeConfig};
use sfu::signaling::session::{Signaling, SignalingLimits, WorkerLink};
use sfu::worker::{self, WorkerOptions};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Token(args)) => print_token(&cli, args),
        None => run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sfu: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SFU_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("sfu=info,webrtc_dtls=error,webrtc_sctp=error,warn"));
    let json = std::env::var("SFU_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colour codes only for a person at a terminal, never into files or journald.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

/// glommio registers io memory with the kernel; that counts against RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let want = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; keeping the current limit");
    }
}

/// Every peer holds a WebSocket: lift the open-files soft limit to the hard limit.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("could not raise RLIMIT_NOFILE");
            }
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts later; they are
/// taken by [`wait_for_termination`] instead, so the server can stop cleanly.
fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset/pthread_sigmask only touch the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// How the server stops: SIGINT at once; SIGTERM drains (no new rooms, `/healthz` 503) until
/// the rooms are empty or `timeout` passed; a second signal during the drain stops at once.
struct Drain {
    flag: Arc<AtomicBool>,
    timeout: Duration,
    stats: Vec<Arc<sfu::stats::WorkerStats>>,
}

impl Drain {
    fn rooms(&self) -> usize {
        self.stats
            .iter()
            .map(|s| s.get(sfu::stats::Counted::Room))
            .sum()
    }

    /// Blocks until the drain is over: true if it ended early because of another signal.
    fn run(&self, set: &libc::sigset_t) -> bool {
        self.flag.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        tracing::info!(
            rooms = self.rooms(),
            timeout_secs = self.timeout.as_secs(),
            "SIGTERM: draining (no new rooms here; stopping once the rooms are empty; SIGTERM again stops at once)"
        );
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        loop {
            if self.rooms() == 0 {
                tracing::info!("drained: no rooms left");
                return false;
            }
            if started.elapsed() >= self.timeout {
                tracing::warn!(
                    rooms = self.rooms(),
                    "drain timeout: stopping with rooms still open"
                );
                return false;
            }
            // SAFETY: sigtimedwait reads the set and the timeout; no siginfo is wanted.
            if unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &tick) } > 0 {
                return true;
            }
        }
    }
}

/// Waits (on its own thread) for SIGINT/SIGTERM, then stops the signaling loop.
fn wait_for_termination(
    set: libc::sigset_t,
    stop: sfu::signaling::edge::ShutdownHandle,
    drain: Drain,
) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the set and writes the signal number into `sig`.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            if sig == libc::SIGTERM && drain.run(&set) {
                tracing::info!("second signal: stopping now");
            }
            tracing::info!(signal = sig, "stopping");
            stop.shutdown();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no signal thread; SIGINT/SIGTERM will not stop the server");
    }
}

/// The forwarding latency of each worker at shutdown: since start and over its last complete
/// window, arrival → hand-off to the kernel and the kernel's send call apart.
fn print_latency(stats: &[Arc<sfu::stats::WorkerStats>]) {
    use std::sync::atomic::Ordering::Relaxed;
    let us = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64 / 1000.0;
    for s in stats {
        tracing::info!(
            worker = s.id,
            samples = s.latency_total.samples.load(Relaxed),
            p50_us = us(&s.latency_total.p50_ns),
            p99_us = us(&s.latency_total.p99_ns),
            p999_us = us(&s.latency_total.p999_ns),
            max_us = us(&s.latency_total.max_ns),
            handoff_p50_us = us(&s.handoff_total.p50_ns),
            handoff_p99_us = us(&s.handoff_total.p99_ns),
            kernel_p50_us = us(&s.kernel_total.p50_ns),
            kernel_p99_us = us(&s.kernel_total.p99_ns),
            "forwarding latency since start (arrival -> socket out; handoff = ours, kernel = the send call)"
        );
        if s.windows.load(Relaxed) > 0 {
            tracing::info!(
                worker = s.id,
                window_secs = s.window_secs.load(Relaxed),
                samples = s.window_total.samples.load(Relaxed),
                handoff_p50_us = us(&s.window_handoff.p50_ns),
                handoff_p99_us = us(&s.window_handoff.p99_ns),
                handoff_p999_us = us(&s.window_handoff.p999_ns),
                kernel_p50_us = us(&s.window_kernel.p50_ns),
                kernel_p99_us = us(&s.window_kernel.p99_ns),
                total_p99_us = us(&s.window_total.p99_ns),
                "forwarding latency, last window"
            );
        }
    }
}

/// `sfu token`: prints a token signed with the configured secret (shared/protocol.md "Access").
fn print_token(cli: &Cli, args: &TokenArgs) -> Result<(), Box<dyn std::error::Error>> {
    use sfu::signaling::access::{clean_display_name, Grants, TokenSpec};
    let cfg = Config::load(cli)?;
    let access = cfg.access().ok_or(
        "no secret to sign with: set SFU_AUTH_SECRET (or --auth-secret, or auth_secret in the \
         config file) to the secret the server uses",
    )?;
    if args.room != "*" && !sfu::signaling::protocol::is_valid_room_id(&args.room) {
        return Err("--room must be 1-64 characters of [A-Za-z0-9_-], or * for every room".into());
    }
    if args.identity.trim().is_empty() || args.identity.len() > 256 {
        return Err("--identity must be 1-256 characters".into());
    }
    if args.ttl == 0 {
        return Err("--ttl must be at least 1 second".into());
    }
    let token = access.sign(&TokenSpec {
        room: args.room.clone(),
        identity: args.identity.clone(),
        name: args.name.as_deref().map(clean_display_name),
        ttl_secs: args.ttl,
        grants: Grants {
            publish: !args.no_publish,
            subscribe: !args.no_subscribe,
            data: !args.no_data,
            admin: args.admin,
        },
    });
    println!("{token}");
    Ok(())
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = Config::load(cli)?;
    let access = cfg.access();
    if cfg.auth_secret.as_ref().is_some_and(|s| s.0.len() < 32) {
        tracing::warn!("the auth secret is shorter than 32 bytes; a leaked token lets anyone guess it offline (use e.g. `openssl rand -hex 32`)");
    }
    // Before anything starts: a bad certificate or key is the first thing reported.
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(sfu::signaling::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let signals = block_termination_signals();
    raise_memlock_limit();
    raise_open_files_limit();
    let hls_root = HlsRoot::prepare(cfg.hls_root.as_deref())?;
    let ffmpeg_run_as = ffmpeg_identity(&cfg.hls_ffmpeg_user)?;
    let edge = Edge::bind(
        cfg.listen,
        EdgeConfig {
            web_root: Some(cfg.web_root.clone()),
            hls_root: hls_root.path.clone(),
            max_ws_message: cfg.max_ws_message,
            max_connections: cfg.max_connections,
            max_http_body: 16 * 1024,
            max_connections_per_ip: cfg.max_connections_per_ip,
            healthz_reserve: cfg.healthz_reserve,
            max_ws_pending_out: cfg.max_ws_pending_out,
            max_pending_out_total: cfg.max_pending_out_total,
            ws_socket_send_buffer: cfg.ws_socket_send_buffer,
            origins: sfu::signaling::origin::OriginPolicy::new(&cfg.allowed_origins),
            tls,
            access: access.clone(),
        },
    )
    .map_err(|e| {
        format!(
            "cannot listen on {}: {e} (is another server running? set --listen)",
            cfg.listen
        )
    })?;
    let (out_tx, out_rx) = mio_mailbox(edge.waker());
    let cert = Arc::new(DtlsCertificate::generate()?);
    let fingerprint = cert.fingerprint_sha256();
    let dtls = Arc::new(DtlsRuntime::start_with(
        cert,
        DtlsLimits {
            handshake_timeout: Duration::from_secs(cfg.dtls_handshake_timeout_secs),
            max_handshakes_per_ip: cfg.dtls_max_handshakes_per_ip,
            max_handshakes: cfg.dtls_max_handshakes,
        },
    )?);

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut links = Vec::new();
    let mut threads = Vec::new();
    let mut worker_stats = Vec::new();
    // Worker-to-worker links, for rooms that span workers.
    let meshes = sfu::room::mesh::Mesh::connect(cfg.workers);
    for (id, mesh) in meshes.into_iter().enumerate() {
        let core = if cfg.pin_workers && !cores.is_empty() {
            Some(cores[id % cores.len()].id)
        } else {
            None
        };
        let port = cfg.rtc_port + id as u16;
        let handle = worker::spawn(WorkerOptions {
            id,
            core,
            bind: SocketAddr::new(cfg.rtc_listen_ip, port),
            announced: SocketAddr::new(cfg.announced_ip, port),
            dtls: dtls.clone(),
            fingerprint: fingerprint.clone(),
            signaling: out_tx.clone(),
            mesh: Some(mesh),
            limits: cfg.media_limits(),
            faults: cfg.faults(),
            turn: cfg.turn(),
            ice_tcp: cfg.ice_tcp(),
            latency_window: std::time::Duration::from_secs(cfg.latency_window_secs),
        })?;
        worker_stats.push(handle.stats.clone());
        links.push(WorkerLink {
            jobs: handle.jobs,
            stats: handle.stats,
        });
        threads.push(handle.thread);
    }
    tracing::info!(
        listen = %edge.local_addr(),
        workers = cfg.workers,
        media = %format!("{} {}:{}-{}", if cfg.ice_tcp { "udp+tcp" } else { "udp" }, cfg.announced_ip, cfg.rtc_port, cfg.rtc_port as usize + cfg.workers - 1),
        web_root = %cfg.web_root.display(),
        access = if access.is_some() { "tokens" } else { "open" },
        "serving on {scheme}://localhost:{}", edge.local_addr().port()
    );
    if !cfg.web_root.join("index.html").exists() {
        tracing::warn!(web_root = %cfg.web_root.display(), "web UI not built; run `make run` (or `make web`)");
    }
    let draining = Arc::new(AtomicBool::new(false));
    let cluster = match cfg.cluster() {
        Some(cluster_cfg) => {
            let (reply_tx, reply_rx) = mio_mailbox(edge.waker());
            let node_id = cluster_cfg.node_id.clone();
            let (thread, view) = sfu::cluster::spawn(
                cluster_cfg,
                worker_stats.clone(),
                draining.clone(),
                reply_tx,
            )?;
            let link = sfu::cluster::ClusterLink {
                node_id,
                jobs: thread.jobs.clone(),
                replies: reply_rx,
                view,
            };
            Some((thread, link))
        }
        None => None,
    };
    let mut signaling = Signaling::new(
        links,
        out_rx,
        SignalingLimits {
            max_peers_per_room: cfg.max_peers_per_room,
            room_spill_peers: cfg.room_spill_peers,
            join_deadline: std::time::Duration::from_millis(cfg.join_deadline_ms),
            request_rate: cfg.ws_request_rate,
            request_burst: cfg.ws_request_burst,
            error_rate: cfg.ws_error_rate,
            error_burst: cfg.ws_error_burst,
            worker_stall: std::time::Duration::from_millis(cfg.worker_stall_ms),
            join_rate_per_ip: cfg.join_rate_per_ip,
            join_burst_per_ip: cfg.join_burst_per_ip,
        },
        Some(HlsManager::new(HlsConfig {
            root: hls_root.path.clone(),
            max_rooms: cfg.hls_max_rooms,
            media_window: Duration::from_secs(cfg.hls_media_window_secs),
            idle_timeout: Duration::from_secs(cfg.hls_idle_timeout_secs),
            source_grace: Duration::from_secs(cfg.hls_source_grace_secs),
            run_as: ffmpeg_run_as,
            ..HlsConfig::default()
        })),
    )
    .with_draining(draining.clone());
    let cluster_thread = match cluster {
        Some((thread, link)) => {
            signaling = signaling.with_cluster(link);
            Some(thread)
        }
        None => None,
    };
    let drain = Drain {
        flag: draining,
        timeout: Duration::from_secs(cfg.drain_timeout),
        stats: worker_stats.clone(),
    };
    wait_for_termination(signals, edge.shutdown_handle(), drain);
    let edge_thread = std::thread::Builder::new()
        .name("signaling".into())
        .spawn(move || edge.run(&mut signaling))?;
    let result = edge_thread.join();
    if let Some(thread) = cluster_thread {
        thread.stop();
    }
    print_latency(&worker_stats);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("signaling stopped: {e}").into()),
        Err(_) => Err("signaling thread panicked".into()),
    }
}
