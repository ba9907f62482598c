//! The signaling thread's network edge: one thread, one mio event loop, HTTP/1.1 and
//! WebSocket on the same TCP port.
//!
//! The edge knows nothing about rooms. It decodes bytes into [`EdgeHandler`] calls and
//! executes the actions the handler leaves in [`EdgeOut`]. Limits live here: request head
//! and body size, WebSocket message size, pending output per connection and in total,
//! connection count (in total and per source address) and idle time.
//!
//! Connections beyond the global or per-address limit are not simply refused: up to
//! `healthz_reserve` of them are accepted on probation, answer only `GET /healthz` (anything
//! else gets 503) and close after one request, so a monitor can tell "full" from "dead" while
//! one client holds every slot it may.
//!
//! Open WebSockets have no request deadline; instead the edge pings one that has been silent
//! for [`WS_PING_AFTER`] and closes it with 1001 once nothing at all (not even a Pong) has
//! arrived for [`WS_IDLE_TIMEOUT`]. Browsers and WebSocket libraries answer pings on their
//! own, so this only ends connections whose host vanished without a FIN, which would
//! otherwise keep their room membership forever.
//!
//! WebSocket binary frames are passed to `ws_text` when they are valid UTF-8 and ignored
//! (logged at debug level) otherwise; the protocol only uses text frames.
//!
//! This module owns the loop and the connection table; `http_conn` drives a connection
//! through HTTP requests up to the upgrade, `ws` drives it as a WebSocket.

mod http_conn;
mod out_queue;
mod stream;
#[cfg(test)]
mod tests;
mod ws;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

pub use super::access::Claims;
pub use super::http::{HttpRequest, HttpResponse};
use http_conn::{AfterFlush, HttpConn};
use stream::Stream;
use ws::WsConn;
pub use ws::{WsKeepalive, WS_IDLE_TIMEOUT, WS_PING_AFTER};

pub type ConnId = u64;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN_ID: ConnId = 2;
const TICK: Duration = Duration::from_millis(100);
/// An HTTP connection must complete a request within this time (also the keep-alive idle time).
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection on probation (beyond the connection limits) must send its request this fast.
const PROBATION_TIMEOUT: Duration = Duration::from_secs(2);
/// After we close, we drain the peer's bytes this long so the kernel sends FIN, not RST.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 16 * 1024;

/// What the edge hands its events to. Implemented by the signaling logic.
pub trait EdgeHandler {
    /// An HTTP request not for /ws. Return None to let the edge serve static files / HLS.
    /// `out` carries what the request does to open WebSockets (the admin API).
    fn http(&mut self, req: &HttpRequest, out: &mut EdgeOut) -> Option<HttpResponse>;
    /// A WebSocket opened; `claims` is its verified token when access is on.
    fn ws_open(
        &mut self,
        conn: ConnId,
        peer: SocketAddr,
        claims: Option<Claims>,
        out: &mut EdgeOut,
    );
    fn ws_text(&mut self, conn: ConnId, text: &str, out: &mut EdgeOut);
    /// Called exactly once per opened WebSocket, however it ends.
    fn ws_closed(&mut self, conn: ConnId, out: &mut EdgeOut);
    /// Called when someone woke the loop through the waker (replies from workers are waiting).
    fn wake(&mut self, out: &mut EdgeOut);
    /// Called about every 100 ms (housekeeping).
    fn tick(&mut self, _out: &mut EdgeOut) {}
}

#[derive(Debug)]
enum Action {
    Send(ConnId, Option<String>, String),
    Close(ConnId, u16, String),
}

/// Actions a handler asks the edge to perform, executed in order after the callback returns.
#[derive(Debug, Default)]
pub struct EdgeOut {
    actions: VecDeque<Action>,
    /// The handler has more work queued (it stopped to let sockets run): call `wake` again.
    again: bool,
}

impl EdgeOut {
    pub fn send_text(&mut self, conn: ConnId, text: String) {
        self.actions.push_back(Action::Send(conn, None, text));
    }

