//! The subscribers' receive threads: one mio poll over many subscribers' sockets, each datagram
//! handed to its subscriber's [`Inbound`], their RTCP sent every few milliseconds. Over ICE-TCP
//! (`--tcp`) every RFC 4571 frame counts as one datagram would.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sfu::rtc::dtls::DtlsSession;
use sfu::rtc::srtp::SrtpSession;

use crate::feedback::FeedbackCounts;
use crate::inbound::{Counters, Receipt};
pub use crate::inbound::{Inbound, Stream};
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

/// A peer's recv transport: its socket, its receive side and its ICE consent checks.
pub struct Subscriber {
    pub socket: Link,
    pub inbound: Inbound,
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
            inbound: Inbound::new(srtp, streams),
            consent,
            next_consent: Instant::now() + jitter,
            _dtls: dtls,
        }
    }
}

/// One consumer's figures at the end of a run.
#[derive(Debug, Clone)]
pub struct ConsumerSummary {
    pub consumer_id: String,
    pub kind: Kind,
    pub expected: u64,
    pub received: u64,
    pub repaired: u64,
    pub bytes: u64,
}

/// One subscriber's figures at the end of a run.
#[derive(Debug, Clone)]
pub struct SubscriberSummary {
    pub capped: bool,
    /// RTP bytes delivered (media, retransmissions, probes).
    pub delivered_bytes: u64,
    /// Datagrams its capped downlink dropped.
    pub downlink_drops: u64,
    pub consumers: Vec<ConsumerSummary>,
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
    /// Losses repaired by retransmissions.
    pub repaired: u64,
    /// Retransmissions delivered, and other packets (probes, padding) delivered.
    pub rtx_packets: u64,
    pub other_packets: u64,
    /// The RTCP the subscribers sent.
    pub feedback: FeedbackCounts,
    pub rtcp_send_errors: u64,
    pub subscribers: Vec<SubscriberSummary>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// How often each subscriber's feedback is looked at (NACKs wait 5 ms for reordering,
/// transport-cc goes every 100 ms) and its capped downlink's departures are delivered.
const FEEDBACK_TICK: Duration = Duration::from_millis(5);

/// Sends a subscriber's SRTCP packet over its link.
fn send_rtcp(socket: &mut Link, packet: &[u8]) -> bool {
    match socket {
        Link::Udp(socket) => socket.send(packet).is_ok(),
        Link::Tcp(link) => matches!(link.send(packet), Ok(true)),
    }
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
    let mut counters = Counters {
        latency_ns: new_histogram(),
        packets: 0,
        bytes: 0,
        decrypt_errors: 0,
        rtx_packets: 0,
        other_packets: 0,
    };
    let mut closed_connections = 0;
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
    let mut next_tick = Instant::now();
    loop {
        let now_phase = phase.load(Ordering::Relaxed);
        if now_phase == PHASE_STOP {
            break;
        }
        if now_phase == PHASE_MEASURE && !measuring {
            measuring = true;
            counters.latency_ns.reset();
            counters.packets = 0;
            counters.bytes = 0;
            counters.decrypt_errors = 0;
            counters.rtx_packets = 0;
            counters.other_packets = 0;
            for s in &mut subscribers {
                s.inbound.reset_counts();
            }
        }
        if interval.is_zero() {
            poll.poll(&mut events, Some(FEEDBACK_TICK))?;
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
        if now >= next_tick {
            next_tick = now + FEEDBACK_TICK;
            let now_ns = now_ns();
            for s in subscribers.iter_mut() {
                if let Some(rtcp) = s.inbound.tick(now, now_ns, &mut counters) {
                    if !send_rtcp(&mut s.socket, &rtcp) {
                        s.inbound.rtcp_send_errors += 1;
                    }
                }
            }
        }
        let receipt = Receipt { sample, measuring };
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
                    sub.inbound
                        .on_datagram(&buf[..n], &mut counters, &receipt, arrived);
                },
                Polled::Tcp(stream) => {
                    let Link::Tcp(link) = &mut sub.socket else {
                        unreachable!("registered as TCP")
                    };
                    let closed = loop {
                        let read = link.recv_with(&mut stream_buf, |frame| {
                            sub.inbound
                                .on_datagram(frame, &mut counters, &receipt, None)
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
                        closed_connections += 1;
                    }
                }
                Polled::Closed => {}
            }
        }
    }
    let end = Instant::now();
    let mut totals = ReceiveTotals {
        latency_ns: counters.latency_ns,
        packets: counters.packets,
        bytes: counters.bytes,
        expected: 0,
        received: 0,
        decrypt_errors: counters.decrypt_errors,
        closed_connections,
        silent_streams: 0,
        stalled_streams: 0,
        streams: 0,
        repaired: 0,
        rtx_packets: counters.rtx_packets,
        other_packets: counters.other_packets,
        feedback: FeedbackCounts::default(),
        rtcp_send_errors: 0,
        subscribers: Vec::with_capacity(subscribers.len()),
    };
    for s in &subscribers {
        let inbound = &s.inbound;
        for stream in &inbound.streams {
            totals.streams += 1;
            totals.expected += stream.expected();
            totals.received += stream.received;
            totals.repaired += stream.repaired;
            if stream.received == 0 {
                totals.silent_streams += 1;
            } else if stream
                .last_at
                .is_some_and(|t| end.saturating_duration_since(t) > STALL)
            {
                totals.stalled_streams += 1;
            }
        }
        let f = inbound.feedback_counts();
        totals.feedback.receiver_reports += f.receiver_reports;
        totals.feedback.nack_packets += f.nack_packets;
        totals.feedback.nacked_sequences += f.nacked_sequences;
        totals.feedback.transport_cc += f.transport_cc;
        totals.rtcp_send_errors += inbound.rtcp_send_errors;
        totals.subscribers.push(SubscriberSummary {
            capped: inbound.capped(),
            delivered_bytes: inbound.delivered_bytes,
            downlink_drops: inbound.downlink_drops(),
            consumers: inbound
                .streams
                .iter()
                .map(|st| ConsumerSummary {
                    consumer_id: st.consumer_id.clone(),
                    kind: st.kind,
                    expected: st.expected(),
                    received: st.received,
                    repaired: st.repaired,
                    bytes: st.bytes,
                })
                .collect(),
        });
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
}
