//! SCTP over a transport's DTLS association (data channels, RFC 8831), on the dtls thread.
//!
//! A transport created with `sctp: true` runs a webrtc-sctp [`Association`] over its
//! `DTLSConn` once the DTLS handshake is done (src/rtc/dtls.rs). The association waits for the
//! browser's INIT (Chromium opens SCTP only once `produceData()`/`consumeData()` first adds the
//! m=application section). Messages are handed to the worker as [`DtlsEvent::Sctp`]; the
//! worker routes them (src/room/data.rs) and hands the copies for its consumers back through
//! each consumer transport's [`SctpOutbox`]: bounded, so a slow consumer only loses its own
//! messages and never stalls the worker or another consumer.
//!
//! mediasoup-client opens every data channel with `negotiated: true` (its own stream ids for
//! what it sends, the server's for what it receives), so no DCEP handshake runs; a DCEP
//! message (PPID 50) that arrives anyway is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use dtls_util::Conn;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use webrtc_sctp::association::{Association, Config};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier;
use webrtc_sctp::stream::{ReliabilityType, Stream};

use super::dtls::{DtlsEvent, DtlsSink};

/// `sctpParameters` of a create-transport answer (shared/protocol.md).
pub const SCTP_PORT: u16 = 5000;
pub const SCTP_OS: u16 = 1024;
pub const SCTP_MIS: u16 = 1024;
pub const MAX_MESSAGE_SIZE: usize = 262_144;

/// Streams of one association we read; a peer opening more has their messages discarded.
pub const MAX_READ_STREAMS: usize = 16;
/// What one transport's outbox holds at most before new messages are dropped.
const OUTBOX_MESSAGES: usize = 256;
const OUTBOX_BYTES: usize = 2 * 1024 * 1024;
/// Bytes a stream may have queued in SCTP (unacknowledged) before we drop for it.
const MAX_STREAM_BUFFERED: usize = 1024 * 1024;
/// What the association lets us write. We only ever write messages we read (at most
/// [`MAX_MESSAGE_SIZE`], the read buffer); the headroom lets tests play a peer that ignores
/// `maxMessageSize`.
const SEND_LIMIT: u32 = 2 * MAX_MESSAGE_SIZE as u32;

/// WebRTC payload protocol identifiers (RFC 8831 §8).
pub const PPID_DCEP: u32 = 50;
pub const PPID_STRING: u32 = 51;
pub const PPID_BINARY: u32 = 53;
pub const PPID_STRING_EMPTY: u32 = 56;
pub const PPID_BINARY_EMPTY: u32 = 57;

/// One data-channel message, as received on (or to be sent on) a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SctpMessage {
    pub stream_id: u16,
    pub ppid: u32,
    /// Shared by every consumer's copy: fan-out does not copy the payload.
    pub data: Bytes,
}

/// `sctpStreamParameters` delivery options of a data channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reliability {
    pub ordered: bool,
    pub max_packet_life_time: Option<u16>,
    pub max_retransmits: Option<u16>,
}

impl Default for Reliability {
    fn default() -> Self {
        Self {
            ordered: true,
            max_packet_life_time: None,
            max_retransmits: None,
        }
    }
}

/// A message for one consumer stream.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub message: SctpMessage,
    pub reliability: Reliability,
}

/// What one data producer (one stream of one association) may push; beyond it messages are
/// dropped and counted. The bytes burst is at least one maximal message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataRate {
    pub messages_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl Default for DataRate {
    fn default() -> Self {
        Self {
            messages_per_sec: 500.0,
            bytes_per_sec: 2.0 * 1024.0 * 1024.0,
        }
    }
}

/// A token bucket on messages and bytes (burst: one second's worth, at least one maximal
/// message of bytes). Pure: fed lengths and time.
#[derive(Debug)]
pub struct RateLimiter {
    rate: DataRate,
    messages: f64,
    bytes: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: DataRate, now: Instant) -> Self {
        let mut limiter = Self {
            rate,
            messages: 0.0,
            bytes: 0.0,
            last: now,
        };
        limiter.messages = limiter.message_burst();
        limiter.bytes = limiter.byte_burst();
        limiter
    }

    fn message_burst(&self) -> f64 {
        self.rate.messages_per_sec.max(1.0)
    }

    fn byte_burst(&self) -> f64 {
        self.rate.bytes_per_sec.max(MAX_MESSAGE_SIZE as f64)
    }

    /// Whether a message of `len` bytes may pass at `now` (it then spends its tokens).
    pub fn allow(&mut self, len: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.messages =
            (self.messages + elapsed * self.rate.messages_per_sec).min(self.message_burst());
        self.bytes = (self.bytes + elapsed * self.rate.bytes_per_sec).min(self.byte_burst());
        let len = len as f64;
        if self.messages < 1.0 || self.bytes < len {
            return false;
        }
        self.messages -= 1.0;
        self.bytes -= len;
        true
    }
}

