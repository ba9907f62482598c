//! The signaling thread's network edge: one thread, one mio event loop, HTTP/1.1 and
//! WebSocket on the same TCP port.
//!
//! The edge knows nothing about rooms. It decodes bytes into [`EdgeHandler`] calls and
//! executes the actions the handler leaves in [`EdgeOut`]. Limits live here: request head
//! and body size, WebSocket message size, pending output per connection, connection count
//! and idle time.
//!
//! Open WebSockets have no request deadline; instead the edge pings one that has been silent
//! for [`WS_PING_AFTER`] and closes it with 1001 once nothing at all (not even a Pong) has
//! arrived for [`WS_IDLE_TIMEOUT`]. Browsers and WebSocket libraries answer pings on their
//! own, so this only ends connections whose host vanished without a FIN, which would
//! otherwise keep their room membership forever.
//!
//! WebSocket binary frames are passed to `ws_text` when they are valid UTF-8 and ignored
//! (logged at debug level) otherwise; the protocol only uses text frames.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use super::http::{encode_response, parse_request, ParseOutcome, ParsedRequest};
pub use super::http::{HttpRequest, HttpResponse};
use super::static_files;

pub type ConnId = u64;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN_ID: ConnId = 2;
const TICK: Duration = Duration::from_millis(100);
/// An HTTP connection must complete a request within this time (also the keep-alive idle time).
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After we close, we drain the peer's bytes this long so the kernel sends FIN, not RST.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Outbound bytes a WebSocket may have queued before it is closed with 1008.
const MAX_WS_PENDING_OUT: usize = 8 << 20;
/// Messages read from one socket before the loop serves others (fairness under floods).
const MAX_MESSAGES_PER_TURN: usize = 256;
const READ_CHUNK: usize = 16 * 1024;
/// A WebSocket silent this long gets a Ping, and another each time this passes again.
pub const WS_PING_AFTER: Duration = Duration::from_secs(20);
/// A WebSocket from which nothing (any frame, Pong included) arrived this long is closed.
pub const WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// "Going away" (RFC 6455 7.4.1): we drop a peer we consider gone, not one that misbehaved.
const WS_IDLE_CLOSE_CODE: u16 = 1001;

/// What the edge hands its events to. Implemented by the signaling logic.
pub trait EdgeHandler {
    /// An HTTP request not for /ws. Return None to let the edge serve static files / HLS.
    fn http(&mut self, req: &HttpRequest) -> Option<HttpResponse>;
    fn ws_open(&mut self, conn: ConnId, peer: SocketAddr, out: &mut EdgeOut);
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
    Send(ConnId, String),
    Close(ConnId, u16, String),
}

/// Actions a handler asks the edge to perform, executed in order after the callback returns.
#[derive(Debug, Default)]
pub struct EdgeOut {
    actions: VecDeque<Action>,
}

impl EdgeOut {
    pub fn send_text(&mut self, conn: ConnId, text: String) {
        self.actions.push_back(Action::Send(conn, text));
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
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            web_root: None,
            hls_root: PathBuf::from("hls"),
            max_ws_message: 64 * 1024,
            max_connections: 10_000,
            max_http_body: 16 * 1024,
        }
    }
}

/// When the edge pings silent WebSockets and closes dead ones.
///
/// Kept out of [`EdgeConfig`] because callers build that field by field; the defaults are
/// the constants, and tests shorten them with [`Edge::with_keepalive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsKeepalive {
    /// Silence after which a Ping is sent (repeated at this interval while silent).
    pub ping_after: Duration,
    /// Silence after which the WebSocket is closed with 1001 and `ws_closed` is called.
    pub close_after: Duration,
}

