//! The cross-worker membership protocol (rooms spanning workers), without threads: two or
//! three `WorkerCore`s on the test thread, linked by a real `Mesh`. Nothing moves between
//! workers until the test delivers it (`pump`, `deliver`), so every interleaving is chosen by
//! the test and the outcome is deterministic. What each worker sends the signaling thread is
//! kept per worker, so a test can check which worker answered or notified whom. Every
//! `pump` ends by checking the cross-worker invariants (`check_invariants`): counters match
//! the maps, homes and replicas agree, pipes are subscribed at both ends.
//!
//! The tests at the end are ignored: each reproduces a bug (described above it) in an
//! interleaving the workers' separate mailboxes allow.

use crate::channel::{mio_mailbox, task_mailbox, Receiver};
use crate::room::api::{ApiError, Command, ConnId, ErrorCode, Job, JobKind, Outbound};
use crate::room::core::WorkerCore;
use crate::room::env::Env;
use crate::room::mesh::{Mesh, MeshInbox, Origin, PipeMsg, MEDIA_QUEUE};
use crate::room::router::Router;
use crate::room::test_peek::Peek;
use crate::room::transport::DtlsMsg;
use crate::room::PKey;
use crate::rtc::dtls::{DtlsCertificate, DtlsRuntime};
use crate::signaling::protocol::{Direction, Kind, Request};
use crate::signaling::wire;
use crate::stats::{Counted, WorkerStats};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

const ROOM: &str = "span";
const PRODUCE_VP8: &str = include_str!("ortc/fixtures/produce_vp8.json");
const PRODUCE_OPUS: &str = include_str!("ortc/fixtures/produce_opus.json");

/// One DTLS runtime (a thread) and certificate for every test: no handshake happens here.
fn dtls() -> (Arc<DtlsRuntime>, String) {
    static DTLS: OnceLock<(Arc<DtlsRuntime>, String)> = OnceLock::new();
    DTLS.get_or_init(|| {
        let cert = Arc::new(DtlsCertificate::generate().expect("certificate"));
        let fingerprint = cert.fingerprint_sha256();
        (
            Arc::new(DtlsRuntime::start(cert).expect("dtls runtime")),
            fingerprint,
        )
    })
    .clone()
}

struct Worker {
    core: WorkerCore,
    inbox: MeshInbox,
    signaling: Receiver<Outbound>,
    stats: Arc<WorkerStats>,
    _dtls_events: Receiver<DtlsMsg>,
}

/// A client as the signaling thread knows it: its socket, its peer id, the worker hosting it.
#[derive(Clone)]
struct Client {
    conn: ConnId,
    peer: Arc<str>,
    host: usize,
}

/// The live counters of one worker (`/api/stats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    rooms: usize,
    peers: usize,
    transports: usize,
    producers: usize,
    consumers: usize,
    replicas: usize,
    piped: usize,
}

const ZERO: Counts = Counts {
    rooms: 0,
    peers: 0,
    transports: 0,
    producers: 0,
    consumers: 0,
    replicas: 0,
    piped: 0,
};

struct Cluster {
    workers: Vec<Worker>,
    /// What each worker sent the signaling thread and no test has taken yet, in order.
    out: Vec<Vec<Outbound>>,
    next_req: u32,
    next_conn: ConnId,
    _poll: mio::Poll,
}

impl Cluster {
    fn new(n: usize) -> Self {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let (runtime, fingerprint) = dtls();
        let workers = Mesh::connect(n)
            .into_iter()
            .enumerate()
            .map(|(id, (mesh, inbox))| {
                let (sig_tx, signaling) = mio_mailbox(waker.clone());
                let (dtls_tx, dtls_rx) = task_mailbox();
                let stats = Arc::new(WorkerStats::new(id, None));
                let mut core = WorkerCore::new(Env::new(
                    id,
                    "127.0.0.1:40000".parse().expect("address"),
                    runtime.clone(),
                    fingerprint.clone(),
                    dtls_tx,
                    sig_tx,
                    stats.clone(),
                ));
                core.set_mesh(mesh);
                Worker {
                    core,
                    inbox,
                    signaling,
                    stats,
                    _dtls_events: dtls_rx,
                }
            })
            .collect();
        Self {
            workers,
            out: (0..n).map(|_| Vec::new()).collect(),
            next_req: 1,
            next_conn: 1,
            _poll: poll,
        }
    }

    fn collect(&mut self) {
        for (w, worker) in self.workers.iter().enumerate() {
            while let Some(msg) = worker.signaling.try_recv() {
                self.out[w].push(msg);
            }
        }
    }

    /// Delivers control messages between the workers until every mailbox is empty.
    fn pump(&mut self) -> usize {
        let now = Instant::now();
        let mut delivered = 0;
        loop {
            let mut progress = false;
            for worker in &mut self.workers {
                while let Some(msg) = worker.inbox.control.try_recv() {
                    worker.core.handle_pipe_msg(msg, now);
                    delivered += 1;
                    progress = true;
                    assert!(delivered < 10_000, "control messages keep flowing");
                }
            }
            if !progress {
                break;
            }
        }
        self.collect();
        self.check_invariants();
        delivered
    }

    /// Delivers the control messages waiting for worker `w` (only those), nothing else.
    fn deliver(&mut self, w: usize) -> usize {
        let n = self.workers[w].inbox.control.len();
        self.deliver_n(w, n)
    }

    /// Delivers the next `n` control messages waiting for worker `w`.
    fn deliver_n(&mut self, w: usize, n: usize) -> usize {
        let now = Instant::now();
        assert!(n <= self.pending(w), "only {} waiting", self.pending(w));
        for _ in 0..n {
            let msg = self.workers[w].inbox.control.try_recv().expect("queued");
            self.workers[w].core.handle_pipe_msg(msg, now);
        }
        self.collect();
        n
    }

    fn pending(&self, w: usize) -> usize {
        self.workers[w].inbox.control.len()
    }

    fn job(&mut self, w: usize, client: &Client, kind: JobKind) {
        let job = Job {
            conn: client.conn,
            room_id: Arc::from(ROOM),
            peer_id: client.peer.clone(),
            kind,
        };
        self.workers[w].core.handle_job(job, Instant::now());
        self.collect();
    }