/// Process-wide data-channel counters (`/api/stats` → `dataChannels`).
#[derive(Debug, Default)]
pub struct SctpCounters {
    pub associations: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Over `maxMessageSize`.
    pub dropped_oversize: AtomicU64,
    /// Over a data producer's rate.
    pub dropped_rate: AtomicU64,
    /// A consumer's outbox or SCTP send buffer was full (a slow consumer).
    pub dropped_queue: AtomicU64,
    /// DCEP, unknown PPIDs, streams beyond [`MAX_READ_STREAMS`], messages on no data producer.
    pub dropped_other: AtomicU64,
}

pub static COUNTERS: SctpCounters = SctpCounters {
    associations: AtomicU64::new(0),
    messages_in: AtomicU64::new(0),
    messages_out: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    dropped_oversize: AtomicU64::new(0),
    dropped_rate: AtomicU64::new(0),
    dropped_queue: AtomicU64::new(0),
    dropped_other: AtomicU64::new(0),
};

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Messages the worker hands to one transport's association (bounded; full → dropped).
#[derive(Default)]
pub struct SctpOutbox {
    queue: Mutex<OutboxQueue>,
    ready: Notify,
}

#[derive(Default)]
struct OutboxQueue {
    messages: VecDeque<Outgoing>,
    bytes: usize,
}

impl SctpOutbox {
    fn queue(&self) -> MutexGuard<'_, OutboxQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `outgoing`; false (and counted) when the outbox is full.
    pub fn push(&self, outgoing: Outgoing) -> bool {
        {
            let mut q = self.queue();
            let len = outgoing.message.data.len();
            if q.messages.len() >= OUTBOX_MESSAGES || q.bytes + len > OUTBOX_BYTES {
                count(&COUNTERS.dropped_queue);
                return false;
            }
            q.bytes += len;
            q.messages.push_back(outgoing);
        }
        self.ready.notify_one();
        true
    }

    async fn pop(&self) -> Outgoing {
        loop {
            {
                let mut q = self.queue();
                if let Some(next) = q.messages.pop_front() {
                    q.bytes -= next.message.data.len();
                    return next;
                }
            }
            self.ready.notified().await;
        }
    }
}

/// Which side sends INIT. Browsers always initiate, so the server listens; tests drive a
/// client side with the same code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SctpRole {
    Listen,
    Initiate,
    /// Tests: no SCTP, the outbox's payloads go out as raw DTLS application data (a hostile
    /// peer's garbage).
    #[cfg(test)]
    RawAppData,
}

/// Received DTLS application data waiting for the association (beyond it, dropped: SCTP
/// retransmits).
const LINK_QUEUE: usize = 256;

/// The DTLS connection as SCTP's `Conn`, without the power to close it: the DTLS session
/// outlives an association that ends (an SCTP ABORT or garbage must not end the media). It
/// receives from a queue that [`run_association`] fills by always reading the connection:
/// webrtc-dtls's reader blocks (and so misses close_notify and its own close) while its
/// application data is not read, and an association that died on garbage reads nothing.
struct DtlsLink {
    dtls: Arc<dyn Conn + Send + Sync>,
    inbound: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Vec<u8>>>,
}

#[async_trait]
impl Conn for DtlsLink {
    async fn connect(&self, addr: std::net::SocketAddr) -> dtls_util::Result<()> {
        self.dtls.connect(addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> dtls_util::Result<usize> {
        loop {
            let Some(data) = self.inbound.lock().await.recv().await else {
                return Err(dtls_util::Error::ErrUseClosedNetworkConn);
            };
            if data.len() <= buf.len() {
                buf[..data.len()].copy_from_slice(&data);
                return Ok(data.len());
            }
        }
    }
    async fn recv_from(&self, buf: &mut [u8]) -> dtls_util::Result<(usize, std::net::SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, std::net::SocketAddr::from(([0, 0, 0, 0], 0))))
    }
    async fn send(&self, buf: &[u8]) -> dtls_util::Result<usize> {
        self.dtls.send(buf).await
    }
    async fn send_to(&self, buf: &[u8], target: std::net::SocketAddr) -> dtls_util::Result<usize> {
        self.dtls.send_to(buf, target).await
    }
    fn local_addr(&self) -> dtls_util::Result<std::net::SocketAddr> {
        self.dtls.local_addr()
    }
    fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.dtls.remote_addr()
    }
    async fn close(&self) -> dtls_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Counts a live association for as long as it lives (also when its future is dropped).
