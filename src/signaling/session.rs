//! Per-socket sessions, room placement and the request dispatch `match`.
//!
//! The signaling thread owns the membership view (which room lives on which worker, who is in
//! it). Requests of a joined socket are handed to that room's worker as jobs, in order; the
//! worker answers each with exactly one response. Answers given here (validation errors) are
//! queued behind any in-flight worker requests so a socket always sees responses in order.

use super::access::Claims;
use super::edge::{ConnId, EdgeHandler, EdgeOut, HttpRequest, HttpResponse};
use super::protocol::{
    error_notification, notification, parse_frame, parse_request, response_err, response_ok,
    ApiError, Frame, Request,
};
use super::rate::{SocketRates, TokenBucket, Verdict};
use crate::channel::{Receiver, Sender};
use crate::cluster::{ClusterJob, ClusterLink, Placement};
use crate::hls::{HlsAction, HlsManager};
use crate::room::api::{Job, JobKind, Outbound};
use crate::stats::{Counted, WorkerStats};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests a socket may have in flight before it gets `limit` errors.
const MAX_IN_FLIGHT: usize = 64;
/// Messages from the workers handled per loop turn; the rest wait for the next turn, so a
/// flood of notifications cannot keep the loop from reading other sockets.
const MAX_OUTBOUND_PER_TURN: usize = 4096;

/// How the signaling thread reaches one worker.
pub struct WorkerLink {
    pub jobs: Sender<Job>,
    pub stats: Arc<WorkerStats>,
}

pub struct SignalingLimits {
    pub max_peers_per_room: usize,
    /// Peers of one room on its home worker before the room spans other workers.
    pub room_spill_peers: usize,
    /// A WebSocket not in a room this long (after opening, a failed join or a leave) is
    /// closed with 1008.
    pub join_deadline: Duration,
    /// Requests per second per socket (token bucket) and the burst it may send at once.
    pub request_rate: f64,
    pub request_burst: u32,
    /// `error` notifications (answers to bad frames) per second per socket, and burst.
    pub error_rate: f64,
    pub error_burst: u32,
    /// A worker whose heartbeat has not moved this long counts as dead (`/healthz` → 503).
    pub worker_stall: Duration,
    /// `join-room`s per second from one IP address (token bucket) and the burst it may send.
    pub join_rate_per_ip: f64,
    pub join_burst_per_ip: u32,
}

impl Default for SignalingLimits {
    fn default() -> Self {
        Self {
            max_peers_per_room: 1000,
            room_spill_peers: 50,
            join_deadline: Duration::from_secs(30),
            request_rate: 50.0,
            request_burst: 400,
            error_rate: 10.0,
            error_burst: 100,
            worker_stall: Duration::from_secs(5),
            join_rate_per_ip: 100.0,
            join_burst_per_ip: 1000,
        }
    }
}

/// Requests and answers of a socket held while its join-room is in flight (bounded: a
/// client that pipelines more than this is closed).
const MAX_HELD: usize = 256;

struct Joined {
    room_id: Arc<str>,
    peer_id: Arc<str>,
    /// The worker hosting the peer: its requests go there.
    worker: usize,
}

/// A frame of a socket waiting for that socket's join-room answer: the peer's worker is only
/// certain to know the peer once the join is answered.
enum Held {
    Request(u32, Request),
    Answer(u32, Result<Value, ApiError>),
}

enum Slot {
    Waiting { req_id: u32, join: bool },
    Ready(String),
}

struct Conn {
    joined: Option<Joined>,
    slots: VecDeque<Slot>,
    held: VecDeque<Held>,
    /// Since when the socket has not been in a room (None while joined or joining).
    unjoined_since: Option<Instant>,
    rates: SocketRates,
    /// Where the socket comes from (per-IP join rate).
    ip: IpAddr,
    /// The socket's verified token (access on), else None: everything is allowed.
    claims: Option<Claims>,
}

impl Conn {
    fn joining(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s, Slot::Waiting { join: true, .. }))
    }
}

struct RoomPeer {
    id: Arc<str>,
    display_name: String,
    worker: usize,
}