    /// Like [`send_text`](Self::send_text), but if a frame with the same `key` is still queued
    /// for `conn` (not yet handed to the socket), this one replaces it in place: a client
    /// that reads slowly gets the latest state once instead of every change in between.
    pub fn send_latest(&mut self, conn: ConnId, key: String, text: String) {
        self.actions.push_back(Action::Send(conn, Some(key), text));
    }

    /// Asks the edge to call [`EdgeHandler::wake`] again on its next turn, after serving the
    /// sockets (a handler bounds its work per turn this way).
    pub fn wake_again(&mut self) {
        self.again = true;
    }

    /// Sends a Close frame with `code` and closes the connection; `ws_closed` follows.
    pub fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        self.actions
            .push_back(Action::Close(conn, code, reason.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The Next.js static export; `None` or missing answers a hint page at `/`.
    pub web_root: Option<PathBuf>,
    pub hls_root: PathBuf,
    pub max_ws_message: usize,
    pub max_connections: usize,
    pub max_http_body: usize,
    /// Open connections (HTTP and WebSocket) from one IP address.
    pub max_connections_per_ip: usize,
    /// Extra connections beyond the limits that may only ask `/healthz`.
    pub healthz_reserve: usize,
    /// Outgoing bytes one WebSocket may have queued (a client that does not read is closed
    /// with 1008 once past it), and all WebSockets together.
    pub max_ws_pending_out: usize,
    pub max_pending_out_total: usize,
    /// The kernel send buffer of each WebSocket (SO_SNDBUF); 0 leaves it to autotuning.
    pub ws_socket_send_buffer: usize,
    /// Which `Origin`s may open a WebSocket besides the served host.
    pub origins: super::origin::OriginPolicy,
    /// HTTPS and WSS instead of HTTP and WS (`--tls-cert`/`--tls-key`, see `signaling::tls`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Tokens checked at the WebSocket upgrade, on `/api/*` and `/hls/*` (`--auth-secret`).
    pub access: Option<Arc<super::access::Access>>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            web_root: None,
            hls_root: PathBuf::from("hls"),
            max_ws_message: 64 * 1024,
            max_connections: 10_000,
            max_http_body: 16 * 1024,
            max_connections_per_ip: 256,
            healthz_reserve: 16,
            max_ws_pending_out: 1 << 20,
            max_pending_out_total: 64 << 20,
            ws_socket_send_buffer: 256 * 1024,
            origins: super::origin::OriginPolicy::default(),
            tls: None,
            access: None,
        }
    }
}

/// Makes [`Edge::run`] return; cloneable and usable from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(err) = self.waker.wake() {
            tracing::debug!(%err, "edge shutdown wake failed");
        }
    }
}

/// A bound, not yet running edge.
pub struct Edge {
    poll: Poll,
    listener: TcpListener,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    local_addr: SocketAddr,
    cfg: EdgeConfig,
    keepalive: WsKeepalive,
}