struct LiveAssociation;

impl LiveAssociation {
    fn new() -> Self {
        COUNTERS.associations.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for LiveAssociation {
    fn drop(&mut self) {
        COUNTERS.associations.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one association over `dtls` until it ends (the peer's ABORT or SHUTDOWN, DTLS
/// ending, or garbage the SCTP stack gives up on), reading the DTLS connection all along.
/// The caller selects this against its close, and after it keeps reading the connection.
pub async fn run_association(
    dtls: Arc<dyn Conn + Send + Sync>,
    role: SctpRole,
    outbox: &SctpOutbox,
    sink: &DtlsSink,
    rate: DataRate,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(LINK_QUEUE);
    let link = Arc::new(DtlsLink {
        dtls: Arc::clone(&dtls),
        inbound: tokio::sync::Mutex::new(rx),
    });
    let drain = async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = dtls.recv(&mut buf).await {
            let _ = tx.try_send(buf[..n].to_vec());
        }
    };
    tokio::select! {
        _ = drain => {}
        _ = associate(link, role, outbox, sink, rate) => {}
    }
}

async fn associate(
    link: Arc<DtlsLink>,
    role: SctpRole,
    outbox: &SctpOutbox,
    sink: &DtlsSink,
    rate: DataRate,
) {
    let config = Config {
        net_conn: link,
        max_receive_buffer_size: 0,
        max_message_size: SEND_LIMIT,
        name: "sfu-sctp".to_owned(),
    };
    let started = match role {
        SctpRole::Listen => Association::server(config).await,
        SctpRole::Initiate => Association::client(config).await,
        #[cfg(test)]
        SctpRole::RawAppData => loop {
            let garbage = outbox.pop().await;
            if config.net_conn.send(&garbage.message.data).await.is_err() {
                return;
            }
        },
    };
    let association = match started {
        Ok(a) => a,
        Err(err) => {
            tracing::debug!(%err, "SCTP association did not start");
            // Stay pending: the drain keeps reading until DTLS ends or the session closes.
            std::future::pending::<()>().await;
            return;
        }
    };
    let _live = LiveAssociation::new();
    let mut readers = JoinSet::new();
    tokio::select! {
        _ = accept_streams(&association, &mut readers, sink, rate) => {}
        _ = write_streams(&association, outbox) => {}
    }
    readers.abort_all();
    let _ = association.close().await;
    // The association is over; keep draining until DTLS ends or the session closes.
    std::future::pending::<()>().await;
}

async fn accept_streams(
    association: &Association,
    readers: &mut JoinSet<()>,
    sink: &DtlsSink,
    rate: DataRate,
) {
    let mut accepted = 0usize;
    while let Some(stream) = association.accept_stream().await {
        accepted += 1;
        let sink = Arc::clone(sink);
        if accepted > MAX_READ_STREAMS {
            readers.spawn(discard_stream(stream));
        } else {
            readers.spawn(read_stream(stream, sink, rate));
        }
    }
}

/// Reads one incoming stream, limited to `rate`, and hands its messages to the worker.
async fn read_stream(stream: Arc<Stream>, sink: DtlsSink, rate: DataRate) {
    let stream_id = stream.stream_identifier();
    let mut limiter = RateLimiter::new(rate, Instant::now());
    // A longer message does not fit: read_sctp consumes it and says ErrShortBuffer.
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
    loop {
        match stream.read_sctp(&mut buf).await {
            Ok((0, PayloadProtocolIdentifier::Unknown)) => return,
            Ok((n, ppi)) => {
                let ppid = ppi as u32;
                if !matches!(
                    ppid,
                    PPID_STRING | PPID_BINARY | PPID_STRING_EMPTY | PPID_BINARY_EMPTY
                ) {
                    count(&COUNTERS.dropped_other);
                    continue;
                }
                if !limiter.allow(n, Instant::now()) {
                    count(&COUNTERS.dropped_rate);
                    continue;
                }
                count(&COUNTERS.messages_in);
                COUNTERS.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                sink(DtlsEvent::Sctp(SctpMessage {
                    stream_id,
                    ppid,
                    data: Bytes::copy_from_slice(&buf[..n]),
                }));
            }
            Err(webrtc_sctp::Error::ErrShortBuffer { .. }) => {
                // The whole message was consumed; it is over maxMessageSize.

                count(&COUNTERS.dropped_oversize);
            }
            Err(err) => {
                tracing::debug!(stream_id, %err, "SCTP stream ended");
                return;
            }
        }
    }
}

/// A stream beyond the cap: its messages are consumed (an empty buffer takes each whole
/// message) so they cannot fill the receive window, and dropped.
async fn discard_stream(stream: Arc<Stream>) {
    loop {
        match stream.read_sctp(&mut []).await {
            Ok((0, PayloadProtocolIdentifier::Unknown)) => return,
            Ok(_) | Err(webrtc_sctp::Error::ErrShortBuffer { .. }) => {
                count(&COUNTERS.dropped_other)
            }
            Err(_) => return,
        }
    }
}

/// Sends what the worker queued, each on its consumer's stream (opened on first use).
async fn write_streams(association: &Association, outbox: &SctpOutbox) {
    let mut streams: HashMap<u16, Arc<Stream>> = HashMap::new();
    loop {
        let Outgoing {
            message,
            reliability,
        } = outbox.pop().await;
        let ppi = PayloadProtocolIdentifier::from(message.ppid);
        let stream = match streams.get(&message.stream_id) {
            Some(s) => Arc::clone(s),
            None => match association.open_stream(message.stream_id, ppi).await {
                Ok(s) => {
                    apply_reliability(&s, reliability);
                    streams.insert(message.stream_id, Arc::clone(&s));
                    s
                }
                Err(err) => {
                    tracing::debug!(%err, "SCTP stream could not be opened");
                    count(&COUNTERS.dropped_other);
                    continue;
                }
            },
        };
        if stream.buffered_amount() > MAX_STREAM_BUFFERED {
            count(&COUNTERS.dropped_queue);
            continue;
        }
        let len = message.data.len() as u64;
        match stream.write_sctp(&message.data, ppi).await {
            Ok(_) => {
                count(&COUNTERS.messages_out);
                COUNTERS.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::debug!(%err, "SCTP write failed");
                count(&COUNTERS.dropped_queue);
            }
        }
    }
}

fn apply_reliability(stream: &Stream, r: Reliability) {
    let (kind, value) = match (r.max_packet_life_time, r.max_retransmits) {
        (Some(ms), _) => (ReliabilityType::Timed, u32::from(ms)),
        (None, Some(n)) => (ReliabilityType::Rexmit, u32::from(n)),
        (None, None) => (ReliabilityType::Reliable, 0),
    };
    stream.set_reliability_params(!r.ordered, kind, value);
}

#[cfg(test)]
#[path = "sctp_tests.rs"]
mod association_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_rate_limiter_passes_a_burst_then_refills_with_time() {
        let t0 = Instant::now();
        let rate = DataRate {
            messages_per_sec: 10.0,
            bytes_per_sec: 1_000_000.0,
        };
        let mut l = RateLimiter::new(rate, t0);
        let passed = (0..20).filter(|_| l.allow(10, t0)).count();
        assert_eq!(passed, 10);
        assert!(!l.allow(10, t0 + Duration::from_millis(50)));
        assert!(l.allow(10, t0 + Duration::from_millis(200)));
    }

    #[test]
    fn the_rate_limiter_caps_bytes_but_always_admits_one_maximal_message() {
        let t0 = Instant::now();
        let rate = DataRate {
            messages_per_sec: 1000.0,
            bytes_per_sec: 1000.0,
        };
        let mut l = RateLimiter::new(rate, t0);
        assert!(l.allow(MAX_MESSAGE_SIZE, t0));
        assert!(!l.allow(10_000, t0));
        assert!(l.allow(900, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_full_outbox_drops_and_counts() {
        let outbox = SctpOutbox::default();
        let message = |len: usize| Outgoing {
            message: SctpMessage {
                stream_id: 1,
                ppid: PPID_BINARY,
                data: Bytes::from(vec![0u8; len]),
            },
            reliability: Reliability::default(),
        };
        let before = COUNTERS.dropped_queue.load(Ordering::Relaxed);
        let accepted = (0..OUTBOX_MESSAGES + 10)
            .filter(|_| outbox.push(message(10)))
            .count();
        assert_eq!(accepted, OUTBOX_MESSAGES);
        assert!(COUNTERS.dropped_queue.load(Ordering::Relaxed) >= before + 10);
        let big = SctpOutbox::default();
        assert!(big.push(message(OUTBOX_BYTES)));
        assert!(!big.push(message(1)));
    }
}