impl Default for WsKeepalive {
    fn default() -> Self {
        Self {
            ping_after: WS_PING_AFTER,
            close_after: WS_IDLE_TIMEOUT,
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
        };
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        while !shutdown.load(Ordering::SeqCst) {
            let timeout = if lp.again.is_empty() {
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
            if woke && !shutdown.load(Ordering::SeqCst) {
                let mut out = EdgeOut::default();
                handler.wake(&mut out);
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
            }
        }
        lp.close_all(handler);
        Ok(())
    }
}

struct Conn {
    peer: SocketAddr,
    state: ConnState,
    /// When the connection is dropped unless it makes progress (None for open WebSockets,
    /// which [`Liveness`] times out instead).
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

struct HttpConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    written: usize,
    after_flush: AfterFlush,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterFlush {
    NextRequest,
    Close,
    Upgrade,
}

struct WsConn {
    ws: WebSocket<TcpStream>,
    /// A Close frame was sent or received; only flushing remains.
    closing: bool,
    closed_notified: bool,
    liveness: Liveness,
}

/// The keepalive clock of one open WebSocket, fed the times of what arrived and was sent.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    /// When the last message or control frame arrived (the open time before the first).
    last_received: Instant,
    /// When we last sent a Ping (the open time before the first).
    last_ping: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum KeepaliveDue {
    Ping,
    Close,
}

impl Liveness {
    fn new(now: Instant) -> Self {
        Self {
            last_received: now,
            last_ping: now,
        }
    }

    fn due(&self, now: Instant, keepalive: &WsKeepalive) -> Option<KeepaliveDue> {
        let silent = now.saturating_duration_since(self.last_received);
        let since_ping = now.saturating_duration_since(self.last_ping);
        if silent >= keepalive.close_after {
            Some(KeepaliveDue::Close)
        } else if silent >= keepalive.ping_after && since_ping >= keepalive.ping_after {
            Some(KeepaliveDue::Ping)
        } else {
            None
        }
    }
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
}

impl EdgeLoop {
    fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
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
            if self.conns.len() >= self.cfg.max_connections {
                tracing::debug!(%peer, "connection refused: max_connections reached");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let id = self.next_id;
            self.next_id += 1;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) =
                self.poll
                    .registry()
                    .register(&mut stream, Token(id as usize), interest)
            {
                tracing::debug!(%err, "register failed");
                continue;
            }
            tracing::debug!(conn = id, %peer, "connection accepted");
            self.conns.insert(
                id,
                Conn {
                    peer,
                    state: ConnState::Http(HttpConn {
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        written: 0,
                        after_flush: AfterFlush::NextRequest,
                    }),
                    deadline: Some(Instant::now() + HTTP_REQUEST_TIMEOUT),
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

    /// Flush → parse → read, until the socket would block.
    fn drive_http<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let ConnState::Http(http) = &mut conn.state else {
                return;
            };
            while http.written < http.outbuf.len() {
                match http.stream.write(&http.outbuf[http.written..]) {
                    Ok(0) => return self.remove(id, handler),
                    Ok(n) => {
                        http.written += n;
                        conn.deadline = Some(Instant::now() + HTTP_REQUEST_TIMEOUT);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.remove(id, handler),
                }
            }
            http.outbuf.clear();
            http.written = 0;
            match http.after_flush {
                AfterFlush::Close => return self.start_linger(id, handler),
                AfterFlush::Upgrade => return self.upgrade(id, handler),
                AfterFlush::NextRequest => {}
            }
            match parse_request(&http.inbuf, self.cfg.max_http_body) {
                ParseOutcome::Complete(parsed) => {
                    http.inbuf.drain(..parsed.consumed);
                    conn.deadline = Some(Instant::now() + HTTP_REQUEST_TIMEOUT);
                    http.after_flush = answer(&self.cfg, handler, parsed, &mut http.outbuf);
                    continue;
                }
                ParseOutcome::Reject(status) => {
                    tracing::debug!(conn = id, status, "bad HTTP request");
                    let resp = HttpResponse::text(status, super::http::reason_phrase(status));
                    encode_response(&resp, false, false, &mut http.outbuf);
                    http.after_flush = AfterFlush::Close;
                    continue;
                }
                ParseOutcome::Partial => {}
            }
            let len = http.inbuf.len();
            http.inbuf.resize(len + READ_CHUNK, 0);
            let read = http.stream.read(&mut http.inbuf[len..]);
            http.inbuf.truncate(len + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return self.remove(id, handler),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(id, handler),
            }
        }
    }

    fn upgrade<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnState::Http(http) = std::mem::replace(&mut conn.state, ConnState::Gone) else {
            return;
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_WS_PENDING_OUT)
            .max_message_size(Some(self.cfg.max_ws_message))
            .max_frame_size(Some(self.cfg.max_ws_message));
        // Frames the client sent right after its handshake are already in `inbuf`.
        let ws =
            WebSocket::from_partially_read(http.stream, http.inbuf, Role::Server, Some(config));
        conn.state = ConnState::Ws(Box::new(WsConn {
            ws,
            closing: false,
            closed_notified: false,
            liveness: Liveness::new(Instant::now()),
        }));
        conn.deadline = None;
        let peer = conn.peer;
        tracing::debug!(conn = id, %peer, "websocket open");
        let mut out = EdgeOut::default();
        handler.ws_open(id, peer, &mut out);
        self.apply(handler, &mut out);
        self.drive_ws(id, handler);
    }

