//! The signaling thread: HTTP + WebSocket edge, JSON protocol, room placement.

pub mod access;
pub mod edge;
pub mod http;
pub mod metrics;
pub mod origin;
pub mod protocol;
pub mod rate;
pub mod session;
pub mod static_files;
pub mod tls;
pub mod wire;
