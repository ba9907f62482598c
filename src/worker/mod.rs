//! Media workers: one glommio executor per core, each owning its routers (rooms), its UDP
//! socket and its timers. Jobs arrive from the signaling thread over a lock-free mailbox;
//! all room state lives in a [`WorkerCore`] that only this thread touches.

mod batch_recv;
mod batch_send;
mod latency;
pub mod tcp;

use crate::channel::{task_mailbox, Receiver, Sender};
use crate::room::api::{ApiError, Job, Outbound};
use crate::room::core::WorkerCore;
use crate::room::env::{Env, Faults, Route};
use crate::room::mesh::{Mesh, MeshInbox};
use crate::room::outbox::Outbox;
use crate::room::remote::Remote;
use crate::room::transport::DtlsMsg;
use crate::rtc::dtls::DtlsRuntime;
use crate::stats::WorkerStats;
use batch_recv::BatchReceiver;
use batch_send::{BatchSender, Step};
use glommio::net::UdpSocket;
use glommio::{LocalExecutorBuilder, Placement};
use latency::LatencyRecorder;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest datagram we accept; anything longer is truncated by the kernel and then rejected.
const RECV_BUFFER: usize = 2048;
/// glommio's registered io memory per executor: we do no DMA file I/O, so keep it small
/// (it counts against `ulimit -l`).
const IO_MEMORY: usize = 512 * 1024;
const TICK: Duration = Duration::from_millis(250);

pub struct WorkerOptions {
    pub id: usize,
    /// Core to pin the executor to, if any.
    pub core: Option<usize>,
    pub bind: SocketAddr,
    pub announced: SocketAddr,
    pub dtls: Arc<DtlsRuntime>,
    pub fingerprint: String,
    pub signaling: Sender<Outbound>,
    /// Links to the other workers (rooms spanning workers); None: rooms stay on this worker.
    pub mesh: Option<(Mesh, MeshInbox)>,
    /// What one peer may make the worker hold or send.
    pub limits: crate::room::limits::MediaLimits,
    /// Test-only faults to inject (docs/config.md, "Fault injection"); off by default.
    pub faults: Faults,
    /// TURN servers for `create-transport` answers (room/turn.rs); None: not configured.
    pub turn: Option<crate::room::turn::TurnConfig>,
    /// Passive ICE-TCP on the media port (worker/tcp.rs); None: UDP only.
    pub ice_tcp: Option<tcp::TcpOptions>,
    /// Length of a forwarding-latency window (`/api/stats` `latency.window`).
    pub latency_window: Duration,
}

