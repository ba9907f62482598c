//! Tests of the DTLS bridge: real handshakes between two runtimes, over a lossy pump.

use std::sync::mpsc;

use rand::Rng;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// A client and a server session, each on its own runtime with its own certificate, whose
/// sinks report into one channel; `pump` carries their datagrams across.
struct Pair {
    client_runtime: DtlsRuntime,
    server_runtime: DtlsRuntime,
    client: DtlsSession,
    server: DtlsSession,
    events: mpsc::Receiver<(Side, DtlsEvent)>,
}

#[derive(Default, Debug)]
struct Outcome {
    client: Option<DtlsEvent>,
    server: Option<DtlsEvent>,
}

fn sink(side: Side, tx: &mpsc::Sender<(Side, DtlsEvent)>) -> DtlsSink {
    let tx = tx.clone();
    Arc::new(move |event| {
        let _ = tx.send((side, event));
    })
}

fn fingerprint_of(cert: &DtlsCertificate) -> Vec<RemoteFingerprint> {
    vec![RemoteFingerprint {
        algorithm: "sha-256".into(),
        value: cert.fingerprint_sha256().to_lowercase(),
    }]
}

fn pair_with(client_remote: Option<Vec<RemoteFingerprint>>) -> Pair {
    pair_with_fingerprints(client_remote, None)
}

fn pair_with_fingerprints(
    client_remote: Option<Vec<RemoteFingerprint>>,
    server_remote: Option<Vec<RemoteFingerprint>>,
) -> Pair {
    let client_cert = Arc::new(DtlsCertificate::generate().expect("client certificate"));
    let server_cert = Arc::new(DtlsCertificate::generate().expect("server certificate"));
    let client_remote = client_remote.unwrap_or_else(|| fingerprint_of(&server_cert));
    let server_remote = server_remote.unwrap_or_else(|| fingerprint_of(&client_cert));
    let client_runtime = DtlsRuntime::start(client_cert).expect("client runtime");
    let server_runtime = DtlsRuntime::start(server_cert).expect("server runtime");
    let (tx, events) = mpsc::channel();
    let server =
        server_runtime.new_session(DtlsRole::Server, server_remote, sink(Side::Server, &tx));
    let client =
        client_runtime.new_session(DtlsRole::Client, client_remote, sink(Side::Client, &tx));
    Pair {
        client_runtime,
        server_runtime,
        client,
        server,
        events,
    }
}

impl Pair {
    /// Carries datagrams (dropping `loss` of them) until `done` says so or `limit` passes.
    fn pump(&self, loss: f64, limit: Duration, done: impl Fn(&Outcome) -> bool) -> Outcome {
        let mut rng = rand::thread_rng();
        self.pump_dropping(limit, done, |_, _| rng.gen_bool(loss))
    }

    /// Carries the datagrams `lose` lets through until `done` says so or `limit` passes.
    fn pump_dropping(
        &self,
        limit: Duration,
        done: impl Fn(&Outcome) -> bool,
        mut lose: impl FnMut(Side, &[u8]) -> bool,
    ) -> Outcome {
        let deadline = Instant::now() + limit;
        let mut outcome = Outcome::default();
        while !done(&outcome) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok((side, event)) = self.events.recv_timeout(left) else {
                break;
            };
            match event {
                DtlsEvent::Transmit(datagram) => {
                    if lose(side, &datagram) {
                        continue;
                    }
                    match side {
                        Side::Client => self.server.feed(&datagram),
                        Side::Server => self.client.feed(&datagram),
                    }
                }
                terminal => match side {
                    Side::Client => outcome.client = Some(terminal),
                    Side::Server => outcome.server = Some(terminal),
                },
            }
        }
        outcome
    }

    fn live_sessions(&self) -> usize {
        self.client_runtime.live_sessions() + self.server_runtime.live_sessions()
    }
}

fn both_reported(outcome: &Outcome) -> bool {
    outcome.client.is_some() && outcome.server.is_some()
}