struct RoomEntry {
    /// The worker that owns the room and orders its membership (joins go there).
    home: usize,
    /// In join order. The entry stays (empty) until the home reports the room closed, so a
    /// quick rejoin lands on the same home.
    peers: Vec<RoomPeer>,
}

impl RoomEntry {
    fn on_worker(&self, w: usize) -> usize {
        self.peers.iter().filter(|p| p.worker == w).count()
    }
}

pub struct Signaling {
    workers: Vec<WorkerLink>,
    /// Live HLS pipelines (FFmpeg children of this thread), if HLS is enabled.
    hls: Option<HlsManager>,
    worker_rooms: Vec<usize>,
    outbound: Receiver<Outbound>,
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<Arc<str>, RoomEntry>,
    limits: SignalingLimits,
    /// Per worker: the last heartbeat seen and when it last moved.
    heartbeats: Vec<(u64, Instant)>,
    /// Joins per source address; an address whose bucket refilled is forgotten.
    join_rates: HashMap<IpAddr, TokenBucket>,
    /// Set on SIGTERM: no new rooms here, `/healthz` answers 503.
    draining: Arc<AtomicBool>,
    /// The cluster thread, when this node is part of a cluster.
    cluster: Option<ClusterLink>,
    /// Joins waiting for the cluster's placement: the display name to join with.
    placing: HashMap<(ConnId, u32), String>,
}

impl Signaling {
    pub fn new(
        workers: Vec<WorkerLink>,
        outbound: Receiver<Outbound>,
        limits: SignalingLimits,
        hls: Option<HlsManager>,
    ) -> Self {
        let n = workers.len();
        Self {
            workers,
            hls,
            worker_rooms: vec![0; n],
            outbound,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            limits,
            heartbeats: vec![(0, Instant::now()); n],
            join_rates: HashMap::new(),
            draining: Arc::new(AtomicBool::new(false)),
            cluster: None,
            placing: HashMap::new(),
        }
    }

    /// The flag SIGTERM sets (the signal thread and the cluster thread share it).
    pub fn with_draining(mut self, draining: Arc<AtomicBool>) -> Self {
        self.draining = draining;
        self
    }