impl Edge {
    pub fn bind(addr: SocketAddr, cfg: EdgeConfig) -> io::Result<Edge> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let local_addr = listener.local_addr()?;
        Ok(Edge {
            poll,
            listener,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            local_addr,
            cfg,
            keepalive: WsKeepalive::default(),
        })
    }

    /// Replaces the WebSocket ping / idle-close intervals (default [`WsKeepalive::default`]).
    pub fn with_keepalive(mut self, keepalive: WsKeepalive) -> Edge {
        self.keepalive = keepalive;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Runs the event loop on the calling thread until [`ShutdownHandle::shutdown`].
    pub fn run<H: EdgeHandler>(self, handler: &mut H) -> io::Result<()> {
        let shutdown = self.shutdown.clone();
        let mut lp = EdgeLoop {
            poll: self.poll,
            listener: self.listener,
            cfg: self.cfg,
            keepalive: self.keepalive,
            conns: HashMap::new(),
            next_id: FIRST_CONN_ID,
            again: Vec::new(),
            per_ip: HashMap::new(),
            on_probation: 0,
            pending_out_total: 0,
            pending_out_peak: 0,
            unflushed: Vec::new(),
        };
        let mut wake_again = false;
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        while !shutdown.load(Ordering::SeqCst) {
            let timeout = if lp.again.is_empty() && !wake_again {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(err) = lp.poll.poll(&mut events, Some(timeout)) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                lp.close_all(handler);
                return Err(err);
            }
            let mut woke = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => lp.accept(),
                    WAKER => woke = true,
                    Token(t) => lp.on_conn_event(t as ConnId, handler),
                }
            }
            if (woke || wake_again) && !shutdown.load(Ordering::SeqCst) {
                let mut out = EdgeOut::default();
                handler.wake(&mut out);
                wake_again = out.again;
                lp.apply(handler, &mut out);
            }
            for id in std::mem::take(&mut lp.again) {
                lp.on_conn_event(id, handler);
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                let mut out = EdgeOut::default();
                handler.tick(&mut out);
                lp.apply(handler, &mut out);
                lp.expire(now, handler);
                lp.keep_alive(now, handler);
                lp.release_memory();
            }
        }
        lp.close_all(handler);
        Ok(())
    }
}

struct Conn {
    peer: SocketAddr,
    /// Accepted beyond the connection limits: may only ask `/healthz` (not counted in
    /// `per_ip`, but in `on_probation`).
    probation: bool,
    state: ConnState,
    /// When the connection is dropped unless it makes progress (None for open WebSockets,
    /// which their keepalive times out instead).
    deadline: Option<Instant>,
}

