//! Helpers for the integration tests of this workspace (tests/, loadtest/tests/): not part of
//! the server.

use std::net::{TcpListener, UdpSocket};

/// Ports handed out come from here: below Linux's ephemeral range (32768-60999), so an
/// outgoing connection of a test running meanwhile cannot take a port between the check and
/// the server's bind; a random start per process keeps parallel test binaries apart.
const PORTS: std::ops::Range<u16> = 20_000..30_000;

/// The next candidate port (each one once per process, starting at a random place).
fn next_candidate() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        rand::random::<u32>() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    // Steps of 4: a server with a few workers takes the ports after its first one too.
    let n = NEXT.fetch_add(4, Ordering::Relaxed) % span;
    PORTS.start + n as u16
}

fn free_tcp(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A TCP port on 127.0.0.1 that is free now and that no other test of this process gets.
pub fn free_tcp_port() -> u16 {
    (0..1000)
        .map(|_| next_candidate())
        .find(|&p| free_tcp(p))
        .expect("no free loopback TCP port in 20000-30000")
}

/// A loopback port free for UDP and for TCP (a worker's media port takes both, ICE-TCP), with
/// the next three free too (servers with more workers use `rtc_port + N`).
pub fn free_udp_port() -> u16 {
    (0..1000)
        .map(|_| next_candidate())
        .find(|&p| (p..p + 4).all(|q| UdpSocket::bind(("127.0.0.1", q)).is_ok() && free_tcp(q)))
        .expect("no loopback port free for both UDP and TCP in 20000-30000")
}

/// A worker's rooms driven through the real packet path without sockets, ICE or DTLS: the
/// transports get SRTP keys and a tuple directly. For benches (`benches/hot_path.rs`) and
/// tests that need media flowing through real routers.
pub mod media {
    use crate::channel::{task_mailbox, Receiver};
    use crate::room::api::{Command, Job, JobKind, Outbound, TransportDirection};
    use crate::room::core::WorkerCore;
    use crate::room::env::{Env, Route};
    use crate::room::limits::MediaLimits;
    use crate::room::ortc::{MediaKind, RtpParameters};
    use crate::room::remote::Remote;
    use crate::room::transport::DtlsMsg;
    use crate::rtc::dtls::{DtlsCertificate, DtlsRuntime};
    use crate::rtc::srtp::{split_keying_material, SrtpProfile, SrtpSession};
    use crate::stats::WorkerStats;
    use std::sync::Arc;
    use std::time::Instant;

    const PRODUCE_VP8: &str = include_str!("room/ortc/fixtures/produce_vp8.json");
    /// The fixture's media SSRC.
    const SSRC: u32 = 2_876_393_227;
    const PROFILE: SrtpProfile = SrtpProfile::AeadAes256Gcm;

    /// What a [`WorkerCore`] needs around it on the test thread.
    pub struct Harness {
        pub signaling: Receiver<Outbound>,
        _dtls_events: Receiver<DtlsMsg>,
        _runtime: Arc<DtlsRuntime>,
        next_conn: u64,
        next_port: u16,
    }

    /// A worker with no egress cap (a bench sends faster than any peer's cap).
    pub fn worker() -> (WorkerCore, Harness) {
        let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
        let fingerprint = cert.fingerprint_sha256();
        let runtime = Arc::new(DtlsRuntime::start(cert).expect("dtls runtime"));
        let (dtls_tx, dtls_rx) = task_mailbox();
        let (sig_tx, sig_rx) = task_mailbox();
        let mut core = WorkerCore::new(Env::new(
            0,
            "127.0.0.1:40000".parse().expect("address"),
            runtime.clone(),
            fingerprint,
            dtls_tx,
            sig_tx,
            Arc::new(WorkerStats::new(0, None)),
        ));
        core.set_limits(MediaLimits {
            peer_egress_bitrate: 0,
            ..MediaLimits::default()
        });
        let harness = Harness {
            signaling: sig_rx,
            _dtls_events: dtls_rx,
            _runtime: runtime,
            next_conn: 1,
            next_port: 20_000,
        };
        (core, harness)
    }

    fn keys(browser: bool) -> SrtpSession {
        let len = 2 * (PROFILE.key_len() + PROFILE.salt_len());
        let material: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let keys = split_keying_material(PROFILE, &material, browser).expect("keys");
        SrtpSession::new(&keys).expect("session")
    }

    /// One room: a VP8 publisher and its subscribers, every transport connected.
    pub struct MediaRoom {
        pub id: Arc<str>,
        /// The publisher's address and its browser-side SRTP session.
        pub from: Remote,
        browser: SrtpSession,
        seq: u16,
        ts: u32,
    }

    impl Harness {
        /// Creates room `id` on `core`: one peer publishing VP8, `subscribers` peers each
        /// consuming it (resumed), all with SRTP keys and a selected tuple.
        pub fn room(&mut self, core: &mut WorkerCore, id: &str, subscribers: usize) -> MediaRoom {
            let room: Arc<str> = Arc::from(id);
            let now = Instant::now();
            let publisher = self.join(core, &room, "publisher");
            let send = self.transport(core, &room, &publisher, TransportDirection::Send);
            let params: RtpParameters = serde_json::from_str(PRODUCE_VP8).expect("fixture");
            self.request(
                core,
                &room,
                &publisher,
                Command::Produce {
                    transport_id: send.clone(),
                    kind: MediaKind::Video,
                    rtp_parameters: params,
                    label: crate::room::api::SourceLabel::Camera,
                },
            );
            let producer_id = core
                .router(id)
                .expect("room")
                .producers_by_id
                .keys()
                .next()
                .cloned();
            let producer_id = producer_id.expect("the producer");
            for i in 0..subscribers {
                let peer = self.join(core, &room, &format!("subscriber-{i}"));
                let recv = self.transport(core, &room, &peer, TransportDirection::Recv);
                let caps = core.env.caps.clone();
                self.request(
                    core,
                    &room,
                    &peer,
                    Command::Consume {
                        transport_id: recv,
                        producer_id: producer_id.clone(),
                        rtp_capabilities: caps,
                    },
                );
                let consumer_id = core
                    .router(id)
                    .and_then(|r| r.peer(&peer))
                    .and_then(|p| p.consumers.keys().next().cloned());
                self.request(
                    core,
                    &room,
                    &peer,
                    Command::ResumeConsumer {
                        consumer_id: consumer_id.expect("the consumer"),
                    },
                );
            }
            // Connect every transport: keys and a tuple, as ICE and DTLS would leave them.
            let mut from = None;
            let router = core.routers.get_mut(id).expect("room");
            let keys_of_publisher = router.peer(&publisher).map(|p| p.transports.clone());
            for (&tkey, t) in router.transports.iter_mut() {
                let addr = Remote::Udp(([127, 0, 0, 1], self.next_port).into());
                self.next_port += 1;
                t.srtp = Some(keys(false));
                t.remote = Some(addr);
                t.last_seen = now;
                core.env.index.by_addr.insert(
                    addr,
                    Route {
                        room: room.clone(),
                        transport: tkey,
                    },
                );
                if keys_of_publisher
                    .as_ref()
                    .is_some_and(|k| k.values().any(|&v| v == tkey))
                {
                    from = Some(addr);
                }
            }
            MediaRoom {
                id: room,
                from: from.expect("the publisher's transport"),
                browser: keys(true),
                seq: 1000,
                ts: 90_000,
            }
        }

        fn join(&mut self, core: &mut WorkerCore, room: &Arc<str>, name: &str) -> Arc<str> {
            let peer: Arc<str> = Arc::from(format!("{room}-{name}"));
            let conn = self.next_conn;
            self.next_conn += 1;
            let kind = JobKind::Join {
                req_id: 1,
                display_name: name.to_string(),
                host: 0,
            };
            core.handle_job(self.job(conn, room, &peer, kind), Instant::now());
            peer
        }

        fn job(&self, conn: u64, room: &Arc<str>, peer: &Arc<str>, kind: JobKind) -> Job {
            Job {
                conn,
                room_id: room.clone(),
                peer_id: peer.clone(),
                kind,
            }
        }

        fn conn_of(core: &WorkerCore, room: &str, peer: &str) -> u64 {
            core.router(room)
                .and_then(|r| r.peer(peer))
                .map(|p| p.conn)
                .expect("joined")
        }

        /// Runs a command of `peer`; panics if it fails.
        pub fn request(
            &mut self,
            core: &mut WorkerCore,
            room: &Arc<str>,
            peer: &Arc<str>,
            command: Command,
        ) {
            let conn = Self::conn_of(core, room, peer);
            let kind = JobKind::Request { req_id: 2, command };
            core.handle_job(self.job(conn, room, peer, kind), Instant::now());
            while let Some(m) = self.signaling.try_recv() {
                if let Outbound::Response { result: Err(e), .. } = m {
                    panic!("request of {peer} failed: {e}");
                }
            }
        }

        fn transport(
            &mut self,
            core: &mut WorkerCore,
            room: &Arc<str>,
            peer: &Arc<str>,
            direction: TransportDirection,
        ) -> String {
            self.request(
                core,
                room,
                peer,
                Command::CreateTransport {
                    direction,
                    sctp: false,
                },
            );
            let p = core
                .router(room)
                .and_then(|r| r.peer(peer))
                .expect("joined");
            let newest = p
                .transports
                .iter()
                .max_by_key(|(_, &k)| k)
                .map(|(id, _)| id.clone());
            newest.expect("the transport")
        }
    }

    impl MediaRoom {
        /// The publisher's next datagram: a VP8 key-frame packet of `len` bytes, protected.
        pub fn next_datagram(&mut self, len: usize) -> Vec<u8> {
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(3000);
            let mut p = vec![0x80, 96];
            p.extend_from_slice(&self.seq.to_be_bytes());
            p.extend_from_slice(&self.ts.to_be_bytes());
            p.extend_from_slice(&SSRC.to_be_bytes());
            // VP8 payload descriptor (start of partition 0), then a key frame's tag (P = 0).
            p.extend_from_slice(&[0x10, 0x00]);
            p.resize(len.max(p.len()), 0xa5);
            self.browser.encrypt_rtp(&p).expect("encrypt").to_vec()
        }

        /// Hands one datagram of the publisher to the worker; the datagrams the worker queued
        /// (its outbox is emptied, as the worker's send loop does).
        pub fn receive(&self, core: &mut WorkerCore, datagram: &[u8]) -> usize {
            core.handle_datagram(datagram, self.from, Instant::now());
            let sent = core.env.outbox.len();
            core.env.outbox.clear();
            sent
        }
    }
}
