//! A blocking client for the signaling WebSocket (protocol.md): requests in order; of the
//! notifications only `consumer-layers-changed` is kept (the layer each consumer receives).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Signaling {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    /// The spatial layer each consumer of this peer was last told it receives (`None`: the
    /// server said null, e.g. no layer at all).
    pub layers: HashMap<String, Option<u8>>,
    /// `consumer-layers-changed` notifications received.
    pub layer_changes: u64,
}

/// `ws://host:port/ws` from either that or `http://host:port[/...]`.
pub fn ws_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split('/').next().unwrap_or(rest);
        format!("ws://{host}/ws")
    } else {
        url.to_owned()
    }
}

/// `host:port` of the server's HTTP side, for `/api/stats`.
pub fn http_host(url: &str) -> String {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

const LAYERS_CHANGED: &str = "consumer-layers-changed";

/// `moved` answers followed in a row before a join gives up.
const MAX_MOVES: usize = 3;

/// Sockets per loopback source address: the server limits connections per IP
/// (`--max-connections-per-ip`, default 256), and a load test opens up to ~1,500.
const SOCKETS_PER_SOURCE: usize = 200;
/// Connections opened so far by this process (picks the next source address).
static OPENED: AtomicUsize = AtomicUsize::new(0);

/// The source address for the `i`-th connection to `target`: 127.0.0.N with N = 1 + i / 200
/// when the target is IPv4 loopback (all of 127/8 is local on Linux), else the kernel's choice.
fn source_for(target: &SocketAddr, i: usize) -> Option<Ipv4Addr> {
    match target {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {
            let n = 1 + (i / SOCKETS_PER_SOURCE) % 254;
            Some(Ipv4Addr::new(127, 0, 0, n as u8))
        }
        _ => None,
    }
}

/// A TCP connection to `target`, bound to `source` first if given.
fn tcp_connect(target: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (Some(source), SocketAddr::V4(target)) = (source, target) else {
        return TcpStream::connect(target);
    };
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; the addresses are valid
    // sockaddr_in values that outlive the calls, and the fd is closed on every error path
    // or handed to TcpStream, which owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(source, 0));
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(target);
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

impl Signaling {
    pub fn connect(url: &str) -> Result<Self, String> {
        let url = ws_url(url);
        let host = http_host(&url);
        let target = host
            .to_socket_addrs()
            .map_err(|e| format!("resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {host}: no address"))?;
        let source = source_for(&target, OPENED.fetch_add(1, Ordering::Relaxed));
        let stream = tcp_connect(target, source).map_err(|e| format!("connect {url}: {e}"))?;
        let (ws, _) = tungstenite::client(url.as_str(), MaybeTlsStream::Plain(stream))
            .map_err(|e| format!("connect {url}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
        }
        Ok(Self {
            ws,
            next_id: 1,
            layers: HashMap::new(),
            layer_changes: 0,
        })
    }

    /// Connects through `url` and joins `room`, following `moved` (a cluster's answer for a
    /// room on another node) to the room's node. Returns the socket, the join-room answer and
    /// how many times it was moved.
    pub fn join(url: &str, room: &str, name: &str) -> Result<(Self, Value, usize), String> {
        let mut url = url.to_owned();
        for moves in 0..=MAX_MOVES {
            let mut sig = Self::connect(&url)?;
            match sig.exchange("join-room", json!({"roomId": room, "displayName": name}))? {
                Ok(joined) => return Ok((sig, joined, moves)),
                Err(e) if e["code"] == "moved" => {
                    url = e["url"]
                        .as_str()
                        .ok_or_else(|| format!("join-room: moved without a url: {e}"))?
                        .to_owned();
                    let _ = sig.ws.close(None);
                    let _ = sig.ws.flush();
                }
                Err(e) => return Err(format!("join-room failed: {e}")),
            }
        }
        Err(format!("join-room: moved more than {MAX_MOVES} times"))
    }

    /// Sends a request and returns its `data`, or the error the server answered.
    pub fn request(&mut self, method: &str, data: Value) -> Result<Value, String> {
        self.exchange(method, data)?
            .map_err(|e| format!("{method} failed: {e}"))
    }

    /// Sends a request; the outer error is the socket's, the inner one the server's `error`.
    fn exchange(&mut self, method: &str, data: Value) -> Result<Result<Value, Value>, String> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"request": true, "id": id, "method": method, "data": data});
        self.ws
            .send(Message::text(frame.to_string()))
            .map_err(|e| format!("{method}: send: {e}"))?;
        loop {
            let msg = self.ws.read().map_err(|e| format!("{method}: read: {e}"))?;
            let Message::Text(text) = msg else { continue };
            let frame: Value =
                serde_json::from_str(&text).map_err(|e| format!("{method}: bad JSON: {e}"))?;
            if frame["notification"] == json!(true) {
                self.note(&frame);
                continue;
            }
            if frame["response"] != json!(true) || frame["id"] != json!(id) {
                continue;
            }
            if frame["ok"] == json!(true) {
                return Ok(Ok(frame["data"].clone()));
            }
            return Ok(Err(frame["error"].clone()));
        }
    }

    /// Switches to non-blocking reads; [`Self::drain`] then discards pending notifications so
    /// the server's send buffers for this socket never fill up during a run.
    pub fn set_nonblocking(&mut self) {
        if let MaybeTlsStream::Plain(s) = self.ws.get_ref() {
            let _ = s.set_nonblocking(true);
        }
    }

    pub fn drain(&mut self) {
        loop {
            match self.ws.read() {
                // Parsed only when it may be one the load generator keeps.
                Ok(Message::Text(text)) if text.contains(LAYERS_CHANGED) => {
                    if let Ok(frame) = serde_json::from_str::<Value>(&text) {
                        self.note(&frame);
                    }
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    /// Keeps what a notification says about this peer's consumers' layers.
    fn note(&mut self, frame: &Value) {
        if frame["method"] != LAYERS_CHANGED {
            return;
        }
        let data = &frame["data"];
        if let Some(id) = data["consumerId"].as_str() {
            let layer = data["spatialLayer"]
                .as_u64()
                .and_then(|l| u8::try_from(l).ok());
            self.layers.insert(id.to_owned(), layer);
            self.layer_changes += 1;
        }
    }

    pub fn close(mut self) {
        if let MaybeTlsStream::Plain(s) = self.ws.get_ref() {
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        }
        let _ = self.request("leave-room", json!({}));
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// One blocking HTTP GET; returns the body.
pub fn http_get(host: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("bad HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_ws_urls_both_lead_to_the_websocket_and_the_http_host() {
        assert_eq!(ws_url("http://127.0.0.1:8100"), "ws://127.0.0.1:8100/ws");
        assert_eq!(ws_url("http://h:1/x"), "ws://h:1/ws");
        assert_eq!(ws_url("ws://h:2/ws"), "ws://h:2/ws");
        assert_eq!(http_host("ws://h:2/ws"), "h:2");
        assert_eq!(http_host("http://h:3"), "h:3");
    }

    #[test]
    fn loopback_targets_get_a_new_source_address_every_200_sockets() {
        let lo: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(source_for(&lo, 0), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(&lo, 199), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(&lo, 200), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(&lo, 1499), Some(Ipv4Addr::new(127, 0, 0, 8)));
        let remote: SocketAddr = "10.0.0.1:8000".parse().unwrap();
        assert_eq!(source_for(&remote, 500), None);
    }

    #[test]
    fn a_connection_from_a_second_loopback_address_reaches_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let _client = tcp_connect(target, Some(Ipv4Addr::new(127, 0, 0, 2))).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
    }
}
