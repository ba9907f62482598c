//! Synthetic media: publishers send paced, SRTP-protected RTP with a send stamp in the payload;
//! subscribers count every packet by its clear RTP header and decrypt a sample for latency.
//! Over ICE-TCP (`--tcp`) every RFC 4571 frame counts as one datagram would.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sfu::rtc::dtls::DtlsSession;
use sfu::rtc::rtp::parse_rtp;
use sfu::rtc::srtp::SrtpSession;

use crate::transport::{Consent, Link};

/// ICE consent checks from each subscriber, as browsers send them (Chromium: every ~5 s).
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
/// A stream that received nothing for this long at the end of the run counts as stalled.
const STALL: Duration = Duration::from_secs(2);
/// How often publishers read (and drop) what the server sends them over ICE-TCP (RTCP, STUN
/// answers): left unread it would fill the server's send buffer. Over UDP the kernel drops it.
const PUBLISHER_DRAIN: Duration = Duration::from_millis(50);

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
/// The mid header extension id publishers use (as Chromium does).
const MID_EXT_ID: u8 = 4;
/// VP8: payload descriptor (4 bytes: X, S, 15-bit picture id) + a 10-byte key-frame header;
/// the stamp follows. mediasoup only parses descriptors with X set, as Chromium sends them.
pub const VIDEO_STAMP_OFFSET: usize = 14;
pub const AUDIO_STAMP_OFFSET: usize = 0;
const AUDIO_PAYLOAD_LEN: usize = 80;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Every n-th video packet is a key frame so new consumers sync quickly.
const KEYFRAME_EVERY: u64 = 30;

pub const PHASE_WARMUP: u8 = 0;
pub const PHASE_MEASURE: u8 = 1;
pub const PHASE_STOP: u8 = 2;

/// Nanoseconds since the process's first call: the clock both stamps and receipts use.
pub fn now_ns() -> u64 {
    start().0.elapsed().as_nanos() as u64
}

/// The clock's origin: an `Instant` and the wall-clock time (ns since the epoch) at that moment.
fn start() -> &'static (Instant, u64) {
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    START.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (Instant::now(), wall)
    })
}

/// A kernel receive timestamp (`SO_TIMESTAMPNS`, wall clock) on the `now_ns` scale.
fn wall_to_now_ns(wall_ns: u64) -> u64 {
    wall_ns.saturating_sub(start().1)
}

/// Asks the kernel to stamp each datagram of `socket` with its arrival time.
fn enable_rx_timestamps(socket: &impl AsRawFd) -> std::io::Result<()> {
    crate::transport::set_socket_option(socket, libc::SO_TIMESTAMPNS, 1)
}

/// One datagram and, when the kernel stamped it, its arrival on the `now_ns` scale.
fn recv_stamped(socket: &impl AsRawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one timespec control message, aligned.
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of control messages.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let wall = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                stamp = Some(wall_to_now_ns(wall));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

impl Kind {
    pub fn stamp_offset(self) -> usize {
        match self {
            Kind::Video => VIDEO_STAMP_OFFSET,
            Kind::Audio => AUDIO_STAMP_OFFSET,
        }
    }
}

/// RTP parameters as mediasoup-client (Chromium) sends them for VP8 with RTX.
pub fn vp8_rtp_parameters(ssrc: u32, cname: &str) -> Value {
    json!({
        "mid": "0",
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": VIDEO_PT, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""},
                              {"type": "ccm", "parameter": "fir"}, {"type": "nack", "parameter": ""},
                              {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": VIDEO_PT + 1, "clockRate": 90000, "parameters": {"apt": VIDEO_PT}, "rtcpFeedback": []}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_EXT_ID, "encrypt": false, "parameters": {}},
            {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {}},
            {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}}
        ],
        "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": ssrc + 1}}],
        "rtcp": {"cname": cname, "reducedSize": true}
    })
}