enum ConnState {
    Http(HttpConn),
    Ws(Box<WsConn>),
    /// Output done and write side shut down; discarding input until EOF or the deadline.
    Linger(TcpStream),
    /// Transient, while moving the stream between states.
    Gone,
}
struct EdgeLoop {
    poll: Poll,
    listener: TcpListener,
    cfg: EdgeConfig,
    keepalive: WsKeepalive,
    conns: HashMap<ConnId, Conn>,
    next_id: ConnId,
    /// Connections that stopped reading to let others run; served again next turn.
    again: Vec<ConnId>,
    /// Open connections (not on probation) per source address.
    per_ip: HashMap<IpAddr, usize>,
    on_probation: usize,
    /// Outgoing WebSocket bytes queued across all connections, and their peak since memory
    /// was last handed back to the OS.
    pending_out_total: usize,
    pending_out_peak: usize,
    /// WebSockets with queued output to hand to their sockets after the current actions.
    unflushed: Vec<ConnId>,
}
impl EdgeLoop {
    fn accept(&mut self) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    return;
                }
            };
            let regular = self.conns.len() - self.on_probation;
            let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            let probation =
                regular >= self.cfg.max_connections || from_ip >= self.cfg.max_connections_per_ip;
            if probation && self.on_probation >= self.cfg.healthz_reserve {
                tracing::debug!(%peer, "connection refused: connection limits reached");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let mut stream = match Stream::new(stream, self.cfg.tls.as_ref()) {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%err, "TLS session not created");
                    continue;
                }
            };
            let id = self.next_id;
            self.next_id += 1;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) =
                self.poll
                    .registry()
                    .register(stream.tcp_mut(), Token(id as usize), interest)
            {
                tracing::debug!(%err, "register failed");
                continue;
            }
            tracing::debug!(conn = id, %peer, probation, "connection accepted");
            let timeout = if probation {
                self.on_probation += 1;
                PROBATION_TIMEOUT
            } else {
                *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
                HTTP_REQUEST_TIMEOUT
            };
            self.conns.insert(
                id,
                Conn {
                    peer,
                    probation,
                    state: ConnState::Http(HttpConn {
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        written: 0,
                        after_flush: AfterFlush::NextRequest,
                        claims: None,
                    }),
                    deadline: Some(Instant::now() + timeout),
                },
            );
        }
    }

    fn on_conn_event<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        match self.conns.get(&id).map(|c| &c.state) {
            Some(ConnState::Http(_)) => self.drive_http(id, handler),
            Some(ConnState::Ws(_)) => self.drive_ws(id, handler),
            Some(ConnState::Linger(_)) => self.drive_linger(id, handler),
            Some(ConnState::Gone) | None => {}
        }
    }

    /// Shuts down our write side and waits for the peer's EOF (bounded by the deadline).
    fn start_linger<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let ConnState::Http(http) = std::mem::replace(&mut conn.state, ConnState::Gone) {
            conn.state = ConnState::Linger(http.stream.into_tcp());
        }
        let ConnState::Linger(stream) = &mut conn.state else {
            return self.remove(id, handler);
        };
        let _ = stream.shutdown(Shutdown::Write);
        conn.deadline = Some(Instant::now() + LINGER_TIMEOUT);
        self.drive_linger(id, handler);
    }

    fn drive_linger<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(ConnState::Linger(stream)) = self.conns.get_mut(&id).map(|c| &mut c.state) else {
            return;
        };
        let mut sink = [0u8; 4096];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => return self.remove(id, handler),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(id, handler),
            }
        }
    }

    /// Calls `ws_closed` once for an opened WebSocket.
    fn notify_closed<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(ConnState::Ws(wsc)) = self.conns.get_mut(&id).map(|c| &mut c.state) else {
            return;
        };
        if wsc.closed_notified {
            return;
        }
        wsc.closed_notified = true;
        tracing::debug!(conn = id, "websocket closed");
        let mut out = EdgeOut::default();
        handler.ws_closed(id, &mut out);
        self.apply(handler, &mut out);
    }

    /// Drops the connection now (notifying the handler if it was an open WebSocket).
    fn remove<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        self.notify_closed(id, handler);
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if conn.probation {
            self.on_probation -= 1;
        } else if let Some(n) = self.per_ip.get_mut(&conn.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.peer.ip());
            }
        }
        if let ConnState::Ws(wsc) = &conn.state {
            self.pending_out_total = self.pending_out_total.saturating_sub(wsc.pending_out());
        }
        let registry = self.poll.registry();
        let _ = match &mut conn.state {
            ConnState::Http(http) => registry.deregister(http.stream.tcp_mut()),
            ConnState::Ws(wsc) => registry.deregister(wsc.ws.get_mut().tcp_mut()),
            ConnState::Linger(stream) => registry.deregister(stream),
            ConnState::Gone => Ok(()),
        };
        tracing::debug!(conn = id, peer = %conn.peer, "connection dropped");
    }

    fn apply<H: EdgeHandler>(&mut self, handler: &mut H, out: &mut EdgeOut) {
        while let Some(action) = out.actions.pop_front() {
            match action {
                Action::Send(id, key, text) => self.send_ws(id, key, text, handler),
                Action::Close(id, code, reason) => self.close_ws(id, code, &reason, handler),
            }
        }
        // Queued frames go out once per batch of actions: one write for many notifications.
        for id in std::mem::take(&mut self.unflushed) {
            self.flush_ws(id, handler);
        }
    }

    fn expire<H: EdgeHandler>(&mut self, now: Instant, handler: &mut H) {
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::debug!(conn = id, "connection timed out");
            self.remove(id, handler);
        }
    }

    /// After a backlog of queued output drained or was dropped (slow or hostile clients),
    /// asks the allocator to return the freed pages: glibc keeps them otherwise, and the
    /// process would hold a flood's peak for good.
    fn release_memory(&mut self) {
        const RELEASE_AFTER: usize = 4 << 20;
        if self.pending_out_peak < self.pending_out_total + RELEASE_AFTER {
            return;
        }
        self.pending_out_peak = self.pending_out_total;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    fn close_all<H: EdgeHandler>(&mut self, handler: &mut H) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.remove(id, handler);
        }
    }
}
