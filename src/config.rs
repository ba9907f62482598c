//! Server configuration: defaults, overridden by a TOML file (`--config`), then by environment
//! variables (`SFU_*`), then by command-line flags. See docs/config.md.

use clap::Parser;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Command-line flags; every one also reads an `SFU_*` environment variable.
#[derive(Parser, Debug, Default)]
#[command(
    name = "sfu",
    version,
    about = "Thread-per-core WebRTC SFU for mediasoup-client"
)]
pub struct Cli {
    /// `sfu token …` prints an access token instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below (flags and env win over it).
    #[arg(long, env = "SFU_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// HTTP + WebSocket listen address.
    #[arg(long, env = "SFU_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Number of media workers (one glommio executor per core). Default: one per core.
    #[arg(long, env = "SFU_WORKERS")]
    pub workers: Option<usize>,
    /// IP the media UDP sockets bind to (default: the announced IP; a wildcard bind lets the
    /// kernel answer from another source address than the candidate's, which browsers reject).
    #[arg(long, env = "SFU_RTC_LISTEN_IP")]
    pub rtc_listen_ip: Option<IpAddr>,
    /// IP announced in ICE candidates (what browsers send media to).
    #[arg(long, env = "SFU_ANNOUNCED_IP")]
    pub announced_ip: Option<IpAddr>,
    /// First media UDP port; worker N listens on rtc_port + N.
    #[arg(long, env = "SFU_RTC_PORT")]
    pub rtc_port: Option<u16>,
    /// Folder of the built web UI (Next.js static export).
    #[arg(long, env = "SFU_WEB_ROOT")]
    pub web_root: Option<PathBuf>,
    /// Folder where live HLS playlists and segments are written (created 0700; refused if it
    /// is a symlink, not ours, or writable by others). Default: a fresh private folder per
    /// process under $XDG_RUNTIME_DIR or the temp dir, deleted at exit.
    #[arg(long, env = "SFU_HLS_ROOT")]
    pub hls_root: Option<PathBuf>,
    /// Maximum peers in one room.
    #[arg(long, env = "SFU_MAX_PEERS_PER_ROOM")]
    pub max_peers_per_room: Option<usize>,
    /// Peers of one room on its home worker before the room spans other workers (later
    /// peers go to the worker hosting the fewest of the room's peers; media is piped between
    /// workers).
    #[arg(long, env = "SFU_ROOM_SPILL_PEERS")]
    pub room_spill_peers: Option<usize>,
    /// Maximum WebSocket message size in bytes (larger ones close the socket with 1009).
    #[arg(long, env = "SFU_MAX_WS_MESSAGE")]
    pub max_ws_message: Option<usize>,
    /// Maximum simultaneous HTTP/WebSocket connections.
    #[arg(long, env = "SFU_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Do not pin worker threads to cores.
    #[arg(long, env = "SFU_NO_PIN")]
    pub no_pin: bool,
    // --- TLS: HTTPS and WSS on the listen port ---
    /// PEM certificate chain (e.g. Let's Encrypt's fullchain.pem); with --tls-key the listen
    /// port serves HTTPS and WSS instead of HTTP and WS.
    #[arg(long, env = "SFU_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate (e.g. privkey.pem).
    #[arg(long, env = "SFU_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    // --- limits: signaling edge ---
    /// Maximum simultaneous HTTP/WebSocket connections from one IP address.
    #[arg(long, env = "SFU_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Connections accepted beyond the connection limits that may only ask /healthz.
    #[arg(long, env = "SFU_HEALTHZ_RESERVE")]
    pub healthz_reserve: Option<usize>,
    /// Milliseconds a WebSocket may stay out of a room (after opening, a failed join or a
    /// leave) before it is closed with 1008.
    #[arg(long, env = "SFU_JOIN_DEADLINE_MS")]
    pub join_deadline_ms: Option<u64>,
    /// Outgoing bytes one WebSocket may have queued; a client that does not read is closed
    /// with 1008 beyond it.
    #[arg(long, env = "SFU_MAX_WS_PENDING_OUT")]
    pub max_ws_pending_out: Option<usize>,
    /// Outgoing WebSocket bytes queued across all sockets; beyond it lagging sockets are closed.
    #[arg(long, env = "SFU_MAX_PENDING_OUT_TOTAL")]
    pub max_pending_out_total: Option<usize>,
    /// Requests per second one WebSocket may sustain (token bucket refill rate).
    #[arg(long, env = "SFU_WS_REQUEST_RATE")]
    pub ws_request_rate: Option<f64>,
    /// Requests one WebSocket may send at once (token bucket size); 3 bursts of refused
    /// requests in a row close the socket with 1008.
    #[arg(long, env = "SFU_WS_REQUEST_BURST")]
    pub ws_request_burst: Option<u32>,
    /// `error` notifications (answers to bad frames) per second per WebSocket.
    #[arg(long, env = "SFU_WS_ERROR_RATE")]
    pub ws_error_rate: Option<f64>,
    /// `error` notifications one WebSocket may get at once.
    #[arg(long, env = "SFU_WS_ERROR_BURST")]
    pub ws_error_burst: Option<u32>,
    /// Origins (comma-separated, e.g. `https://app.example`) allowed to open a WebSocket
    /// besides the served host; `*` allows all. Requests without Origin are always allowed.
    #[arg(long, env = "SFU_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// Milliseconds without a worker heartbeat after which /healthz reports it dead (503).
    #[arg(long, env = "SFU_WORKER_STALL_MS")]
    pub worker_stall_ms: Option<u64>,
    /// Seconds per forwarding-latency window (`latency.window` in /api/stats, at least 1).
    #[arg(long, env = "SFU_LATENCY_WINDOW_SECS")]
    pub latency_window_secs: Option<u64>,
    /// Kernel send buffer of each WebSocket in bytes (SO_SNDBUF; 0: kernel autotuning).
    #[arg(long, env = "SFU_WS_SOCKET_SEND_BUFFER")]
    pub ws_socket_send_buffer: Option<usize>,
    // --- limits: media abuse in rooms ---
    /// Maximum transports one peer may create.
    #[arg(long, env = "SFU_MAX_TRANSPORTS_PER_PEER")]
    pub max_transports_per_peer: Option<usize>,
    /// Maximum producers (tracks sent) of one peer.
    #[arg(long, env = "SFU_MAX_PRODUCERS_PER_PEER")]
    pub max_producers_per_peer: Option<usize>,
    /// Maximum consumers (tracks received) of one peer.
    #[arg(long, env = "SFU_MAX_CONSUMERS_PER_PEER")]
    pub max_consumers_per_peer: Option<usize>,
    /// Media bit rate sent towards one peer, all its transports together, in kbit/s (the
    /// excess is dropped and counted); 0 turns the cap off.
    #[arg(long, env = "SFU_PEER_EGRESS_KBPS")]
    pub peer_egress_kbps: Option<u64>,
    /// Memory for retransmission caches per worker, in MiB (an encoding that does not fit
    /// gets no cache: its NACKs go unanswered).
    #[arg(long, env = "SFU_RETRANSMIT_CACHE_MIB")]
    pub retransmit_cache_mib: Option<u64>,
    // --- limits: DTLS, HLS, fuzzing ---
    /// Seconds a DTLS handshake may take before the transport is closed.
    #[arg(long, env = "SFU_DTLS_HANDSHAKE_TIMEOUT_SECS")]
    pub dtls_handshake_timeout_secs: Option<u64>,
    /// Concurrent DTLS handshakes from one source IP (more fail at once).
    #[arg(long, env = "SFU_DTLS_MAX_HANDSHAKES_PER_IP")]
    pub dtls_max_handshakes_per_ip: Option<usize>,
    /// Concurrent DTLS handshakes in total (more fail at once).
    #[arg(long, env = "SFU_DTLS_MAX_HANDSHAKES")]
    pub dtls_max_handshakes: Option<usize>,
    /// Concurrent HLS pipelines (FFmpeg processes).
    #[arg(long, env = "SFU_HLS_MAX_ROOMS")]
    pub hls_max_rooms: Option<usize>,
    /// Seconds without a packet after which a producer no longer counts as sending media for
    /// HLS (a pipeline starts only for producers that send).
    #[arg(long, env = "SFU_HLS_MEDIA_WINDOW_SECS")]
    pub hls_media_window_secs: Option<u64>,
    /// Seconds without a viewer request after which a pipeline gives its slot up.
    #[arg(long, env = "SFU_HLS_IDLE_TIMEOUT_SECS")]
    pub hls_idle_timeout_secs: Option<u64>,
    /// Seconds without any producer sending media after which a pipeline gives its slot up.
    #[arg(long, env = "SFU_HLS_SOURCE_GRACE_SECS")]
    pub hls_source_grace_secs: Option<u64>,
    /// The user FFmpeg runs as when the server runs as root (its primary group too).
    #[arg(long, env = "SFU_HLS_FFMPEG_USER")]
    pub hls_ffmpeg_user: Option<String>,
    // --- fault injection (tests only; docs/config.md) ---
    /// Test only: percent (0-100) of forwarded RTP packets the workers drop (not
    /// retransmissions), to exercise NACK/RTX. Never set in production.
    #[arg(long, env = "SFU_FAULT_DROP_OUT_PERCENT")]
    pub fault_drop_out_percent: Option<u8>,
    /// Test only: requests of peers in the room with this id panic in the worker.
    #[arg(long, env = "SFU_FAULT_PANIC_ROOM")]
    pub fault_panic_room: Option<String>,
    /// Test only: closing a consumer in the room with this id panics (a close cascade
    /// breaking midway).
    #[arg(long, env = "SFU_FAULT_PANIC_CLOSE_ROOM")]
    pub fault_panic_close_room: Option<String>,
    // --- TURN (shared/protocol.md "Networks"; docs/operations.md) ---
    /// TURN servers handed to clients in every create-transport answer (comma-separated
    /// `turn:`/`turns:` URLs, e.g. `turn:turn.example.com:3478?transport=udp`). Needs
    /// --turn-secret.
    #[arg(long, env = "SFU_TURN_URLS")]
    pub turn_urls: Option<String>,
    /// The TURN server's shared secret (coturn `static-auth-secret`) that signs the
    /// short-lived credentials. Needs --turn-urls.
    #[arg(long, env = "SFU_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<Secret>,
    /// Seconds a TURN credential stays valid.
    #[arg(long, env = "SFU_TURN_TTL")]
    pub turn_ttl: Option<u64>,
    // --- Cluster (shared/protocol.md "Cluster"; docs/operations.md) ---
    /// Joins a cluster through this Redis (`redis://host:port`); needs --public-url. Unset: a
    /// single node.
    #[arg(long, env = "SFU_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// The http(s) base URL clients reach this node at (e.g. `https://node1.example:8000`);
    /// other nodes send clients of this node's rooms there.
    #[arg(long, env = "SFU_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// This node's id in the cluster (default: derived from --public-url).
    #[arg(long, env = "SFU_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds a draining server (after SIGTERM) keeps its rooms before it stops anyway.
    #[arg(long, env = "SFU_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,
    // --- Access (shared/protocol.md "Access"; docs/operations.md) ---
    /// Turns access control on: the HS256 secret every token is signed with (/ws, /api and
    /// /hls then need tokens; `sfu token` makes them).
    #[arg(long, env = "SFU_AUTH_SECRET", hide_env_values = true, global = true)]
    pub auth_secret: Option<Secret>,
    /// join-room requests per second from one IP address (all its sockets together).
    #[arg(long, env = "SFU_JOIN_RATE_PER_IP")]
    pub join_rate_per_ip: Option<f64>,
    /// The burst of join-room requests one IP address may send at once.
    #[arg(long, env = "SFU_JOIN_BURST_PER_IP")]
    pub join_burst_per_ip: Option<u32>,
    // --- ICE-TCP: passive TCP on every worker's media port ---
    /// Do not accept ICE over TCP (and offer no TCP candidate): UDP only.
    #[arg(long, env = "SFU_NO_ICE_TCP")]
    pub no_ice_tcp: bool,
    /// Maximum simultaneous ICE-TCP connections per worker.
    #[arg(long, env = "SFU_ICE_TCP_MAX_CONNECTIONS")]
    pub ice_tcp_max_connections: Option<usize>,
    /// Maximum simultaneous ICE-TCP connections from one IP address, per worker.
    #[arg(long, env = "SFU_ICE_TCP_MAX_PER_IP")]
    pub ice_tcp_max_per_ip: Option<usize>,
    /// Milliseconds an ICE-TCP connection may stay open without belonging to a transport
    /// (ICE not completed, or its transport closed) before it is closed.
    #[arg(long, env = "SFU_ICE_TCP_IDLE_TIMEOUT_MS")]
    pub ice_tcp_idle_timeout_ms: Option<u64>,
    /// Bytes queued towards one ICE-TCP connection at most; media beyond that is dropped
    /// (a client that stops reading never blocks the worker).
    #[arg(long, env = "SFU_ICE_TCP_SEND_QUEUE")]
    pub ice_tcp_send_queue: Option<usize>,
}

