#![recursion_limit = "256"]
//! A thread-per-core WebRTC SFU speaking mediasoup-client's parameter formats.
//!
//! Layers (see docs/architecture.md):
//! - [`signaling`]: the edge thread (HTTP + WebSocket, JSON, validation, room placement).
//! - [`worker`]: one glommio executor per core owning routers, UDP sockets and timers.
//! - [`room`]: one router per room (transports, producers, consumers, taps), the typed
//!   contract with signaling (`room::api`), the forwarding decision and the `ortc` rules.
//! - [`stats`]: the live counters of each worker (`/api/stats`).
//! - [`rtc`]: sans-IO protocol pieces (ICE-lite, DTLS bridge, SRTP, RTP rewrite, RTCP).

pub mod channel;
pub mod cluster;
pub mod config;
pub mod hls;
pub mod ids;
pub mod room;
pub mod rtc;
pub mod signaling;
pub mod stats;
#[doc(hidden)]
pub mod testing;
pub mod worker;

#[cfg(test)]
mod test_util;
