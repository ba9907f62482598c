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
    /// TOML file with any of the settings below (flags and env win over it).
    #[arg(long, env = "SFU_CONFIG")]
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
    // --- limits: DTLS, HLS, fuzzing ---
    dtls_handshake_timeout_secs: Option<u64>,
    dtls_max_handshakes_per_ip: Option<usize>,
    dtls_max_handshakes: Option<usize>,
    hls_max_rooms: Option<usize>,
    hls_media_window_secs: Option<u64>,
    hls_idle_timeout_secs: Option<u64>,
    hls_source_grace_secs: Option<u64>,
    hls_ffmpeg_user: Option<String>,
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
    // --- limits: DTLS, HLS, fuzzing ---
    pub dtls_handshake_timeout_secs: u64,
    pub dtls_max_handshakes_per_ip: usize,
    pub dtls_max_handshakes: usize,
    pub hls_max_rooms: usize,
    pub hls_media_window_secs: u64,
    pub hls_idle_timeout_secs: u64,
    pub hls_source_grace_secs: u64,
    pub hls_ffmpeg_user: String,
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
            // --- limits: DTLS, HLS, fuzzing ---
            dtls_handshake_timeout_secs: 15,
            dtls_max_handshakes_per_ip: 16,
            dtls_max_handshakes: 256,
            hls_max_rooms: 4,
            hls_media_window_secs: 3,
            hls_idle_timeout_secs: 30,
            hls_source_grace_secs: 10,
            hls_ffmpeg_user: "nobody".into(),
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
        if self.max_peers_per_room == 0 {
            return Err(ConfigError::Invalid(
                "max_peers_per_room must be >= 1".into(),
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
        Ok(())
    }
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
    fn dtls_and_hls_limits_come_from_the_file_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg3-{}", std::process::id()));
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

    #[test]
    fn an_unspecified_announced_ip_is_rejected() {
        let cli = Cli {
            announced_ip: Some("0.0.0.0".parse().unwrap()),
            ..Default::default()
        };
        assert!(Config::load(&cli).is_err());
    }
}
