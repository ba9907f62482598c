//! Passive ICE-TCP on a worker's media port (RFC 6544 `tcptype passive`, RFC 4571 framing):
//! browsers that cannot reach our UDP port connect here, and every STUN / DTLS / SRTP / SRTCP
//! packet travels as a frame preceded by its two-byte length.
//!
//! Each accepted connection is a [`Remote::Tcp`]: its frames go through the same
//! `WorkerCore::handle_datagram` as UDP datagrams, and what the core queues for it is framed
//! into the connection's bounded [`SendQueue`], which a writer task of its own drains. So a
//! client that stops reading fills only its own queue (its media is then dropped and counted)
//! and never blocks the worker or other peers.
//!
//! A TCP peer is more expensive to keep than a UDP one, so the listener bounds them: at most
//! `max_connections` per worker and `max_per_ip` from one address (the rest are closed at
//! once), frames no larger than what the UDP path accepts (a larger length prefix closes the
//! connection; a partial frame holds at most that much), and a connection that belongs to no
//! transport — ICE never completed, or its transport closed — is closed after `idle_timeout`.

use super::{fail_transport, guarded, Sending, Shared, RECV_BUFFER};
use crate::room::remote::{Remote, TcpConnId};
use crate::rtc::framing::FrameDecoder;
use crate::stats::WorkerStats;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker's ICE-TCP listener accepts (docs/config.md, "ICE-TCP").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// How long a connection may belong to no transport.
    pub idle_timeout: Duration,
    /// Bytes (framed) waiting to be written to one connection at most.
    pub send_queue: usize,
}

/// Largest frame accepted: what the UDP path accepts as a datagram.
const MAX_FRAME: usize = RECV_BUFFER - 1;
/// Bytes read per `read` call (one connection's read buffer).
const READ_BUFFER: usize = 8 * 1024;
/// Bytes a writer takes from its queue per `write_all`.
const WRITE_CHUNK: usize = 16 * 1024;
/// How often a quiet connection re-checks the idle deadline.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Frames waiting to be written to one connection: length-prefixed, whole frames only, at
/// most `cap` bytes. Grows to what it needs up to `cap` and keeps that capacity: after
/// warm-up, queueing allocates nothing.
pub struct SendQueue {
    bytes: VecDeque<u8>,
    cap: usize,
}