/// The signaling thread's handle on a running worker.
pub struct WorkerHandle {
    pub jobs: Sender<Job>,
    pub stats: Arc<WorkerStats>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts a worker thread; returns once its socket is bound (or binding failed).
pub fn spawn(opts: WorkerOptions) -> std::io::Result<WorkerHandle> {
    let stats = Arc::new(WorkerStats::new(opts.id, opts.core));
    let (jobs_tx, jobs_rx) = task_mailbox::<Job>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let placement = match opts.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let worker_stats = stats.clone();
    let name = format!("sfu-worker-{}", opts.id);
    let handle = LocalExecutorBuilder::new(placement)
        .name(&name)
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            let mut opts = opts;
            let sock = match UdpSocket::bind(opts.bind) {
                Ok(s) => Rc::new(s),
                Err(e) => {
                    let _ = ready_tx.send(Err(std::io::Error::other(format!(
                        "cannot bind media UDP socket {}: {e}",
                        opts.bind
                    ))));
                    return;
                }
            };
            // ICE-TCP listens on the UDP socket's port number.
            let ice_tcp = match opts.ice_tcp.take() {
                Some(o) => match sock
                    .local_addr()
                    .map_err(std::io::Error::from)
                    .and_then(tcp::bind)
                {
                    Ok(listener) => Some((listener, o)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                },
                None => None,
            };
            let _ = ready_tx.send(Ok(()));
            run(opts, sock, ice_tcp, jobs_rx, worker_stats).await;
        })
        .map_err(|e| std::io::Error::other(format!("cannot start worker executor: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::Error::other("worker thread died while starting")),
    }
    let thread = std::thread::Builder::new()
        .name(format!("{name}-join"))
        .spawn(move || {
            let _ = handle.join();
        })?;
    Ok(WorkerHandle {
        jobs: jobs_tx,
        stats,
        thread,
    })
}

type Shared = Rc<RefCell<WorkerCore>>;

/// Runs `f` on the core; after a panic, `recover` limits the damage to what the panic
/// concerned (a packet's transport, a job's room) instead of killing the worker and every
/// other room on it. Recovery itself is guarded: if it panics too, nothing more is tried.
fn guarded<R>(
    core: &Shared,
    f: impl FnOnce(&mut WorkerCore) -> R,
    recover: impl FnOnce(&mut WorkerCore),
) -> Option<R> {
    let mut c = core.borrow_mut();
    match catch_unwind(AssertUnwindSafe(|| f(&mut c))) {
        Ok(r) => Some(r),
        Err(_) => {
            c.stats().panics.fetch_add(1, Ordering::Relaxed);
            if catch_unwind(AssertUnwindSafe(|| recover(&mut c))).is_err() {
                tracing::error!(worker = c.id(), "recovering from a panic panicked");
            }
            answer_unanswered(&c);
            None
        }
    }
}

/// A request whose handling panicked still gets its one response.
fn answer_unanswered(c: &WorkerCore) {
    if let Some((conn, req_id)) = c.take_unanswered() {
        c.env.respond(
            conn,
            req_id,
            Err(ApiError::internal(
                "the request failed on the server; join again",
            )),
        );
    }
}

/// After a panic while handling a job or message of a room: the room goes (its peers are
/// told and may join again); every other room on the worker keeps running.
fn evict(room: Option<String>) -> impl FnOnce(&mut WorkerCore) {
    move |c| match room {
        Some(room) => {
            tracing::error!(worker = c.id(), room = %room, "panic while handling the room; room closed");
            c.evict_room(&room);
        }
        None => tracing::error!(worker = c.id(), "panic in a worker task; nothing closed"),
    }
}

/// After a panic while handling one datagram or DTLS event: that transport goes (cascading,
/// its peer told); the room and its other peers keep their media.
fn fail_transport(route: Option<Route>) -> impl FnOnce(&mut WorkerCore) {
    move |c| match route {
        Some(route) => {
            tracing::error!(
                worker = c.id(),
                "panic while handling a packet; its transport closed"
            );
            c.fail_transport(&route.room, route.transport);
        }
        None => tracing::error!(worker = c.id(), "panic on the packet path; packet dropped"),
    }
}

/// Runs one job from the signaling thread; a panic evicts the job's room, and a request it
/// was handling is still answered.
fn run_job(core: &Shared, job: Job, now: Instant) {
    let room = job.room_id.to_string();
    let answer_to = job.kind.req_id().map(|r| (job.conn, r));
    core.borrow().expect_answer(answer_to);
    let _ = guarded(core, |c| c.handle_job(job, now), evict(Some(room)));
    core.borrow().expect_answer(None);
}

struct Sending {
    sock: Rc<UdpSocket>,
    /// The open ICE-TCP connections (frames to a `Remote::Tcp` are queued there).
    tcp: Option<Rc<tcp::TcpConns>>,
    latency: RefCell<LatencyRecorder>,
    /// The second outbox buffer: the core fills one while this one is being sent.
    spare: RefCell<Outbox>,
    /// Reused `sendmmsg` arguments.
    batch: RefCell<BatchSender>,
}

impl Sending {
    /// Sends what the core queued. `arrived`: the queue holds forwarded media that arrived
    /// then, and its latency is recorded (hand-off and kernel, see latency.rs); `None` for
    /// what jobs, DTLS events and timers send.
    ///
    /// Up to [`batch_send::BATCH`] datagrams per `sendmmsg` (non-blocking) instead of one
    /// `send_to` each: a fan-out pays one syscall entry per batch, not one per consumer (the
    /// kernel's own per-datagram work remains).
    /// A datagram that would block goes through glommio's `send_to` (which waits on io_uring),
    /// then batching resumes; one the kernel refuses is skipped, never the others.
    async fn flush(&self, core: &Shared, arrived: Option<Instant>) {
        // Swap the queue out (no borrow may be held across the sends), send, give it back.
        let mut out = std::mem::take(&mut *self.spare.borrow_mut());
        std::mem::swap(&mut out, &mut core.borrow_mut().env.outbox);
        // For a fan-out, the last consumer's copy waits for the sends before it, and that is
        // what its receiver sees: each datagram's hand-off is the entry of the call that
        // carried it.
        let fd = self.sock.as_raw_fd();
        let mut i = 0;
        while let Some((to, pkt)) = out.get(i) {
            let to = match to {
                Remote::Udp(to) => to,
                Remote::Tcp { conn, .. } => {
                    // Framed into the connection's queue; its writer task sends it.
                    if let Some(tcp) = &self.tcp {
                        tcp.send(conn, pkt);
                    }
                    if let Some(arrived) = arrived {
                        self.latency.borrow_mut().queued(arrived, Instant::now());
                    }
                    i += 1;
                    continue;
                }
            };
            // A run of UDP datagrams, up to the next TCP frame.
            let udp_run = out
                .iter_from(i)
                .map_while(|(to, pkt)| to.udp().map(|to| (to, pkt)));
            let call = Instant::now();
            let step = self.batch.borrow_mut().send_batch(fd, udp_run);
            let done = match step {
                Step::Sent(n) => n,
                Step::WouldBlock => {
                    if let Err(e) = self.sock.send_to(pkt, to).await {
                        tracing::debug!(%to, error = %e, "send failed");
                    }
                    1
                }
                Step::Failed(e) => {
                    tracing::debug!(%to, error = %e, "send failed");
                    1
                }
            };
            if let Some(arrived) = arrived {
                self.latency
                    .borrow_mut()
                    .sent(arrived, call, Instant::now(), done);
            }
            i += done;
        }
        out.clear();
        *self.spare.borrow_mut() = out;
    }
}

async fn run(
    mut opts: WorkerOptions,
    sock: Rc<UdpSocket>,
    ice_tcp: Option<(glommio::net::TcpListener, tcp::TcpOptions)>,
    jobs: Receiver<Job>,
    stats: Arc<WorkerStats>,
) {
    let (mesh, inbox) = match opts.mesh.take() {
        Some((mesh, inbox)) => (Some(mesh), Some(inbox)),
        None => (None, None),
    };
    let (dtls_tx, dtls_rx) = task_mailbox::<DtlsMsg>();
    let core: Shared = Rc::new(RefCell::new(WorkerCore::new(Env::new(
        opts.id,
        opts.announced,
        opts.dtls.clone(),
        opts.fingerprint.clone(),
        dtls_tx,
        opts.signaling.clone(),
        stats.clone(),
    ))));
    if let Some(mesh) = mesh {
        core.borrow_mut().set_mesh(mesh);
    }
    core.borrow_mut().set_limits(opts.limits);
    core.borrow_mut().set_faults(opts.faults.clone());
    core.borrow_mut().set_turn(opts.turn.clone());
    core.borrow_mut().env.ice_tcp = ice_tcp.is_some();
    let (listener, tcp) = match ice_tcp {
        Some((l, o)) => (Some(l), Some(Rc::new(tcp::TcpConns::new(o, stats.clone())))),
        None => (None, None),
    };
    let sending = Rc::new(Sending {
        sock: sock.clone(),
        tcp: tcp.clone(),
        latency: RefCell::new(LatencyRecorder::new(opts.latency_window, Instant::now())),
        spare: RefCell::new(Outbox::with_capacity(64)),
        batch: RefCell::new(BatchSender::new()),
    });
    tracing::debug!(worker = opts.id, bind = %opts.bind, "worker started");

    // Jobs from the signaling thread.
    let (c, s) = (core.clone(), sending.clone());
    glommio::spawn_local(async move {
        loop {
            let job = jobs.recv().await;
            let now = Instant::now();
            run_job(&c, job, now);
            s.flush(&c, None).await;
        }
    })
    .detach();

    // DTLS events from the DTLS thread.
    let (c, s) = (core.clone(), sending.clone());
    glommio::spawn_local(async move {
        loop {
            let msg = dtls_rx.recv().await;
            let route = Route {
                room: msg.room.clone(),
                transport: msg.transport,
            };
            let _ = guarded(
                &c,
                |core| core.handle_dtls_msg(msg),
                fail_transport(Some(route)),
            );
            s.flush(&c, None).await;
        }
    })
    .detach();

    if let Some(MeshInbox { control, media }) = inbox {
        // Control messages from other workers (rooms spanning workers).
        let (c, s) = (core.clone(), sending.clone());
        glommio::spawn_local(async move {
            loop {
                let msg = control.recv().await;
                let now = Instant::now();
                let room = msg.room().map(str::to_string);
                c.borrow().expect_answer(msg.request());
                let _ = guarded(&c, |core| core.handle_pipe_msg(msg, now), evict(room));
                c.borrow().expect_answer(None);
                s.flush(&c, None).await;
            }
        })
        .detach();
        // Media of producers piped in from other workers.
        let (c, s) = (core.clone(), sending.clone());
        glommio::spawn_local(async move {
            loop {
                let batch = media.recv().await;
                for i in 0..batch.len() {
                    let Some((key, layer, packet, arrived)) = batch.get(i) else {
                        break;
                    };
                    // A panic costs that piped producer here (its consumers are told), not
                    // the room.
                    let _ = guarded(
                        &c,
                        |core| core.on_piped_packet(key, layer, packet, Instant::now()),
                        |core| core.fail_piped_producer(key),
                    );
                    // Latency counts from the packet's arrival on the origin worker's socket.
                    s.flush(&c, Some(arrived)).await;
                }
                c.borrow().env.mesh.recycle(batch);
                glommio::yield_if_needed().await;
            }
        })
        .detach();
    }

    // ICE-TCP connections (each served by tasks of its own).
    if let (Some(listener), Some(tcp)) = (listener, tcp) {
        glommio::spawn_local(tcp::accept_loop(
            listener,
            tcp,
            core.clone(),
            sending.clone(),
        ))
        .detach();
    }

    // Timers: deferred key-frame requests, sender reports, latency percentiles.
    let (c, s, st) = (core.clone(), sending.clone(), stats.clone());
    glommio::spawn_local(async move {
        let mut n: u64 = 0;
        loop {
            glommio::timer::sleep(TICK).await;
            n += 1;
            st.heartbeat.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let _ = guarded(&c, |core| core.tick(now, n.is_multiple_of(4)), evict(None));
            s.flush(&c, None).await;
            if n.is_multiple_of(4) {
                s.latency.borrow_mut().publish(&st, now);
            }
        }
    })
    .detach();

    // The packet path: receive a batch, handle it, send. While datagrams are queued the socket
    // is drained with `recvmmsg` (no io_uring round trip, one syscall per batch); once it is
    // empty, glommio waits for the next datagram (io_uring), and draining resumes after it.
    let fd = sock.as_raw_fd();
    let mut batch = BatchReceiver::new(RECV_BUFFER);
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let n = match batch.recv_batch(fd) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "recvmmsg failed");
                0
            }
        };
        if n == 0 {
            let (len, from) = match sock.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "recv failed");
                    glommio::yield_if_needed().await;
                    continue;
                }
            };
            let now = Instant::now();
            if len < RECV_BUFFER {
                handle_udp(&core, &buf[..len], from, now);
                sending.flush(&core, Some(now)).await;
            }
            continue;
        }
        let now = Instant::now();
        for i in 0..n {
            let Some(d) = batch.get(i) else { continue };
            if d.truncated {
                continue;
            }
            handle_udp(&core, d.data, d.from, now);
            // A packet's copies go out before the next packet is handled: batching the sends
            // of several packets would save little (the kernel's per-datagram work dominates)
            // and make the first packets wait for the others. Nothing queued: returns at once.
            sending.flush(&core, Some(now)).await;
        }
        glommio::yield_if_needed().await;
    }
}

