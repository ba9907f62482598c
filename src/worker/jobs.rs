//! The contract between the signaling thread and the workers: jobs in, outbound messages back.

use crate::signaling::protocol::{ApiError, Request};
use serde_json::Value;
use std::sync::Arc;

/// A WebSocket connection, as numbered by the edge.
pub type ConnId = u64;

/// Work for the worker that owns `room_id`.
#[derive(Debug)]
pub struct Job {
    pub conn: ConnId,
    pub room_id: Arc<str>,
    pub peer_id: Arc<str>,
    pub kind: JobKind,
}

#[derive(Debug)]
pub enum JobKind {
    /// A client request; answered with exactly one `Outbound::Response`.
    Request { req_id: u32, request: Request },
    /// join-room, sent to the room's home worker; `host` is the worker that will own the
    /// peer's transports (the home itself, or another worker the room spans to). The host
    /// answers.
    Join {
        req_id: u32,
        display_name: String,
        host: usize,
    },
    /// The socket closed without leave-room: same as leaving, nobody to answer.
    Disconnected,
    /// Replace the room's HLS taps (plain RTP to loopback); empty stops them.
    SetTaps(Vec<crate::hls::TapTarget>),
    /// Ask the room's video producers for key frames (HLS segment boundaries).
    RequestKeyFrames,
    /// Makes the room's handler panic before it answers request `req_id` (used by tests to
    /// prove a panic stays in its room and the request is still answered; nothing on the
    /// network can send it).
    Crash { req_id: u32 },
}

/// Messages from a worker to the signaling thread.
#[derive(Debug)]
pub enum Outbound {
    Response {
        conn: ConnId,
        req_id: u32,
        result: Result<Value, ApiError>,
    },
    Notify {
        conn: ConnId,
        method: &'static str,
        data: Value,
    },
    /// The producers of a room changed (for the HLS pipeline).
    RoomSources {
        room_id: String,
        sources: Vec<crate::hls::MediaSource>,
    },
    /// The room is gone from its home worker (and so from every worker): the signaling
    /// thread may place its next join anywhere.
    RoomClosed { room_id: Arc<str> },
    /// A peer was removed by the worker on its own (its room failed): forget it.
    PeerGone {
        conn: ConnId,
        room_id: Arc<str>,
        peer_id: Arc<str>,
    },
}