    /// Places rooms through the cluster (shared/protocol.md "Cluster").
    pub fn with_cluster(mut self, link: ClusterLink) -> Self {
        self.cluster = Some(link);
        self
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Answers `req_id` from here, after anything still in flight for this socket.
    fn answer(
        &mut self,
        conn: ConnId,
        req_id: u32,
        result: Result<Value, ApiError>,
        out: &mut EdgeOut,
    ) {
        let text = match result {
            Ok(data) => response_ok(req_id, data),
            Err(e) => response_err(req_id, &e),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.slots.is_empty() {
            out.send_text(conn, text);
        } else {
            c.slots.push_back(Slot::Ready(text));
        }
    }

    fn dispatch(&mut self, conn: ConnId, req_id: u32, request: Request, out: &mut EdgeOut) {
        let in_flight = self.conns.get(&conn).map_or(0, |c| c.slots.len());
        if in_flight >= MAX_IN_FLIGHT {
            return self.answer(
                conn,
                req_id,
                Err(ApiError::limit(format!(
                    "more than {MAX_IN_FLIGHT} requests in flight on this socket; wait for responses"
                ))),
                out,
            );
        }
        let joined = self
            .conns
            .get(&conn)
            .and_then(|c| c.joined.as_ref())
            .map(|j| (j.room_id.clone(), j.peer_id.clone(), j.worker));
        match (&request, joined) {
            (Request::JoinRoom { .. }, Some(_)) => self.answer(
                conn,
                req_id,
                Err(ApiError::invalid_state(
                    "this socket already joined a room; leave-room first",
                )),
                out,
            ),
            (
                Request::JoinRoom {
                    room_id,
                    display_name,
                },
                None,
            ) => {
                let claims = self.conns.get(&conn).and_then(|c| c.claims.as_ref());
                if claims.is_some_and(|c| !c.admits_room(room_id)) {
                    let e = ApiError::forbidden(
                        "join-room: this token is for another room; ask for a link to this room",
                    );
                    return self.answer(conn, req_id, Err(e), out);
                }
                // The token's name wins (shared/protocol.md "Access").
                let display_name = claims
                    .and_then(|c| c.name.clone())
                    .unwrap_or_else(|| display_name.clone());
                if !self.take_join(conn) {
                    let e = ApiError::limit(
                        "join-room: too many joins from this address; try again in a moment",
                    );
                    return self.answer(conn, req_id, Err(e), out);
                }
                let room_id: Arc<str> = Arc::from(room_id.as_str());
                self.join(conn, req_id, room_id, display_name, out)
            }
            (Request::LeaveRoom, None) => self.answer(conn, req_id, Ok(json!({})), out),
            (_, None) => self.answer(
                conn,
                req_id,
                Err(ApiError::invalid_state(format!(
                    "{}: join a room first (join-room)",
                    request.method()
                ))),
                out,
            ),
            (_, Some((room_id, peer_id, worker))) => {
                if let Some(e) = self.not_granted(conn, &request) {
                    return self.answer(conn, req_id, Err(e), out);
                }
                let command = match super::wire::command(request) {
                    Ok(c) => c,
                    Err(e) => return self.answer(conn, req_id, Err(e), out),
                };
                if matches!(command, crate::room::api::Command::LeaveRoom) {
                    self.forget_peer(conn, &room_id, &peer_id);
                }
                let job = Job {
                    conn,
                    room_id,
                    peer_id,
                    kind: JobKind::Request { req_id, command },
                };
                self.send_job(worker, job, req_id, false);
            }
        }
    }

    /// A token bucket per source address bounds how fast one host can join (and so create
    /// rooms); it holds for every socket of that address together.
    fn take_join(&mut self, conn: ConnId) -> bool {
        let Some(ip) = self.conns.get(&conn).map(|c| c.ip) else {
            return false;
        };
        let now = Instant::now();
        let (rate, burst) = (self.limits.join_rate_per_ip, self.limits.join_burst_per_ip);
        self.join_rates
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .take(now)
    }

    /// `forbidden` when the socket's token lacks the grant `request` needs.
    fn not_granted(&self, conn: ConnId, request: &Request) -> Option<ApiError> {
        let grants = self.conns.get(&conn)?.claims.as_ref()?.grants;
        let (granted, grant) = match request {
            Request::Produce { .. } => (grants.publish, "publish"),
            Request::ConsumeMedia { .. } => (grants.subscribe, "subscribe"),
            Request::ProduceData { .. } | Request::ConsumeData { .. } => (grants.data, "data"),
            _ => return None,
        };
        (!granted).then(|| {
            ApiError::forbidden(format!(
                "{}: this token has no {grant} grant",
                request.method()
            ))
        })
    }

    /// Takes the socket out of its room at once (the admin API): the membership view forgets
    /// the peer, its home worker is told, and the socket closes after `notice`.
    fn evict(&mut self, conn: ConnId, method: &'static str, data: Value, out: &mut EdgeOut) {
        send_notification(out, conn, method, data);
        out.close(conn, 1000, method);
        let Some(j) = self.conns.get_mut(&conn).and_then(|c| c.joined.take()) else {
            return;
        };
        self.leave(conn, j);
    }

    /// The peer of `j` is gone (socket closed or evicted): forget it and tell its room's home,
    /// which orders this after the peer's join and forwards it to the worker hosting the peer.
    fn leave(&mut self, conn: ConnId, j: Joined) {
        let home = self.rooms.get(&j.room_id).map(|e| e.home);
        self.forget_peer(conn, &j.room_id, &j.peer_id);
        let job = Job {
            conn,
            room_id: j.room_id,
            peer_id: j.peer_id,
            kind: JobKind::Disconnected,
        };
        if let Some(home) = home {
            let _ = self.workers[home].jobs.send(job);
        }
    }

    /// `DELETE /api/rooms/<roomId>` (every peer gets `room-closed`) and `DELETE
    /// /api/rooms/<roomId>/peers/<peerId>` (the peer gets `kicked`, the others `peer-left`).
    fn admin_delete(&mut self, rest: &str, out: &mut EdgeOut) -> HttpResponse {
        let (room, peer) = match rest.split_once('/') {
            None => (rest, None),
            Some((room, tail)) => match tail.strip_prefix("peers/") {
                Some(peer) if !peer.is_empty() && !peer.contains('/') => (room, Some(peer)),
                _ => return api_not_found("no such API"),
            },
        };
        let live = self.rooms.get(room).is_some_and(|e| !e.peers.is_empty());
        if !super::protocol::is_valid_room_id(room) || !live {
            return api_not_found("no such room");
        }
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.joined
                    .as_ref()
                    .is_some_and(|j| &*j.room_id == room && peer.is_none_or(|p| &*j.peer_id == p))
            })
            .map(|(id, _)| *id)
            .collect();
        if targets.is_empty() {
            return api_not_found("no such peer in this room");
        }
        for conn in targets {
            match peer {
                Some(_) => {
                    let data = json!({"reason": "removed from the room by an administrator"});
                    self.evict(conn, "kicked", data, out);
                }
                None => self.evict(conn, "room-closed", json!({ "roomId": room }), out),
            }
        }
        tracing::info!(room, kicked = peer.is_some(), "admin API: removed");
        HttpResponse {
            status: 204,
            content_type: String::new(),
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A room hosted here is joined at once; a new room is placed by the cluster first (the
    /// answer comes back through `placed`, frames of this socket are held meanwhile), or
    /// created here when this is a single node that is not draining.
    fn join(
        &mut self,
        conn: ConnId,
        req_id: u32,
        room_id: Arc<str>,
        display_name: String,
        out: &mut EdgeOut,
    ) {
        if self.rooms.contains_key(&room_id) {
            return self.join_here(conn, req_id, room_id, display_name, out);
        }
        if let Some(link) = &self.cluster {
            let job = ClusterJob::Place {
                conn,
                req_id,
                room_id,
            };
            if link.jobs.send(job).is_err() {
                let e = ApiError::internal("the cluster thread has stopped; restart this node");
                return self.answer(conn, req_id, Err(e), out);
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.slots.push_back(Slot::Waiting { req_id, join: true });
            }
            self.placing.insert((conn, req_id), display_name);
            return;
        }
        if self.is_draining() {
            let e = ApiError::invalid_state(
                "this server is shutting down (draining) and takes no new rooms; try again on \
                 another server",
            );
            return self.answer(conn, req_id, Err(e), out);
        }
        self.join_here(conn, req_id, room_id, display_name, out)
    }

    /// Joins the room on this node, creating it if needed.
    fn join_here(
        &mut self,
        conn: ConnId,
        req_id: u32,
        room_id: Arc<str>,
        display_name: String,
        out: &mut EdgeOut,
    ) {
        let home = match self.rooms.get(&room_id) {
            Some(entry) if entry.peers.len() >= self.limits.max_peers_per_room => {
                return self.answer(
                    conn,
                    req_id,
                    Err(ApiError::limit(format!(
                        "room is full ({} peers)",
                        self.limits.max_peers_per_room
                    ))),
                    out,
                );
            }
            Some(entry) => entry.home,
            None => {
                let w = (0..self.workers.len())
                    .min_by_key(|&w| self.worker_rooms[w])
                    .unwrap_or(0);
                self.worker_rooms[w] += 1;
                self.rooms.insert(
                    room_id.clone(),
                    RoomEntry {
                        home: w,
                        peers: Vec::new(),
                    },
                );
                if let Some(link) = &self.cluster {
                    let _ = link.jobs.send(ClusterJob::RoomOpened(room_id.clone()));
                }
                w
            }
        };
        let host = self.place(&room_id);
        let peer_id: Arc<str> = Arc::from(crate::ids::uuid_v4());
        if let Some(entry) = self.rooms.get_mut(&room_id) {
            entry.peers.push(RoomPeer {
                id: peer_id.clone(),
                display_name: display_name.clone(),
                worker: host,
            });
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unjoined_since = None;
            c.joined = Some(Joined {
                room_id: room_id.clone(),
                peer_id: peer_id.clone(),
                worker: host,
            });
        }
        let job = Job {
            conn,
            room_id,
            peer_id,
            kind: JobKind::Join {
                req_id,
                display_name,
                host,
            },
        };
        self.send_job(home, job, req_id, true);
    }

    /// The worker a joining peer of `room_id` goes to: the room's home until it hosts
    /// `room_spill_peers` of the room's peers, then whichever worker hosts the fewest.
    fn place(&self, room_id: &str) -> usize {
        let Some(entry) = self.rooms.get(room_id) else {
            return 0;
        };
        if entry.on_worker(entry.home) < self.limits.room_spill_peers {
            return entry.home;
        }
        (0..self.workers.len())
            .min_by_key(|&w| (entry.on_worker(w), w != entry.home, self.worker_rooms[w]))
            .unwrap_or(entry.home)
    }

    /// Queues `job` for `worker`; its answer fills the socket's next response slot.
    fn send_job(&mut self, worker: usize, job: Job, req_id: u32, join: bool) {
        if let Some(c) = self.conns.get_mut(&job.conn) {
            c.slots.push_back(Slot::Waiting { req_id, join });
        }
        if self.workers[worker].jobs.send(job).is_err() {
            tracing::error!(worker, "worker mailbox is closed; the worker has stopped");
        }
    }

    /// Removes a peer from the membership view (leave, socket close, or a failed join).
    fn forget_peer(&mut self, conn: ConnId, room_id: &Arc<str>, peer_id: &Arc<str>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.joined.as_ref().is_some_and(|j| &j.peer_id == peer_id) {
                c.joined = None;
                c.unjoined_since = Some(Instant::now());
            }
        }
        if let Some(entry) = self.rooms.get_mut(room_id) {
            entry.peers.retain(|p| &p.id != peer_id);
        }
    }

    /// The home worker closed the room: forget it unless someone joined since.
    fn room_closed(&mut self, room_id: &str) {
        if let Some(entry) = self.rooms.get(room_id).filter(|e| e.peers.is_empty()) {
            let w = entry.home;
            self.rooms.remove(room_id);
            self.worker_rooms[w] = self.worker_rooms[w].saturating_sub(1);
            if let Some(link) = &self.cluster {
                let _ = link.jobs.send(ClusterJob::RoomClosed(Arc::from(room_id)));
            }
        }
    }

    /// The cluster answered where a joining socket's room lives.
    fn placed(&mut self, reply: crate::cluster::PlaceReply, out: &mut EdgeOut) {
        let (conn, req_id) = (reply.conn, reply.req_id);
        let Some(display_name) = self.placing.remove(&(conn, req_id)) else {
            return;
        };
        if !self.conns.contains_key(&conn) {
            return;
        }
        let error = match reply.placement {
            Placement::Local if self.is_draining() && !self.rooms.contains_key(&reply.room_id) => {
                ApiError::invalid_state(
                    "this node is draining and no other node takes the room; try again in a \
                     moment",
                )
            }
            Placement::Local => {
                // Placed here (the lease already names this node): the join proper takes the
                // placeholder's place, and the socket's frames stay held.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.slots
                        .retain(|s| !matches!(s, Slot::Waiting { req_id: r, .. } if *r == req_id));
                }
                return self.join_here(conn, req_id, reply.room_id, display_name, out);
            }
            Placement::Moved { node, ws_url } => ApiError::moved(
                ws_url,
                format!("the room lives on node {node}: reconnect to its url and join again"),
            ),
            Placement::Unavailable(message) => ApiError::internal(message),
        };
        if error.code != crate::room::api::ErrorCode::Moved {
            tracing::debug!(conn, error = %error, "join-room: not placed");
        }
        // Fills the placeholder and releases the frames held behind it.
        self.on_response(conn, req_id, Err(error), out);
    }

    /// Handles a frame now, or holds it while the socket's join-room is in flight.
    fn submit(&mut self, conn: ConnId, item: Held, out: &mut EdgeOut) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.joining() || !c.held.is_empty() {
            if c.held.len() >= MAX_HELD {
                out.close(conn, 1008, "too many requests while joining");
                return;
            }
            c.held.push_back(item);
            return;
        }
        match item {
            Held::Request(id, request) => self.dispatch(conn, id, request, out),
            Held::Answer(id, result) => self.answer(conn, id, result, out),
        }
    }

