//! A connection speaking WebSocket: messages to the handler, sends and closes from it,
//! the close handshake, and the keepalive that closes peers that went away silently.

use std::io;
use std::time::{Duration, Instant};

use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use super::out_queue::{cost, OutQueue};
use super::stream::Stream;
use super::{ConnId, ConnState, EdgeHandler, EdgeLoop, EdgeOut, LINGER_TIMEOUT, READ_CHUNK};

/// A WebSocket silent this long gets a Ping, and another each time this passes again.
pub const WS_PING_AFTER: Duration = Duration::from_secs(20);
/// A WebSocket from which nothing (any frame, Pong included) arrived this long is closed.
pub const WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// "Going away" (RFC 6455 7.4.1): we drop a peer we consider gone, not one that misbehaved.
const WS_IDLE_CLOSE_CODE: u16 = 1001;
/// Messages read from one socket before the loop serves others (fairness under floods).
const MAX_MESSAGES_PER_TURN: usize = 256;
/// Bytes moved from a socket's queue into tungstenite per write; tungstenite buffers up to
/// this much before it writes, so many small frames cost one syscall.
/// Small, because tungstenite keeps its buffer's peak capacity for the socket's lifetime.
const WRITE_CHUNK: usize = 16 * 1024;
/// Write chunks per socket per turn before the loop serves others.
const MAX_CHUNKS_PER_TURN: usize = 16;

/// When the edge pings silent WebSockets and closes dead ones.
///
/// Kept out of [`EdgeConfig`](super::EdgeConfig) because callers build that field by field;
/// the defaults are the constants, and tests shorten them with
/// [`Edge::with_keepalive`](super::Edge::with_keepalive).
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

pub(super) struct WsConn {
    pub(super) ws: WebSocket<Stream>,
    /// A Close frame was sent or received; only flushing remains.
    pub(super) closing: bool,
    pub(super) closed_notified: bool,
    liveness: Liveness,
    /// Frames not yet handed to tungstenite.
    queue: OutQueue,
    /// Bytes handed to tungstenite since its last complete flush (an upper bound on what it
    /// still buffers).
    in_socket: usize,
    /// Listed in `EdgeLoop::unflushed`.
    unflushed: bool,
}

impl WsConn {
    /// Outgoing bytes this connection holds in memory.
    pub(super) fn pending_out(&self) -> usize {
        self.queue.bytes() + self.in_socket
    }
}

/// The keepalive clock of one open WebSocket, fed the times of what arrived and was sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness {
    /// When the last message or control frame arrived (the open time before the first).
    pub(super) last_received: Instant,
    /// When we last sent a Ping (the open time before the first).
    pub(super) last_ping: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum KeepaliveDue {
    Ping,
    Close,
}

