//! Several nodes behind one address, coordinated through Redis (shared/protocol.md "Cluster").
//!
//! Each node runs one `cluster` thread (beside the signaling and DTLS threads; workers never
//! touch Redis). Every heartbeat it
//! - writes its record `sfu:node:<id>` (URL, load, draining) with an expiry, so a node that
//!   stops heartbeating is gone within [`ClusterConfig::ttl`];
//! - renews the lease `sfu:room:<roomId>` of every room it hosts (same expiry);
//! - reads every node record and room lease into a [`View`] the signaling thread shows on
//!   `/api/cluster` and `/api/rooms/<id>`.
//!
//! A `join-room` for a room this node does not host asks the thread for a [`Placement`]: an
//! atomic script keeps a live owner's lease or gives the room to the least-loaded live node that
//! is not draining. The signaling thread joins locally or answers `moved` with the owner's URL.
//! Without Redis the node keeps its rooms and refuses new ones until Redis is back.

mod store;

pub use store::spawn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Key prefixes in Redis.
pub const NODE_PREFIX: &str = "sfu:node:";
pub const ROOM_PREFIX: &str = "sfu:room:";

#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// This node's id (unique in the cluster).
    pub node_id: String,
    /// The http(s) base URL clients reach this node at, without a trailing slash.
    pub public_url: String,
    /// How often the record and the leases are renewed.
    pub heartbeat: Duration,
    /// Expiry of the record and of the leases: a node that stops is gone after this.
    pub ttl: Duration,
}

impl ClusterConfig {
    pub fn new(redis_url: String, node_id: String, public_url: &str) -> Self {
        Self {
            redis_url,
            node_id,
            public_url: public_url.trim_end_matches('/').to_string(),
            heartbeat: Duration::from_secs(1),
            ttl: Duration::from_secs(5),
        }
    }

    /// A record with less time left than this has missed three heartbeats: its node counts
    /// as dead before the record expires (Redis's clock, so no skew between nodes).
    pub fn stale_below(&self) -> Duration {
        self.ttl.saturating_sub(self.heartbeat * 3)
    }
}

/// The Redis URL may hold a password: never printed.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("public_url", &self.public_url)
            .field("heartbeat", &self.heartbeat)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The WebSocket URL of a node's http(s) base URL: `https://h` → `wss://h/ws`.
pub fn ws_url(public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}/ws"),
        Some((_, rest)) => format!("ws://{rest}/ws"),
        None => format!("ws://{base}/ws"),
    }
}

/// One node's record, as stored in Redis (JSON) and listed on `/api/cluster`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub url: String,
    pub rooms: usize,
    pub peers: usize,
    pub consumers: usize,
    /// Share of the machine's cores the process used over the last heartbeat (0–1).
    pub cpu: f32,
    pub draining: bool,
}

impl NodeInfo {
    /// What placement minimises: every room is at least one peer about to arrive.
    fn load(&self) -> usize {
        self.peers + self.rooms
    }
}

/// The least-loaded node that takes new rooms (not draining). Ties go to `me` (no redirect,
/// and nodes whose views are a heartbeat old do not all pick the same one), then the lower id.
pub fn least_loaded<'a>(nodes: &'a [NodeInfo], me: &str) -> Option<&'a NodeInfo> {
    nodes
        .iter()
        .filter(|n| !n.draining)
        .min_by_key(|n| (n.load(), n.id != me, &n.id))
}

/// What the thread last read from Redis.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Whether the last heartbeat reached Redis.
    pub connected: bool,
    pub nodes: Vec<NodeInfo>,
    /// Room id → owner node id (every live lease).
    pub rooms: HashMap<String, String>,
}

impl View {
    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// Where a room lives, as the thread answers a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Here: join it on this node.
    Local,
    /// On another node: the client reconnects to `ws_url`.
    Moved { node: String, ws_url: String },
    /// No answer now (Redis unreachable, every node draining): what to tell the client.
    Unavailable(String),
}

/// A placement the signaling thread asked for, answered.
#[derive(Debug)]
pub struct PlaceReply {
    pub conn: u64,
    pub req_id: u32,
    pub room_id: Arc<str>,
    pub placement: Placement,
}

/// What the signaling thread tells the cluster thread.
#[derive(Debug)]
pub enum ClusterJob {
    Place {
        conn: u64,
        req_id: u32,
        room_id: Arc<str>,
    },
    /// A room now lives here / is gone from here (its lease is renewed / released).
    RoomOpened(Arc<str>),
    RoomClosed(Arc<str>),
    /// Deregister (the node record and its leases go at once) and end the thread.
    Stop,
}

/// The signaling thread's end of the cluster thread.
pub struct ClusterLink {
    pub node_id: String,
    pub jobs: std::sync::mpsc::Sender<ClusterJob>,
    pub replies: crate::channel::Receiver<PlaceReply>,
    pub view: Arc<Mutex<View>>,
}

impl ClusterLink {
    /// Reads the last view in place (the lock is held only for `f`; nothing is copied).
    pub fn with_view<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        match self.view.lock() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// The thread's handle in `main`: stop it (it deregisters the node) and wait for it.
pub struct ClusterThread {
    pub jobs: std::sync::mpsc::Sender<ClusterJob>,
    pub thread: std::thread::JoinHandle<()>,
}

impl ClusterThread {
    pub fn stop(self) {
        let _ = self.jobs.send(ClusterJob::Stop);
        if self.thread.join().is_err() {
            tracing::error!("the cluster thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, rooms: usize, peers: usize, draining: bool) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            url: format!("http://{id}"),
            rooms,
            peers,
            consumers: 0,
            cpu: 0.0,
            draining,
        }
    }

    #[test]
    fn least_loaded_skips_draining_nodes_and_breaks_ties_for_this_node() {
        let nodes = [
            node("c", 0, 0, true),
            node("b", 1, 2, false),
            node("a", 2, 1, false),
        ];
        assert_eq!(least_loaded(&nodes, "x").unwrap().id, "a");
        assert_eq!(
            least_loaded(&nodes, "b").unwrap().id,
            "b",
            "a tie goes to this node"
        );
        assert_eq!(
            least_loaded(&nodes, "c").unwrap().id,
            "a",
            "never a draining node"
        );
        let nodes = [node("b", 0, 1, false), node("a", 3, 9, false)];
        assert_eq!(least_loaded(&nodes, "a").unwrap().id, "b");
        assert!(least_loaded(&[node("a", 0, 0, true)], "a").is_none());
        assert!(least_loaded(&[], "a").is_none());
    }

    #[test]
    fn ws_url_follows_the_scheme() {
        assert_eq!(ws_url("http://10.0.0.1:8000/"), "ws://10.0.0.1:8000/ws");
        assert_eq!(ws_url("https://sfu.example"), "wss://sfu.example/ws");
    }

    #[test]
    fn node_records_round_trip_as_json() {
        let n = node("n1", 3, 7, true);
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<NodeInfo>(&text).unwrap(), n);
    }
}
