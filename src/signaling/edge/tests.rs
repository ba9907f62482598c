//! Each test starts a real edge on an ephemeral port and talks to it over TCP.

use super::ws::{KeepaliveDue, Liveness};
use super::*;
use std::io::Write;
use std::net::TcpStream as StdTcpStream;
use std::sync::Mutex;
use std::thread::JoinHandle;
use tungstenite::{Error as WsError, Message, WebSocket};

#[derive(Default)]
struct Shared {
    open: Vec<ConnId>,
    closed: Vec<ConnId>,
    to_send_on_wake: Vec<String>,
    /// The token identity of each opened WebSocket (access on).
    identities: Vec<String>,
}

struct TestHandler(Arc<Mutex<Shared>>);

impl EdgeHandler for TestHandler {
    fn http(&mut self, req: &HttpRequest, _out: &mut EdgeOut) -> Option<HttpResponse> {
        match req.path.as_str() {
            "/api/echo" => Some(HttpResponse::json(
                200,
                &serde_json::json!({ "query": req.query }),
            )),
            "/healthz" => Some(HttpResponse::text(200, "ok")),
            _ => None,
        }
    }
    fn ws_open(
        &mut self,
        conn: ConnId,
        _peer: SocketAddr,
        claims: Option<Claims>,
        _out: &mut EdgeOut,
    ) {
        let mut shared = self.0.lock().unwrap();
        shared.open.push(conn);
        shared.identities.extend(claims.map(|c| c.identity));
    }
    fn ws_text(&mut self, conn: ConnId, text: &str, out: &mut EdgeOut) {
        out.send_text(conn, text.to_string());
    }
    fn ws_closed(&mut self, conn: ConnId, _out: &mut EdgeOut) {
        let mut shared = self.0.lock().unwrap();
        shared.open.retain(|c| *c != conn);
        shared.closed.push(conn);
    }
    fn wake(&mut self, out: &mut EdgeOut) {
        let mut shared = self.0.lock().unwrap();
        let texts = std::mem::take(&mut shared.to_send_on_wake);
        for conn in shared.open.clone() {
            for text in &texts {
                out.send_text(conn, text.clone());
            }
        }
    }
}

use crate::test_util::TempDir;

struct Running {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    waker: Arc<Waker>,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    _root: TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
    }
}

fn start() -> Running {
    start_with(WsKeepalive::default())
}

fn start_with(keepalive: WsKeepalive) -> Running {
    let root = TempDir::new("edge");
    root.write("web/index.html", "<h1>home</h1>");
    root.write("web/app.js", "console.log(1)");
    root.write("web/stream/_/index.html", "room page");
    root.write("hls/room1/index.m3u8", "#EXTM3U");
    let cfg = EdgeConfig {
        web_root: Some(root.0.join("web")),
        hls_root: root.0.join("hls"),
        ..EdgeConfig::default()
    };
    let edge = Edge::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .unwrap()
        .with_keepalive(keepalive);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut handler = TestHandler(shared.clone());
    let (addr, waker, shutdown) = (edge.local_addr(), edge.waker(), edge.shutdown_handle());
    let thread = std::thread::spawn(move || edge.run(&mut handler));
    Running {
        addr,
        shared,
        waker,
        shutdown,
        thread: Some(thread),
        _root: root,
    }
}

fn connect(addr: SocketAddr) -> StdTcpStream {
    let stream = StdTcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Reads up to and including the blank line, one byte at a time so nothing after it is lost.
fn read_head(stream: &mut StdTcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert_eq!(n, 1, "connection closed before the response head ended");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads exactly one response (head, then Content-Length bytes).
fn read_response(stream: &mut StdTcpStream) -> Response {
    let head = read_head(stream);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp.header("content-length").unwrap().parse().unwrap();
    resp.body = vec![0; len];
    stream.read_exact(&mut resp.body).unwrap();
    resp
}

fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut stream)
}

fn ws_connect(addr: SocketAddr) -> WebSocket<StdTcpStream> {
    let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), connect(addr)).unwrap();
    ws
}

fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_text(ws: &mut WebSocket<StdTcpStream>) -> String {
    match ws.read().unwrap() {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn a_static_file_is_served_with_its_content_type_and_the_api_reaches_the_handler() {
    let server = start();
    let js = get(server.addr, "/app.js");
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(js.text(), "console.log(1)");
    let home = get(server.addr, "/");
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(home.text(), "<h1>home</h1>");
    let echo = get(server.addr, "/api/echo?x=1");
    assert_eq!(echo.header("content-type"), Some("application/json"));
    assert_eq!(echo.text(), r#"{"query":"x=1"}"#);
    assert_eq!(get(server.addr, "/hls/room1/index.m3u8").text(), "#EXTM3U");
}

#[test]
fn a_stream_room_path_serves_the_placeholder_room_page() {
    let server = start();
    let page = get(server.addr, "/stream/abc-1");
    assert_eq!((page.status, page.text()), (200, "room page"));
}

#[test]
fn traversal_attempts_get_404() {
    let server = start();
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/x",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/hls/..%2f..%2fetc/passwd",
        "/hls/bad%20id/x.m3u8",
        "/..%5c..%5cCargo.toml",
        "/%ff",
    ] {
        assert_eq!(get(server.addr, path).status, 404, "{path}");
    }
}

#[test]
fn head_answers_headers_with_the_content_length_but_no_body() {
    let server = start();
    let mut stream = connect(server.addr);
    stream
        .write_all(b"HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\nGET /app.js HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Content-Length: 14\r\n"));
    // The next bytes are the pipelined GET's response, not a body.
    assert_eq!(read_response(&mut stream).text(), "console.log(1)");
}

#[test]
fn an_oversize_request_head_gets_431_and_the_server_keeps_serving() {
    let server = start();
    let mut stream = connect(server.addr);
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&req).unwrap();
    let status = read_response(&mut stream).status;
    assert!(status == 431 || status == 400, "{status}");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert_eq!(get(server.addr, "/").status, 200);
}