/// Handles one UDP datagram; a panic closes the transport it came for, nothing else.
fn handle_udp(core: &Shared, data: &[u8], from: SocketAddr, now: Instant) {
    let _ = guarded(
        core,
        |c| c.handle_datagram(data, Remote::Udp(from), now),
        // Looked up only after a panic: no extra lookup per datagram.
        |c| fail_transport(c.transport_of_addr(&Remote::Udp(from)))(c),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{mio_mailbox, task_mailbox};
    use crate::room::api::{Answer, Command, ErrorCode, JobKind, Notice, TransportDirection};
    use crate::rtc::dtls::DtlsCertificate;

    struct Harness {
        core: Shared,
        stats: Arc<WorkerStats>,
        out: Receiver<Outbound>,
        _poll: mio::Poll,
    }

    fn harness() -> Harness {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (sig_tx, sig_rx) = mio_mailbox::<Outbound>(waker);
        let (dtls_tx, _dtls_rx) = task_mailbox();
        let cert = Arc::new(DtlsCertificate::generate().unwrap());
        let fp = cert.fingerprint_sha256();
        let stats = Arc::new(WorkerStats::new(0, None));
        let mut core = WorkerCore::new(Env::new(
            0,
            "127.0.0.1:1".parse().unwrap(),
            Arc::new(DtlsRuntime::start(cert).unwrap()),
            fp,
            dtls_tx,
            sig_tx,
            stats.clone(),
        ));
        core.set_faults(Faults {
            panic_room: Some(Arc::from("doomed")),
            ..Default::default()
        });
        let core: Shared = Rc::new(RefCell::new(core));
        Harness {
            core,
            stats,
            out: sig_rx,
            _poll: poll,
        }
    }

    fn job(conn: u64, room: &str, peer: &str, kind: JobKind) -> Job {
        Job {
            conn,
            room_id: Arc::from(room),
            peer_id: Arc::from(peer),
            kind,
        }
    }

    fn join(h: &Harness, conn: u64, room: &str, peer: &str) {
        let kind = JobKind::Join {
            req_id: 1,
            display_name: String::new(),
            host: 0,
        };
        run_job(&h.core, job(conn, room, peer, kind), Instant::now());
    }

    /// Drains the mailbox; the answers to `req_id`.
    fn responses(h: &Harness, req_id: u32) -> Vec<Result<Answer, ApiErr>> {
        let mut found = Vec::new();
        while let Some(m) = h.out.try_recv() {
            if let Outbound::Response {
                req_id: r, result, ..
            } = m
            {
                if r == req_id {
                    found.push(result.map_err(|e| ApiErr(e.code)));
                }
            }
        }
        found
    }

    #[derive(Debug, PartialEq)]
    struct ApiErr(ErrorCode);

    #[test]
    fn a_panic_in_a_request_job_is_answered_internal_and_closes_only_that_room() {
        let h = harness();
        join(&h, 1, "doomed", "p1");
        join(&h, 2, "fine", "p2");
        assert_eq!(h.core.borrow().rooms_len(), 2);
        let _ = responses(&h, 0);
        // The fault-injection setting makes every request in "doomed" panic.
        let leave = JobKind::Request {
            req_id: 7,
            command: Command::LeaveRoom,
        };
        run_job(&h.core, job(1, "doomed", "p1", leave), Instant::now());
        let answers = responses(&h, 7);
        assert!(
            matches!(answers.as_slice(), [Err(ApiErr(ErrorCode::Internal))]),
            "{answers:?}"
        );
        assert_eq!(h.core.borrow().rooms_len(), 1);
        assert_eq!(h.stats.panics.load(Ordering::Relaxed), 1);
        assert_eq!(h.stats.rooms.load(Ordering::Relaxed), 1);
        assert_eq!(h.stats.peers.load(Ordering::Relaxed), 1);
        // The surviving room still works.
        join(&h, 3, "fine", "p3");
        assert_eq!(h.stats.peers.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_panic_while_handling_a_packet_closes_its_transport_and_tells_its_peer_only() {
        let h = harness();
        join(&h, 1, "room", "p1");
        join(&h, 2, "room", "p2");
        let create = JobKind::Request {
            req_id: 5,
            command: Command::CreateTransport {
                direction: TransportDirection::Send,
                sctp: false,
            },
        };
        run_job(&h.core, job(1, "room", "p1", create), Instant::now());
        let Ok(Answer::TransportCreated(answer)) = responses(&h, 5).pop().unwrap() else {
            panic!("create-transport failed");
        };
        let transport_id = answer.id.clone();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let route = {
            let mut c = h.core.borrow_mut();
            let tkey = *c.router("room").unwrap().transports.keys().next().unwrap();
            let route = Route {
                room: Arc::from("room"),
                transport: tkey,
            };
            c.env.index.by_addr.insert(Remote::Udp(from), route.clone());
            route
        };
        assert_eq!(h.stats.transports.load(Ordering::Relaxed), 1);
        // What the packet loop does with a datagram from `from` whose handling panics.
        let found = h.core.borrow().transport_of_addr(&Remote::Udp(from));
        assert_eq!(found, Some(route));
        let r = guarded(
            &h.core,
            |_| -> () { panic!("a packet broke the handler") },
            fail_transport(found),
        );
        assert!(r.is_none());
        assert_eq!(h.stats.panics.load(Ordering::Relaxed), 1);
        assert_eq!(h.stats.transports.load(Ordering::Relaxed), 0);
        assert_eq!(h.core.borrow().rooms_len(), 1, "the room survives");
        assert_eq!(h.stats.peers.load(Ordering::Relaxed), 2);
        assert!(h
            .core
            .borrow()
            .transport_of_addr(&Remote::Udp(from))
            .is_none());
        let mut told = Vec::new();
        while let Some(m) = h.out.try_recv() {
            if let Outbound::Notify { conn, notice } = m {
                told.push((conn, notice));
            }
        }
        assert_eq!(
            told,
            vec![(1, Notice::TransportClosed { transport_id })],
            "only the transport's own peer is told, with the transport's id"
        );
        // Nothing is left unanswered, and the peer can go on.
        let again = JobKind::Request {
            req_id: 6,
            command: Command::CreateTransport {
                direction: TransportDirection::Send,
                sctp: false,
            },
        };
        run_job(&h.core, job(1, "room", "p1", again), Instant::now());
        assert!(responses(&h, 6).pop().unwrap().is_ok());
    }

    /// The live counts of a worker: (rooms, peers, transports, producers, consumers).
    fn counts(stats: &WorkerStats) -> (usize, usize, usize, usize, usize) {
        use crate::stats::Counted;
        (
            stats.get(Counted::Room),
            stats.get(Counted::Peer),
            stats.get(Counted::Transport),
            stats.get(Counted::Producer),
            stats.get(Counted::Consumer),
        )
    }

    #[test]
    fn a_panic_midway_through_a_close_cascade_leaves_nothing_of_that_room_and_the_other_keeps_forwarding(
    ) {
        let (mut core, mut media) = crate::testing::media::worker();
        core.set_faults(Faults {
            panic_close_room: Some(Arc::from("doomed")),
            ..Default::default()
        });
        let mut doomed = media.room(&mut core, "doomed", 3);
        let mut fine = media.room(&mut core, "fine", 3);
        let stats = core.stats().clone();
        let packet = fine.next_datagram(300);
        assert_eq!(fine.receive(&mut core, &packet), 3, "fine forwards");
        let packet = doomed.next_datagram(300);
        assert_eq!(doomed.receive(&mut core, &packet), 3, "doomed forwards");
        assert_eq!(counts(&stats), (2, 8, 8, 2, 6));
        assert_eq!(
            core.env.index.entries_of("doomed"),
            9,
            "4 ufrags, 4 tuples, 1 producer"
        );
        let publisher: Arc<str> = Arc::from("doomed-publisher");
        let conn = core
            .router("doomed")
            .unwrap()
            .peer(&publisher)
            .unwrap()
            .conn;
        let core: Shared = Rc::new(RefCell::new(core));
        // The publisher leaves: closing its producer's consumers panics in the middle of the
        // cascade (its producer is gone, its consumers, transports and peers are not).
        let leave = Job {
            conn,
            room_id: Arc::from("doomed"),
            peer_id: publisher,
            kind: JobKind::Request {
                req_id: 9,
                command: Command::LeaveRoom,
            },
        };
        run_job(&core, leave, Instant::now());
        assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
        let mut c = core.borrow_mut();
        assert!(c.router("doomed").is_none(), "the room is gone");
        assert_eq!(c.env.index.entries_of("doomed"), 0, "its index entries too");
        assert_eq!(
            counts(&stats),
            (1, 4, 4, 1, 3),
            "only the other room is counted"
        );
        let packet = fine.next_datagram(300);
        assert_eq!(
            fine.receive(&mut c, &packet),
            3,
            "the other room still forwards"
        );
        let packet = doomed.next_datagram(300);
        assert_eq!(
            doomed.receive(&mut c, &packet),
            0,
            "nothing of the evicted room"
        );
        let mut answered = Vec::new();
        while let Some(m) = media.signaling.try_recv() {
            if let Outbound::Response {
                req_id: 9, result, ..
            } = m
            {
                answered.push(result.map(|_| ()).map_err(|e| e.code));
            }
        }
        assert_eq!(
            answered,
            vec![Err(ErrorCode::Internal)],
            "one answer to the leave"
        );
    }
}
