//! Attacks on the signaling edge (issue #10, items 3, 7, 8, 11) against the real server:
//! connection hoarding, sockets that never join, clients that never read, request floods,
//! notification floods, foreign origins and smuggling-prone `Content-Length`s.

mod common;

use common::{vp8_rtp_parameters, Server, NO_RATE_LIMITS};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// A TCP connection to the server from `source` (any 127.0.0.N is local on Linux).
fn tcp_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    tcp_from_with(source, port, None)
}

/// Like [`tcp_from`], with a fixed receive buffer: a client that never reads then stops the
/// server's socket early instead of after megabytes of kernel autotuning, so what piles up
/// is the server's own queue.
fn tcp_from_with(source: Ipv4Addr, port: u16, rcvbuf: Option<i32>) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let addr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned by the TcpStream from creation on;
    // the sockaddr values outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(size) = rcvbuf {
            let len = std::mem::size_of::<i32>() as libc::socklen_t;
            let value = &size as *const i32 as *const libc::c_void;
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value, len);
        }
        let local = addr(source, 0);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = addr(Ipv4Addr::LOCALHOST, port);
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A WebSocket handshake from `source`, with an `Origin` header if given.
fn ws_from(
    server: &Server,
    source: Ipv4Addr,
    origin: Option<&str>,
) -> Result<WebSocket<TcpStream>, String> {
    ws_over(
        server,
        tcp_from(source, server.port).map_err(|e| e.to_string())?,
        origin,
    )
}

fn ws_over(
    server: &Server,
    stream: TcpStream,
    origin: Option<&str>,
) -> Result<WebSocket<TcpStream>, String> {
    let mut req = format!("ws://127.0.0.1:{}/ws", server.port)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("Origin", origin.parse().map_err(|_| "bad origin")?);
    }
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(format!("http {}", resp.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A blocking protocol client over a WebSocket opened by [`ws_from`].
struct Peer {
    ws: WebSocket<TcpStream>,
    next_id: u32,
    /// Notifications read while waiting for responses.
    notes: Vec<Value>,
}

impl Peer {
    fn new(ws: WebSocket<TcpStream>) -> Peer {
        Peer {
            ws,
            next_id: 1,
            notes: Vec::new(),
        }
    }

    fn from(server: &Server, source: Ipv4Addr) -> Peer {
        Peer::new(ws_from(server, source, None).expect("websocket"))
    }

    fn send(&mut self, method: &str, data: Value) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"request": true, "id": id, "method": method, "data": data});
        self.ws
            .send(Message::text(frame.to_string()))
            .expect("send");
        id
    }

    fn frame(&mut self) -> Result<Value, String> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Ok(serde_json::from_str(&t).expect("JSON")),
                Ok(Message::Close(f)) => return Err(format!("closed: {f:?}")),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn response(&mut self, id: u32) -> Value {
        loop {
            let f = self.frame().expect("frame");
            if f["response"] == json!(true) && f["id"] == json!(id) {
                return f;
            }
            self.notes.push(f);
        }
    }

    fn request(&mut self, method: &str, data: Value) -> Value {
        let id = self.send(method, data);
        self.response(id)
    }

    fn ok(&mut self, method: &str, data: Value) -> Value {
        let r = self.request(method, data);
        assert_eq!(r["ok"], json!(true), "{method}: {r}");
        r["data"].clone()
    }

    /// Reads until the socket is closed; returns the close code (None: closed without one).
    fn until_closed(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        self.ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        panic!("socket still open after {within:?}");
    }
}

const LO1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LO2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LO3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ws_count(server: &Server) -> u64 {
    server.stats()["connections"].as_u64().unwrap()
}