/// What `sfu` does besides serving.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Prints an access token signed with the configured secret (SFU_AUTH_SECRET,
    /// --auth-secret or auth_secret in the file).
    Token(TokenArgs),
}

/// `sfu token`: who may do what in which room, for how long.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// The room the token admits (`*` for every room).
    #[arg(long)]
    pub room: String,
    /// Who the holder is (the token's `sub`).
    #[arg(long)]
    pub identity: String,
    /// The display name other peers see (wins over the one the client asks for).
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds the token stays valid.
    #[arg(long, default_value_t = 6 * 3600)]
    pub ttl: u64,
    /// The holder may not publish (produce).
    #[arg(long)]
    pub no_publish: bool,
    /// The holder may not subscribe (consume, watch HLS).
    #[arg(long)]
    pub no_subscribe: bool,
    /// The holder may not use data channels.
    #[arg(long)]
    pub no_data: bool,
    /// The holder may use the admin API (/api/*) of this server.
    #[arg(long)]
    pub admin: bool,
}

/// The same settings as they appear in a TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    rtc_listen_ip: Option<IpAddr>,
    announced_ip: Option<IpAddr>,
    rtc_port: Option<u16>,
    web_root: Option<PathBuf>,
    hls_root: Option<PathBuf>,
    max_peers_per_room: Option<usize>,
    room_spill_peers: Option<usize>,
    max_ws_message: Option<usize>,
    max_connections: Option<usize>,
    pin_workers: Option<bool>,
    // --- TLS ---
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    // --- limits: signaling edge ---
    max_connections_per_ip: Option<usize>,
    healthz_reserve: Option<usize>,
    join_deadline_ms: Option<u64>,
    max_ws_pending_out: Option<usize>,
    max_pending_out_total: Option<usize>,
    ws_request_rate: Option<f64>,
    ws_request_burst: Option<u32>,
    ws_error_rate: Option<f64>,
    ws_error_burst: Option<u32>,
    allowed_origins: Option<String>,
    worker_stall_ms: Option<u64>,
    latency_window_secs: Option<u64>,
    ws_socket_send_buffer: Option<usize>,
    // --- limits: media abuse in rooms ---
    max_transports_per_peer: Option<usize>,
    max_producers_per_peer: Option<usize>,
    max_consumers_per_peer: Option<usize>,
    peer_egress_kbps: Option<u64>,
    retransmit_cache_mib: Option<u64>,
    // --- limits: DTLS, HLS, fuzzing ---
    dtls_handshake_timeout_secs: Option<u64>,
    dtls_max_handshakes_per_ip: Option<usize>,
    dtls_max_handshakes: Option<usize>,
    hls_max_rooms: Option<usize>,
    hls_media_window_secs: Option<u64>,
    hls_idle_timeout_secs: Option<u64>,
    hls_source_grace_secs: Option<u64>,
    hls_ffmpeg_user: Option<String>,
    // --- fault injection (tests only) ---
    fault_drop_out_percent: Option<u8>,
    fault_panic_room: Option<String>,
    fault_panic_close_room: Option<String>,
    // --- TURN ---
    turn_urls: Option<String>,
    turn_secret: Option<Secret>,
    turn_ttl: Option<u64>,
    // --- Cluster ---
    redis_url: Option<Secret>,
    public_url: Option<String>,
    node_id: Option<String>,
    drain_timeout: Option<u64>,
    // --- Access ---
    auth_secret: Option<Secret>,
    join_rate_per_ip: Option<f64>,
    join_burst_per_ip: Option<u32>,
    // --- ICE-TCP ---
    ice_tcp: Option<bool>,
    ice_tcp_max_connections: Option<usize>,
    ice_tcp_max_per_ip: Option<usize>,
    ice_tcp_idle_timeout_ms: Option<u64>,
    ice_tcp_send_queue: Option<usize>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub workers: usize,
    pub rtc_listen_ip: IpAddr,
    pub announced_ip: IpAddr,
    pub rtc_port: u16,
    pub web_root: PathBuf,
    /// `None`: a fresh private folder (see `hls::root`).
    pub hls_root: Option<PathBuf>,
    pub max_peers_per_room: usize,
    pub room_spill_peers: usize,
    pub max_ws_message: usize,
    pub max_connections: usize,
    pub pin_workers: bool,
    // --- TLS (both set, or neither: plain HTTP/WS) ---
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    // --- limits: signaling edge ---
    pub max_connections_per_ip: usize,
    pub healthz_reserve: usize,
    pub join_deadline_ms: u64,
    pub max_ws_pending_out: usize,
    pub max_pending_out_total: usize,
    pub ws_request_rate: f64,
    pub ws_request_burst: u32,
    pub ws_error_rate: f64,
    pub ws_error_burst: u32,
    /// Parsed from the comma-separated setting.
    pub allowed_origins: Vec<String>,
    pub worker_stall_ms: u64,
    pub latency_window_secs: u64,
    pub ws_socket_send_buffer: usize,
    // --- limits: media abuse in rooms ---
    pub max_transports_per_peer: usize,
    pub max_producers_per_peer: usize,
    pub max_consumers_per_peer: usize,
    pub peer_egress_kbps: u64,
    pub retransmit_cache_mib: u64,
    // --- limits: DTLS, HLS, fuzzing ---
    pub dtls_handshake_timeout_secs: u64,
    pub dtls_max_handshakes_per_ip: usize,
    pub dtls_max_handshakes: usize,
    pub hls_max_rooms: usize,
    pub hls_media_window_secs: u64,
    pub hls_idle_timeout_secs: u64,
    pub hls_source_grace_secs: u64,
    pub hls_ffmpeg_user: String,
    // --- fault injection (tests only; empty room ids: off) ---
    pub fault_drop_out_percent: u8,
    pub fault_panic_room: String,
    pub fault_panic_close_room: String,
    // --- TURN (empty urls and no secret: off) ---
    /// Parsed from the comma-separated setting.
    pub turn_urls: Vec<String>,
    pub turn_secret: Option<Secret>,
    pub turn_ttl: u64,
    // --- Cluster (no Redis URL: a single node) ---
    pub redis_url: Option<Secret>,
    pub public_url: Option<String>,
    pub node_id: Option<String>,
    /// Seconds; at least 1.
    pub drain_timeout: u64,
    // --- Access (no secret: off) ---
    pub auth_secret: Option<Secret>,
    pub join_rate_per_ip: f64,
    pub join_burst_per_ip: u32,
    // --- ICE-TCP ---
    pub ice_tcp: bool,
    pub ice_tcp_max_connections: usize,
    pub ice_tcp_max_per_ip: usize,
    pub ice_tcp_idle_timeout_ms: u64,
    pub ice_tcp_send_queue: usize,
}

