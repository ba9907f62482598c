//! The subscribers' side: every packet counted by its clear RTP header, a sample decrypted for
//! latency. Over ICE-TCP (`--tcp`) every RFC 4571 frame counts as one datagram would.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sfu::rtc::dtls::DtlsSession;
use sfu::rtc::rtp::parse_rtp;
use sfu::rtc::srtp::SrtpSession;

use crate::media::{now_ns, wall_to_now_ns, Kind, PHASE_MEASURE, PHASE_STOP};
use crate::transport::{Consent, Link};

/// ICE consent checks from each subscriber, as browsers send them (Chromium: every ~5 s).
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
/// A stream that received nothing for this long at the end of the run counts as stalled.
const STALL: Duration = Duration::from_secs(2);

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
}