    fn req_id(&mut self) -> u32 {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    /// Sends a join-room to the home worker (as the signaling thread does), without pumping.
    fn send_join(&mut self, home: usize, name: &str, host: usize) -> (Client, u32) {
        let client = Client {
            conn: self.next_conn,
            peer: Arc::from(format!("peer-{name}")),
            host,
        };
        self.next_conn += 1;
        let req_id = self.req_id();
        let kind = JobKind::Join {
            req_id,
            display_name: name.to_string(),
            host,
        };
        self.job(home, &client, kind);
        (client, req_id)
    }

    /// A join that succeeds; returns the client and its join answer.
    fn join(&mut self, home: usize, name: &str, host: usize) -> (Client, Value) {
        let (client, req_id) = self.send_join(home, name, host);
        self.pump();
        let answer = self
            .response(host, client.conn, req_id)
            .unwrap_or_else(|e| panic!("join of {name} failed: {e:?}"));
        (client, answer)
    }

    /// Takes the answer to (conn, req_id), which must come from worker `w` (and only from it).
    fn response(&mut self, w: usize, conn: ConnId, req_id: u32) -> Result<Value, ApiError> {
        let mut found = Vec::new();
        for (from, out) in self.out.iter_mut().enumerate() {
            let mut i = 0;
            while i < out.len() {
                match &out[i] {
                    Outbound::Response {
                        conn: c, req_id: r, ..
                    } if *c == conn && *r == req_id => {
                        if let Outbound::Response { result, .. } = out.remove(i) {
                            found.push((from, result.map(|a| wire::answer(&a))));
                        }
                    }
                    _ => i += 1,
                }
            }
        }
        assert_eq!(
            found.len(),
            1,
            "exactly one answer to conn {conn} request {req_id}: {found:?}"
        );
        let (from, result) = found.pop().expect("one answer");
        assert_eq!(
            from, w,
            "conn {conn} request {req_id} answered by worker {from}"
        );
        result
    }

    /// A request to the worker hosting the client; pumps, then takes its answer.
    fn request(&mut self, client: &Client, request: Request) -> Result<Value, ApiError> {
        let req_id = self.req_id();
        let command = wire::command(request)?;
        self.job(client.host, client, JobKind::Request { req_id, command });
        self.pump();
        self.response(client.host, client.conn, req_id)
    }

    fn ok(&mut self, client: &Client, request: Request) -> Value {
        let method = request.method();
        self.request(client, request)
            .unwrap_or_else(|e| panic!("{method} of {} failed: {e:?}", client.peer))
    }

    /// Takes every notification sent to a client, in order: (sending worker, method, data).
    fn notes(&mut self, client: &Client) -> Vec<(usize, &'static str, Value)> {
        let mut notes = Vec::new();
        for (from, out) in self.out.iter_mut().enumerate() {
            let mut i = 0;
            while i < out.len() {
                match &out[i] {
                    Outbound::Notify { conn, .. } if *conn == client.conn => {
                        if let Outbound::Notify { notice, .. } = out.remove(i) {
                            let (method, data) = wire::notice(&notice);
                            notes.push((from, method, data));
                        }
                    }
                    _ => i += 1,
                }
            }
        }
        notes
    }

    /// Takes the notifications of a client as (worker, method) pairs.
    fn methods(&mut self, client: &Client) -> Vec<(usize, &'static str)> {
        self.notes(client)
            .into_iter()
            .map(|(w, m, _)| (w, m))
            .collect()
    }

    /// Takes the `RoomClosed` messages sent by worker `w`.
    fn room_closed(&mut self, w: usize) -> usize {
        let before = self.out[w].len();
        self.out[w].retain(|m| !matches!(m, Outbound::RoomClosed { .. }));
        before - self.out[w].len()
    }

    /// Takes the `PeerGone` messages sent by worker `w`: (conn, peer id).
    fn peer_gone(&mut self, w: usize) -> Vec<(ConnId, Arc<str>)> {
        let mut gone = Vec::new();
        self.out[w].retain(|m| match m {
            Outbound::PeerGone { conn, peer_id, .. } => {
                gone.push((*conn, peer_id.clone()));
                false
            }
            _ => true,
        });
        gone
    }

    /// Takes the `RoomSources` messages sent by worker `w`: the producer ids of each.
    fn sources(&mut self, w: usize) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        self.out[w].retain(|m| match m {
            Outbound::RoomSources { sources, .. } => {
                all.push(sources.iter().map(|s| s.producer_id.clone()).collect());
                false
            }
            _ => true,
        });
        all
    }

    /// Drops the `RoomSources` messages (HLS bookkeeping) of every worker.
    fn forget_sources(&mut self) {
        for w in 0..self.workers.len() {
            self.sources(w);
        }
    }

    /// Nothing left for the signaling thread but HLS source lists.
    fn assert_quiet(&mut self) {
        self.forget_sources();
        for (w, out) in self.out.iter().enumerate() {
            assert!(out.is_empty(), "worker {w} sent more: {out:?}");
        }
    }

    fn counts(&self, w: usize) -> Counts {
        let s = &self.workers[w].stats;
        Counts {
            rooms: s.get(Counted::Room),
            peers: s.get(Counted::Peer),
            transports: s.get(Counted::Transport),
            producers: s.get(Counted::Producer),
            consumers: s.get(Counted::Consumer),
            replicas: s.get(Counted::RoomReplica),
            piped: s.get(Counted::PipedProducer),
        }
    }

    fn core(&self, w: usize) -> &WorkerCore {
        &self.workers[w].core
    }

    /// Every counter is zero and every map empty, on every worker.
    fn assert_empty(&self) {
        for (w, worker) in self.workers.iter().enumerate() {
            assert_eq!(self.counts(w), ZERO, "worker {w}");
            let c = &worker.core;
            assert_eq!(c.rooms_len(), 0, "rooms of worker {w}");
            assert_eq!(c.transports_len(), 0, "transports of worker {w}");
            assert_eq!(c.producers_len(), 0, "producers of worker {w}");
            assert_eq!(c.consumers_len(), 0, "consumers of worker {w}");
            assert!(c.env.index.is_empty(), "index of worker {w}");
            assert_eq!(worker.inbox.control.len(), 0, "mailbox of worker {w}");
        }
    }

