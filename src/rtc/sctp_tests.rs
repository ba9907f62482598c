//! SCTP over real DTLS sessions: two runtimes (ours listening as the server does, the other
//! initiating as a browser does), their datagrams pumped across on the test thread.

use super::*;
use crate::rtc::dtls::{DtlsCertificate, DtlsRole, DtlsRuntime, DtlsSession, RemoteFingerprint};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Browser,
    Server,
}

struct Link {
    _browser_runtime: DtlsRuntime,
    server_runtime: DtlsRuntime,
    browser: DtlsSession,
    server: DtlsSession,
    events: mpsc::Receiver<(Side, DtlsEvent)>,
}

/// What the pump saw besides datagrams.
#[derive(Default, Debug)]
struct Seen {
    connected: usize,
    terminal: Vec<(Side, DtlsEvent)>,
    browser_got: Vec<SctpMessage>,
    server_got: Vec<SctpMessage>,
}

fn fingerprint_of(cert: &DtlsCertificate) -> Vec<RemoteFingerprint> {
    vec![RemoteFingerprint {
        algorithm: "sha-256".into(),
        value: cert.fingerprint_sha256(),
    }]
}

fn link(browser_sctp: SctpRole, server_rate: DataRate) -> Link {
    let browser_cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
    let server_cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
    let (browser_fp, server_fp) = (fingerprint_of(&browser_cert), fingerprint_of(&server_cert));
    let browser_runtime = DtlsRuntime::start(browser_cert).expect("runtime");
    let mut server_runtime = DtlsRuntime::start(server_cert).expect("runtime");
    server_runtime.set_data_rate(server_rate);
    let (tx, events) = mpsc::channel();
    let sink = |side: Side| -> DtlsSink {
        let tx = tx.clone();
        Arc::new(move |event| {
            let _ = tx.send((side, event));
        })
    };
    let server = server_runtime.new_session_with(
        DtlsRole::Server,
        browser_fp,
        None,
        Some(SctpRole::Listen),
        sink(Side::Server),
    );
    let browser = browser_runtime.new_session_with(
        DtlsRole::Client,
        server_fp,
        None,
        Some(browser_sctp),
        sink(Side::Browser),
    );
    Link {
        _browser_runtime: browser_runtime,
        server_runtime,
        browser,
        server,
        events,
    }
}

impl Link {
    /// Carries datagrams and collects events until `done` or `limit`.
    fn pump(&self, seen: &mut Seen, limit: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(seen) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            let Ok((side, event)) = self.events.recv_timeout(left) else {
                return done(seen);
            };
            match (side, event) {
                (Side::Browser, DtlsEvent::Transmit(d)) => self.server.feed(&d),
                (Side::Server, DtlsEvent::Transmit(d)) => self.browser.feed(&d),
                (_, DtlsEvent::Connected(_)) => seen.connected += 1,
                (Side::Browser, DtlsEvent::Sctp(m)) => seen.browser_got.push(m),
                (Side::Server, DtlsEvent::Sctp(m)) => seen.server_got.push(m),
                (side, other) => seen.terminal.push((side, other)),
            }
        }
        true
    }

    /// Closes the server session: it reports Closed and every task of it ends.
    fn close_and_expect_no_tasks(&self, seen: &mut Seen) {
        self.server.close();
        let closed = |s: &Seen| {
            s.terminal
                .iter()
                .any(|(side, e)| *side == Side::Server && *e == DtlsEvent::Closed)
        };
        assert!(
            self.pump(seen, Duration::from_secs(5), closed),
            "close ends the session: {seen:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.server_runtime.live_sessions() > 0 && Instant::now() < deadline {
            // Keep carrying datagrams (the close_notify, the peer's answers).
            self.pump(seen, Duration::from_millis(10), |_| false);
        }
        assert_eq!(self.server_runtime.live_sessions(), 0, "its tasks ended");
    }

    fn connect(&self, seen: &mut Seen) {
        assert!(
            self.pump(seen, Duration::from_secs(10), |s| s.connected == 2),
            "DTLS connects: {seen:?}"
        );
    }
}

fn message(stream_id: u16, data: Vec<u8>) -> Outgoing {
    Outgoing {
        message: SctpMessage {
            stream_id,
            ppid: PPID_BINARY,
            data: Bytes::from(data),
        },
        reliability: Reliability::default(),
    }
}