/// Sends raw bytes as one HTTP request and returns the response's status.
fn raw_status(server: &Server, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn one_address_holding_every_socket_it_may_leaves_healthz_and_joins_from_elsewhere_working() {
    let server = Server::start_with(&[
        "--workers",
        "1",
        "--max-connections",
        "60",
        "--max-connections-per-ip",
        "40",
        "--join-deadline-ms",
        "60000",
    ]);
    let mut hoard: Vec<WebSocket<TcpStream>> = (0..40)
        .map(|i| ws_from(&server, LO1, None).unwrap_or_else(|e| panic!("socket {i}: {e}")))
        .collect();
    // The 41st from the same address is refused (on probation: only /healthz answers).
    for _ in 0..5 {
        assert_eq!(
            ws_from(&server, LO1, None).err().as_deref(),
            Some("http 503")
        );
    }
    assert_eq!(server.get("/healthz").map(|r| r.0), Some(200));
    let mut other = Peer::from(&server, LO2);
    other.ok("join-room", json!({"roomId": "elsewhere"}));

    // Fill the global limit from a second address: a third address is refused, /healthz
    // still answers, and a freed slot is usable again.
    let mut second: Vec<WebSocket<TcpStream>> = (0..19)
        .map(|_| ws_from(&server, LO2, None).expect("second address"))
        .collect();
    assert_eq!(
        ws_from(&server, LO3, None).err().as_deref(),
        Some("http 503")
    );
    for _ in 0..20 {
        assert_eq!(server.get("/healthz").map(|r| r.0), Some(200));
    }
    assert_eq!(
        server.get("/api/stats").map(|r| r.0),
        Some(503),
        "only /healthz is served beyond the limit"
    );
    drop(second.pop());
    let mut late = None;
    wait_for("a freed slot", Duration::from_secs(5), || {
        late = ws_from(&server, LO3, None).ok();
        late.is_some()
    });
    let mut late = Peer::new(late.unwrap());
    late.ok("join-room", json!({"roomId": "elsewhere"}));
    other.ok("leave-room", json!({}));
    for ws in hoard.iter_mut().chain(second.iter_mut()) {
        let _ = ws.close(None);
    }
}

#[test]
fn sockets_that_never_join_are_closed_with_1008_after_the_join_deadline() {
    let server = Server::start_with(&["--workers", "1", "--join-deadline-ms", "1000"]);
    let opened = Instant::now();
    let mut idle: Vec<Peer> = (0..5).map(|_| Peer::from(&server, LO1)).collect();
    let mut member = Peer::from(&server, LO1);
    member.ok("join-room", json!({"roomId": "deadline"}));
    for p in &mut idle {
        assert_eq!(p.until_closed(Duration::from_secs(6)), Some(1008));
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed before the deadline: {:?}",
        opened.elapsed()
    );
    // The joined socket outlives the deadline and still works; leaving restarts its clock.
    wait_for("idle sockets to be gone", Duration::from_secs(5), || {
        ws_count(&server) == 1
    });
    member.ok("leave-room", json!({}));
    assert_eq!(member.until_closed(Duration::from_secs(6)), Some(1008));
}

/// `sockets` clients each write `frame` (a pre-encoded masked WebSocket frame) as fast as
/// they can for up to `budget` without ever reading. Returns the server's peak RSS growth in
/// KiB and how many of the sockets the server closed meanwhile.
fn flood_without_reading(
    server: &Server,
    sockets: usize,
    frame: &[u8],
    budget: Duration,
) -> (u64, usize) {
    let before = server.rss_kib().expect("rss");
    let chunk: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 512)
        .collect();
    let mut conns: Vec<WebSocket<TcpStream>> = (0..sockets)
        .map(|_| {
            let tcp = tcp_from_with(LO1, server.port, Some(4096)).expect("connect");
            ws_over(server, tcp, None).expect("websocket")
        })
        .collect();
    for ws in &conns {
        ws.get_ref().set_nonblocking(true).unwrap();
    }
    let mut peak = before;
    let mut open = vec![true; sockets];
    let end = Instant::now() + budget;
    while Instant::now() < end && open.iter().any(|o| *o) {
        for (i, ws) in conns.iter_mut().enumerate() {
            if open[i] {
                match ws.get_mut().write(&chunk) {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => open[i] = false,
                }
            }
        }
        peak = peak.max(server.rss_kib().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(1));
    }
    let closed = open.iter().filter(|o| !**o).count();
    drop(conns);
    (peak.saturating_sub(before), closed)
}

/// A masked WebSocket text frame carrying one byte that is not JSON.
const BAD_FRAME: [u8; 7] = [0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1];