    /// What must hold once every mailbox is empty (checked by `pump`): each worker's counters
    /// match its maps; each home lists as satellites exactly the other workers hosting peers
    /// of the room; each replica belongs to a home that lists it and has the same directory
    /// and producers; each piped producer is subscribed at its origin and vice versa.
    fn check_invariants(&self) {
        for (w, worker) in self.workers.iter().enumerate() {
            let core = &worker.core;
            let counts = self.counts(w);
            let hosted = core
                .routers
                .values()
                .flat_map(|r| r.peers.iter())
                .filter(|p| p.worker == w)
                .count();
            assert_eq!(counts.peers, hosted, "worker {w}: peers counted vs hosted");
            let homed = core.routers.values().filter(|r| r.is_home()).count();
            assert_eq!(counts.rooms, homed, "worker {w}: rooms");
            assert_eq!(
                counts.replicas,
                core.routers.len() - homed,
                "worker {w}: replicas"
            );
            assert_eq!(counts.transports, core.transports_len(), "worker {w}");
            assert_eq!(counts.consumers, core.consumers_len(), "worker {w}");
            let producers = core.all_producers();
            let own = producers.iter().filter(|(_, p)| !p.is_piped()).count();
            assert_eq!(counts.producers, own, "worker {w}: producers");
            assert_eq!(
                counts.piped,
                producers.len() - own,
                "worker {w}: piped producers"
            );
            assert_eq!(
                core.env.index.producers.len(),
                producers.len(),
                "worker {w}: producer index"
            );
            for (id, room) in &core.routers {
                let home_worker = room.home_worker(w);
                let mut others: Vec<usize> = room
                    .peers
                    .iter()
                    .map(|p| p.worker)
                    .filter(|&x| x != home_worker)
                    .collect();
                others.sort();
                others.dedup();
                if room.is_home() {
                    let mut sats = room.satellites().to_vec();
                    sats.sort();
                    assert_eq!(
                        sats, others,
                        "home {w} of {id}: satellites vs the workers hosting its peers"
                    );
                    continue;
                }
                let home = self.core(home_worker).routers.get(id);
                let home = home.unwrap_or_else(|| {
                    panic!("worker {w} keeps a replica of {id}, gone from its home")
                });
                assert!(
                    home.satellites().contains(&w),
                    "worker {w} keeps a replica of {id} its home does not list"
                );
                let dir = |r: &Router| {
                    let mut v: Vec<(String, usize)> = r
                        .peers
                        .iter()
                        .map(|p| (p.id.to_string(), p.worker))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(dir(room), dir(home), "directory of {id} on {w} vs its home");
                let ids = |r: &Router| {
                    let mut v: Vec<String> = r.producers_by_id.keys().cloned().collect();
                    v.sort();
                    v
                };
                assert_eq!(ids(room), ids(home), "producers of {id} on {w} vs its home");
            }
            for (key, p) in &producers {
                if let Some(o) = p.origin() {
                    let at = self.core(o.worker).find_producer(o.key);
                    let at = at.unwrap_or_else(|| {
                        panic!("worker {w}: piped {} has no producer at its origin", p.id)
                    });
                    assert!(
                        !at.is_piped() && at.pipes().contains(&(w, *key)),
                        "worker {w}: piped {} not subscribed at its origin",
                        p.id
                    );
                }
                for &(x, k) in p.pipes() {
                    let sub = self.core(x).find_producer(k);
                    assert!(
                        sub.is_some_and(|s| s.origin()
                            == Some(Origin {
                                worker: w,
                                key: *key
                            })),
                        "worker {w}: {} piped to worker {x} which has no such copy",
                        p.id
                    );
                }
            }
        }
    }

    /// The peer ids in the directory of the room on worker `w`, with their hosting worker.
    fn directory(&self, w: usize) -> Vec<(String, usize)> {
        self.core(w)
            .routers
            .get(ROOM)
            .map(|r| {
                r.peers
                    .iter()
                    .map(|p| (p.id.to_string(), p.worker))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn satellites(&self, w: usize) -> Vec<usize> {
        self.core(w)
            .routers
            .get(ROOM)
            .map(|r| r.satellites().to_vec())
            .unwrap_or_default()
    }

    /// The key of producer `id` on worker `w` (its own or a piped one).
    fn pkey(&self, w: usize, id: &str) -> Option<PKey> {
        self.core(w)
            .routers
            .get(ROOM)
            .and_then(|r| r.producers_by_id.get(id))
            .copied()
    }

    fn transport(&mut self, client: &Client, direction: Direction) -> String {
        let answer = self.ok(
            client,
            Request::CreateTransport {
                direction,
                sctp: false,
            },
        );
        answer["id"].as_str().expect("transport id").to_string()
    }

    fn produce(&mut self, client: &Client, transport: &str, kind: Kind) -> String {
        let params = match kind {
            Kind::Video => PRODUCE_VP8,
            Kind::Audio => PRODUCE_OPUS,
        };
        let answer = self.ok(
            client,
            Request::Produce {
                transport_id: transport.to_string(),
                kind,
                rtp_parameters: serde_json::from_str(params).expect("fixture"),
                app_data: Value::Null,
            },
        );
        answer["producerId"]
            .as_str()
            .expect("producer id")
            .to_string()
    }

    fn consume(
        &mut self,
        client: &Client,
        transport: &str,
        producer: &str,
        caps: &Value,
    ) -> Result<Value, ApiError> {
        self.request(
            client,
            Request::ConsumeMedia {
                transport_id: transport.to_string(),
                producer_id: producer.to_string(),
                rtp_capabilities: caps.clone(),
            },
        )
    }
}

fn peer_ids(answer: &Value) -> Vec<String> {
    answer["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["peerId"].as_str().expect("peerId").to_string())
        .collect()
}

/// The producers of a join answer: (producerId, peerId, kind, paused), sorted.
fn producer_list(answer: &Value) -> Vec<(String, String, String, bool)> {
    let mut v: Vec<_> = answer["producers"]
        .as_array()
        .expect("producers")
        .iter()
        .map(|p| {
            (
                p["producerId"].as_str().expect("producerId").to_string(),
                p["peerId"].as_str().expect("peerId").to_string(),
                p["kind"].as_str().expect("kind").to_string(),
                p["paused"].as_bool().expect("paused"),
            )
        })
        .collect();
    v.sort();
    v
}

fn s(x: &str) -> String {
    x.to_string()
}

/// A plain RTP packet (VP8 payload type of the fixture).
fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0]);
    p
}

// --- the tests -------------------------------------------------------------------------------

#[path = "speaker_tests.rs"]
mod speaker_tests;

#[path = "data_span_tests.rs"]
mod data_span_tests;

/// A on the home; B placed on worker 1, which becomes a satellite and answers B's join.
fn two_peers(c: &mut Cluster) -> (Client, Client) {
    let (a, answer) = c.join(0, "a", 0);
    assert!(peer_ids(&answer).is_empty());
    let (b, answer) = c.join(0, "b", 1);
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    c.notes(&a);
    c.notes(&b);
    (a, b)
}

#[test]
fn a_peer_placed_on_another_worker_is_answered_there_and_announced_on_the_home() {
    let mut c = Cluster::new(2);
    let (a, answer) = c.join(0, "a", 0);
    assert_eq!(answer["peerId"], "peer-a");
    assert!(peer_ids(&answer).is_empty());
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            ..ZERO
        }
    );

    let (b, answer) = c.join(0, "b", 1);
    // Worker 1 answered (`join` checks the answer came from the host and only from it).
    assert_eq!(answer["peerId"], "peer-b");
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    assert!(answer["routerRtpCapabilities"]["codecs"].is_array());
    assert_eq!(
        c.notes(&a),
        vec![(
            0,
            "peer-joined",
            json!({"peerId": "peer-b", "displayName": "b"})
        )]
    );
    assert!(c.notes(&b).is_empty());

    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            replicas: 1,
            ..ZERO
        }
    );
    let both = vec![(s("peer-a"), 0), (s("peer-b"), 1)];
    assert_eq!(c.directory(0), both);
    assert_eq!(c.directory(1), both);
    assert_eq!(c.satellites(0), vec![1]);
    assert_eq!(c.core(1).routers[ROOM].home_worker(1), 0);
    assert_eq!(c.room_closed(0) + c.room_closed(1), 0);
    c.assert_quiet();
}

#[test]
fn producers_are_piped_both_ways_and_listed_with_their_paused_state_to_later_joiners() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);

    // A produces on the home: B hears of it from worker 1, which pipes it in.
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    assert!(c.notes(&a).is_empty());
    assert_eq!(
        c.notes(&b),
        vec![(
            1,
            "new-producer",
            json!({"producerId": pa, "peerId": "peer-a", "kind": "video", "source": "camera"})
        )]
    );
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            transports: 1,
            producers: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
    let on_0 = c.pkey(0, &pa).expect("A's producer on the home");
    let on_1 = c.pkey(1, &pa).expect("A's producer piped into worker 1");
    assert_eq!(c.core(0).producer(on_0).pipes(), vec![(1, on_1)]);
    let piped = &c.core(1).producer(on_1);
    assert_eq!(
        piped.origin(),
        Some(Origin {
            worker: 0,
            key: on_0
        })
    );
    assert_eq!(piped.transport(), None);
    // A video producer asks for a key frame for its new subscriber's consumers.
    assert!(c.core(0).producer(on_0).keyframes.is_pending());
    // The home speaks for the room's HLS sources; a satellite never does.
    assert_eq!(c.sources(0), vec![vec![pa.clone()]]);
    assert!(c.sources(1).is_empty());

    // B produces on worker 1: A hears of it from the home.
    let tb = c.transport(&b, Direction::Send);
    let pb = c.produce(&b, &tb, Kind::Audio);
    assert!(c.notes(&b).is_empty());
    assert_eq!(
        c.notes(&a),
        vec![(
            0,
            "new-producer",
            json!({"producerId": pb, "peerId": "peer-b", "kind": "audio", "source": "microphone"})
        )]
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            transports: 1,
            producers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            transports: 1,
            producers: 1,
            piped: 1,
            ..ZERO
        }
    );
    let b_on_1 = c.pkey(1, &pb).expect("B's producer");
    let b_on_0 = c.pkey(0, &pb).expect("B's producer piped into the home");
    assert_eq!(c.core(1).producer(b_on_1).pipes(), vec![(0, b_on_0)]);
    assert!(c.sources(1).is_empty());
    assert_eq!(c.sources(0).len(), 1);

    // B pauses: the flag reaches the home's copy.
    c.ok(
        &b,
        Request::PauseProducer {
            producer_id: pb.clone(),
        },
    );
    assert!(c.core(0).producer(b_on_0).paused);
    assert_eq!(
        c.notes(&a),
        vec![(0, "producer-paused", json!({"producerId": pb}))]
    );

    // C joins later, placed on worker 1 too: both producers in its answer, with paused flags.
    let (cc, answer) = c.join(0, "c", 1);
    assert_eq!(peer_ids(&answer), vec![s("peer-a"), s("peer-b")]);
    let mut expected = vec![
        (pa.clone(), s("peer-a"), s("video"), false),
        (pb.clone(), s("peer-b"), s("audio"), true),
    ];
    expected.sort();
    assert_eq!(producer_list(&answer), expected);
    assert_eq!(
        c.notes(&a),
        vec![(
            0,
            "peer-joined",
            json!({"peerId": "peer-c", "displayName": "c"})
        )]
    );
    assert_eq!(
        c.notes(&b),
        vec![(
            1,
            "peer-joined",
            json!({"peerId": "peer-c", "displayName": "c"})
        )]
    );
    assert!(c.notes(&cc).is_empty());
    // The satellite already had the room: no second snapshot, no second piped copy.
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 2,
            transports: 1,
            producers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
    assert_eq!(c.core(0).producer(on_0).pipes(), vec![(1, on_1)]);
    c.assert_quiet();
}