/// A setting that must not appear in logs: `Debug` prints `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000),
            workers: num_cores(),
            rtc_listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announced_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rtc_port: 45000,
            web_root: PathBuf::from("web/out"),
            hls_root: None,
            max_peers_per_room: 1000,
            room_spill_peers: 50,
            max_ws_message: 64 * 1024,
            max_connections: 4096,
            pin_workers: true,
            // --- TLS ---
            tls_cert: None,
            tls_key: None,
            // --- limits: signaling edge ---
            // The bundled load generator spreads its sockets over 127.0.0.N, 200 each.
            max_connections_per_ip: 256,
            healthz_reserve: 16,
            // Generous: the browser tests open every peer's socket first and join them one by one.
            join_deadline_ms: 30_000,
            max_ws_pending_out: 1 << 20,
            max_pending_out_total: 64 << 20,
            // A browser joining a 50-peer room sends ~150 requests at once.
            ws_request_rate: 50.0,
            ws_request_burst: 400,
            ws_error_rate: 10.0,
            ws_error_burst: 100,
            allowed_origins: Vec::new(),
            worker_stall_ms: 5_000,
            latency_window_secs: 10,
            ws_socket_send_buffer: 256 * 1024,
            // --- limits: media abuse in rooms ---
            max_transports_per_peer: 8,
            max_producers_per_peer: 8,
            max_consumers_per_peer: 500,
            peer_egress_kbps: 50_000,
            retransmit_cache_mib: 256,
            // --- limits: DTLS, HLS, fuzzing ---
            dtls_handshake_timeout_secs: 15,
            // Room for a large office behind one NAT joining at once (a handshake takes ~2 RTTs).
            dtls_max_handshakes_per_ip: 32,
            dtls_max_handshakes: 256,
            hls_max_rooms: 4,
            hls_media_window_secs: 3,
            hls_idle_timeout_secs: 30,
            hls_source_grace_secs: 10,
            hls_ffmpeg_user: "nobody".into(),
            fault_drop_out_percent: 0,
            fault_panic_room: String::new(),
            fault_panic_close_room: String::new(),
            // --- TURN ---
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: 86_400,
            // --- Cluster ---
            redis_url: None,
            public_url: None,
            node_id: None,
            drain_timeout: 600,
            // --- Access ---
            auth_secret: None,
            // Generous: a load test or a browser test joins hundreds of peers from one address.
            join_rate_per_ip: 100.0,
            join_burst_per_ip: 1000,
            // --- ICE-TCP ---
            ice_tcp: true,
            ice_tcp_max_connections: 4096,
            ice_tcp_max_per_ip: 256,
            ice_tcp_idle_timeout_ms: 10_000,
            ice_tcp_send_queue: 256 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