    /// Handles the frames held during a join, in order, until the next join (if any).
    fn release_held(&mut self, conn: ConnId, out: &mut EdgeOut) {
        loop {
            let item = match self.conns.get_mut(&conn) {
                Some(c) if !c.joining() => c.held.pop_front(),
                _ => None,
            };
            match item {
                Some(Held::Request(id, request)) => self.dispatch(conn, id, request, out),
                Some(Held::Answer(id, result)) => self.answer(conn, id, result, out),
                None => break,
            }
        }
    }

    fn on_response(
        &mut self,
        conn: ConnId,
        req_id: u32,
        result: Result<Value, ApiError>,
        out: &mut EdgeOut,
    ) {
        let (failed_join, was_join) = {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let text = match &result {
                Ok(data) => response_ok(req_id, data.clone()),
                Err(e) => response_err(req_id, e),
            };
            let pos = c
                .slots
                .iter()
                .position(|s| matches!(s, Slot::Waiting { req_id: r, .. } if *r == req_id));
            let mut failed_join = false;
            let mut was_join = false;
            match pos {
                Some(i) => {
                    if let Slot::Waiting { join: true, .. } = c.slots[i] {
                        failed_join = result.is_err();
                        was_join = true;
                    }
                    c.slots[i] = Slot::Ready(text);
                }
                None => out.send_text(conn, text),
            }
            while let Some(Slot::Ready(_)) = c.slots.front() {
                if let Some(Slot::Ready(t)) = c.slots.pop_front() {
                    out.send_text(conn, t);
                }
            }
            (failed_join, was_join)
        };
        if failed_join {
            if let Some(j) = self.conns.get(&conn).and_then(|c| c.joined.as_ref()) {
                let (room_id, peer_id) = (j.room_id.clone(), j.peer_id.clone());
                self.forget_peer(conn, &room_id, &peer_id);
            }
        }
        if was_join {
            self.release_held(conn, out);
        }
    }