/// A on the home producing video, B and C on worker 1, B producing audio.
fn three_peers(c: &mut Cluster) -> (Client, Client, Client, String, String) {
    let (a, b) = two_peers(c);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    let tb = c.transport(&b, Direction::Send);
    let pb = c.produce(&b, &tb, Kind::Audio);
    let (cc, _) = c.join(0, "c", 1);
    c.notes(&a);
    c.notes(&b);
    c.notes(&cc);
    c.forget_sources();
    (a, b, cc, pa, pb)
}

#[test]
fn pause_and_resume_of_a_satellite_producer_reach_the_peers_of_every_worker() {
    let mut c = Cluster::new(2);
    let (a, b, cc, _pa, pb) = three_peers(&mut c);
    let b_on_0 = c.pkey(0, &pb).expect("piped copy");

    c.ok(
        &b,
        Request::PauseProducer {
            producer_id: pb.clone(),
        },
    );
    assert_eq!(
        c.notes(&a),
        vec![(0, "producer-paused", json!({"producerId": pb}))]
    );
    assert_eq!(
        c.notes(&cc),
        vec![(1, "producer-paused", json!({"producerId": pb}))]
    );
    assert!(c.notes(&b).is_empty());
    assert!(c.core(0).producer(b_on_0).paused);

    // Pausing again changes nothing and tells nobody.
    c.ok(
        &b,
        Request::PauseProducer {
            producer_id: pb.clone(),
        },
    );
    assert!(c.notes(&a).is_empty());
    assert!(c.notes(&cc).is_empty());

    c.ok(
        &b,
        Request::ResumeProducer {
            producer_id: pb.clone(),
        },
    );
    assert_eq!(
        c.notes(&a),
        vec![(0, "producer-resumed", json!({"producerId": pb}))]
    );
    assert_eq!(
        c.notes(&cc),
        vec![(1, "producer-resumed", json!({"producerId": pb}))]
    );
    assert!(c.notes(&b).is_empty());
    assert!(!c.core(0).producer(b_on_0).paused);
    c.assert_quiet();
}

#[test]
fn pause_of_a_home_producer_reaches_the_satellite_peers() {
    let mut c = Cluster::new(2);
    let (a, b, cc, pa, _pb) = three_peers(&mut c);
    let a_on_1 = c.pkey(1, &pa).expect("piped copy");
    c.ok(
        &a,
        Request::PauseProducer {
            producer_id: pa.clone(),
        },
    );
    assert!(c.notes(&a).is_empty());
    for p in [&b, &cc] {
        assert_eq!(
            c.notes(p),
            vec![(1, "producer-paused", json!({"producerId": pa}))]
        );
    }
    assert!(c.core(1).producer(a_on_1).paused);
    c.ok(
        &a,
        Request::ResumeProducer {
            producer_id: pa.clone(),
        },
    );
    for p in [&b, &cc] {
        assert_eq!(c.methods(p), vec![(1, "producer-resumed")]);
    }
    assert!(!c.core(1).producer(a_on_1).paused);
    c.assert_quiet();
}

#[test]
fn leaving_peers_are_removed_everywhere_and_the_room_closes_with_its_last_peer() {
    let mut c = Cluster::new(2);
    let (a, b, cc, pa, pb) = three_peers(&mut c);
    // Consumers across and within workers: A (home) of B's piped audio, C of both.
    let caps = json!(c.core(0).env.caps);
    let ra = c.transport(&a, Direction::Recv);
    let a_of_b = c.consume(&a, &ra, &pb, &caps).expect("A consumes B");
    let rc = c.transport(&cc, Direction::Recv);
    let c_of_b = c.consume(&cc, &rc, &pb, &caps).expect("C consumes B");
    c.consume(&cc, &rc, &pa, &caps).expect("C consumes A");
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            transports: 2,
            producers: 1,
            consumers: 1,
            piped: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 2,
            transports: 2,
            producers: 1,
            consumers: 2,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
    c.forget_sources();

    // B leaves (leave-room goes to the worker hosting it).
    c.ok(&b, Request::LeaveRoom);
    assert_eq!(
        c.notes(&a),
        vec![
            (
                0,
                "consumer-closed",
                json!({"consumerId": a_of_b["consumerId"]})
            ),
            (0, "producer-closed", json!({"producerId": pb})),
            (0, "peer-left", json!({"peerId": "peer-b"})),
        ]
    );
    assert_eq!(
        c.notes(&cc),
        vec![
            (
                1,
                "consumer-closed",
                json!({"consumerId": c_of_b["consumerId"]})
            ),
            (1, "producer-closed", json!({"producerId": pb})),
            (1, "peer-left", json!({"peerId": "peer-b"})),
        ]
    );
    assert!(c.notes(&b).is_empty());
    assert_eq!(
        c.pkey(0, &pb),
        None,
        "the home's piped copy of B's producer is gone"
    );
    assert_eq!(c.directory(0), vec![(s("peer-a"), 0), (s("peer-c"), 1)]);
    assert_eq!(c.directory(1), c.directory(0));
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            transports: 2,
            producers: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            transports: 1,
            consumers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );

    // C, the last peer on worker 1, leaves: the satellite is released.
    c.ok(&cc, Request::LeaveRoom);
    assert_eq!(c.methods(&a), vec![(0, "peer-left")]);
    assert!(c.notes(&cc).is_empty());
    assert_eq!(c.counts(1), ZERO);
    assert_eq!(c.core(1).rooms_len(), 0);
    assert!(c.core(1).producers_len() == 0);
    assert!(c.satellites(0).is_empty());
    let a_on_0 = c.pkey(0, &pa).expect("A's producer");
    assert!(
        c.core(0).producer(a_on_0).pipes().is_empty(),
        "unsubscribed"
    );
    assert_eq!(c.room_closed(0) + c.room_closed(1), 0);

    // A, the last peer, leaves: the home closes the room.
    c.ok(&a, Request::LeaveRoom);
    assert_eq!(c.room_closed(0), 1);
    assert_eq!(c.room_closed(1), 0);
    assert!(c.notes(&a).is_empty());
    c.assert_empty();
    c.assert_quiet();
}

#[test]
fn the_room_outlives_its_home_peers_while_a_satellite_hosts_some() {
    let mut c = Cluster::new(2);
    let (a, b, cc, pa, _pb) = three_peers(&mut c);
    c.ok(&a, Request::LeaveRoom);
    for p in [&b, &cc] {
        assert_eq!(c.methods(p), vec![(1, "producer-closed"), (1, "peer-left")]);
    }
    assert_eq!(c.pkey(1, &pa), None);
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            piped: 1,
            ..ZERO
        }
    );
    assert_eq!(c.room_closed(0), 0);
    assert_eq!(c.satellites(0), vec![1]);

    c.ok(&b, Request::LeaveRoom);
    assert_eq!(
        c.methods(&cc),
        vec![(1, "producer-closed"), (1, "peer-left")]
    );
    assert_eq!(c.counts(0), Counts { rooms: 1, ..ZERO });
    c.ok(&cc, Request::LeaveRoom);
    assert_eq!(c.room_closed(0), 1);
    c.assert_empty();
    c.assert_quiet();
}

