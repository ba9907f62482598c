//! A blocking client for the signaling WebSocket (protocol.md): requests in order, notifications
//! kept aside (and dropped: the load generator does not need them).

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Signaling {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u32,
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

impl Signaling {
    pub fn connect(url: &str) -> Result<Self, String> {
        let (ws, _) =
            tungstenite::connect(ws_url(url)).map_err(|e| format!("connect {url}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
        }
        Ok(Self { ws, next_id: 1 })
    }

    /// Sends a request and returns its `data`, or the error the server answered.
    pub fn request(&mut self, method: &str, data: Value) -> Result<Value, String> {
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
            if frame["response"] != json!(true) || frame["id"] != json!(id) {
                continue;
            }
            if frame["ok"] == json!(true) {
                return Ok(frame["data"].clone());
            }
            return Err(format!("{method} failed: {}", frame["error"]));
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
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
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
}