pub fn num_cores() -> usize {
    core_affinity::get_core_ids()
        .map(|c| c.len())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Config {
    /// Builds the effective configuration from defaults, the optional file and the CLI/env.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        let d = Config::default();
        let cfg = Config {
            listen: cli.listen.or(file.listen).unwrap_or(d.listen),
            workers: cli.workers.or(file.workers).unwrap_or(d.workers),
            rtc_listen_ip: cli
                .rtc_listen_ip
                .or(file.rtc_listen_ip)
                .or(cli.announced_ip)
                .or(file.announced_ip)
                .unwrap_or(d.rtc_listen_ip),
            announced_ip: cli
                .announced_ip
                .or(file.announced_ip)
                .unwrap_or(d.announced_ip),
            rtc_port: cli.rtc_port.or(file.rtc_port).unwrap_or(d.rtc_port),
            web_root: cli.web_root.clone().or(file.web_root).unwrap_or(d.web_root),
            hls_root: cli.hls_root.clone().or(file.hls_root).or(d.hls_root),
            max_peers_per_room: cli
                .max_peers_per_room
                .or(file.max_peers_per_room)
                .unwrap_or(d.max_peers_per_room),
            room_spill_peers: cli
                .room_spill_peers
                .or(file.room_spill_peers)
                .unwrap_or(d.room_spill_peers),
            max_ws_message: cli
                .max_ws_message
                .or(file.max_ws_message)
                .unwrap_or(d.max_ws_message),
            max_connections: cli
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            pin_workers: !cli.no_pin && file.pin_workers.unwrap_or(d.pin_workers),
            // --- TLS ---
            tls_cert: cli.tls_cert.clone().or(file.tls_cert).or(d.tls_cert),
            tls_key: cli.tls_key.clone().or(file.tls_key).or(d.tls_key),
            // --- limits: signaling edge ---
            max_connections_per_ip: cli
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            healthz_reserve: cli
                .healthz_reserve
                .or(file.healthz_reserve)
                .unwrap_or(d.healthz_reserve),
            join_deadline_ms: cli
                .join_deadline_ms
                .or(file.join_deadline_ms)
                .unwrap_or(d.join_deadline_ms),
            max_ws_pending_out: cli
                .max_ws_pending_out
                .or(file.max_ws_pending_out)
                .unwrap_or(d.max_ws_pending_out),
            max_pending_out_total: cli
                .max_pending_out_total
                .or(file.max_pending_out_total)
                .unwrap_or(d.max_pending_out_total),
            ws_request_rate: cli
                .ws_request_rate
                .or(file.ws_request_rate)
                .unwrap_or(d.ws_request_rate),
            ws_request_burst: cli
                .ws_request_burst
                .or(file.ws_request_burst)
                .unwrap_or(d.ws_request_burst),
            ws_error_rate: cli
                .ws_error_rate
                .or(file.ws_error_rate)
                .unwrap_or(d.ws_error_rate),
            ws_error_burst: cli
                .ws_error_burst
                .or(file.ws_error_burst)
                .unwrap_or(d.ws_error_burst),
            allowed_origins: cli
                .allowed_origins
                .clone()
                .or(file.allowed_origins)
                .map(|list| split_list(&list))
                .unwrap_or(d.allowed_origins),
            worker_stall_ms: cli
                .worker_stall_ms
                .or(file.worker_stall_ms)
                .unwrap_or(d.worker_stall_ms),
            latency_window_secs: cli
                .latency_window_secs
                .or(file.latency_window_secs)
                .unwrap_or(d.latency_window_secs)
                .max(1),
            ws_socket_send_buffer: cli
                .ws_socket_send_buffer
                .or(file.ws_socket_send_buffer)
                .unwrap_or(d.ws_socket_send_buffer),
            // --- limits: media abuse in rooms ---
            max_transports_per_peer: cli
                .max_transports_per_peer
                .or(file.max_transports_per_peer)
                .unwrap_or(d.max_transports_per_peer),
            max_producers_per_peer: cli
                .max_producers_per_peer
                .or(file.max_producers_per_peer)
                .unwrap_or(d.max_producers_per_peer),
            max_consumers_per_peer: cli
                .max_consumers_per_peer
                .or(file.max_consumers_per_peer)
                .unwrap_or(d.max_consumers_per_peer),
            peer_egress_kbps: cli
                .peer_egress_kbps
                .or(file.peer_egress_kbps)
                .unwrap_or(d.peer_egress_kbps),
            retransmit_cache_mib: cli
                .retransmit_cache_mib
                .or(file.retransmit_cache_mib)
                .unwrap_or(d.retransmit_cache_mib),
            // --- limits: DTLS, HLS, fuzzing ---
            dtls_handshake_timeout_secs: cli
                .dtls_handshake_timeout_secs
                .or(file.dtls_handshake_timeout_secs)
                .unwrap_or(d.dtls_handshake_timeout_secs),
            dtls_max_handshakes_per_ip: cli
                .dtls_max_handshakes_per_ip
                .or(file.dtls_max_handshakes_per_ip)
                .unwrap_or(d.dtls_max_handshakes_per_ip),
            dtls_max_handshakes: cli
                .dtls_max_handshakes
                .or(file.dtls_max_handshakes)
                .unwrap_or(d.dtls_max_handshakes),
            hls_max_rooms: cli
                .hls_max_rooms
                .or(file.hls_max_rooms)
                .unwrap_or(d.hls_max_rooms),
            hls_media_window_secs: cli
                .hls_media_window_secs
                .or(file.hls_media_window_secs)
                .unwrap_or(d.hls_media_window_secs),
            hls_idle_timeout_secs: cli
                .hls_idle_timeout_secs
                .or(file.hls_idle_timeout_secs)
                .unwrap_or(d.hls_idle_timeout_secs),
            hls_source_grace_secs: cli
                .hls_source_grace_secs
                .or(file.hls_source_grace_secs)
                .unwrap_or(d.hls_source_grace_secs),
            hls_ffmpeg_user: cli
                .hls_ffmpeg_user
                .clone()
                .or(file.hls_ffmpeg_user)
                .unwrap_or(d.hls_ffmpeg_user),
            fault_drop_out_percent: cli
                .fault_drop_out_percent
                .or(file.fault_drop_out_percent)
                .unwrap_or(d.fault_drop_out_percent),
            fault_panic_room: cli
                .fault_panic_room
                .clone()
                .or(file.fault_panic_room)
                .unwrap_or(d.fault_panic_room),
            fault_panic_close_room: cli
                .fault_panic_close_room
                .clone()
                .or(file.fault_panic_close_room)
                .unwrap_or(d.fault_panic_close_room),
            // --- TURN ---
            turn_urls: cli
                .turn_urls
                .clone()
                .or(file.turn_urls)
                .map(|list| split_list(&list))
                .unwrap_or(d.turn_urls),
            turn_secret: cli
                .turn_secret
                .clone()
                .or(file.turn_secret)
                .filter(|s| !s.0.is_empty())
                .or(d.turn_secret),
            turn_ttl: cli.turn_ttl.or(file.turn_ttl).unwrap_or(d.turn_ttl),
            redis_url: cli
                .redis_url
                .clone()
                .or(file.redis_url)
                .filter(|s| !s.0.is_empty()),
            public_url: cli
                .public_url
                .clone()
                .or(file.public_url)
                .filter(|s| !s.is_empty()),
            node_id: cli
                .node_id
                .clone()
                .or(file.node_id)
                .filter(|s| !s.is_empty()),
            drain_timeout: cli
                .drain_timeout
                .or(file.drain_timeout)
                .unwrap_or(d.drain_timeout),
            auth_secret: cli
                .auth_secret
                .clone()
                .or(file.auth_secret)
                .filter(|s| !s.0.is_empty())
                .or(d.auth_secret),
            join_rate_per_ip: cli
                .join_rate_per_ip
                .or(file.join_rate_per_ip)
                .unwrap_or(d.join_rate_per_ip),
            join_burst_per_ip: cli
                .join_burst_per_ip
                .or(file.join_burst_per_ip)
                .unwrap_or(d.join_burst_per_ip),
            ice_tcp: !cli.no_ice_tcp && file.ice_tcp.unwrap_or(d.ice_tcp),
            ice_tcp_max_connections: cli
                .ice_tcp_max_connections
                .or(file.ice_tcp_max_connections)
                .unwrap_or(d.ice_tcp_max_connections),
            ice_tcp_max_per_ip: cli
                .ice_tcp_max_per_ip
                .or(file.ice_tcp_max_per_ip)
                .unwrap_or(d.ice_tcp_max_per_ip),
            ice_tcp_idle_timeout_ms: cli
                .ice_tcp_idle_timeout_ms
                .or(file.ice_tcp_idle_timeout_ms)
                .unwrap_or(d.ice_tcp_idle_timeout_ms),
            ice_tcp_send_queue: cli
                .ice_tcp_send_queue
                .or(file.ice_tcp_send_queue)
                .unwrap_or(d.ice_tcp_send_queue),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::Invalid(format!(
                "workers must be 1..=256, got {}",
                self.workers
            )));
        }
        if usize::from(self.rtc_port) + self.workers > 65536 || self.rtc_port == 0 {
            return Err(ConfigError::Invalid(format!(
                "rtc_port {} + {} workers does not fit in the UDP port range",
                self.rtc_port, self.workers
            )));
        }
        if self.announced_ip.is_unspecified() {
            return Err(ConfigError::Invalid(
                "announced_ip must be an address browsers can reach, not 0.0.0.0".into(),
            ));
        }
        if self.max_ws_message < 1024 {
            return Err(ConfigError::Invalid(
                "max_ws_message must be >= 1024".into(),
            ));
        }
        if self.room_spill_peers == 0 {
            return Err(ConfigError::Invalid("room_spill_peers must be >= 1".into()));
        }
        // --- TLS ---
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "tls_cert is set but tls_key is not: HTTPS needs both \
                     (--tls-cert FILE --tls-key FILE), or neither for plain HTTP"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "tls_key is set but tls_cert is not: HTTPS needs both \
                     (--tls-cert FILE --tls-key FILE), or neither for plain HTTP"
                        .into(),
                ))
            }
            _ => {}
        }
        // --- limits: signaling edge ---
        let rates_ok = [self.ws_request_rate, self.ws_error_rate]
            .iter()
            .all(|r| r.is_finite() && *r > 0.0);
        if !rates_ok || self.ws_request_burst == 0 || self.ws_error_burst == 0 {
            return Err(ConfigError::Invalid(
                "ws_request_rate/ws_error_rate must be > 0 and their bursts >= 1".into(),
            ));
        }
        if self.max_connections_per_ip == 0 || self.max_ws_pending_out < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "max_connections_per_ip must be >= 1 and max_ws_pending_out >= 65536".into(),
            ));
        }
        if self.max_peers_per_room == 0 {
            return Err(ConfigError::Invalid(
                "max_peers_per_room must be >= 1".into(),
            ));
        }
        // --- limits: media abuse in rooms ---
        for (name, v) in [
            ("max_transports_per_peer", self.max_transports_per_peer),
            ("max_producers_per_peer", self.max_producers_per_peer),
            ("max_consumers_per_peer", self.max_consumers_per_peer),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be >= 1")));
            }
        }
        if self.retransmit_cache_mib > 1 << 20 {
            return Err(ConfigError::Invalid(
                "retransmit_cache_mib must be at most 1048576 (1 TiB)".into(),
            ));
        }
        // --- limits: DTLS, HLS, fuzzing ---
        if self.dtls_handshake_timeout_secs == 0
            || self.dtls_max_handshakes_per_ip == 0
            || self.dtls_max_handshakes == 0
        {
            return Err(ConfigError::Invalid(
                "dtls_handshake_timeout_secs, dtls_max_handshakes_per_ip and \
                 dtls_max_handshakes must be >= 1"
                    .into(),
            ));
        }
        if self.hls_media_window_secs == 0 || self.hls_idle_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "hls_media_window_secs and hls_idle_timeout_secs must be >= 1".into(),
            ));
        }
        if self.fault_drop_out_percent > 100 {
            return Err(ConfigError::Invalid(
                "fault_drop_out_percent must be 0..=100 (and is for tests only)".into(),
            ));
        }
        // --- TURN ---
        if let Some(bad) = self
            .turn_urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return Err(ConfigError::Invalid(format!(
                "turn_urls: {bad:?} is not a TURN URL (it must start with turn: or turns:)"
            )));
        }
        match (self.turn_urls.is_empty(), self.turn_secret.is_some()) {
            (false, false) => {
                return Err(ConfigError::Invalid(
                    "turn_urls is set but turn_secret is not: set SFU_TURN_SECRET (or \
                     --turn-secret, or turn_secret in the file) to the TURN server's \
                     static-auth-secret, or unset SFU_TURN_URLS"
                        .into(),
                ))
            }
            (true, true) => {
                return Err(ConfigError::Invalid(
                    "turn_secret is set but turn_urls is not: set SFU_TURN_URLS (or \
                     --turn-urls, or turn_urls in the file) to the TURN server's turn:/turns: \
                     URLs, or unset SFU_TURN_SECRET"
                        .into(),
                ))
            }
            _ => {}
        }
        if !(self.join_rate_per_ip > 0.0 && self.join_rate_per_ip.is_finite())
            || self.join_burst_per_ip == 0
        {
            return Err(ConfigError::Invalid(
                "join_rate_per_ip must be a positive number and join_burst_per_ip >= 1".into(),
            ));
        }
        if self.turn_ttl == 0 {
            return Err(ConfigError::Invalid("turn_ttl must be >= 1 second".into()));
        }
        // --- Cluster ---
        if self.drain_timeout == 0 {
            return Err(ConfigError::Invalid(
                "drain_timeout must be >= 1 second".into(),
            ));
        }
        if let Some(url) = &self.public_url {
            let ok = url.starts_with("http://") || url.starts_with("https://");
            if !ok || url.len() > 512 {
                return Err(ConfigError::Invalid(format!(
                    "public_url: {url:?} must be the http(s) base URL clients reach this node                      at, e.g. http://10.0.0.5:8000"
                )));
            }
        }
        if let Some(id) = &self.node_id {
            if !crate::signaling::protocol::is_valid_room_id(id) {
                return Err(ConfigError::Invalid(
                    "node_id must be 1-64 characters of [A-Za-z0-9_-]".into(),
                ));
            }
        }
        if self.redis_url.is_some() && self.public_url.is_none() {
            return Err(ConfigError::Invalid(
                "redis_url is set but public_url is not: set SFU_PUBLIC_URL (or --public-url)                  to the http(s) URL clients reach this node at, so other nodes can send them                  here"
                    .into(),
            ));
        }
        if self.ice_tcp_max_connections == 0
            || self.ice_tcp_max_per_ip == 0
            || self.ice_tcp_idle_timeout_ms == 0
        {
            return Err(ConfigError::Invalid(
                "ice_tcp_max_connections, ice_tcp_max_per_ip and ice_tcp_idle_timeout_ms must be >= 1 (use ice_tcp = false to turn ICE-TCP off)".into(),
            ));
        }
        if self.ice_tcp_send_queue < 16 * 1024 {
            return Err(ConfigError::Invalid(
                "ice_tcp_send_queue must be >= 16384 bytes".into(),
            ));
        }
        Ok(())
    }

    /// The TURN servers each worker hands out (room/turn.rs); None when not configured.
    pub fn turn(&self) -> Option<crate::room::turn::TurnConfig> {
        let secret = self.turn_secret.as_ref()?;
        (!self.turn_urls.is_empty()).then(|| crate::room::turn::TurnConfig {
            urls: self.turn_urls.clone(),
            secret: std::sync::Arc::from(secret.0.as_str()),
            ttl_secs: self.turn_ttl,
        })
    }

    /// The token checker (signaling/access.rs); None: access is off.
    /// The cluster settings, if a Redis URL is set (validation made sure of the public URL).
    pub fn cluster(&self) -> Option<crate::cluster::ClusterConfig> {
        let redis = self.redis_url.as_ref()?;
        let public = self.public_url.as_deref()?;
        let id = self
            .node_id
            .clone()
            .unwrap_or_else(|| node_id_from_url(public));
        Some(crate::cluster::ClusterConfig::new(
            redis.0.clone(),
            id,
            public,
        ))
    }

    pub fn access(&self) -> Option<std::sync::Arc<crate::signaling::access::Access>> {
        let secret = self.auth_secret.as_ref()?;
        Some(std::sync::Arc::new(crate::signaling::access::Access::new(
            &secret.0,
        )))
    }

    /// What each worker's ICE-TCP listener accepts (worker/tcp.rs); None: ICE-TCP is off.
    pub fn ice_tcp(&self) -> Option<crate::worker::tcp::TcpOptions> {
        self.ice_tcp.then(|| crate::worker::tcp::TcpOptions {
            max_connections: self.ice_tcp_max_connections,
            max_per_ip: self.ice_tcp_max_per_ip,
            idle_timeout: std::time::Duration::from_millis(self.ice_tcp_idle_timeout_ms),
            send_queue: self.ice_tcp_send_queue,
        })
    }

    /// The faults each worker injects (tests only; all off by default).
    pub fn faults(&self) -> crate::room::env::Faults {
        let room = |id: &str| (!id.is_empty()).then(|| std::sync::Arc::from(id));
        crate::room::env::Faults {
            drop_out_percent: self.fault_drop_out_percent,
            panic_room: room(&self.fault_panic_room),
            panic_close_room: room(&self.fault_panic_close_room),
        }
    }

    /// The media limits each worker enforces (room/limits.rs).
    pub fn media_limits(&self) -> crate::room::limits::MediaLimits {
        crate::room::limits::MediaLimits {
            max_transports_per_peer: self.max_transports_per_peer,
            max_producers_per_peer: self.max_producers_per_peer,
            max_consumers_per_peer: self.max_consumers_per_peer,
            peer_egress_bitrate: self.peer_egress_kbps.saturating_mul(1000),
            retransmit_cache_budget: self.retransmit_cache_mib << 20,
        }
    }
}