#[test]
fn a_disconnect_sent_to_the_home_removes_a_peer_hosted_on_a_satellite() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    let tb = c.transport(&b, Direction::Send);
    let pb = c.produce(&b, &tb, Kind::Video);
    c.notes(&a);
    c.forget_sources();

    c.job(0, &b, JobKind::Disconnected);
    assert!(c.pending(1) > 0, "forwarded to the worker hosting B");
    c.pump();
    assert_eq!(
        c.notes(&a),
        vec![
            (0, "producer-closed", json!({"producerId": pb})),
            (0, "peer-left", json!({"peerId": "peer-b"})),
        ]
    );
    assert!(c.notes(&b).is_empty());
    assert_eq!(c.directory(0), vec![(s("peer-a"), 0)]);
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            ..ZERO
        }
    );
    assert_eq!(c.counts(1), ZERO);
    assert!(c.satellites(0).is_empty());
    c.assert_quiet();

    c.job(0, &a, JobKind::Disconnected);
    c.pump();
    assert_eq!(c.room_closed(0), 1);
    c.assert_empty();
    c.assert_quiet();
}

#[test]
fn a_disconnect_right_behind_a_join_to_a_satellite_leaves_no_ghost() {
    let mut c = Cluster::new(2);
    let (a, _) = c.join(0, "a", 0);
    let (b, join_req) = c.send_join(0, "b", 1);
    c.job(0, &b, JobKind::Disconnected);
    c.pump();
    // The satellite answered the join (the signaling thread drops it: the socket is gone).
    assert!(c.response(1, b.conn, join_req).is_ok());
    assert_eq!(c.methods(&a), vec![(0, "peer-joined"), (0, "peer-left")]);
    assert_eq!(c.directory(0), vec![(s("peer-a"), 0)]);
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            ..ZERO
        }
    );
    assert_eq!(c.counts(1), ZERO);
    assert_eq!(c.core(1).rooms_len(), 0);
    assert!(c.satellites(0).is_empty());
    c.assert_quiet();

    c.ok(&a, Request::LeaveRoom);
    assert_eq!(c.room_closed(0), 1);
    c.assert_empty();
    c.assert_quiet();
}

#[test]
fn a_first_peer_placed_on_a_satellite_and_gone_at_once_closes_the_room() {
    // (room_spill_peers = 0: even the first peer goes elsewhere.)
    let mut c = Cluster::new(2);
    let (b, join_req) = c.send_join(0, "b", 1);
    assert_eq!(c.counts(0), Counts { rooms: 1, ..ZERO });
    c.job(0, &b, JobKind::Disconnected);
    c.pump();
    assert!(c.response(1, b.conn, join_req).is_ok());
    assert_eq!(c.room_closed(0), 1);
    c.assert_empty();
    c.assert_quiet();
}

#[test]
fn a_second_join_to_the_same_satellite_races_a_disconnect_cleanly() {
    let mut c = Cluster::new(2);
    let (a, _) = c.join(0, "a", 0);
    let (b, rb) = c.send_join(0, "b", 1);
    c.job(0, &b, JobKind::Disconnected);
    let (cc, rc) = c.send_join(0, "c", 1);
    c.pump();
    assert!(c.response(1, b.conn, rb).is_ok());
    let answer = c.response(1, cc.conn, rc).expect("C joins");
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    assert_eq!(
        c.methods(&a),
        vec![(0, "peer-joined"), (0, "peer-joined"), (0, "peer-left")]
    );
    assert!(c.notes(&cc).is_empty());
    let dir = vec![(s("peer-a"), 0), (s("peer-c"), 1)];
    assert_eq!(c.directory(0), dir);
    assert_eq!(c.directory(1), dir);
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            replicas: 1,
            ..ZERO
        }
    );
    c.assert_quiet();
}

#[test]
fn evicting_the_room_on_its_home_evicts_it_on_the_satellites() {
    let mut c = Cluster::new(2);
    let (a, b, cc, pa, _pb) = three_peers(&mut c);
    let caps = json!(c.core(0).env.caps);
    let rc = c.transport(&cc, Direction::Recv);
    c.consume(&cc, &rc, &pa, &caps).expect("C consumes A");
    c.forget_sources();

    c.workers[0].core.evict_room(ROOM);
    c.collect();
    assert_eq!(c.peer_gone(0), vec![(a.conn, a.peer.clone())]);
    assert_eq!(
        c.room_closed(0),
        0,
        "the room closes with the satellite's peers"
    );
    c.pump();
    let mut gone = c.peer_gone(1);
    gone.sort();
    assert_eq!(
        gone,
        vec![(b.conn, b.peer.clone()), (cc.conn, cc.peer.clone())]
    );
    for p in [&a, &b, &cc] {
        let host = p.host;
        let notes = c.notes(p);
        assert_eq!(notes.last().map(|n| (n.0, n.1)), Some((host, "error")));
        assert!(notes.iter().all(|n| n.0 == host), "{notes:?}");
    }
    assert_eq!((c.room_closed(0), c.room_closed(1)), (1, 0));
    c.assert_empty();
    c.assert_quiet();
}

#[test]
fn evicting_the_replica_on_a_satellite_removes_its_peers_from_the_room() {
    let mut c = Cluster::new(2);
    let (a, b, cc, pa, pb) = three_peers(&mut c);
    c.workers[1].core.evict_room(ROOM);
    c.collect();
    let mut gone = c.peer_gone(1);
    gone.sort();
    assert_eq!(
        gone,
        vec![(b.conn, b.peer.clone()), (cc.conn, cc.peer.clone())]
    );
    c.pump();
    assert_eq!(
        c.notes(&a),
        vec![
            (0, "producer-closed", json!({"producerId": pb})),
            (0, "peer-left", json!({"peerId": "peer-b"})),
            (0, "peer-left", json!({"peerId": "peer-c"})),
        ]
    );
    assert_eq!(c.directory(0), vec![(s("peer-a"), 0)]);
    assert!(c.satellites(0).is_empty());
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            transports: 1,
            producers: 1,
            ..ZERO
        }
    );
    assert_eq!(c.counts(1), ZERO);
    let a_key = c.pkey(0, &pa).expect("A's producer");
    assert!(c.core(0).producer(a_key).pipes().is_empty());
    c.notes(&b);
    c.notes(&cc);
    c.assert_quiet();

    // Worker 1 can host the room's peers again (a fresh snapshot).
    let (_d, answer) = c.join(0, "d", 1);
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    assert_eq!(producer_list(&answer).len(), 1);
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
}

#[test]
fn a_join_racing_an_eviction_of_its_satellite_fails_cleanly() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    c.workers[1].core.evict_room(ROOM);
    c.collect();
    // The home still counts worker 1 as a satellite: HostPeer without a snapshot.
    let (d, rd) = c.send_join(0, "d", 1);
    c.pump();
    let err = c.response(1, d.conn, rd).expect_err("the replica is gone");
    assert_eq!(err.code, ErrorCode::Internal);
    assert_eq!(
        c.methods(&a),
        vec![(0, "peer-joined"), (0, "peer-left"), (0, "peer-left")]
    );
    assert_eq!(c.directory(0), vec![(s("peer-a"), 0)]);
    assert!(c.satellites(0).is_empty());
    assert_eq!(c.counts(1), ZERO);
    assert_eq!(c.core(1).rooms_len(), 0);
    c.peer_gone(1);
    c.notes(&b);
    c.assert_quiet();
}

#[test]
fn a_consume_on_a_satellite_of_a_piped_producer_returns_a_consumer() {
    let mut c = Cluster::new(2);
    let (a, _) = c.join(0, "a", 0);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    let (b, answer) = c.join(0, "b", 1);
    assert_eq!(
        producer_list(&answer),
        vec![(pa.clone(), s("peer-a"), s("video"), false)]
    );
    let caps = answer["routerRtpCapabilities"].clone();
    let rb = c.transport(&b, Direction::Recv);
    let consumer = c.consume(&b, &rb, &pa, &caps).expect("consume");
    assert_eq!(consumer["producerId"], pa.as_str());
    assert_eq!(consumer["kind"], "video");
    assert_eq!(consumer["producerPaused"], false);
    assert!(consumer["consumerId"].is_string());
    assert_eq!(
        consumer["rtpParameters"]["codecs"][0]["mimeType"],
        "video/VP8"
    );
    let piped = c.pkey(1, &pa).expect("piped");
    assert_eq!(c.core(1).producer(piped).consumers.len(), 1);
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            transports: 1,
            consumers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
    // The home only pipes: no consumer there.
    assert_eq!(c.counts(0).consumers, 0);

    // B's requests are served by the worker hosting B only: the same consume sent to the
    // home fails there.
    let wrong = Client {
        host: 0,
        ..b.clone()
    };
    let err = c
        .consume(&wrong, &rb, &pa, &caps)
        .expect_err("not hosted on 0");
    assert_eq!(err.code, ErrorCode::InvalidState);

    // A closes the producer: B's consumer closes on worker 1.
    c.notes(&b);
    c.ok(
        &a,
        Request::CloseProducer {
            producer_id: pa.clone(),
        },
    );
    assert_eq!(
        c.notes(&b),
        vec![
            (
                1,
                "consumer-closed",
                json!({"consumerId": consumer["consumerId"]})
            ),
            (1, "producer-closed", json!({"producerId": pa})),
        ]
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            transports: 1,
            replicas: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.counts(0),
        Counts {
            rooms: 1,
            peers: 1,
            transports: 1,
            ..ZERO
        }
    );
}