    /// Reads messages until the socket would block, then flushes queued output.
    fn drive_ws<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        for _ in 0..MAX_MESSAGES_PER_TURN {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let ConnState::Ws(wsc) = &mut conn.state else {
                return self.on_conn_event(id, handler);
            };
            if wsc.closing {
                return self.progress_ws_close(id, handler);
            }
            let read = wsc.ws.read();
            if read.is_ok() {
                wsc.liveness.last_received = Instant::now();
            }
            match read {
                Ok(Message::Text(text)) => {
                    let mut out = EdgeOut::default();
                    handler.ws_text(id, text.as_str(), &mut out);
                    self.apply(handler, &mut out);
                }
                Ok(Message::Binary(bytes)) => match std::str::from_utf8(&bytes) {
                    Ok(text) => {
                        let mut out = EdgeOut::default();
                        handler.ws_text(id, text, &mut out);
                        self.apply(handler, &mut out);
                    }
                    Err(_) => tracing::debug!(conn = id, "ignoring non-UTF-8 binary frame"),
                },
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the reply; flush it, then linger.
                    wsc.closing = true;
                    conn.deadline = Some(Instant::now() + LINGER_TIMEOUT);
                    self.notify_closed(id, handler);
                }
                Ok(_) => {} // ping/pong: tungstenite answers pings itself
                Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                    return self.flush_ws(id, handler);
                }
                Err(err) => return self.on_ws_error(id, err, handler),
            }
        }
        self.again.push(id);
    }

    fn on_ws_error<H: EdgeHandler>(&mut self, id: ConnId, err: WsError, handler: &mut H) {
        tracing::debug!(conn = id, %err, "websocket error");
        match err {
            WsError::Capacity(_) => self.close_ws(id, 1009, "message too big", handler),
            WsError::WriteBufferFull(_) => {
                self.close_ws(id, 1008, "too much pending output", handler)
            }
            WsError::Utf8(_) => self.close_ws(id, 1007, "invalid UTF-8", handler),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                self.remove(id, handler)
            }
            WsError::Protocol(_) => self.close_ws(id, 1002, "protocol error", handler),
            _ => self.remove(id, handler),
        }
    }

    fn flush_ws<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(ConnState::Ws(wsc)) = self.conns.get_mut(&id).map(|c| &mut c.state) else {
            return;
        };
        match wsc.ws.flush() {
            Ok(()) => {}
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => self.on_ws_error(id, err, handler),
        }
    }

    fn send_ws<H: EdgeHandler>(&mut self, id: ConnId, text: String, handler: &mut H) {
        let Some(ConnState::Ws(wsc)) = self.conns.get_mut(&id).map(|c| &mut c.state) else {
            tracing::debug!(
                conn = id,
                "send to unknown or non-websocket connection dropped"
            );
            return;
        };
        if wsc.closing {
            return;
        }
        match wsc.ws.send(Message::text(text)) {
            Ok(()) => {}
            // The frame is buffered; the next writable event flushes it.
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => self.on_ws_error(id, err, handler),
        }
    }

    /// Our side closes: Close frame, `ws_closed`, flush, linger.
    fn close_ws<H: EdgeHandler>(&mut self, id: ConnId, code: u16, reason: &str, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnState::Ws(wsc) = &mut conn.state else {
            return;
        };
        if wsc.closing {
            return;
        }
        wsc.closing = true;
        conn.deadline = Some(Instant::now() + LINGER_TIMEOUT);
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: truncate_utf8(reason, 123).into(),
        };
        // Errors (full buffer, dead socket) surface again in the flush below.
        let _ = wsc.ws.close(Some(frame));
        self.notify_closed(id, handler);
        self.progress_ws_close(id, handler);
    }

    fn progress_ws_close<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnState::Ws(wsc) = &mut conn.state else {
            return;
        };
        match wsc.ws.flush() {
            Ok(()) | Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                if let ConnState::Ws(wsc) = std::mem::replace(&mut conn.state, ConnState::Gone) {
                    conn.state = ConnState::Linger(wsc.ws.into_inner());
                }
                self.start_linger(id, handler);
            }
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.remove(id, handler),
        }
    }

    /// Shuts down our write side and waits for the peer's EOF (bounded by the deadline).
    fn start_linger<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let ConnState::Http(http) = std::mem::replace(&mut conn.state, ConnState::Gone) {
            conn.state = ConnState::Linger(http.stream);
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
        let registry = self.poll.registry();
        let _ = match &mut conn.state {
            ConnState::Http(http) => registry.deregister(&mut http.stream),
            ConnState::Ws(wsc) => registry.deregister(wsc.ws.get_mut()),
            ConnState::Linger(stream) => registry.deregister(stream),
            ConnState::Gone => Ok(()),
        };
        tracing::debug!(conn = id, peer = %conn.peer, "connection dropped");
    }

    fn apply<H: EdgeHandler>(&mut self, handler: &mut H, out: &mut EdgeOut) {
        while let Some(action) = out.actions.pop_front() {
            match action {
                Action::Send(id, text) => self.send_ws(id, text, handler),
                Action::Close(id, code, reason) => self.close_ws(id, code, &reason, handler),
            }
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

    /// Pings silent WebSockets and closes those silent past the idle timeout.
    fn keep_alive<H: EdgeHandler>(&mut self, now: Instant, handler: &mut H) {
        let due: Vec<(ConnId, KeepaliveDue)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.state {
                // A closing WebSocket is bounded by its linger deadline instead.
                ConnState::Ws(wsc) if !wsc.closing => {
                    wsc.liveness.due(now, &self.keepalive).map(|d| (*id, d))
                }
                _ => None,
            })
            .collect();
        for (id, due) in due {
            match due {
                KeepaliveDue::Ping => self.ping_ws(id, now, handler),
                KeepaliveDue::Close => {
                    tracing::debug!(conn = id, "websocket idle timeout");
                    self.close_ws(id, WS_IDLE_CLOSE_CODE, "idle timeout", handler);
                }
            }
        }
    }

    fn ping_ws<H: EdgeHandler>(&mut self, id: ConnId, now: Instant, handler: &mut H) {
        let Some(ConnState::Ws(wsc)) = self.conns.get_mut(&id).map(|c| &mut c.state) else {
            return;
        };
        wsc.liveness.last_ping = now;
        match wsc.ws.send(Message::Ping(Default::default())) {
            Ok(()) => {}
            // The frame is buffered; the next writable event flushes it.
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => self.on_ws_error(id, err, handler),
        }
    }

    fn close_all<H: EdgeHandler>(&mut self, handler: &mut H) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.remove(id, handler);
        }
    }
}