/// RTP parameters as mediasoup-client (Chromium) sends them for Opus.
pub fn opus_rtp_parameters(ssrc: u32, cname: &str) -> Value {
    json!({
        "mid": "1",
        "codecs": [
            {"mimeType": "audio/opus", "payloadType": AUDIO_PT, "clockRate": 48000, "channels": 2,
             "parameters": {"minptime": 10, "useinbandfec": 1},
             "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_EXT_ID, "encrypt": false, "parameters": {}},
            {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {}}
        ],
        "encodings": [{"ssrc": ssrc, "dtx": false}],
        "rtcp": {"cname": cname, "reducedSize": true}
    })
}

/// One outgoing track of a publisher.
pub struct Track {
    pub kind: Kind,
    pub ssrc: u32,
    pub mid: u8,
    pub interval: Duration,
    pub payload_len: usize,
    seq: u16,
    ts_base: u32,
    sent: u64,
    next_due: Instant,
}

impl Track {
    pub fn video(ssrc: u32, bitrate_kbps: u32, packet_size: usize) -> Self {
        let bits = packet_size as f64 * 8.0;
        let interval = Duration::from_secs_f64(bits / (bitrate_kbps.max(1) as f64 * 1000.0));
        // 12-byte header + 4-byte mid extension block + 4-byte extension header.
        let payload_len = packet_size.saturating_sub(20).max(VIDEO_STAMP_OFFSET + 8);
        Self::new(Kind::Video, ssrc, b'0', interval, payload_len)
    }

    pub fn audio(ssrc: u32) -> Self {
        Self::new(Kind::Audio, ssrc, b'1', AUDIO_INTERVAL, AUDIO_PAYLOAD_LEN)
    }

    fn new(kind: Kind, ssrc: u32, mid: u8, interval: Duration, payload_len: usize) -> Self {
        Self {
            kind,
            ssrc,
            mid,
            interval,
            payload_len,
            seq: rand::random::<u16>() & 0x3fff,
            ts_base: rand::random(),
            sent: 0,
            next_due: Instant::now(),
        }
    }

    /// Writes the next plain RTP packet into `out`.
    pub fn next_packet(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let elapsed_us = now_ns() / 1000;
        let (pt, ts) = match self.kind {
            Kind::Video => (VIDEO_PT, elapsed_us * 90 / 1000),
            Kind::Audio => (AUDIO_PT, elapsed_us * 48 / 1000),
        };
        out.push(0x90); // V=2, X=1
        out.push(0x80 | pt); // every packet ends a "frame"
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ts_base.wrapping_add(ts as u32).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[0xBE, 0xDE, 0, 1, MID_EXT_ID << 4, self.mid, 0, 0]);
        let payload_start = out.len();
        if self.kind == Kind::Video {
            let key = self.sent.is_multiple_of(KEYFRAME_EVERY);
            let picture_id = (self.sent & 0x7fff) as u16 | 0x8000;
            // VP8 payload descriptor: X=1, S=1, partition 0; I=1 with a 15-bit picture id.
            out.extend_from_slice(&[0x90, 0x80]);
            out.extend_from_slice(&picture_id.to_be_bytes());
            if key {
                // Frame tag with P=0, start code, 640x480.
                out.extend_from_slice(&[
                    0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
                ]);
            } else {
                out.extend_from_slice(&[0x51, 0x2a, 0x00, 0, 0, 0, 0, 0, 0, 0]);
            }
        }
        out.extend_from_slice(&now_ns().to_be_bytes());
        out.resize(payload_start + self.payload_len, 0xa5);
        self.seq = self.seq.wrapping_add(1);
        self.sent += 1;
    }
}