    /// `/hls/<roomId>/<file>`: marks a viewer (starting the pipeline when the room has media);
    /// until the stream is live the answer is 404 and players retry. Once live, the edge serves
    /// the file (it validates the names and never leaves the HLS folder).
    fn hls_request(&mut self, path: &str) -> Option<HttpResponse> {
        let mut parts = path["/hls/".len()..].splitn(2, '/');
        let room = parts.next().unwrap_or_default();
        let not_found = || {
            Some(HttpResponse::text(
                404,
                "no live stream for this room (yet)",
            ))
        };
        if !super::protocol::is_valid_room_id(room) {
            return not_found();
        }
        let Some(hls) = self.hls.as_mut() else {
            return not_found();
        };
        hls.viewer_request(room, Instant::now());
        if hls.is_live(room) {
            None
        } else {
            not_found()
        }
    }

    /// Applies what the HLS manager asks of the workers.
    fn hls_tick(&mut self) {
        let Some(hls) = self.hls.as_mut() else {
            return;
        };
        for action in hls.tick(Instant::now()) {
            let (room_id, kind) = match action {
                HlsAction::SetTaps { room_id, taps } => (room_id, JobKind::SetTaps(taps)),
                HlsAction::RequestKeyFrames { room_id } => (room_id, JobKind::RequestKeyFrames),
            };
            let Some(entry) = self.rooms.get(room_id.as_str()) else {
                continue;
            };
            let job = Job {
                conn: 0,
                room_id: Arc::from(room_id.as_str()),
                peer_id: Arc::from(""),
                kind,
            };
            let _ = self.workers[entry.home].jobs.send(job);
        }
    }