fn assert_same_keys(outcome: &Outcome) {
    let (Some(DtlsEvent::Connected(client)), Some(DtlsEvent::Connected(server))) =
        (&outcome.client, &outcome.server)
    else {
        panic!("both sides should connect: {outcome:?}");
    };
    assert_eq!(client.profile, SrtpProfileId::AeadAes256Gcm);
    assert_eq!(client.profile, server.profile);
    assert_eq!(client.material.len(), client.profile.material_len());
    assert_eq!(client.material, server.material);
    assert_eq!(client.role, DtlsRole::Client);
    assert_eq!(server.role, DtlsRole::Server);
}

fn wait_until(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

#[test]
fn a_client_and_a_server_session_connect_with_the_same_profile_and_keys() {
    let pair = pair_with(None);
    let outcome = pair.pump(0.0, Duration::from_secs(10), both_reported);
    assert_same_keys(&outcome);
}

#[test]
fn a_wrong_remote_fingerprint_makes_the_handshake_fail() {
    let wrong = vec![RemoteFingerprint {
        algorithm: "sha-256".into(),
        value: DtlsCertificate::generate()
            .expect("certificate")
            .fingerprint_sha256(),
    }];
    let pair = pair_with(Some(wrong));
    let outcome = pair.pump(0.0, Duration::from_secs(10), |o| o.client.is_some());
    assert!(
        matches!(outcome.client, Some(DtlsEvent::Failed(_))),
        "the client should fail: {outcome:?}"
    );
    assert!(!matches!(outcome.server, Some(DtlsEvent::Connected(_))));
}

#[test]
fn a_client_certificate_not_matching_its_fingerprint_makes_the_server_fail() {
    let wrong = vec![RemoteFingerprint {
        algorithm: "sha-1".into(),
        value: "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33".into(),
    }];
    let pair = pair_with_fingerprints(None, Some(wrong));
    let outcome = pair.pump(0.0, Duration::from_secs(10), |o| o.server.is_some());
    assert!(
        matches!(outcome.server, Some(DtlsEvent::Failed(_))),
        "the server should fail: {outcome:?}"
    );
}

#[test]
fn dropping_the_runtime_with_a_session_in_progress_returns() {
    let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
    let runtime = DtlsRuntime::start(Arc::clone(&cert)).expect("runtime");
    let (tx, _events) = mpsc::channel();
    let session = runtime.new_session(
        DtlsRole::Server,
        fingerprint_of(&cert),
        sink(Side::Server, &tx),
    );
    let started = Instant::now();
    drop(runtime);
    assert!(started.elapsed() < Duration::from_secs(2));
    session.feed(&[22; 20]);
    session.close();
}

#[test]
fn the_handshake_completes_with_a_fifth_of_the_datagrams_dropped() {
    let pair = pair_with(None);
    let outcome = pair.pump(0.2, Duration::from_secs(25), both_reported);
    assert_same_keys(&outcome);
}

#[test]
fn the_server_resends_its_lost_last_flight_when_the_client_retransmits() {
    let pair = pair_with(None);
    let mut dropped_last_flight = false;
    let outcome = pair.pump_dropping(Duration::from_secs(10), both_reported, |side, d| {
        let lose = side == Side::Server
            && !dropped_last_flight
            && has_record_type(d, CONTENT_TYPE_CHANGE_CIPHER_SPEC);
        dropped_last_flight |= lose;
        lose
    });
    assert!(dropped_last_flight);
    assert_same_keys(&outcome);
}

#[test]
fn close_ends_a_connected_session_and_its_tasks() {
    let pair = pair_with(None);
    let outcome = pair.pump(0.0, Duration::from_secs(10), both_reported);
    assert_same_keys(&outcome);
    assert_eq!(pair.live_sessions(), 2);

    pair.client.close();
    pair.client.close();
    let closed = pair.pump(0.0, Duration::from_secs(5), |o| {
        o.client == Some(DtlsEvent::Closed) && o.server == Some(DtlsEvent::Closed)
    });
    assert_eq!(closed.client, Some(DtlsEvent::Closed), "{closed:?}");
    // The client's close_notify ends the server side too.
    assert_eq!(closed.server, Some(DtlsEvent::Closed), "{closed:?}");
    assert!(wait_until(Duration::from_secs(5), || pair.live_sessions() == 0));
}

#[test]
fn close_during_the_handshake_ends_the_session() {
    let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
    let runtime = DtlsRuntime::start(Arc::clone(&cert)).expect("runtime");
    let (tx, events) = mpsc::channel();
    let session = runtime.new_session(
        DtlsRole::Client,
        fingerprint_of(&cert),
        sink(Side::Client, &tx),
    );
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(5)),
        Ok((_, DtlsEvent::Transmit(_)))
    ));
    drop(session);
    assert!(wait_until(Duration::from_secs(5), || runtime
        .live_sessions()
        == 0));
    let terminal: Vec<_> = events
        .try_iter()
        .filter(|(_, e)| !matches!(e, DtlsEvent::Transmit(_)))
        .collect();
    assert_eq!(terminal, vec![(Side::Client, DtlsEvent::Closed)]);
}