pub struct Publisher {
    pub socket: Link,
    pub srtp: SrtpSession,
    pub tracks: Vec<Track>,
    /// Dropping it would close the server's transport.
    pub _dtls: DtlsSession,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SendTotals {
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// Paces every publisher's tracks until `phase` says stop. Counts only the measured phase.
pub fn send_loop(mut publishers: Vec<Publisher>, phase: &AtomicU8, aligned: bool) -> SendTotals {
    let mut totals = SendTotals::default();
    let mut plain = Vec::with_capacity(2048);
    let start = Instant::now();
    // Tracks start spread over their interval, as independent browsers are: all of them due
    // at the same instant (`aligned`) hit the server as one burst per interval, which no room
    // of real peers sends.
    let tracks: usize = publishers.iter().map(|p| p.tracks.len()).sum();
    let mut k = 0u32;
    for p in &mut publishers {
        for t in &mut p.tracks {
            let phase = if aligned {
                0.0
            } else {
                f64::from(k) / tracks.max(1) as f64
            };
            t.next_due = start + t.interval.mul_f64(phase);
            k += 1;
        }
    }
    let mut measuring = false;
    let mut sink = Vec::new();
    let mut next_drain = start;
    for p in &mut publishers {
        if let Link::Tcp(link) = &mut p.socket {
            // One publisher's full socket must not hold up the others' pacing.
            let _ = link.stream.set_nonblocking(true);
            sink.resize(64 * 1024, 0);
        }
    }
    loop {
        let now_phase = phase.load(Ordering::Relaxed);
        if now_phase == PHASE_STOP {
            return totals;
        }
        if now_phase == PHASE_MEASURE && !measuring {
            measuring = true;
            totals = SendTotals::default();
        }
        let now = Instant::now();
        let mut earliest = now + Duration::from_millis(20);
        if !sink.is_empty() && next_drain <= now {
            next_drain = now + PUBLISHER_DRAIN;
            for p in &mut publishers {
                if let Link::Tcp(link) = &mut p.socket {
                    let _ = link.discard_input(&mut sink);
                }
            }
        }
        for p in &mut publishers {
            if let Link::Tcp(link) = &mut p.socket {
                if link.writer.pending() > 0 && link.flush().is_err() {
                    totals.errors += 1;
                }
            }
            for t in &mut p.tracks {
                while t.next_due <= now {
                    t.next_packet(&mut plain);
                    // Behind by more than a second (a stalled machine): skip rather than burst.
                    t.next_due += t.interval;
                    if now.duration_since(t.next_due) > Duration::from_secs(1) {
                        t.next_due = now;
                    }
                    match &mut p.socket {
                        Link::Udp(socket) => match p.srtp.encrypt_rtp(&plain) {
                            Ok(packet) => match socket.send(&packet) {
                                Ok(n) => {
                                    totals.packets += 1;
                                    totals.bytes += n as u64;
                                }
                                Err(_) => totals.errors += 1,
                            },
                            Err(_) => totals.errors += 1,
                        },
                        // In place (`plain` has room for the tag) and framed into the
                        // link's queue: no allocation per packet.
                        Link::Tcp(link) => match p.srtp.protect_rtp_in_place(&mut plain) {
                            Ok(()) => match link.send(&plain) {
                                Ok(true) => {
                                    totals.packets += 1;
                                    totals.bytes += plain.len() as u64;
                                }
                                // Dropped whole (queue full) or a broken connection.
                                Ok(false) | Err(_) => totals.errors += 1,
                            },
                            Err(_) => totals.errors += 1,
                        },
                    }
                }
                earliest = earliest.min(t.next_due);
            }
        }
        if let Some(wait) = earliest.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// What a subscriber counts for one consumer (one SSRC it receives).
#[derive(Debug, Clone)]
pub struct Stream {
    pub ssrc: u32,
    pub kind: Kind,
    first: Option<i64>,
    max: i64,
    pub received: u64,
    last_at: Option<Instant>,
}

impl Stream {
    pub fn new(ssrc: u32, kind: Kind) -> Self {
        Self {
            ssrc,
            kind,
            first: None,
            max: 0,
            received: 0,
            last_at: None,
        }
    }

    fn record(&mut self, seq: u16, now: Instant) {
        self.received += 1;
        self.last_at = Some(now);
        let Some(_) = self.first else {
            self.first = Some(seq as i64);
            self.max = seq as i64;
            return;
        };
        // Extend the 16-bit number relative to the newest one seen.
        let delta = seq.wrapping_sub(self.max as u16) as i16 as i64;
        let ext = self.max + delta;
        if ext > self.max {
            self.max = ext;
        }
        if ext < self.first.unwrap_or(ext) {
            self.first = Some(ext);
        }
    }

    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |f| (self.max - f + 1) as u64)
    }

    fn reset(&mut self) {
        self.first = None;
        self.received = 0;
        self.last_at = None;
    }
}

pub struct Subscriber {
    pub socket: Link,
    pub srtp: SrtpSession,
    pub streams: Vec<Stream>,
    seen: u64,
    consent: Consent,
    next_consent: Instant,
    _dtls: DtlsSession,
}

impl Subscriber {
    pub fn new(
        socket: Link,
        srtp: SrtpSession,
        streams: Vec<Stream>,
        dtls: DtlsSession,
        consent: Consent,
    ) -> Self {
        // Spread the checks of many subscribers over the interval.
        let jitter =
            Duration::from_millis(rand::random::<u64>() % CONSENT_INTERVAL.as_millis() as u64);
        Self {
            socket,
            srtp,
            streams,
            seen: 0,
            consent,
            next_consent: Instant::now() + jitter,
            _dtls: dtls,
        }
    }
}

/// One receive thread's results.
pub struct ReceiveTotals {
    pub latency_ns: Histogram<u64>,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub received: u64,
    pub decrypt_errors: u64,
    /// ICE-TCP connections the server closed (or broke) during the run.
    pub closed_connections: u64,
    /// Consumers that got no packet at all during the measurement.
    pub silent_streams: u64,
    /// Consumers whose packets stopped before the end of the measurement (loss that
    /// sequence gaps cannot show).
    pub stalled_streams: u64,
    pub streams: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// What every received packet is measured against.
struct Receipt {
    now: Instant,
    sample: u64,
    measuring: bool,
}

/// Counts one received datagram (or ICE-TCP frame) of a subscriber: RTP of a known SSRC by its
/// clear header for loss; every `sample`-th one decrypted in place for latency.
fn count_packet(
    packet: &[u8],
    streams: &mut [Stream],
    seen: &mut u64,
    srtp: &mut SrtpSession,
    totals: &mut ReceiveTotals,
    at: &Receipt,
    arrived_ns: Option<u64>,
) {
    let n = packet.len();
    // RTP only (RFC 7983 first byte 128..=191, RTCP payload types excluded).
    if n < 12 || !(128..=191).contains(&packet[0]) || (192..=223).contains(&packet[1]) {
        return;
    }
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let Some(stream) = streams.iter_mut().find(|s| s.ssrc == ssrc) else {
        return; // RTX, probation or padding streams
    };
    stream.record(seq, at.now);
    let kind = stream.kind;
    totals.packets += 1;
    totals.bytes += n as u64;
    *seen += 1;
    if !seen.is_multiple_of(at.sample) {
        return;
    }
    // The session's own receive buffer: no allocation per sampled packet.
    let mut plain = srtp.take_rx_buffer();
    plain.extend_from_slice(packet);
    if srtp.unprotect_rtp(&mut plain).is_ok() {
        let received_at = arrived_ns.unwrap_or_else(now_ns);
        if let Some(h) = parse_rtp(&plain) {
            let offset = h.payload_start + kind.stamp_offset();
            if let Some(stamp) = plain.get(offset..offset + 8) {
                let sent_at = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
                if at.measuring && sent_at <= received_at {
                    let _ = totals.latency_ns.record((received_at - sent_at).max(1_000));
                }
            }
        }
    } else {
        totals.decrypt_errors += 1;
    }
    srtp.restore_rx_buffer(plain);
}

/// A subscriber's socket as registered with the poll.
enum Polled {
    /// Read here (the subscriber keeps a clone for its consent checks).
    Udp(mio::net::UdpSocket),
    /// Registered only: reads go through the subscriber's [`crate::tcp::TcpLink`], whose
    /// decoder holds any partial frame (the same connection, now non-blocking).
    Tcp(mio::net::TcpStream),
    /// An ICE-TCP connection that ended.
    Closed,
}

/// Receives for `subscribers` with one mio poll (every `interval`, or as packets arrive when it
/// is zero) until `phase` says stop; decrypts every `sample`-th packet of each subscriber for
/// the latency histogram. UDP sockets and ICE-TCP
/// connections alike (a thread may hold both).
pub fn receive_loop(
    mut subscribers: Vec<Subscriber>,
    sample: u64,
    interval: Duration,
    phase: &AtomicU8,
) -> std::io::Result<ReceiveTotals> {
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new()?;
    let mut sockets = Vec::with_capacity(subscribers.len());
    let mut any_tcp = false;
    for (i, s) in subscribers.iter().enumerate() {
        let mut polled = match &s.socket {
            Link::Udp(socket) => {
                let std_socket = socket.try_clone()?;
                std_socket.set_nonblocking(true)?;
                enable_rx_timestamps(&std_socket)?;
                Polled::Udp(mio::net::UdpSocket::from_std(std_socket))
            }
            Link::Tcp(link) => {
                any_tcp = true;
                let std_stream = link.stream.try_clone()?;
                std_stream.set_nonblocking(true)?;
                Polled::Tcp(mio::net::TcpStream::from_std(std_stream))
            }
        };
        match &mut polled {
            Polled::Udp(socket) => {
                poll.registry()
                    .register(socket, Token(i), Interest::READABLE)?;
            }
            Polled::Tcp(stream) => {
                poll.registry()
                    .register(stream, Token(i), Interest::READABLE)?;
            }
            Polled::Closed => {}
        }
        sockets.push(polled);
    }
    let mut totals = ReceiveTotals {
        latency_ns: new_histogram(),
        packets: 0,
        bytes: 0,
        expected: 0,
        received: 0,
        decrypt_errors: 0,
        closed_connections: 0,
        silent_streams: 0,
        stalled_streams: 0,
        streams: 0,
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 2048];
    // A stream read takes whatever has arrived, many frames at once.
    let mut stream_buf = if any_tcp {
        vec![0u8; 64 * 1024]
    } else {
        Vec::new()
    };
    let mut measuring = false;
    let sample = sample.max(1);
    loop {
        let now_phase = phase.load(Ordering::Relaxed);
        if now_phase == PHASE_STOP {
            break;
        }
        if now_phase == PHASE_MEASURE && !measuring {
            measuring = true;
            totals.latency_ns.reset();
            totals.packets = 0;
            totals.bytes = 0;
            totals.decrypt_errors = 0;
            for s in &mut subscribers {
                s.streams.iter_mut().for_each(Stream::reset);
            }
        }
        if interval.is_zero() {
            poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        } else {
            // Paced: sleep to the next tick, then take whatever arrived meanwhile (UDP packets
            // carry their kernel arrival time, so the wait is not counted as latency).
            std::thread::sleep(interval);
            poll.poll(&mut events, Some(Duration::ZERO))?;
        }
        let now = Instant::now();
        for s in subscribers.iter_mut() {
            let due = s.next_consent <= now;
            if due {
                s.next_consent = now + CONSENT_INTERVAL;
            }
            match &mut s.socket {
                Link::Udp(socket) if due => {
                    let _ = socket.send(&s.consent.request());
                }
                Link::Udp(_) => {}
                Link::Tcp(link) => {
                    // Over the same connection, framed; a check the socket did not take
                    // whole goes out first next time.
                    if link.writer.pending() > 0 {
                        let _ = link.flush();
                    }
                    if due {
                        let _ = link.send(&s.consent.request());
                    }
                }
            }
        }
        let receipt = Receipt {
            now,
            sample,
            measuring,
        };
        for event in events.iter() {
            let i = event.token().0;
            let sub = &mut subscribers[i];
            match &mut sockets[i] {
                Polled::Udp(socket) => loop {
                    let (n, arrived) = match recv_stamped(socket, &mut buf) {
                        Ok(got) => got,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(e),
                    };
                    count_packet(
                        &buf[..n],
                        &mut sub.streams,
                        &mut sub.seen,
                        &mut sub.srtp,
                        &mut totals,
                        &receipt,
                        arrived,
                    );
                },
                Polled::Tcp(stream) => {
                    let Link::Tcp(link) = &mut sub.socket else {
                        unreachable!("registered as TCP")
                    };
                    let closed = loop {
                        let read = link.recv_with(&mut stream_buf, |frame| {
                            count_packet(
                                frame,
                                &mut sub.streams,
                                &mut sub.seen,
                                &mut sub.srtp,
                                &mut totals,
                                &receipt,
                                None,
                            )
                        });
                        match read {
                            Ok(0) => break true,
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            // Reset, or a frame over the maximum: the stream is lost.
                            Err(_) => break true,
                        }
                    };
                    if closed {
                        let _ = poll.registry().deregister(stream);
                        sockets[i] = Polled::Closed;
                        totals.closed_connections += 1;
                    }
                }
                Polled::Closed => {}
            }
        }
    }
    let end = Instant::now();
    for s in &subscribers {
        for stream in &s.streams {
            totals.streams += 1;
            totals.expected += stream.expected();
            totals.received += stream.received;
            if stream.received == 0 {
                totals.silent_streams += 1;
            } else if stream
                .last_at
                .is_some_and(|t| end.saturating_duration_since(t) > STALL)
            {
                totals.stalled_streams += 1;
            }
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::rtc::keyframe::{is_keyframe, VideoCodec};

    #[test]
    fn a_datagram_carries_its_kernel_arrival_time_on_the_now_ns_scale() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_rx_timestamps(&rx).unwrap();
        // The kernel turns receive stamping on a moment after the first socket asks (a
        // deferred static key); until then it stamps datagrams when they are read. So try
        // until one is stamped on arrival, within a deadline.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 64];
        loop {
            let before = now_ns();
            tx.send_to(b"stamped", rx.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let after = now_ns();
            let (n, stamp) = recv_stamped(&rx, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"stamped");
            let stamp = stamp.expect("SO_TIMESTAMPNS stamp");
            // The two clocks are converted once: allow a millisecond either way.
            assert!(stamp + 1_000_000 >= before && stamp <= after + 1_000_000);
            let err = recv_stamped(&rx, &mut buf).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock);
            // Sent before the 20 ms wait: stamped on arrival, it is nearer `before`.
            if stamp < after - 10_000_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "datagrams are stamped when read, not on arrival ({before} {stamp} {after})"
            );
        }
    }

    #[test]
    fn loss_is_counted_from_sequence_gaps_across_the_16_bit_wrap() {
        let mut s = Stream::new(1, Kind::Video);
        for seq in [65_533u16, 65_534, 0, 1, 3, 2] {
            s.record(seq, Instant::now());
        }
        assert_eq!(s.expected(), 7); // 65533 ..= 3
        assert_eq!(s.received, 6);
    }

    #[test]
    fn every_thirtieth_video_packet_is_a_key_frame_carrying_the_send_stamp() {
        let mut track = Track::video(42, 1000, 1200);
        let mut packet = Vec::new();
        let mut keys = 0;
        for i in 0..60 {
            let before = now_ns();
            track.next_packet(&mut packet);
            assert_eq!(packet.len(), 1200);
            let h = parse_rtp(&packet).expect("valid RTP");
            assert_eq!((h.ssrc, h.payload_type), (42, VIDEO_PT));
            let payload = h.payload(&packet);
            let key = is_keyframe(VideoCodec::from_mime("video/VP8"), payload);
            assert_eq!(key, i % 30 == 0, "packet {i}");
            keys += usize::from(key);
            let at = VIDEO_STAMP_OFFSET;
            let stamp = u64::from_be_bytes(payload[at..at + 8].try_into().unwrap());
            assert!(stamp >= before && stamp <= now_ns());
        }
        assert_eq!(keys, 2);
    }
}