/// Builds the response for one request into `out` and says what follows it.
fn answer<H: EdgeHandler>(
    cfg: &EdgeConfig,
    handler: &mut H,
    parsed: ParsedRequest,
    out: &mut Vec<u8>,
) -> AfterFlush {
    let req = &parsed.request;
    let after = if parsed.keep_alive {
        AfterFlush::NextRequest
    } else {
        AfterFlush::Close
    };
    if parsed.path_ok && req.path == "/ws" {
        if let Some(accept) = websocket_accept(req) {
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .as_bytes(),
            );
            return AfterFlush::Upgrade;
        }
        let resp = HttpResponse::text(400, "expected a WebSocket upgrade\n");
        encode_response(&resp, false, parsed.keep_alive, out);
        return after;
    }
    let resp = if !parsed.path_ok {
        HttpResponse::not_found()
    } else {
        handler.http(req).unwrap_or_else(|| {
            static_files::serve(
                &req.method,
                &req.path,
                cfg.web_root.as_deref(),
                &cfg.hls_root,
            )
        })
    };
    encode_response(&resp, req.method == "HEAD", parsed.keep_alive, out);
    after
}

/// The `Sec-WebSocket-Accept` value if `req` is a valid WebSocket upgrade.
fn websocket_accept(req: &HttpRequest) -> Option<String> {
    let ok = req.method == "GET"
        && req.header_has_token("upgrade", "websocket")
        && req.header_has_token("connection", "upgrade")
        && req.header("sec-websocket-version").map(str::trim) == Some("13");
    let key = req.header("sec-websocket-key")?.trim();
    (ok && !key.is_empty()).then(|| tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream as StdTcpStream;
    use std::sync::Mutex;
    use std::thread::JoinHandle;

    #[derive(Default)]
    struct Shared {
        open: Vec<ConnId>,
        closed: Vec<ConnId>,
        to_send_on_wake: Vec<String>,
    }

    struct TestHandler(Arc<Mutex<Shared>>);

    impl EdgeHandler for TestHandler {
        fn http(&mut self, req: &HttpRequest) -> Option<HttpResponse> {
            (req.path == "/api/echo")
                .then(|| HttpResponse::json(200, &serde_json::json!({ "query": req.query })))
        }
        fn ws_open(&mut self, conn: ConnId, _peer: SocketAddr, _out: &mut EdgeOut) {
            self.0.lock().unwrap().open.push(conn);
        }
        fn ws_text(&mut self, conn: ConnId, text: &str, out: &mut EdgeOut) {
            out.send_text(conn, text.to_string());
        }
        fn ws_closed(&mut self, conn: ConnId, _out: &mut EdgeOut) {
            let mut shared = self.0.lock().unwrap();
            shared.open.retain(|c| *c != conn);
            shared.closed.push(conn);
        }
        fn wake(&mut self, out: &mut EdgeOut) {
            let mut shared = self.0.lock().unwrap();
            let texts = std::mem::take(&mut shared.to_send_on_wake);
            for conn in shared.open.clone() {
                for text in &texts {
                    out.send_text(conn, text.clone());
                }
            }
        }
    }

    use crate::test_util::TempDir;

    struct Running {
        addr: SocketAddr,
        shared: Arc<Mutex<Shared>>,
        waker: Arc<Waker>,
        shutdown: ShutdownHandle,
        thread: Option<JoinHandle<io::Result<()>>>,
        _root: TempDir,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.shutdown.shutdown();
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap().unwrap();
            }
        }
    }

    fn start() -> Running {
        start_with(WsKeepalive::default())
    }

    fn start_with(keepalive: WsKeepalive) -> Running {
        let root = TempDir::new("edge");
        root.write("web/index.html", "<h1>home</h1>");
        root.write("web/app.js", "console.log(1)");
        root.write("web/stream/_/index.html", "room page");
        root.write("hls/room1/index.m3u8", "#EXTM3U");
        let cfg = EdgeConfig {
            web_root: Some(root.0.join("web")),
            hls_root: root.0.join("hls"),
            ..EdgeConfig::default()
        };
        let edge = Edge::bind("127.0.0.1:0".parse().unwrap(), cfg)
            .unwrap()
            .with_keepalive(keepalive);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut handler = TestHandler(shared.clone());
        let (addr, waker, shutdown) = (edge.local_addr(), edge.waker(), edge.shutdown_handle());
        let thread = std::thread::spawn(move || edge.run(&mut handler));
        Running {
            addr,
            shared,
            waker,
            shutdown,
            thread: Some(thread),
            _root: root,
        }
    }

    fn connect(addr: SocketAddr) -> StdTcpStream {
        let stream = StdTcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
    }

    /// Reads up to and including the blank line, one byte at a time so nothing after it is lost.
    fn read_head(stream: &mut StdTcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).unwrap();
            assert_eq!(n, 1, "connection closed before the response head ended");
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    /// Reads exactly one response (head, then Content-Length bytes).
    fn read_response(stream: &mut StdTcpStream) -> Response {
        let head = read_head(stream);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp.header("content-length").unwrap().parse().unwrap();
        resp.body = vec![0; len];
        stream.read_exact(&mut resp.body).unwrap();
        resp
    }

    fn get(addr: SocketAddr, path: &str) -> Response {
        let mut stream = connect(addr);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut stream)
    }

    fn ws_connect(addr: SocketAddr) -> WebSocket<StdTcpStream> {
        let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), connect(addr)).unwrap();
        ws
    }

    fn wait_until(mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "timed out waiting"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_text(ws: &mut WebSocket<StdTcpStream>) -> String {
        match ws.read().unwrap() {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn a_static_file_is_served_with_its_content_type_and_the_api_reaches_the_handler() {
        let server = start();
        let js = get(server.addr, "/app.js");
        assert_eq!(js.status, 200);
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(js.text(), "console.log(1)");
        let home = get(server.addr, "/");
        assert_eq!(
            home.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(home.text(), "<h1>home</h1>");
        let echo = get(server.addr, "/api/echo?x=1");
        assert_eq!(echo.header("content-type"), Some("application/json"));
        assert_eq!(echo.text(), r#"{"query":"x=1"}"#);
        assert_eq!(get(server.addr, "/hls/room1/index.m3u8").text(), "#EXTM3U");
    }

    #[test]
    fn a_stream_room_path_serves_the_placeholder_room_page() {
        let server = start();
        let page = get(server.addr, "/stream/abc-1");
        assert_eq!((page.status, page.text()), (200, "room page"));
    }

    #[test]
    fn traversal_attempts_get_404() {
        let server = start();
        for path in [
            "/../Cargo.toml",
            "/%2e%2e/x",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/hls/..%2f..%2fetc/passwd",
            "/hls/bad%20id/x.m3u8",
            "/..%5c..%5cCargo.toml",
            "/%ff",
        ] {
            assert_eq!(get(server.addr, path).status, 404, "{path}");
        }
    }

    #[test]
    fn head_answers_headers_with_the_content_length_but_no_body() {
        let server = start();
        let mut stream = connect(server.addr);
        stream
            .write_all(b"HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\nGET /app.js HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(String::from_utf8_lossy(&head).contains("Content-Length: 14\r\n"));
        // The next bytes are the pipelined GET's response, not a body.
        assert_eq!(read_response(&mut stream).text(), "console.log(1)");
    }

    #[test]
    fn an_oversize_request_head_gets_431_and_the_server_keeps_serving() {
        let server = start();
        let mut stream = connect(server.addr);
        let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 20 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&req).unwrap();
        let status = read_response(&mut stream).status;
        assert!(status == 431 || status == 400, "{status}");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert_eq!(get(server.addr, "/").status, 200);
    }

    #[test]
    fn an_oversize_body_gets_413() {
        let server = start();
        let mut stream = connect(server.addr);
        write!(
            stream,
            "POST /api/echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
        )
        .unwrap();
        assert_eq!(read_response(&mut stream).status, 413);
    }

    #[test]
    fn keep_alive_serves_two_requests_on_one_socket() {
        let server = start();
        let mut stream = connect(server.addr);
        for _ in 0..2 {
            write!(stream, "GET /api/echo?a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let resp = read_response(&mut stream);
            assert_eq!(resp.status, 200);
            assert_eq!(resp.header("connection"), Some("keep-alive"));
        }
    }

    #[test]
    fn websocket_text_is_echoed() {
        let server = start();
        let mut ws = ws_connect(server.addr);
        ws.send(Message::text("hello")).unwrap();
        assert_eq!(read_text(&mut ws), "hello");
        ws.send(Message::binary(b"bin".to_vec())).unwrap();
        assert_eq!(read_text(&mut ws), "bin");
    }

    #[test]
    fn a_70_kib_frame_gets_close_code_1009_and_the_server_serves_another_client() {
        let server = start();
        let mut ws = ws_connect(server.addr);
        ws.send(Message::text("a".repeat(70 * 1024))).unwrap();
        let code = loop {
            match ws.read() {
                Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(err) => panic!("expected a close frame, got {err}"),
            }
        };
        assert_eq!(code, Some(1009));
        wait_until(|| server.shared.lock().unwrap().closed.len() == 1);
        let mut other = ws_connect(server.addr);
        other.send(Message::text("still here")).unwrap();
        assert_eq!(read_text(&mut other), "still here");
    }

    #[test]
    fn a_waker_triggered_send_reaches_the_client() {
        let server = start();
        let mut ws = ws_connect(server.addr);
        wait_until(|| server.shared.lock().unwrap().open.len() == 1);
        server
            .shared
            .lock()
            .unwrap()
            .to_send_on_wake
            .push("from a worker".into());
        server.waker.wake().unwrap();
        assert_eq!(read_text(&mut ws), "from a worker");
    }

    #[test]
    fn ws_closed_is_called_exactly_once_when_the_client_drops_or_closes() {
        let server = start();
        let mut dropped = ws_connect(server.addr);
        dropped.send(Message::text("x")).unwrap();
        assert_eq!(read_text(&mut dropped), "x");
        drop(dropped);
        wait_until(|| server.shared.lock().unwrap().closed.len() == 1);

        let mut polite = ws_connect(server.addr);
        polite.close(None).unwrap();
        loop {
            match polite.read() {
                Ok(_) => {}
                Err(WsError::ConnectionClosed) => break,
                Err(err) => panic!("unexpected {err}"),
            }
        }
        wait_until(|| server.shared.lock().unwrap().closed.len() == 2);
        std::thread::sleep(Duration::from_millis(300));
        let shared = server.shared.lock().unwrap();
        assert_eq!(shared.closed.len(), 2);
        assert!(shared.open.is_empty());
        assert_ne!(shared.closed[0], shared.closed[1]);
    }

    #[test]
    fn a_client_that_never_reads_is_closed_once_its_backlog_passes_the_cap() {
        let server = start();
        let ws = ws_connect(server.addr);
        wait_until(|| server.shared.lock().unwrap().open.len() == 1);
        let chunk = "z".repeat(60 * 1024);
        for _ in 0..300 {
            server
                .shared
                .lock()
                .unwrap()
                .to_send_on_wake
                .push(chunk.clone());
        }
        server.waker.wake().unwrap();
        wait_until(|| server.shared.lock().unwrap().closed.len() == 1);
        drop(ws);
    }

    #[test]
    fn connections_beyond_max_connections_are_refused() {
        let root = TempDir::new("edge");
        let cfg = EdgeConfig {
            hls_root: root.0.clone(),
            max_connections: 1,
            ..EdgeConfig::default()
        };
        let edge = Edge::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
        let (addr, shutdown) = (edge.local_addr(), edge.shutdown_handle());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut handler = TestHandler(shared);
        let thread = std::thread::spawn(move || edge.run(&mut handler));
        let mut first = connect(addr);
        write!(first, "GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_response(&mut first).text().contains("make run"));
        let mut second = connect(addr);
        let _ = write!(second, "GET / HTTP/1.1\r\n\r\n");
        let mut buf = [0u8; 16];
        assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
        shutdown.shutdown();
        thread.join().unwrap().unwrap();
    }

    #[test]
    fn garbage_bytes_get_400() {
        let server = start();
        let mut stream = connect(server.addr);
        stream.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut stream).status, 400);
        assert_eq!(get(server.addr, "/").status, 200);
    }

    /// Short enough that the keepalive tests take about a second.
    const FAST_KEEPALIVE: WsKeepalive = WsKeepalive {
        ping_after: Duration::from_millis(200),
        close_after: Duration::from_millis(600),
    };

    #[test]
    fn liveness_pings_after_silence_repeats_each_interval_and_closes_after_the_idle_timeout() {
        let ka = WsKeepalive::default();
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        assert_eq!(live.due(t0 + Duration::from_secs(19), &ka), None);
        assert_eq!(live.due(t0 + WS_PING_AFTER, &ka), Some(KeepaliveDue::Ping));
        live.last_ping = t0 + WS_PING_AFTER;
        assert_eq!(live.due(t0 + Duration::from_secs(39), &ka), None);
        assert_eq!(
            live.due(t0 + Duration::from_secs(40), &ka),
            Some(KeepaliveDue::Ping)
        );
        assert_eq!(
            live.due(t0 + WS_IDLE_TIMEOUT, &ka),
            Some(KeepaliveDue::Close)
        );
        // Anything received restarts both clocks.
        live.last_received = t0 + Duration::from_secs(59);
        assert_eq!(live.due(t0 + Duration::from_secs(78), &ka), None);
        assert_eq!(
            live.due(t0 + Duration::from_secs(79), &ka),
            Some(KeepaliveDue::Ping)
        );
    }

    #[test]
    fn a_client_that_answers_pings_stays_open_past_the_idle_timeout() {
        let server = start_with(FAST_KEEPALIVE);
        let mut ws = ws_connect(server.addr);
        let start = Instant::now();
        // Four pings span at least 800 ms, past the 600 ms idle timeout. Each read() also
        // flushes the Pong tungstenite queued for the previous Ping.
        let mut pings = 0;
        while pings < 4 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "timed out waiting"
            );
            match ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        assert!(start.elapsed() > FAST_KEEPALIVE.close_after);
        ws.send(Message::text("still here")).unwrap();
        let echoed = loop {
            match ws.read() {
                Ok(Message::Ping(_)) => {}
                Ok(Message::Text(text)) => break text.to_string(),
                other => panic!("expected the echo, got {other:?}"),
            }
        };
        assert_eq!(echoed, "still here");
        assert!(server.shared.lock().unwrap().closed.is_empty());
    }

    #[test]
    fn a_client_that_never_answers_pings_is_closed_with_1001_and_ws_closed_is_called_once() {
        let server = start_with(FAST_KEEPALIVE);
        let mut raw = connect(server.addr);
        write!(
            raw,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        assert!(read_head(&mut raw).starts_with("HTTP/1.1 101 "));
        wait_until(|| server.shared.lock().unwrap().open.len() == 1);
        let id = server.shared.lock().unwrap().open[0];

        wait_until(|| server.shared.lock().unwrap().closed.len() == 1);
        // Only now read what the edge sent: Pings, then the Close frame, then EOF.
        let mut bytes = Vec::new();
        raw.read_to_end(&mut bytes).unwrap();
        let mut opcodes = Vec::new();
        let mut close_code = None;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // Server frames are unmasked; control frames carry at most 125 bytes.
            let (opcode, len) = (rest[0] & 0x0f, usize::from(rest[1] & 0x7f));
            let payload = &rest[2..2 + len];
            if opcode == 0x8 {
                close_code = Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
            opcodes.push(opcode);
            rest = &rest[2 + len..];
        }
        let (last, pings) = opcodes.split_last().unwrap();
        assert!(
            !pings.is_empty() && pings.iter().all(|&op| op == 0x9),
            "{opcodes:?}"
        );
        assert_eq!((*last, close_code), (0x8, Some(1001)));

        // Once the edge has stopped, the handler has seen every call it will ever get.
        let shared = server.shared.clone();
        drop(server);
        let shared = shared.lock().unwrap();
        assert_eq!(shared.closed, vec![id]);
        assert!(shared.open.is_empty());
    }
}