/// `a, b,,c` → `["a", "b", "c"]`.
/// `http://10.0.0.5:8000` → `10-0-0-5-8000`: a valid id, the same on every restart.
fn node_id_from_url(url: &str) -> String {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let id: String = authority
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(64)
        .collect();
    if id.is_empty() {
        "node".into()
    } else {
        id
    }
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sfu.toml");
        std::fs::write(
            &path,
            "workers = 1\nrtc_port = 50000\nannounced_ip = \"10.0.0.5\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            rtc_port: Some(51000),
            ..Default::default()
        };
        let cfg = Config::load(&cli).unwrap();
        assert_eq!(cfg.workers, 1);
        assert_eq!(cfg.rtc_port, 51000);
        assert_eq!(cfg.announced_ip.to_string(), "10.0.0.5");
        assert_eq!(cfg.listen.port(), 8000);
    }

    #[test]
    fn an_unknown_file_setting_is_an_error_that_names_it() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sfu.toml");
        std::fs::write(&path, "wokers = 1\n").unwrap();
        let cli = Cli {
            config: Some(path),
            ..Default::default()
        };
        let err = Config::load(&cli).unwrap_err().to_string();
        assert!(err.contains("wokers"), "{err}");
    }

    #[test]
    fn signaling_edge_limits_come_from_the_file_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sfu.toml");
        std::fs::write(
            &path,
            "max_connections_per_ip = 7\nhealthz_reserve = 3\njoin_deadline_ms = 1500\n\
             max_ws_pending_out = 70000\nmax_pending_out_total = 900000\n\
             ws_request_rate = 2.5\nws_request_burst = 9\nws_error_rate = 1.0\n\
             ws_error_burst = 4\nallowed_origins = \"https://a.example, *\"\n\
             worker_stall_ms = 800\nws_socket_send_buffer = 0\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            ws_request_burst: Some(11),
            ..Default::default()
        };
        let cfg = Config::load(&cli).unwrap();
        assert_eq!(cfg.max_connections_per_ip, 7);
        assert_eq!(cfg.healthz_reserve, 3);
        assert_eq!(cfg.join_deadline_ms, 1500);
        assert_eq!(cfg.max_ws_pending_out, 70000);
        assert_eq!(cfg.max_pending_out_total, 900000);
        assert_eq!(cfg.ws_request_rate, 2.5);
        assert_eq!(cfg.ws_request_burst, 11);
        assert_eq!((cfg.ws_error_rate, cfg.ws_error_burst), (1.0, 4));
        assert_eq!(cfg.allowed_origins, ["https://a.example", "*"]);
        assert_eq!(cfg.worker_stall_ms, 800);
        assert_eq!(cfg.ws_socket_send_buffer, 0);
        let zero_rate = Cli {
            ws_request_rate: Some(0.0),
            ..Default::default()
        };
        assert!(Config::load(&zero_rate).is_err());
    }

    #[test]
    fn media_limits_default_to_the_workers_defaults_and_zero_caps_are_rejected() {
        let cfg = Config::load(&Cli::default()).unwrap();
        assert_eq!(
            cfg.media_limits(),
            crate::room::limits::MediaLimits::default()
        );
        let cli = Cli {
            max_consumers_per_peer: Some(0),
            ..Default::default()
        };
        let err = Config::load(&cli).unwrap_err().to_string();
        assert!(err.contains("max_consumers_per_peer"), "{err}");
    }

    #[test]
    fn dtls_and_hls_limits_come_from_the_file_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sfu.toml");
        std::fs::write(
            &path,
            "dtls_max_handshakes_per_ip = 3\nhls_media_window_secs = 5\nhls_ffmpeg_user = \"hls\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            dtls_max_handshakes_per_ip: Some(4),
            ..Default::default()
        };
        let cfg = Config::load(&cli).unwrap();
        assert_eq!(cfg.dtls_max_handshakes_per_ip, 4);
        assert_eq!(cfg.hls_media_window_secs, 5);
        assert_eq!(cfg.hls_ffmpeg_user, "hls");
        assert_eq!(cfg.dtls_max_handshakes, 256);
        assert_eq!(cfg.hls_root, None, "unset: a fresh private folder");
        let zero = Cli {
            dtls_handshake_timeout_secs: Some(0),
            ..Default::default()
        };
        assert!(Config::load(&zero).is_err());
    }

    // --- TURN ---
    #[test]
    fn turn_settings_come_from_the_file_and_flags_win() {
        let cfg = Config::load(&Cli::default()).unwrap();
        assert_eq!(cfg.turn(), None, "off by default");
        let dir = std::env::temp_dir().join(format!("sfu-cfg-turn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sfu.toml");
        std::fs::write(
            &path,
            "turn_urls = \"turn:a.example:3478?transport=udp, turns:a.example:443?transport=tcp\"\n\
             turn_secret = \"from-file\"\nturn_ttl = 600\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            turn_secret: Some("from-flag".parse().unwrap()),
            ..Default::default()
        };
        let turn = Config::load(&cli).unwrap().turn().unwrap();
        assert_eq!(
            turn.urls,
            [
                "turn:a.example:3478?transport=udp",
                "turns:a.example:443?transport=tcp"
            ]
        );
        assert_eq!(&*turn.secret, "from-flag");
        assert_eq!(turn.ttl_secs, 600);
        let default_ttl = Cli {
            turn_urls: Some("turn:127.0.0.1:3478".into()),
            turn_secret: Some("s".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(Config::load(&default_ttl).unwrap().turn_ttl, 86_400);
    }

    #[test]
    fn a_cluster_needs_a_public_url_and_derives_a_stable_node_id_from_it() {
        let no_url = Cli {
            redis_url: Some("redis://127.0.0.1:6379".parse().unwrap()),
            ..Default::default()
        };
        let err = Config::load(&no_url).unwrap_err().to_string();
        assert!(err.contains("SFU_PUBLIC_URL"), "{err}");
        let cluster = Cli {
            public_url: Some("http://10.0.0.5:8000/".into()),
            ..no_url
        };
        let cfg = Config::load(&cluster).unwrap();
        let c = cfg.cluster().expect("a cluster");
        assert_eq!(c.node_id, "10-0-0-5-8000");
        assert_eq!(c.public_url, "http://10.0.0.5:8000");
        assert!(
            !format!("{cfg:?}").contains("redis://"),
            "the Redis URL may hold a password: never in debug output"
        );
        assert!(Config::load(&Cli::default()).unwrap().cluster().is_none());
        let bad = Cli {
            public_url: Some("10.0.0.5:8000".into()),
            ..Default::default()
        };
        assert!(Config::load(&bad).is_err(), "a public URL needs its scheme");
        let bad_id = Cli {
            node_id: Some("a b".into()),
            ..Default::default()
        };
        assert!(Config::load(&bad_id).is_err());
        let zero = Cli {
            drain_timeout: Some(0),
            ..Default::default()
        };
        assert!(Config::load(&zero).is_err());
    }

    #[test]
    fn turn_needs_both_urls_and_secret_and_only_turn_urls() {
        let only_urls = Cli {
            turn_urls: Some("turn:127.0.0.1:3478".into()),
            ..Default::default()
        };
        let err = Config::load(&only_urls).unwrap_err().to_string();
        assert!(err.contains("SFU_TURN_SECRET"), "{err}");
        let only_secret = Cli {
            turn_secret: Some("s".parse().unwrap()),
            ..Default::default()
        };
        let err = Config::load(&only_secret).unwrap_err().to_string();
        assert!(err.contains("SFU_TURN_URLS"), "{err}");
        let stun = Cli {
            turn_urls: Some("stun:127.0.0.1:3478".into()),
            turn_secret: Some("s".parse().unwrap()),
            ..Default::default()
        };
        let err = Config::load(&stun).unwrap_err().to_string();
        assert!(err.contains("stun:127.0.0.1:3478"), "{err}");
        let zero_ttl = Cli {
            turn_urls: Some("turns:127.0.0.1:443".into()),
            turn_secret: Some("s".parse().unwrap()),
            turn_ttl: Some(0),
            ..Default::default()
        };
        assert!(Config::load(&zero_ttl).is_err());
    }

    #[test]
    fn the_turn_secret_never_shows_in_debug_output() {
        let cli = Cli {
            turn_urls: Some("turn:127.0.0.1:3478".into()),
            turn_secret: Some("very-secret-value".parse().unwrap()),
            ..Default::default()
        };
        let cfg = Config::load(&cli).unwrap();
        for text in [
            format!("{cli:?}"),
            format!("{cfg:?}"),
            format!("{:?}", cfg.turn()),
        ] {
            assert!(!text.contains("very-secret-value"), "{text}");
        }
    }

    #[test]
    fn tls_files_come_from_the_file_and_flags_and_need_each_other() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sfu.toml");
        std::fs::write(
            &path,
            "tls_cert = \"/a/cert.pem\"\ntls_key = \"/a/key.pem\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            tls_key: Some("/b/key.pem".into()),
            ..Default::default()
        };
        let cfg = Config::load(&cli).unwrap();
        assert_eq!(cfg.tls_cert, Some(PathBuf::from("/a/cert.pem")));
        assert_eq!(cfg.tls_key, Some(PathBuf::from("/b/key.pem")));
        assert_eq!(Config::load(&Cli::default()).unwrap().tls_cert, None);
        let only_cert = Cli {
            tls_cert: Some("/a/cert.pem".into()),
            ..Default::default()
        };
        let err = Config::load(&only_cert).unwrap_err().to_string();
        assert!(err.contains("tls_key is not"), "{err}");
    }

    #[test]
    fn an_unspecified_announced_ip_is_rejected() {
        let cli = Cli {
            announced_ip: Some("0.0.0.0".parse().unwrap()),
            ..Default::default()
        };
        assert!(Config::load(&cli).is_err());
    }
}