impl Liveness {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            last_received: now,
            last_ping: now,
        }
    }

    pub(super) fn due(&self, now: Instant, keepalive: &WsKeepalive) -> Option<KeepaliveDue> {
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

impl EdgeLoop {
    pub(super) fn upgrade<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnState::Http(http) = std::mem::replace(&mut conn.state, ConnState::Gone) else {
            return;
        };
        limit_send_buffer(http.stream.tcp(), self.cfg.ws_socket_send_buffer);
        // The per-socket output limit is enforced on the queue; tungstenite's own cap is only
        // a backstop for what it holds beyond one chunk (control frames, a last large frame).
        let backstop = WRITE_CHUNK + self.cfg.max_ws_pending_out.max(WRITE_CHUNK) * 2;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            .write_buffer_size(WRITE_CHUNK)
            .max_write_buffer_size(backstop)
            .max_message_size(Some(self.cfg.max_ws_message))
            .max_frame_size(Some(self.cfg.max_ws_message));
        let claims = http.claims;
        // Frames the client sent right after its handshake are already in `inbuf`.
        let ws =
            WebSocket::from_partially_read(http.stream, http.inbuf, Role::Server, Some(config));
        conn.state = ConnState::Ws(Box::new(WsConn {
            ws,
            closing: false,
            closed_notified: false,
            liveness: Liveness::new(Instant::now()),
            queue: OutQueue::default(),
            in_socket: 0,
            unflushed: false,
        }));
        conn.deadline = None;
        let peer = conn.peer;
        tracing::debug!(conn = id, %peer, "websocket open");
        let mut out = EdgeOut::default();
        handler.ws_open(id, peer, claims, &mut out);
        self.apply(handler, &mut out);
        self.drive_ws(id, handler);
    }

    /// Reads messages until the socket would block, then flushes queued output.
    pub(super) fn drive_ws<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
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

    /// Writes what tungstenite buffers, then moves queued frames into it chunk by chunk
    /// until the socket would block (the next writable event resumes) or this turn's share
    /// is used (resumed next turn).
    pub(super) fn flush_ws<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        for _ in 0..MAX_CHUNKS_PER_TURN {
            let Some(ConnState::Ws(wsc)) = self.conns.get_mut(&id).map(|c| &mut c.state) else {
                return;
            };
            wsc.unflushed = false;
            match wsc.ws.flush() {
                Ok(()) => {
                    self.pending_out_total = self.pending_out_total.saturating_sub(wsc.in_socket);
                    wsc.in_socket = 0;
                }
                Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => return self.on_ws_error(id, err, handler),
            }
            if wsc.closing || wsc.queue.is_empty() {
                return;
            }
            while wsc.in_socket < WRITE_CHUNK {
                let Some(text) = wsc.queue.pop() else { break };
                // Moves from the queue into tungstenite: the total does not change.
                wsc.in_socket += cost(&text);
                match wsc.ws.write(Message::text(text)) {
                    Ok(()) => {}
                    // Buffered by tungstenite; the flush above continues it.
                    Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return self.on_ws_error(id, err, handler),
                }
            }
        }
        self.again.push(id);
    }

    /// Queues a frame (see [`EdgeOut::send_latest`] for `key`) and enforces the output
    /// limits: a client that lets more than its share pile up is closed with 1008.
    pub(super) fn send_ws<H: EdgeHandler>(
        &mut self,
        id: ConnId,
        key: Option<String>,
        text: String,
        handler: &mut H,
    ) {
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
        let had = wsc.pending_out();
        let delta = wsc.queue.push(key, text);
        self.pending_out_total = self.pending_out_total.saturating_add_signed(delta);
        self.pending_out_peak = self.pending_out_peak.max(self.pending_out_total);
        let pending = wsc.pending_out();
        let over_socket = pending > self.cfg.max_ws_pending_out;
        // Over the global budget, the sockets that already lag pay, not one that keeps up.
        let over_total = self.pending_out_total > self.cfg.max_pending_out_total && had > 0;
        if over_socket || over_total {
            tracing::debug!(
                conn = id,
                pending,
                over_total,
                "closing a client that does not read"
            );
            self.pending_out_total = self.pending_out_total.saturating_sub(wsc.queue.clear());
            let reason = if over_socket {
                "too much pending output"
            } else {
                "server output budget exhausted"
            };
            return self.close_ws(id, 1008, reason, handler);
        }
        if !wsc.unflushed {
            wsc.unflushed = true;
            self.unflushed.push(id);
        }
    }

    /// Our side closes: Close frame, `ws_closed`, flush, linger.
    pub(super) fn close_ws<H: EdgeHandler>(
        &mut self,
        id: ConnId,
        code: u16,
        reason: &str,
        handler: &mut H,
    ) {
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
        // What was queued before the close (a `kicked` notification) goes out before it, as
        // far as tungstenite's backstop lets it.
        while let Some(text) = wsc.queue.pop() {
            wsc.in_socket += cost(&text);
            match wsc.ws.write(Message::text(text)) {
                Ok(()) => {}
                Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.pending_out_total =
                        self.pending_out_total.saturating_sub(wsc.queue.clear());
                    break;
                }
            }
        }
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
                    self.pending_out_total =
                        self.pending_out_total.saturating_sub(wsc.pending_out());
                    conn.state = ConnState::Linger(wsc.ws.into_inner().into_tcp());
                }
                self.start_linger(id, handler);
            }
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.remove(id, handler),
        }
    }

    /// Pings silent WebSockets and closes those silent past the idle timeout.
    pub(super) fn keep_alive<H: EdgeHandler>(&mut self, now: Instant, handler: &mut H) {
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
}

/// Fixes the kernel's send buffer of a WebSocket (Linux doubles the value for bookkeeping).
/// Left to autotuning it grows to megabytes for a client that does not read, kernel memory
/// our own output limit would not see; signaling needs little throughput.
fn limit_send_buffer(stream: &mio::net::TcpStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let Ok(value) = libc::c_int::try_from(bytes) else {
        return;
    };
    if value == 0 {
        return;
    }
    // SAFETY: setsockopt reads `value` (a c_int that outlives the call) on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(err = %io::Error::last_os_error(), "SO_SNDBUF not set");
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