#[test]
fn clients_that_never_read_while_sending_bad_frames_are_closed_and_memory_stays_bounded() {
    let server = Server::start_with(&["--workers", "1"]);
    let before = server.rss_kib().unwrap();
    let (grew, closed) = flood_without_reading(&server, 100, &BAD_FRAME, Duration::from_secs(8));
    eprintln!("bad-frame flood: peak RSS growth {grew} KiB, {closed} of 100 closed by the server");
    assert!(grew < 64 * 1024, "RSS grew {grew} KiB");
    assert_eq!(closed, 100, "flooders the server did not close");
    // Every flooder was closed by the server (error notifications are limited, and the
    // abuse that follows closes the socket), and nothing of them is held.
    wait_for("flooders to be gone", Duration::from_secs(10), || {
        ws_count(&server) == 0
    });
    let after = server.rss_kib().unwrap();
    eprintln!("bad-frame flood: RSS {before} KiB before, {after} KiB after");
    let mut c = server.client();
    c.ok("join-room", json!({"roomId": "after-flood"}));
}

#[test]
fn a_client_that_never_reads_is_closed_at_its_output_limit_and_memory_is_released() {
    // Rate limits off, so only the output limits stand between the flood and memory.
    let limits = [
        "--max-ws-pending-out",
        "262144",
        "--max-pending-out-total",
        "16777216",
    ];
    let server = Server::start_with(&[&["--workers", "1"][..], &NO_RATE_LIMITS, &limits].concat());
    let before = server.rss_kib().unwrap();
    let (grew, closed) = flood_without_reading(&server, 100, &BAD_FRAME, Duration::from_secs(12));
    eprintln!("backlog flood: peak RSS growth {grew} KiB, {closed} of 100 closed by the server");
    assert!(grew < 64 * 1024, "RSS grew {grew} KiB");
    assert!(closed >= 50, "only {closed} of 100 non-readers were closed");
    wait_for("closed clients to be gone", Duration::from_secs(10), || {
        ws_count(&server) == 0
    });
    // Released: the queues are freed and handed back to the OS.
    let mut after = 0;
    wait_for("memory to be released", Duration::from_secs(5), || {
        after = server.rss_kib().unwrap();
        after < before + 12 * 1024
    });
    eprintln!("backlog flood: RSS {before} KiB before, {after} KiB after");
    let mut c = server.client();
    c.ok("join-room", json!({"roomId": "after-backlog"}));
}