#[test]
fn three_workers_a_satellite_producer_reaches_the_other_satellite_through_the_home() {
    let mut c = Cluster::new(3);
    let (a, _) = c.join(0, "a", 0);
    let (b, _) = c.join(0, "b", 1);
    let (cc, answer) = c.join(0, "c", 2);
    assert_eq!(peer_ids(&answer), vec![s("peer-a"), s("peer-b")]);
    assert_eq!(c.methods(&a), vec![(0, "peer-joined"), (0, "peer-joined")]);
    assert_eq!(c.methods(&b), vec![(1, "peer-joined")]);
    assert_eq!(c.satellites(0), vec![1, 2]);
    for w in 0..3 {
        assert_eq!(c.directory(w).len(), 3, "directory of worker {w}");
    }

    let tb = c.transport(&b, Direction::Send);
    let pb = c.produce(&b, &tb, Kind::Video);
    assert_eq!(c.methods(&a), vec![(0, "new-producer")]);
    assert_eq!(c.methods(&cc), vec![(2, "new-producer")]);
    let origin = c.pkey(1, &pb).expect("B's producer");
    let on_0 = c.pkey(0, &pb).expect("piped into 0");
    let on_2 = c.pkey(2, &pb).expect("piped into 2");
    // Worker 2 subscribes at the origin directly, not through the home.
    let mut pipes = c.core(1).producer(origin).pipes().to_vec();
    pipes.sort();
    assert_eq!(pipes, vec![(0, on_0), (2, on_2)]);
    assert_eq!(
        c.core(2).producer(on_2).origin(),
        Some(Origin {
            worker: 1,
            key: origin
        })
    );

    c.ok(
        &b,
        Request::PauseProducer {
            producer_id: pb.clone(),
        },
    );
    assert_eq!(c.methods(&a), vec![(0, "producer-paused")]);
    assert_eq!(c.methods(&cc), vec![(2, "producer-paused")]);

    // D joins on worker 2 after the pause: its answer has B's producer paused.
    let (d, answer) = c.join(0, "d", 2);
    assert_eq!(
        producer_list(&answer),
        vec![(pb.clone(), s("peer-b"), s("video"), true)]
    );
    assert_eq!(c.methods(&a), vec![(0, "peer-joined")]);
    assert_eq!(c.methods(&b), vec![(1, "peer-joined")]);
    assert_eq!(c.methods(&cc), vec![(2, "peer-joined")]);

    c.ok(
        &b,
        Request::CloseProducer {
            producer_id: pb.clone(),
        },
    );
    for p in [&a, &cc, &d] {
        assert_eq!(c.methods(p), vec![(p.host, "producer-closed")]);
    }
    assert_eq!(c.counts(0).piped + c.counts(2).piped, 0);

    for p in [&b, &cc, &d, &a] {
        c.ok(p, Request::LeaveRoom);
    }
    assert_eq!(c.room_closed(0), 1);
    c.assert_empty();
}

#[test]
fn three_workers_a_producer_added_while_a_new_satellite_joins_reaches_it() {
    let mut c = Cluster::new(3);
    let (a, _) = c.join(0, "a", 0);
    let (b, _) = c.join(0, "b", 1);
    let tb = c.transport(&b, Direction::Send);
    // B's produce is handled on worker 1, but its ProducerAdded has not reached the home when
    // C's join is placed on worker 2: C's snapshot lacks it, the forwarded message brings it.
    let req_id = c.req_id();
    c.job(
        1,
        &b,
        JobKind::Request {
            req_id,
            command: wire::command(Request::Produce {
                transport_id: tb,
                kind: Kind::Video,
                rtp_parameters: serde_json::from_str(PRODUCE_VP8).expect("fixture"),
                app_data: Value::Null,
            })
            .expect("valid"),
        },
    );
    let pb = c.response(1, b.conn, req_id).expect("produce")["producerId"]
        .as_str()
        .expect("id")
        .to_string();
    let (cc, rc) = c.send_join(0, "c", 2);
    c.pump();
    let answer = c.response(2, cc.conn, rc).expect("C joins");
    assert!(producer_list(&answer).is_empty());
    assert_eq!(c.methods(&cc), vec![(2, "new-producer")]);
    assert!(c.pkey(2, &pb).is_some());
    assert_eq!(
        c.methods(&a),
        vec![(0, "peer-joined"), (0, "peer-joined"), (0, "new-producer")]
    );
}

#[test]
fn a_stale_replica_is_replaced_when_the_room_is_homed_again_on_its_worker() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    c.ok(&a, Request::LeaveRoom);
    // B leaves; only the home hears of it yet: it closes the room and releases worker 1.
    let req_id = c.req_id();
    c.job(
        1,
        &b,
        JobKind::Request {
            req_id,
            command: Command::LeaveRoom,
        },
    );
    assert!(c.response(1, b.conn, req_id).is_ok());
    c.deliver(0);
    assert_eq!(c.room_closed(0), 1);
    assert_eq!(c.counts(0), ZERO);
    assert_eq!(
        c.counts(1),
        Counts {
            replicas: 1,
            ..ZERO
        }
    );
    assert!(c.pending(1) > 0, "DropReplica on its way");

    // The signaling thread homes the room anew on worker 1 before the DropReplica arrives.
    let (d, dr) = c.send_join(1, "d", 1);
    let answer = c.response(1, d.conn, dr).expect("D joins");
    assert!(peer_ids(&answer).is_empty());
    assert_eq!(
        c.counts(1),
        Counts {
            rooms: 1,
            peers: 1,
            ..ZERO
        }
    );
    c.pump();
    // The old home's DropReplica does not touch the new room.
    assert_eq!(
        c.counts(1),
        Counts {
            rooms: 1,
            peers: 1,
            ..ZERO
        }
    );
    assert_eq!(c.core(1).routers[ROOM].home_worker(1), 1);

    // The new room spans back to worker 0.
    let (e, answer) = c.join(1, "e", 0);
    assert_eq!(peer_ids(&answer), vec![s("peer-d")]);
    assert_eq!(
        c.counts(0),
        Counts {
            peers: 1,
            replicas: 1,
            ..ZERO
        }
    );
    c.ok(&e, Request::LeaveRoom);
    c.ok(&d, Request::LeaveRoom);
    assert_eq!(c.room_closed(1), 1);
    c.assert_empty();
}

#[test]
fn a_released_satellite_gets_a_fresh_snapshot_for_its_next_peer() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Audio);
    c.ok(&b, Request::LeaveRoom);
    assert_eq!(c.counts(1), ZERO);
    let (_cc, answer) = c.join(0, "c", 1);
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    assert_eq!(
        producer_list(&answer),
        vec![(pa.clone(), s("peer-a"), s("audio"), false)]
    );
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            replicas: 1,
            piped: 1,
            ..ZERO
        }
    );
    assert_eq!(
        c.core(0)
            .producer(c.pkey(0, &pa).expect("A's"))
            .pipes()
            .len(),
        1
    );
}