#[test]
fn fingerprints_are_uppercase_hex_pairs_and_checked_by_algorithm() {
    let cert = DtlsCertificate::generate().expect("certificate");
    let fingerprint = cert.fingerprint_sha256();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    assert!(fingerprint
        .chars()
        .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
    let der = cert.certificate.certificate[0].as_ref();
    assert!(fingerprint_of(&cert)[0].matches(der));
    let unknown = RemoteFingerprint {
        algorithm: "md5".into(),
        value: fingerprint,
    };
    assert!(!unknown.matches(der));
    assert!(check_remote_fingerprints(&[unknown]).is_err());
    assert!(check_remote_fingerprints(&[]).is_err());
}

#[test]
fn a_plaintext_alert_fed_to_a_connected_session_ends_nothing() {
    let pair = pair_with(None);
    let outcome = pair.pump(0.0, Duration::from_secs(10), both_reported);
    assert_same_keys(&outcome);
    // close_notify and a fatal alert, unauthenticated (epoch 0), to both sides.
    for alert in [
        [21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 1, 0],
        [21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40],
    ] {
        pair.server.feed(&alert);
        pair.client.feed(&alert);
    }
    let after = pair.pump(0.0, Duration::from_millis(500), |o| {
        o.client.is_some() || o.server.is_some()
    });
    assert!(
        after.client.is_none() && after.server.is_none(),
        "{after:?}"
    );
    assert_eq!(pair.live_sessions(), 2);
}

#[test]
fn a_session_beyond_the_handshake_caps_fails_at_once() {
    let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
    let limits = DtlsLimits {
        max_handshakes_per_ip: 1,
        max_handshakes: 2,
        ..DtlsLimits::default()
    };
    let runtime = DtlsRuntime::start_with(Arc::clone(&cert), limits).expect("runtime");
    let (tx, events) = mpsc::channel();
    let ip = Some("10.1.1.1".parse().unwrap());
    let start = |ip| {
        runtime.new_session_from(
            DtlsRole::Server,
            fingerprint_of(&cert),
            ip,
            sink(Side::Server, &tx),
        )
    };
    let _first = start(ip);
    assert_eq!(runtime.handshakes_in_progress(), 1);
    let _second = start(ip);
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(1)),
        Ok((_, DtlsEvent::Failed(reason))) if reason.contains("10.1.1.1")
    ));
    let _third = start(Some("10.1.1.2".parse().unwrap()));
    let fourth = start(None);
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(1)),
        Ok((_, DtlsEvent::Failed(_)))
    ));
    assert_eq!(runtime.handshakes_in_progress(), 2);
    drop(fourth);
}