#[test]
fn requests_beyond_the_burst_get_limit_and_continued_abuse_closes_the_socket() {
    let server = Server::start_with(&[
        "--workers",
        "1",
        // Slow enough that a descheduled server refills at most a token or two meanwhile.
        "--ws-request-rate",
        "0.5",
        "--ws-request-burst",
        "20",
    ]);
    let mut c = Peer::from(&server, LO1);
    c.ok("join-room", json!({"roomId": "rate"}));
    // 19 more fit in the burst; the rest of a pipelined batch is refused with `limit`.
    let ids: Vec<u32> = (0..40)
        .map(|_| c.send("pause-consumer", json!({"consumerId": "nope"})))
        .collect();
    let codes: Vec<String> = ids
        .iter()
        .map(|&id| {
            c.response(id)["error"]["code"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let limited = codes.iter().filter(|c| *c == "limit").count();
    assert!((19..=22).contains(&limited), "limited {limited}: {codes:?}");
    assert!(codes[..19].iter().all(|c| c == "not-found"), "{codes:?}");
    // Keeping on without a pause: closed with 1008 after 3 bursts of refusals.
    for _ in 0..80 {
        if c.ws
            .send(Message::text(
                r#"{"request":true,"id":9,"method":"pause-consumer","data":{"consumerId":"x"}}"#,
            ))
            .is_err()
        {
            break;
        }
    }
    assert_eq!(c.until_closed(Duration::from_secs(5)), Some(1008));
    // A well-behaved client of the same address is unaffected.
    let mut d = Peer::from(&server, LO1);
    d.ok("join-room", json!({"roomId": "rate"}));
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[test]
fn a_pause_resume_flood_is_coalesced_and_bystanders_in_another_room_stay_fast() {
    let server = Server::start_with(&[
        "--workers",
        "1",
        "--ws-request-rate",
        "10000000",
        "--ws-request-burst",
        "10000000",
    ]);
    let mut flooder = Peer::from(&server, LO1);
    flooder.ok("join-room", json!({"roomId": "flood"}));
    let t = flooder.ok("create-transport", json!({"direction": "send"}));
    let produced = flooder.ok(
        "produce",
        json!({"transportId": t["id"], "kind": "video", "rtpParameters": vp8_rtp_parameters(5000)}),
    );
    let pid = produced["producerId"].as_str().unwrap().to_string();
    // Peers of the flooded room that read nothing during the flood.
    let mut peers: Vec<Peer> = (0..19)
        .map(|_| {
            let mut p = Peer::from(&server, LO2);
            p.ok("join-room", json!({"roomId": "flood"}));
            p
        })
        .collect();
    let mut bystander = Peer::from(&server, LO3);
    bystander.ok("join-room", json!({"roomId": "calm"}));

    let flood_pid = pid.clone();
    let flood = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(4);
        let mut toggles = 0u64;
        let mut window = std::collections::VecDeque::new();
        while Instant::now() < end {
            while window.len() < 32 {
                let method = if toggles.is_multiple_of(2) {
                    "pause-producer"
                } else {
                    "resume-producer"
                };
                window.push_back(flooder.send(method, json!({"producerId": flood_pid})));
                toggles += 1;
            }
            let id = window.pop_front().unwrap();
            let r = flooder.response(id);
            assert_eq!(r["ok"], json!(true), "{r}");
        }
        for id in window {
            flooder.response(id);
        }
        // The final state: paused.
        flooder.ok("pause-producer", json!({"producerId": flood_pid}));
        (toggles, flooder)
    });
    let mut rtts = Vec::new();
    while !flood.is_finished() {
        let sent = Instant::now();
        let r = bystander.request("pause-consumer", json!({"consumerId": "nope"}));
        assert_eq!(r["error"]["code"], json!("not-found"), "{r}");
        rtts.push(sent.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    let (toggles, _flooder) = flood.join().unwrap();
    assert!(
        toggles > 1000,
        "the flood was too small to mean anything: {toggles}"
    );
    assert!(rtts.len() > 50, "too few bystander samples: {}", rtts.len());
    let p99 = p99(rtts.clone());
    eprintln!(
        "flood: {toggles} toggles; bystander p99 {p99:?} over {} requests",
        rtts.len()
    );
    assert!(
        p99 < Duration::from_millis(100),
        "bystander p99 {p99:?} ({} samples)",
        rtts.len()
    );

    // Each peer ends with the final state; a request answered by the worker after the last
    // pause fences the notifications before it.
    let mut delivered = 0usize;
    for p in &mut peers {
        p.ws.get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        p.request("pause-consumer", json!({"consumerId": "fence"}));
        let states: Vec<&Value> = p
            .notes
            .iter()
            .filter(|n| {
                n["data"]["producerId"] == json!(pid)
                    && matches!(
                        n["method"].as_str(),
                        Some("producer-paused" | "producer-resumed")
                    )
            })
            .collect();
        assert_eq!(
            states.last().map(|n| n["method"].clone()),
            Some(json!("producer-paused"))
        );
        delivered += states.len();
    }
    let sent = (toggles as usize + 1) * peers.len();
    eprintln!("flood: {delivered} of {sent} state notifications delivered");
    assert!(
        delivered * 2 < sent,
        "not coalesced: {delivered} of {sent} notifications delivered"
    );
}

#[test]
fn websocket_upgrades_from_a_foreign_origin_get_403() {
    let server =
        Server::start_with(&["--workers", "1", "--allowed-origins", "https://app.example"]);
    let host = format!("http://127.0.0.1:{}", server.port);
    assert_eq!(
        ws_from(&server, LO1, Some("http://evil.example"))
            .err()
            .as_deref(),
        Some("http 403")
    );
    assert_eq!(
        ws_from(&server, LO1, Some("null")).err().as_deref(),
        Some("http 403")
    );
    let mut no_origin = Peer::from(&server, LO1);
    no_origin.ok("join-room", json!({"roomId": "origin"}));
    let mut same = Peer::new(ws_from(&server, LO1, Some(&host)).expect("same-host origin"));
    same.ok("join-room", json!({"roomId": "origin"}));
    let mut listed =
        Peer::new(ws_from(&server, LO1, Some("https://app.example")).expect("listed origin"));
    listed.ok("join-room", json!({"roomId": "origin"}));
}

#[test]
fn a_content_length_that_is_not_plain_digits_gets_400() {
    let server = Server::start();
    for bad in ["+5", "-1", "5, 5"] {
        let req =
            format!("POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\nhello");
        assert_eq!(
            raw_status(&server, req.as_bytes()),
            400,
            "Content-Length: {bad}"
        );
    }
    let dup = b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    assert_eq!(raw_status(&server, dup), 400);
    let good = b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(raw_status(&server, good), 200);
}