#[test]
fn a_join_placed_on_a_satellite_whose_last_peer_is_leaving_keeps_the_replica() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    // B's leave is handled on worker 1; the home places C's join on worker 1 before it hears.
    let req_id = c.req_id();
    c.job(
        1,
        &b,
        JobKind::Request {
            req_id,
            command: Command::LeaveRoom,
        },
    );
    assert!(c.response(1, b.conn, req_id).is_ok());
    let (cc, rc) = c.send_join(0, "c", 1);
    c.pump();
    let answer = c.response(1, cc.conn, rc).expect("C joins");
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    assert_eq!(c.methods(&a), vec![(0, "peer-joined"), (0, "peer-left")]);
    assert_eq!(c.directory(0), vec![(s("peer-a"), 0), (s("peer-c"), 1)]);
    assert_eq!(c.directory(1), c.directory(0));
    assert_eq!(c.satellites(0), vec![1]);
    assert_eq!(
        c.counts(1),
        Counts {
            peers: 1,
            replicas: 1,
            ..ZERO
        }
    );
}

#[test]
fn media_of_a_piped_producer_crosses_the_mesh_in_batches() {
    let mut c = Cluster::new(2);
    let (a, _b) = two_peers(&mut c);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    let origin = c.pkey(0, &pa).expect("A's");
    let piped = c.pkey(1, &pa).expect("piped");
    let now = Instant::now();
    let ssrc = 2876393227; // the fixture's
    for seq in 0..3 {
        c.workers[0].core.in_router_of(origin, |r, env| {
            r.pipe_packet(env, origin, 0, &rtp_packet(ssrc, seq), now)
        });
    }
    c.workers[0].core.flush_pipes();
    let stats0 = c.workers[0].stats.clone();
    assert_eq!(stats0.pipe_packets_out.load(Ordering::Relaxed), 3);
    let batch = c.workers[1].inbox.media.try_recv().expect("one batch");
    assert!(c.workers[1].inbox.media.try_recv().is_none());
    assert_eq!(batch.len(), 3);
    for i in 0..batch.len() {
        let (key, layer, packet, arrived) = batch.get(i).expect("item");
        assert_eq!((key, layer, arrived), (piped, 0, now));
        assert_eq!(packet, &rtp_packet(ssrc, i as u16)[..]);
        c.workers[1].core.on_piped_packet(key, layer, packet, now);
    }
    assert_eq!(
        c.workers[1].stats.pipe_packets_in.load(Ordering::Relaxed),
        3
    );
    c.workers[1].core.env.mesh.recycle(batch);

    // A full queue drops whole batches (counted), never blocks.
    for seq in 0..(MEDIA_QUEUE as u16 + 2) {
        c.workers[0].core.in_router_of(origin, |r, env| {
            r.pipe_packet(env, origin, 0, &rtp_packet(ssrc, seq), now)
        });
        c.workers[0].core.flush_pipes();
    }
    assert_eq!(stats0.pipe_drops.load(Ordering::Relaxed), 2);
    assert_eq!(c.workers[1].inbox.media.len(), MEDIA_QUEUE);
}

#[test]
fn a_replica_released_without_its_close_cascade_stops_the_piping_at_the_origin() {
    let mut c = Cluster::new(2);
    let (a, _b) = two_peers(&mut c);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    let origin = c.pkey(0, &pa).expect("A's");
    assert_eq!(c.core(0).producer(origin).pipes().len(), 1);
    // What a panic midway through the replica's close leaves: the router dropped as it is.
    let w = &mut c.workers[1].core;
    let replica = w.routers.remove(ROOM).expect("the replica");
    replica.release(&mut w.env);
    assert_eq!(w.env.index.entries_of(ROOM), 0);
    c.deliver(0);
    assert!(
        c.core(0).producer(origin).pipes().is_empty(),
        "the origin no longer pipes to the dropped replica"
    );
}

#[test]
fn a_key_frame_request_for_a_piped_producer_goes_to_its_origin() {
    let mut c = Cluster::new(2);
    let (a, _b) = two_peers(&mut c);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    let origin = c.pkey(0, &pa).expect("A's");
    let piped = c.pkey(1, &pa).expect("piped");
    assert!(c.core(0).producer(origin).keyframes.last_sent().is_none());
    c.workers[1].core.in_router_of(piped, |r, env| {
        r.request_keyframe(env, piped, Instant::now(), true)
    });
    match c.workers[0].inbox.control.try_recv() {
        Some(PipeMsg::KeyFrame { origin_key, force }) => {
            assert_eq!((origin_key, force), (origin, true));
            c.workers[0]
                .core
                .handle_pipe_msg(PipeMsg::KeyFrame { origin_key, force }, Instant::now());
        }
        other => panic!("expected a KeyFrame message, got {other:?}"),
    }
    assert!(c.core(0).producer(origin).keyframes.last_sent().is_some());
}

// --- races these tests found (fixed; kept as regression tests). Each comment describes the --
// --- failure as it was before the fix. ---------------------------------------------------------

/// Fixed by snapshot generations (`Room::snapshots`): a `ReplicaDropped` only releases the
/// replica it names.
///
/// span.rs, `PipeMsg::ReplicaDropped` in `handle_pipe_msg`: the home removed the sender from
/// `satellites` unconditionally. A satellite that evicted the room sends `PeerLeft` for each
/// of its peers and then `ReplicaDropped`; if a join placed on that worker reaches the home
/// between the last `PeerLeft` (which already released the satellite) and the
/// `ReplicaDropped`, the home sends a fresh snapshot, lists the worker again, and then the
/// late `ReplicaDropped` unlists it although it now hosts the new peer. From then on the home
/// sends that worker nothing (new producers, joins, leaves), rejects its messages
/// (`current_sender`), and never releases the replica.
#[test]
fn a_late_replica_dropped_does_not_orphan_a_replica_created_since() {
    let mut c = Cluster::new(2);
    let (a, _b, _cc, _pa, _pb) = three_peers(&mut c);
    c.workers[1].core.evict_room(ROOM);
    c.collect();
    c.peer_gone(1);
    // To the home: ProducerClosed (B's), PeerLeft (B), PeerLeft (C), ReplicaDropped, ...
    assert!(c.pending(0) >= 4);
    c.deliver_n(0, 3);
    assert!(c.satellites(0).is_empty(), "released by the last PeerLeft");
    // A client told to join again is placed on worker 1 before the ReplicaDropped arrives.
    let (d, rd) = c.send_join(0, "d", 1);
    assert_eq!(c.satellites(0), vec![1]);
    c.pump();
    let answer = c.response(1, d.conn, rd).expect("D joins");
    assert_eq!(peer_ids(&answer), vec![s("peer-a")]);
    assert_eq!(c.satellites(0), vec![1], "worker 1 hosts D");
    c.notes(&d);
    // D hears of A's new producer, and leaving releases worker 1.
    let ta = c.transport(&a, Direction::Send);
    let pa2 = c.produce(&a, &ta, Kind::Audio);
    assert_eq!(
        c.notes(&d),
        vec![(
            1,
            "new-producer",
            json!({"producerId": pa2, "peerId": "peer-a", "kind": "audio", "source": "microphone"})
        )]
    );
    c.ok(&d, Request::LeaveRoom);
    assert_eq!(c.counts(1), ZERO);
}