impl SendQueue {
    pub fn new(cap: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            cap,
        }
    }

    /// Queues `frame` with its length prefix; false (nothing queued) if it does not fit.
    pub fn push_frame(&mut self, frame: &[u8]) -> bool {
        let Ok(len) = u16::try_from(frame.len()) else {
            return false;
        };
        if self.bytes.len() + 2 + frame.len() > self.cap {
            return false;
        }
        self.bytes.extend(len.to_be_bytes());
        self.bytes.extend(frame);
        true
    }

    /// Moves up to `max` queued bytes to the end of `out`.
    pub fn take_into(&mut self, out: &mut Vec<u8>, max: usize) {
        let n = self.bytes.len().min(max);
        let (front, back) = self.bytes.as_slices();
        let from_front = front.len().min(n);
        out.extend_from_slice(&front[..from_front]);
        out.extend_from_slice(&back[..n - from_front]);
        self.bytes.drain(..n);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// One open connection as the sending side sees it.
struct Conn {
    queue: RefCell<SendQueue>,
    /// Wakes the connection's writer (a full channel means it is awake already).
    wake: LocalSender<()>,
    /// Set by the writer when the connection broke; the reader then closes it.
    broken: Cell<bool>,
}

/// A worker's open ICE-TCP connections and the limits on them.
pub struct TcpConns {
    opts: TcpOptions,
    stats: Arc<WorkerStats>,
    open: RefCell<HashMap<TcpConnId, Rc<Conn>>>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    next_id: Cell<TcpConnId>,
}

impl TcpConns {
    pub fn new(opts: TcpOptions, stats: Arc<WorkerStats>) -> Self {
        Self {
            opts,
            stats,
            open: RefCell::new(HashMap::new()),
            per_ip: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        }
    }

    /// Queues a frame for connection `conn`; dropped (and counted) if the connection is gone
    /// or its queue is full.
    pub fn send(&self, conn: TcpConnId, frame: &[u8]) {
        let open = self.open.borrow();
        let Some(c) = open.get(&conn) else {
            return;
        };
        if c.queue.borrow_mut().push_frame(frame) {
            let _ = c.wake.try_send(());
        } else {
            self.stats.tcp_send_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Opens a connection from `ip` if the limits allow: its id, its sending side (counted
    /// at once, so a burst of accepts cannot overshoot the limits before any is served) and
    /// the receiver that wakes its writer. None: refused (counted).
    fn open(&self, ip: IpAddr) -> Option<(TcpConnId, Rc<Conn>, LocalReceiver<()>)> {
        let mut open = self.open.borrow_mut();
        let mut per_ip = self.per_ip.borrow_mut();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if open.len() >= self.opts.max_connections || from_ip >= self.opts.max_per_ip {
            self.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        per_ip.insert(ip, from_ip + 1);
        let mut id = self.next_id.get();
        while id == 0 || open.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id.set(id.wrapping_add(1));
        let (wake, woken) = local_channel::new_bounded(1);
        let conn = Rc::new(Conn {
            queue: RefCell::new(SendQueue::new(self.opts.send_queue)),
            wake,
            broken: Cell::new(false),
        });
        open.insert(id, conn.clone());
        self.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        Some((id, conn, woken))
    }

    /// Forgets connection `id` from `ip` (it closed).
    fn close(&self, id: TcpConnId, ip: IpAddr) {
        if self.open.borrow_mut().remove(&id).is_some() {
            self.stats.tcp_connections.fetch_sub(1, Ordering::Relaxed);
        }
        let mut per_ip = self.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// Binds the worker's ICE-TCP listener (the same address and port as its UDP socket), with
/// SO_REUSEADDR: a connection of another program's socket lingering in TIME_WAIT on the port
/// must not keep the server from listening for a minute. (glommio's own bind sets only
/// SO_REUSEPORT, which covers the TIME_WAIT of our own earlier listeners but not of others.)
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let listen = || -> std::io::Result<Socket> {
        let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sk.set_reuse_address(true)?;
        sk.bind(&addr.into())?;
        sk.listen(1024)?;
        Ok(sk)
    };
    let sk = listen().map_err(|e| {
        std::io::Error::other(format!(
            "cannot listen for ICE-TCP on {addr}: {e} (free the port, or turn ICE-TCP off with --no-ice-tcp)"
        ))
    })?;
    // SAFETY: the descriptor is a bound, listening TCP socket that nothing else owns.
    Ok(unsafe { TcpListener::from_raw_fd(sk.into_raw_fd()) })
}

/// Accepts connections until the worker ends; each is served by tasks of its own.
pub(super) async fn accept_loop(
    listener: TcpListener,
    conns: Rc<TcpConns>,
    core: Shared,
    sending: Rc<Sending>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "ICE-TCP accept failed");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let Some((id, conn, woken)) = conns.open(peer.ip()) else {
            tracing::debug!(%peer, "ICE-TCP connection refused: too many");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let (conns, core, sending) = (conns.clone(), core.clone(), sending.clone());
        glommio::spawn_local(async move {
            let (reader, writer) = futures_lite::io::split(stream);
            // Dropped (cancelled) when the reader is done.
            let _writer = glommio::spawn_local(write_loop(writer, conn.clone(), woken));
            serve(reader, peer, id, &conn, &conns, &core, &sending).await;
            conns.close(id, peer.ip());
            let remote = Remote::Tcp {
                addr: peer,
                conn: id,
            };
            let _ = guarded(&core, |c| c.tcp_closed(remote), |_| {});
            sending.flush(&core, None).await;
        })
        .detach();
    }
}

/// Reads one connection until it closes, breaks, sends a bad frame or idles out.
async fn serve(
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    peer: SocketAddr,
    id: TcpConnId,
    conn: &Conn,
    conns: &TcpConns,
    core: &Shared,
    sending: &Sending,
) {
    let remote = Remote::Tcp {
        addr: peer,
        conn: id,
    };
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut last_bound = Instant::now();
    let stats = &conns.stats;
    loop {
        let read = glommio::timer::timeout(IDLE_CHECK, async {
            reader
                .read(&mut buf)
                .await
                .map_err(glommio::GlommioError::from)
        })
        .await;
        let now = Instant::now();
        match read {
            Ok(0) => break,
            Ok(n) => {
                let fed = decoder.feed(&buf[..n], |frame| {
                    let _ = guarded(
                        core,
                        |c| c.handle_datagram(frame, remote, now),
                        |c| fail_transport(c.transport_of_addr(&remote))(c),
                    );
                });
                sending.flush(core, Some(now)).await;
                if let Err(e) = fed {
                    stats.tcp_framing_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "ICE-TCP connection closed: bad framing");
                    break;
                }
            }
            Err(glommio::GlommioError::TimedOut(_)) => {}
            Err(e) => {
                tracing::debug!(%peer, error = %e, "ICE-TCP read failed");
                break;
            }
        }
        if conn.broken.get() {
            break;
        }
        if core.borrow().env.index.by_addr.contains_key(&remote) {
            last_bound = now;
        } else if now.saturating_duration_since(last_bound) > conns.opts.idle_timeout {
            stats.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "ICE-TCP connection closed: no transport uses it");
            break;
        }
        glommio::yield_if_needed().await;
    }
}

/// Writes what the connection's queue holds whenever it is woken; marks the connection
/// broken if a write fails.
async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    conn: Rc<Conn>,
    woken: LocalReceiver<()>,
) {
    let mut chunk = Vec::with_capacity(WRITE_CHUNK);
    while woken.recv().await.is_some() {
        loop {
            chunk.clear();
            conn.queue.borrow_mut().take_into(&mut chunk, WRITE_CHUNK);
            if chunk.is_empty() {
                break;
            }
            if writer.write_all(&chunk).await.is_err() {
                conn.broken.set(true);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_queue_frames_whole_packets_and_drops_what_does_not_fit() {
        let mut q = SendQueue::new(16);
        assert!(q.push_frame(b"hello"));
        assert_eq!(q.len(), 7);
        assert!(q.push_frame(b"world!"));
        assert_eq!(q.len(), 15);
        assert!(!q.push_frame(b"x"), "2 + 1 bytes do not fit in the last 1");
        assert!(
            !q.push_frame(&[0u8; 70_000]),
            "longer than a length prefix can say"
        );
        let mut out = Vec::new();
        q.take_into(&mut out, 4);
        assert_eq!(out, [0, 5, b'h', b'e']);
        q.take_into(&mut out, 100);
        assert_eq!(&out[4..9], b"llo\x00\x06");
        assert_eq!(&out[9..], b"world!");
        assert!(q.is_empty());
        // Room again once drained.
        assert!(q.push_frame(&[7u8; 14]));
        assert!(!q.push_frame(b""));
    }

    #[test]
    fn what_the_queue_sends_decodes_back_into_the_same_frames() {
        let mut q = SendQueue::new(64 * 1024);
        let frames: Vec<Vec<u8>> = (0..50u8)
            .map(|i| vec![i; 1 + usize::from(i) * 23])
            .collect();
        for f in &frames {
            assert!(q.push_frame(f));
        }
        let mut wire = Vec::new();
        q.take_into(&mut wire, usize::MAX);
        let mut decoder = FrameDecoder::new(MAX_FRAME);
        let mut got = Vec::new();
        // Fed in odd-sized pieces, as TCP may deliver them.
        for piece in wire.chunks(97) {
            decoder.feed(piece, |f| got.push(f.to_vec())).unwrap();
        }
        assert_eq!(got, frames);
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn connections_are_limited_per_worker_and_per_ip_and_freed_on_close() {
        let stats = Arc::new(WorkerStats::new(0, None));
        let conns = TcpConns::new(
            TcpOptions {
                max_connections: 3,
                max_per_ip: 2,
                idle_timeout: Duration::from_secs(1),
                send_queue: 1024,
            },
            stats.clone(),
        );
        let id = |opened: Option<(TcpConnId, Rc<Conn>, LocalReceiver<()>)>| opened.map(|o| o.0);
        let a = id(conns.open(ip(1))).unwrap();
        let b = id(conns.open(ip(1))).unwrap();
        assert_ne!(a, b);
        assert_eq!(id(conns.open(ip(1))), None, "a third from one IP");
        let c = id(conns.open(ip(2))).unwrap();
        assert_eq!(id(conns.open(ip(3))), None, "a fourth on the worker");
        assert_eq!(stats.tcp_refused.load(Ordering::Relaxed), 2);
        assert_eq!(stats.tcp_connections.load(Ordering::Relaxed), 3);
        conns.close(a, ip(1));
        assert_eq!(stats.tcp_connections.load(Ordering::Relaxed), 2);
        let d = id(conns.open(ip(1))).unwrap();
        assert!(
            ![b, c].contains(&d),
            "ids of open connections are not reused"
        );
        conns.close(b, ip(1));
        conns.close(c, ip(2));
        conns.close(d, ip(1));
        assert!(conns.per_ip.borrow().is_empty());
        assert!(conns.open.borrow().is_empty());
    }

    #[test]
    fn a_frame_for_a_full_or_closed_connection_is_dropped_and_counted() {
        let stats = Arc::new(WorkerStats::new(0, None));
        let opts = TcpOptions {
            max_connections: 8,
            max_per_ip: 8,
            idle_timeout: Duration::from_secs(1),
            send_queue: 100,
        };
        let conns = TcpConns::new(opts, stats.clone());
        let (id, conn, _woken) = conns.open(ip(1)).unwrap();
        conns.send(id, &[1u8; 60]);
        conns.send(id, &[2u8; 60]);
        assert_eq!(conn.queue.borrow().len(), 62);
        assert_eq!(stats.tcp_send_dropped.load(Ordering::Relaxed), 1);
        conns.send(id + 1, &[3u8; 10]);
        assert_eq!(conn.queue.borrow().len(), 62, "another id reaches nothing");
    }
}