    /// `GET /api/rooms/<id>`: the room's peers where it lives; on another node of a cluster,
    /// `node` (and `url`) name where it lives.
    fn room_json(&self, id: &str) -> HttpResponse {
        if !super::protocol::is_valid_room_id(id) {
            return api_not_found("no such room");
        }
        let node = self.cluster.as_ref().map(|c| c.node_id.as_str());
        match self.rooms.get(id) {
            Some(entry) if !entry.peers.is_empty() => {
                let mut room = json!({
                    "roomId": id,
                    "peers": entry.peers.iter().map(|p| json!({"peerId": &*p.id, "displayName": p.display_name})).collect::<Vec<_>>(),
                });
                if let Some(node) = node {
                    room["node"] = json!(node);
                }
                HttpResponse::json(200, &room)
            }
            _ => {
                let elsewhere = self.cluster.as_ref().and_then(|c| {
                    c.with_view(|view| {
                        let owner = view.rooms.get(id).filter(|o| Some(o.as_str()) != node)?;
                        Some(json!({
                            "roomId": id,
                            "node": owner,
                            "url": view.node(owner).map(|n| n.url.as_str()),
                        }))
                    })
                });
                match elsewhere {
                    Some(room) => HttpResponse::json(200, &room),
                    None => api_not_found("no such room"),
                }
            }
        }
    }