/// Fixed by snapshot generations, and `add_remote_peer` never lists a peer of its own worker.
///
/// Same root cause, worse symptom. After the late `ReplicaDropped` unlisted worker 1 while a
/// join for it (Y) was still on its way, the next join placed on worker 1 (Z) sends a fresh
/// `Snapshot` whose directory lists Y as hosted on worker 1 itself (span.rs, `join_job` →
/// `snapshot`, and `Snapshot` → `add_remote_peer`, which accepts `worker == self.id`). Y's
/// `HostPeer` fails there ("the room moved"), the home drops Y, but worker 1's new replica
/// keeps Y as a ghost "local" peer without transports: Z's join answer lists Y, nobody ever
/// gets peer-left for it, and when the replica goes, `drop_replica` removes Y as a local peer:
/// `PeerGone` for a peer the worker never hosted and the peers counter decremented below zero
/// (close.rs, `remove_peer`: `stats.dec(Counted::Peer)` wraps to usize::MAX).
#[test]
fn a_snapshot_never_makes_a_ghost_of_a_peer_whose_join_failed() {
    let mut c = Cluster::new(2);
    let (a, _b) = two_peers(&mut c);
    c.workers[1].core.evict_room(ROOM);
    c.collect();
    c.peer_gone(1);
    // Y is placed on worker 1 while the home still lists it: HostPeer without a snapshot.
    let (y, ry) = c.send_join(0, "y", 1);
    // The home hears of the eviction (PeerLeft B, ReplicaDropped) ...
    c.deliver(0);
    assert!(c.satellites(0).is_empty());
    // ... and places Z on worker 1: a new snapshot, behind Y's HostPeer.
    let (z, rz) = c.send_join(0, "z", 1);
    c.pump();
    assert!(c.response(1, y.conn, ry).is_err(), "Y's replica was gone");
    let answer = c.response(1, z.conn, rz).expect("Z joins");
    assert_eq!(
        peer_ids(&answer),
        vec![s("peer-a")],
        "Z's answer lists a ghost"
    );
    assert_eq!(c.directory(1), c.directory(0));
    c.notes(&a);
    c.ok(&z, Request::LeaveRoom);
    assert!(
        c.peer_gone(1).is_empty(),
        "PeerGone for a peer worker 1 never hosted"
    );
    assert_eq!(c.counts(1), ZERO);
}

/// Fixed by `RoomTag::epoch` (each incarnation of a room has its own), and `PeerJoined` is
/// accepted from the home only.
///
/// span.rs, `current_sender` (and the `PeerJoined`/`PeerLeft` handlers): room messages carried
/// no incarnation. Worker 1 was a satellite of the room homed on worker 0; the room closed
/// there and was homed anew on worker 1 (the signaling thread forgets a closed room's home),
/// which processed the new joins before its control mailbox. The new room lists worker 0 as a
/// satellite, so messages of the *previous* incarnation still queued from worker 0 pass
/// `current_sender` as if from that satellite: a stale `PeerJoined` adds a ghost peer (hosted
/// on worker 2, which the new room does not even span), the matching stale `PeerLeft` is
/// rejected (from the wrong worker for that peer), so the ghost stays: the new room's peers
/// are told it joined, and the room never closes (its directory never empties): it leaks on
/// worker 1 with `rooms` 1 forever and no `RoomClosed`.
#[test]
fn messages_of_a_previous_incarnation_of_the_room_are_ignored_by_the_next() {
    let mut c = Cluster::new(3);
    let (a, _) = c.join(0, "a", 0);
    let (q, _) = c.join(0, "q", 1);
    // P joins on worker 2 and leaves at once; worker 1 has not processed the news yet.
    let (p, rp) = c.send_join(0, "p", 2);
    c.deliver(2);
    assert!(c.response(2, p.conn, rp).is_ok());
    let req_id = c.req_id();
    c.job(
        2,
        &p,
        JobKind::Request {
            req_id,
            command: Command::LeaveRoom,
        },
    );
    assert!(c.response(2, p.conn, req_id).is_ok());
    c.deliver(0);
    // Q and A leave; the room closes on worker 0.
    let req_id = c.req_id();
    c.job(
        1,
        &q,
        JobKind::Request {
            req_id,
            command: Command::LeaveRoom,
        },
    );
    assert!(c.response(1, q.conn, req_id).is_ok());
    let req_id = c.req_id();
    c.job(
        0,
        &a,
        JobKind::Request {
            req_id,
            command: Command::LeaveRoom,
        },
    );
    assert!(c.response(0, a.conn, req_id).is_ok());
    c.deliver(0);
    assert_eq!(c.room_closed(0), 1);
    c.deliver(2);
    assert!(
        c.pending(1) > 0,
        "worker 1 still has PeerJoined(P), PeerLeft(P), ..."
    );
    // The room is homed anew on worker 1, and spans to worker 0, before worker 1 drains
    // the previous incarnation's messages.
    let (d, rd) = c.send_join(1, "d", 1);
    assert!(c.response(1, d.conn, rd).is_ok());
    let (e, re) = c.send_join(1, "e", 0);
    c.pump();
    let answer = c.response(0, e.conn, re).expect("E joins");
    assert_eq!(peer_ids(&answer), vec![s("peer-d")]);
    assert_eq!(
        c.notes(&d),
        vec![(
            1,
            "peer-joined",
            json!({"peerId": "peer-e", "displayName": "e"})
        )],
        "D is told only of E"
    );
    assert_eq!(c.directory(1), vec![(s("peer-d"), 1), (s("peer-e"), 0)]);
    c.ok(&e, Request::LeaveRoom);
    c.ok(&d, Request::LeaveRoom);
    assert_eq!(
        c.room_closed(1),
        1,
        "the new room closes with its last peer"
    );
    c.assert_empty();
}

/// Fixed: the evicted home keeps the room until the satellites' peers have left.
///
/// close.rs, `evict_room` on the home of a spanning room: it reported `RoomClosed` at once,
/// while the satellites still host peers of the room (they evict them, and report `PeerGone`,
/// only when the `Evict` reaches them). jobs.rs documents `RoomClosed` as "gone from every
/// worker"; the signaling thread (session.rs, `room_closed`) forgets a closed room only if its
/// membership view is empty by then, so here it never forgets it: the entry (home, and a room
/// counted on that worker for placement) stays after the satellites' `PeerGone` empties it.
/// (A fix could as well be in session.rs; this test states the worker-side contract.)
#[test]
fn evicting_a_spanning_room_reports_room_closed_after_every_peer_is_gone() {
    let mut c = Cluster::new(2);
    let (_a, _b, _cc, _pa, _pb) = three_peers(&mut c);
    c.workers[0].core.evict_room(ROOM);
    c.collect();
    let closed_early = c.room_closed(0);
    let still_hosted = c.counts(1).peers;
    assert!(
        closed_early == 0 || still_hosted == 0,
        "RoomClosed while worker 1 still hosts {still_hosted} peers of the room"
    );
}

// --- limits on what one peer can make a worker do (room/limits.rs) ---------------------------

#[test]
fn a_second_consumer_of_one_producer_on_one_transport_fails_with_limit_even_when_piped() {
    let mut c = Cluster::new(2);
    let (a, b) = two_peers(&mut c);
    let ta = c.transport(&a, Direction::Send);
    let pa = c.produce(&a, &ta, Kind::Video);
    c.pump();
    let caps = json!(c.core(1).env.caps);
    let rb = c.transport(&b, Direction::Recv);
    c.consume(&b, &rb, &pa, &caps)
        .expect("B consumes A's piped producer");
    let err = c.consume(&b, &rb, &pa, &caps).unwrap_err();
    assert_eq!(err.code, ErrorCode::Limit, "{}", err.message);
    // Another transport may carry its own copy (a second device, a reconnect).
    let rb2 = c.transport(&b, Direction::Recv);
    c.consume(&b, &rb2, &pa, &caps)
        .expect("another transport of B");
    assert_eq!(c.counts(1).consumers, 2);
}

#[test]
fn per_peer_caps_come_from_the_limits_setting() {
    let mut c = Cluster::new(1);
    c.workers[0]
        .core
        .set_limits(crate::room::limits::MediaLimits {
            max_transports_per_peer: 1,
            max_producers_per_peer: 1,
            ..Default::default()
        });
    let (a, _) = c.join(0, "a", 0);
    let ta = c.transport(&a, Direction::Send);
    let err = c
        .request(
            &a,
            Request::CreateTransport {
                direction: Direction::Recv,
                sctp: false,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Limit);
    c.produce(&a, &ta, Kind::Video);
    let err = c
        .request(
            &a,
            Request::Produce {
                transport_id: ta.clone(),
                kind: Kind::Audio,
                rtp_parameters: serde_json::from_str(PRODUCE_OPUS).expect("fixture"),
                app_data: Value::Null,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Limit, "{}", err.message);
}