#[test]
fn an_oversize_body_gets_413() {
    let server = start();
    let mut stream = connect(server.addr);
    write!(
        stream,
        "POST /api/echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut stream).status, 413);
}

#[test]
fn keep_alive_serves_two_requests_on_one_socket() {
    let server = start();
    let mut stream = connect(server.addr);
    for _ in 0..2 {
        write!(stream, "GET /api/echo?a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let resp = read_response(&mut stream);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn websocket_text_is_echoed() {
    let server = start();
    let mut ws = ws_connect(server.addr);
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(read_text(&mut ws), "hello");
    ws.send(Message::binary(b"bin".to_vec())).unwrap();
    assert_eq!(read_text(&mut ws), "bin");
}

#[test]
fn a_70_kib_frame_gets_close_code_1009_and_the_server_serves_another_client() {
    let server = start();
    let mut ws = ws_connect(server.addr);
    ws.send(Message::text("a".repeat(70 * 1024))).unwrap();
    let code = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(err) => panic!("expected a close frame, got {err}"),
        }
    };
    assert_eq!(code, Some(1009));
    wait_until(|| server.shared.lock().unwrap().closed.len() == 1);
    let mut other = ws_connect(server.addr);
    other.send(Message::text("still here")).unwrap();
    assert_eq!(read_text(&mut other), "still here");
}

#[test]
fn a_waker_triggered_send_reaches_the_client() {
    let server = start();
    let mut ws = ws_connect(server.addr);
    wait_until(|| server.shared.lock().unwrap().open.len() == 1);
    server
        .shared
        .lock()
        .unwrap()
        .to_send_on_wake
        .push("from a worker".into());
    server.waker.wake().unwrap();
    assert_eq!(read_text(&mut ws), "from a worker");
}

#[test]
fn ws_closed_is_called_exactly_once_when_the_client_drops_or_closes() {
    let server = start();
    let mut dropped = ws_connect(server.addr);
    dropped.send(Message::text("x")).unwrap();
    assert_eq!(read_text(&mut dropped), "x");
    drop(dropped);
    wait_until(|| server.shared.lock().unwrap().closed.len() == 1);

    let mut polite = ws_connect(server.addr);
    polite.close(None).unwrap();
    loop {
        match polite.read() {
            Ok(_) => {}
            Err(WsError::ConnectionClosed) => break,
            Err(err) => panic!("unexpected {err}"),
        }
    }
    wait_until(|| server.shared.lock().unwrap().closed.len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    let shared = server.shared.lock().unwrap();
    assert_eq!(shared.closed.len(), 2);
    assert!(shared.open.is_empty());
    assert_ne!(shared.closed[0], shared.closed[1]);
}

#[test]
fn a_client_that_never_reads_is_closed_once_its_backlog_passes_the_cap() {
    let server = start();
    let ws = ws_connect(server.addr);
    wait_until(|| server.shared.lock().unwrap().open.len() == 1);
    let chunk = "z".repeat(60 * 1024);
    for _ in 0..300 {
        server
            .shared
            .lock()
            .unwrap()
            .to_send_on_wake
            .push(chunk.clone());
    }
    server.waker.wake().unwrap();
    wait_until(|| server.shared.lock().unwrap().closed.len() == 1);
    drop(ws);
}

#[test]
fn connections_beyond_max_connections_are_refused() {
    let root = TempDir::new("edge");
    let cfg = EdgeConfig {
        hls_root: root.0.clone(),
        max_connections: 1,
        // Without the /healthz reserve, a connection beyond the limit is dropped at once.
        healthz_reserve: 0,
        ..EdgeConfig::default()
    };
    let edge = Edge::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    let (addr, shutdown) = (edge.local_addr(), edge.shutdown_handle());
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut handler = TestHandler(shared);
    let thread = std::thread::spawn(move || edge.run(&mut handler));
    let mut first = connect(addr);
    write!(first, "GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_response(&mut first).text().contains("make run"));
    let mut second = connect(addr);
    let _ = write!(second, "GET / HTTP/1.1\r\n\r\n");
    let mut buf = [0u8; 16];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    shutdown.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn beyond_the_per_ip_limit_only_healthz_is_answered_and_the_connection_closes_after_it() {
    let root = TempDir::new("edge");
    let cfg = EdgeConfig {
        hls_root: root.0.clone(),
        max_connections_per_ip: 1,
        healthz_reserve: 2,
        ..EdgeConfig::default()
    };
    let edge = Edge::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    let (addr, shutdown) = (edge.local_addr(), edge.shutdown_handle());
    let mut handler = TestHandler(Arc::new(Mutex::new(Shared::default())));
    let thread = std::thread::spawn(move || edge.run(&mut handler));
    let mut first = connect(addr);
    write!(first, "GET /api/echo HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut first).status, 200);
    let mut second = connect(addr);
    write!(second, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let resp = read_response(&mut second);
    assert_eq!((resp.status, resp.text()), (200, "ok"));
    let mut buf = [0u8; 16];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    let mut third = connect(addr);
    write!(third, "GET /api/echo HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut third).status, 503);
    // The first connection keeps its slot and its keep-alive.
    write!(first, "GET /api/echo HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut first).status, 200);
    shutdown.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn garbage_bytes_get_400() {
    let server = start();
    let mut stream = connect(server.addr);
    stream.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).status, 400);
    assert_eq!(get(server.addr, "/").status, 200);
}

/// Short enough that the keepalive tests take about a second.
const FAST_KEEPALIVE: WsKeepalive = WsKeepalive {
    ping_after: Duration::from_millis(200),
    close_after: Duration::from_millis(600),
};

#[test]
fn liveness_pings_after_silence_repeats_each_interval_and_closes_after_the_idle_timeout() {
    let ka = WsKeepalive::default();
    let t0 = Instant::now();
    let mut live = Liveness::new(t0);
    assert_eq!(live.due(t0 + Duration::from_secs(19), &ka), None);
    assert_eq!(live.due(t0 + WS_PING_AFTER, &ka), Some(KeepaliveDue::Ping));
    live.last_ping = t0 + WS_PING_AFTER;
    assert_eq!(live.due(t0 + Duration::from_secs(39), &ka), None);
    assert_eq!(
        live.due(t0 + Duration::from_secs(40), &ka),
        Some(KeepaliveDue::Ping)
    );
    assert_eq!(
        live.due(t0 + WS_IDLE_TIMEOUT, &ka),
        Some(KeepaliveDue::Close)
    );
    // Anything received restarts both clocks.
    live.last_received = t0 + Duration::from_secs(59);
    assert_eq!(live.due(t0 + Duration::from_secs(78), &ka), None);
    assert_eq!(
        live.due(t0 + Duration::from_secs(79), &ka),
        Some(KeepaliveDue::Ping)
    );
}

#[test]
fn a_client_that_answers_pings_stays_open_past_the_idle_timeout() {
    let server = start_with(FAST_KEEPALIVE);
    let mut ws = ws_connect(server.addr);
    let start = Instant::now();
    // Four pings span at least 800 ms, past the 600 ms idle timeout. Each read() also
    // flushes the Pong tungstenite queued for the previous Ping.
    let mut pings = 0;
    while pings < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting"
        );
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    assert!(start.elapsed() > FAST_KEEPALIVE.close_after);
    ws.send(Message::text("still here")).unwrap();
    let echoed = loop {
        match ws.read() {
            Ok(Message::Ping(_)) => {}
            Ok(Message::Text(text)) => break text.to_string(),
            other => panic!("expected the echo, got {other:?}"),
        }
    };
    assert_eq!(echoed, "still here");
    assert!(server.shared.lock().unwrap().closed.is_empty());
}

#[test]
fn a_client_that_never_answers_pings_is_closed_with_1001_and_ws_closed_is_called_once() {
    let server = start_with(FAST_KEEPALIVE);
    let mut raw = connect(server.addr);
    write!(
        raw,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    assert!(read_head(&mut raw).starts_with("HTTP/1.1 101 "));
    wait_until(|| server.shared.lock().unwrap().open.len() == 1);
    let id = server.shared.lock().unwrap().open[0];

    wait_until(|| server.shared.lock().unwrap().closed.len() == 1);
    // Only now read what the edge sent: Pings, then the Close frame, then EOF.
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).unwrap();
    let mut opcodes = Vec::new();
    let mut close_code = None;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        // Server frames are unmasked; control frames carry at most 125 bytes.
        let (opcode, len) = (rest[0] & 0x0f, usize::from(rest[1] & 0x7f));
        let payload = &rest[2..2 + len];
        if opcode == 0x8 {
            close_code = Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        opcodes.push(opcode);
        rest = &rest[2 + len..];
    }
    let (last, pings) = opcodes.split_last().unwrap();
    assert!(
        !pings.is_empty() && pings.iter().all(|&op| op == 0x9),
        "{opcodes:?}"
    );
    assert_eq!((*last, close_code), (0x8, Some(1001)));

    // Once the edge has stopped, the handler has seen every call it will ever get.
    let shared = server.shared.clone();
    drop(server);
    let shared = shared.lock().unwrap();
    assert_eq!(shared.closed, vec![id]);
    assert!(shared.open.is_empty());
}

#[test]
fn with_access_on_upgrades_api_and_hls_need_tokens_and_playlists_carry_theirs_on() {
    use crate::signaling::access::{Access, Grants, TokenSpec};
    let root = TempDir::new("edge");
    root.write(
        "hls/room1/index.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg-1.ts\n#EXTINF:1.0,\nseg-2.ts\n",
    );
    root.write("hls/room1/seg-1.ts", "ts");
    let access = Arc::new(Access::new("edge-secret"));
    let cfg = EdgeConfig {
        hls_root: root.0.join("hls"),
        access: Some(access.clone()),
        ..EdgeConfig::default()
    };
    let edge = Edge::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    let (addr, shutdown) = (edge.local_addr(), edge.shutdown_handle());
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut handler = TestHandler(shared.clone());
    let thread = std::thread::spawn(move || edge.run(&mut handler));
    let sign = |room: &str, grants: Grants| {
        access.sign(&TokenSpec {
            room: room.into(),
            identity: "viewer".into(),
            name: None,
            ttl_secs: 60,
            grants,
        })
    };
    let viewer = sign("room1", Grants::default());
    let get = |target: &str, header: &str| {
        let mut s = connect(addr);
        write!(s, "GET {target} HTTP/1.1\r\n{header}\r\n").unwrap();
        read_response(&mut s)
    };

    let playlist = get(&format!("/hls/room1/index.m3u8?token={viewer}"), "");
    assert_eq!(playlist.status, 200);
    let uris: Vec<&str> = playlist
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        uris,
        [
            format!("seg-1.ts?token={viewer}"),
            format!("seg-2.ts?token={viewer}")
        ]
    );
    assert_eq!(get(&format!("/hls/room1/{}", uris[0]), "").status, 200);
    assert_eq!(get("/hls/room1/seg-1.ts", "").status, 401);
    let other = sign("room2", Grants::default());
    assert_eq!(
        get(&format!("/hls/room1/index.m3u8?token={other}"), "").status,
        403
    );

    // The API: a valid admin token passes to the handler, others stop at the edge.
    let admin = sign(
        "*",
        Grants {
            admin: true,
            ..Grants::default()
        },
    );
    let api = |token: &str| get("/api/echo", &format!("Authorization: Bearer {token}\r\n")).status;
    assert_eq!((api(&admin), api(&viewer), api("junk")), (200, 403, 401));
    assert_eq!(get("/api/echo", "").status, 401);
    assert_eq!(get("/healthz", "").status, 200);

    // The upgrade: refused before a WebSocket exists, accepted with the claims handed over.
    let refused = tungstenite::connect(format!("ws://{addr}/ws?token=junk"));
    assert!(matches!(refused, Err(tungstenite::Error::Http(r)) if r.status() == 401));
    assert!(shared.lock().unwrap().open.is_empty());
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/ws?token={viewer}")).unwrap();
    wait_until(|| shared.lock().unwrap().open.len() == 1);
    assert_eq!(shared.lock().unwrap().identities, ["viewer"]);
    drop(ws);
    shutdown.shutdown();
    thread.join().unwrap().unwrap();
}