    /// `GET /api/cluster`: every live node (a single node lists itself).
    fn cluster_json(&self) -> Value {
        let Some(link) = &self.cluster else {
            let rooms = self.rooms.values().filter(|e| !e.peers.is_empty()).count();
            let peers: usize = self.rooms.values().map(|e| e.peers.len()).sum();
            return json!({"nodes": [{
                "id": "local", "url": null, "rooms": rooms, "peers": peers,
                "draining": self.is_draining(),
            }]});
        };
        link.with_view(|view| {
            json!({
                "node": link.node_id,
                "connected": view.connected,
                "nodes": view.nodes,
            })
        })
    }

    /// `/metrics`: the workers' families, then the node's own state.
    fn metrics_text(&self, workers: &[&WorkerStats]) -> String {
        let cluster = self
            .cluster
            .as_ref()
            .map(|c| c.with_view(|view| (view.connected, view.nodes.len())));
        super::metrics::render(workers, self.conns.len())
            + &super::metrics::render_node(self.is_draining(), cluster)
    }

    fn stats_json(&self) -> Value {
        let sum = |c: Counted| -> usize { self.workers.iter().map(|w| w.stats.get(c)).sum() };
        json!({
            "rooms": sum(Counted::Room),
            "peers": sum(Counted::Peer),
            "transports": sum(Counted::Transport),
            "producers": sum(Counted::Producer),
            "consumers": sum(Counted::Consumer),
            "dataProducers": sum(Counted::DataProducer),
            "dataConsumers": sum(Counted::DataConsumer),
            "connections": self.conns.len(),
            "workers": self.workers.iter().map(|w| super::wire::worker_stats(&w.stats)).collect::<Vec<_>>(),
        })
    }
}

impl EdgeHandler for Signaling {
    fn http(&mut self, req: &HttpRequest, out: &mut EdgeOut) -> Option<HttpResponse> {
        let path = req.path.as_str();
        match (req.method.as_str(), path) {
            ("GET" | "HEAD", "/healthz") => Some(self.healthz()),
            ("GET", "/api/stats") => Some(HttpResponse::json(200, &self.stats_json())),
            ("GET", "/metrics") => {
                let workers: Vec<&WorkerStats> = self.workers.iter().map(|w| &*w.stats).collect();
                Some(HttpResponse {
                    status: 200,
                    content_type: super::metrics::CONTENT_TYPE.into(),
                    body: self.metrics_text(&workers).into_bytes(),
                    headers: Vec::new(),
                })
            }
            ("POST", "/api/rooms") => Some(HttpResponse::json(
                200,
                &json!({ "roomId": crate::ids::room_id() }),
            )),
            ("GET", "/api/cluster") => Some(HttpResponse::json(200, &self.cluster_json())),
            (_, "/api/stats" | "/api/rooms" | "/api/cluster") => Some(HttpResponse::json(
                405,
                &json!({"error": {"code": "bad-request", "message": "method not allowed"}}),
            )),
            ("GET", p) if p.starts_with("/api/rooms/") => {
                Some(self.room_json(&p["/api/rooms/".len()..]))
            }
            ("DELETE", p) if p.starts_with("/api/rooms/") => {
                Some(self.admin_delete(&p["/api/rooms/".len()..], out))
            }
            ("GET" | "HEAD", p) if p.starts_with("/hls/") => self.hls_request(p),
            (_, p) if p.starts_with("/api/") => Some(api_not_found("no such API")),
            _ => None,
        }
    }