#[test]
fn messages_cross_an_association_both_ways_up_to_max_message_size() {
    let l = link(SctpRole::Initiate, DataRate::default());
    let mut seen = Seen::default();
    l.connect(&mut seen);
    // The browser's first message opens its stream 0; the server answers on stream 7.
    assert!(l.browser.send_sctp(message(0, b"hello".to_vec())));
    let big: Vec<u8> = (0..MAX_MESSAGE_SIZE).map(|i| (i % 251) as u8).collect();
    assert!(l.browser.send_sctp(message(0, big.clone())));
    assert!(
        l.pump(&mut seen, Duration::from_secs(10), |s| s.server_got.len()
            == 2),
        "the server receives both: {seen:?}"
    );
    assert_eq!(seen.server_got[0].stream_id, 0);
    assert_eq!(&seen.server_got[0].data[..], b"hello");
    assert_eq!(seen.server_got[1].data.len(), MAX_MESSAGE_SIZE);
    assert_eq!(&seen.server_got[1].data[..], &big[..]);
    let mut string = message(7, b"back".to_vec());
    string.message.ppid = PPID_STRING;
    assert!(l.server.send_sctp(string));
    assert!(
        l.pump(&mut seen, Duration::from_secs(10), |s| !s
            .browser_got
            .is_empty()),
        "the browser receives the answer: {seen:?}"
    );
    assert_eq!(seen.browser_got[0].stream_id, 7);
    assert_eq!(seen.browser_got[0].ppid, PPID_STRING);
    assert_eq!(&seen.browser_got[0].data[..], b"back");
    assert!(seen.terminal.is_empty(), "{seen:?}");
    l.close_and_expect_no_tasks(&mut seen);
}

#[test]
fn a_message_over_max_message_size_is_dropped_and_the_stream_keeps_working() {
    let l = link(SctpRole::Initiate, DataRate::default());
    let mut seen = Seen::default();
    l.connect(&mut seen);
    let before = COUNTERS.dropped_oversize.load(Ordering::Relaxed);
    assert!(l
        .browser
        .send_sctp(message(0, vec![1u8; MAX_MESSAGE_SIZE + 1])));
    assert!(l.browser.send_sctp(message(0, b"after".to_vec())));
    assert!(
        l.pump(&mut seen, Duration::from_secs(10), |s| !s
            .server_got
            .is_empty()),
        "the message after the oversized one arrives: {seen:?}"
    );
    assert_eq!(seen.server_got.len(), 1);
    assert_eq!(&seen.server_got[0].data[..], b"after");
    assert!(COUNTERS.dropped_oversize.load(Ordering::Relaxed) > before);
    assert!(seen.terminal.is_empty(), "{seen:?}");
}

#[test]
fn a_data_producer_over_its_rate_loses_the_excess_only() {
    let rate = DataRate {
        messages_per_sec: 20.0,
        bytes_per_sec: 1_000_000.0,
    };
    let l = link(SctpRole::Initiate, rate);
    let mut seen = Seen::default();
    l.connect(&mut seen);
    for i in 0..100u8 {
        assert!(l.browser.send_sctp(message(0, vec![i])));
    }
    // Another stream (another data producer) has its own budget.
    assert!(l.browser.send_sctp(message(1, b"other".to_vec())));
    l.pump(&mut seen, Duration::from_millis(1500), |s| {
        s.server_got.iter().any(|m| m.stream_id == 1)
    });
    l.pump(&mut seen, Duration::from_millis(300), |_| false);
    let on_0 = seen.server_got.iter().filter(|m| m.stream_id == 0).count();
    assert!(
        (20..=60).contains(&on_0),
        "about a second's burst of 20 got through, not 100: {on_0}"
    );
    assert!(seen.server_got.iter().any(|m| m.stream_id == 1));
}

#[test]
fn sctp_garbage_inside_dtls_ends_nothing_and_close_still_ends_the_session() {
    let l = link(SctpRole::RawAppData, DataRate::default());
    let mut seen = Seen::default();
    l.connect(&mut seen);
    let mut rng = rand::thread_rng();
    use rand::Rng;
    let mut garbage: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            let len = rng.gen_range(0..1200);
            (0..len).map(|_| rng.gen()).collect()
        })
        .collect();
    // An SCTP common header (ports 5000, tag 0) with an INIT chunk claiming a huge length,
    // and one with a truncated chunk.
    garbage.push(vec![
        0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff,
    ]);
    garbage.push(vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for g in garbage {
        l.browser.send_sctp(message(0, g));
    }
    l.pump(&mut seen, Duration::from_millis(800), |_| false);
    assert!(
        seen.terminal.is_empty(),
        "garbage ends neither DTLS nor the session: {seen:?}"
    );
    assert!(seen.server_got.is_empty());
    l.close_and_expect_no_tasks(&mut seen);
}

/// Rough throughput of one association (ignored by default; run with --ignored --nocapture).
#[test]
#[ignore]
fn measure_messages_per_second_through_one_association() {
    let rate = DataRate {
        messages_per_sec: 1e9,
        bytes_per_sec: 1e12,
    };
    let l = link(SctpRole::Initiate, rate);
    let mut seen = Seen::default();
    l.connect(&mut seen);
    let n = 20_000usize;
    let start = Instant::now();
    let mut sent = 0;
    while seen.server_got.len() < n && start.elapsed() < Duration::from_secs(30) {
        while sent < n && l.browser.send_sctp(message(0, vec![7u8; 100])) {
            sent += 1;
        }
        let target = seen.server_got.len() + 1;
        l.pump(&mut seen, Duration::from_millis(50), |s| {
            s.server_got.len() >= target
        });
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} messages of 100 B in {secs:.2} s: {:.0} messages/s",
        seen.server_got.len(),
        seen.server_got.len() as f64 / secs
    );
}