    fn ws_open(
        &mut self,
        conn: ConnId,
        peer: std::net::SocketAddr,
        claims: Option<Claims>,
        _out: &mut EdgeOut,
    ) {
        let now = Instant::now();
        let l = &self.limits;
        self.conns.insert(
            conn,
            Conn {
                joined: None,
                slots: VecDeque::new(),
                held: VecDeque::new(),
                unjoined_since: Some(now),
                rates: SocketRates::new(
                    l.request_rate,
                    l.request_burst,
                    l.error_rate,
                    l.error_burst,
                    now,
                ),
                ip: peer.ip(),
                claims,
            },
        );
    }

    fn ws_text(&mut self, conn: ConnId, text: &str, out: &mut EdgeOut) {
        let frame = parse_frame(text);
        let needs_error = matches!(frame, Frame::Invalid(_));
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.rates.frame(Instant::now(), needs_error) {
            Verdict::Accept => {}
            Verdict::Refuse => {
                if let Frame::Request { id, .. } = frame {
                    let limited = ApiError::limit("too many requests on this socket; slow down");
                    self.submit(conn, Held::Answer(id, Err(limited)), out);
                }
                return;
            }
            Verdict::Close => {
                tracing::debug!(conn, "websocket closed: kept flooding after being limited");
                out.close(conn, 1008, "request rate exceeded");
                return;
            }
        }
        match frame {
            Frame::Invalid(message) => out.send_text(conn, error_notification(&message)),
            Frame::Request { id, method, data } => {
                let item = match parse_request(&method, data) {
                    Ok(request) => Held::Request(id, request),
                    Err(e) => Held::Answer(id, Err(e)),
                };
                self.submit(conn, item, out)
            }
        }
    }

    fn ws_closed(&mut self, conn: ConnId, _out: &mut EdgeOut) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(j) = c.joined {
            self.leave(conn, j);
        }
    }

    fn tick(&mut self, out: &mut EdgeOut) {
        let now = Instant::now();
        self.watch_heartbeats(now);
        self.enforce_join_deadline(now, out);
        self.join_rates.retain(|_, bucket| !bucket.is_full(now));
        self.hls_tick();
    }

    fn wake(&mut self, out: &mut EdgeOut) {
        while let Some(reply) = self.cluster.as_ref().and_then(|c| c.replies.try_recv()) {
            self.placed(reply, out);
        }
        for _ in 0..MAX_OUTBOUND_PER_TURN {
            let Some(msg) = self.outbound.try_recv() else {
                return;
            };
            match msg {
                Outbound::Response {
                    conn,
                    req_id,
                    result,
                } => {
                    let result = result.map(|a| super::wire::answer(&a));
                    self.on_response(conn, req_id, result, out)
                }
                Outbound::Notify { conn, notice } => {
                    if self.conns.contains_key(&conn) {
                        let (method, data) = super::wire::notice(&notice);
                        send_notification(out, conn, method, data);
                    }
                }
                Outbound::RoomSources { room_id, sources } => {
                    if let Some(hls) = self.hls.as_mut() {
                        hls.room_sources(&room_id, sources, Instant::now());
                    }
                }
                Outbound::PeerGone {
                    conn,
                    room_id,
                    peer_id,
                } => self.forget_peer(conn, &room_id, &peer_id),
                Outbound::RoomClosed { room_id } => self.room_closed(&room_id),
            }
        }
        if !self.outbound.is_empty() {
            out.wake_again();
        }
    }
}

fn api_not_found(message: &str) -> HttpResponse {
    HttpResponse::json(
        404,
        &json!({"error": {"code": "not-found", "message": message}}),
    )
}

#[path = "session_guard.rs"]
mod guard;
use guard::send_notification;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
