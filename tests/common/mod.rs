//! Starts the real `sfu` binary on free ports and speaks the protocol to it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Server {
    child: Child,
    pub port: u16,
    pub rtc_port: u16,
}

use sfu::testing::{free_tcp_port as free_port, free_udp_port};

impl Server {
    /// One worker (see [`Server::start_with`] for other settings).
    pub fn start() -> Server {
        Self::start_with(&["--workers", "1"])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_probing(extra, |server| {
            server.get("/healthz").map(|(s, _)| s) == Some(200)
        })
    }

    /// Like [`Server::start_with`], with another readiness check (a TLS server does not
    /// answer plain HTTP).
    pub fn start_probing(extra: &[&str], healthy: impl Fn(&Server) -> bool) -> Server {
        let port = free_port();
        let rtc_port = free_udp_port();
        let hls = std::env::temp_dir().join(format!("sfu-test-hls-{port}"));
        let child = Command::new(env!("CARGO_BIN_EXE_sfu"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--rtc-port",
                &rtc_port.to_string(),
                "--no-pin",
                "--web-root",
                "/nonexistent",
                "--hls-root",
                hls.to_str().unwrap(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sfu");
        let server = Server {
            child,
            port,
            rtc_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if healthy(&server) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy");
    }

    /// A plain HTTP/1.1 request; returns (status, body).
    pub fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        self.request_with(method, path, &[])
    }

    /// A request with extra header lines (`"Authorization: Bearer …"`); returns (status, body).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
    ) -> Option<(u16, String)> {
        use std::io::Write;
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Opens `/ws` with `?token=`; Err is the HTTP status of a refused upgrade.
    pub fn client_with_token(&self, token: &str) -> Result<Client, u16> {
        let url = format!("ws://127.0.0.1:{}/ws?token={token}", self.port);
        match tungstenite::connect(url) {
            Ok((ws, _)) => {
                if let MaybeTlsStream::Plain(s) = ws.get_ref() {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                }
                Ok(Client {
                    ws,
                    next_id: 1,
                    notifications: Vec::new(),
                })
            }
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path)
    }

    pub fn stats(&self) -> Value {
        serde_json::from_str(&self.get("/api/stats").expect("stats").1).expect("stats JSON")
    }

    /// Polls /api/stats until every live count is 0.
    pub fn wait_for_zero_counts(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats();
            let workers = s["workers"].as_array().cloned().unwrap_or_default();
            let zero = ["rooms", "peers", "transports", "producers", "consumers"]
                .iter()
                .all(|k| s[k] == json!(0))
                && workers
                    .iter()
                    .all(|w| w["roomReplicas"] == json!(0) && w["pipedProducers"] == json!(0));
            if zero {
                return;
            }
            assert!(Instant::now() < deadline, "counts did not return to 0: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn client(&self) -> Client {
        let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/ws", self.port))
            .expect("websocket connect");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        Client {
            ws,
            next_id: 1,
            notifications: Vec::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    pub notifications: Vec<Value>,
}

impl Client {
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// Next JSON frame from the server.
    pub fn next_frame(&mut self) -> Value {
        loop {
            match self.ws.read().expect("read") {
                Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    /// Sends a request and returns its response (notifications in between are kept).
    pub fn request(&mut self, method: &str, data: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(
            &json!({"request": true, "id": id, "method": method, "data": data}).to_string(),
        );
        loop {
            let f = self.next_frame();
            if f["response"] == json!(true) && f["id"] == json!(id) {
                return f;
            }
            self.notifications.push(f);
        }
    }

    pub fn ok(&mut self, method: &str, data: Value) -> Value {
        let r = self.request(method, data);
        assert_eq!(r["ok"], json!(true), "{method} failed: {r}");
        r["data"].clone()
    }

    pub fn error_code(&mut self, method: &str, data: Value) -> String {
        let r = self.request(method, data);
        assert_eq!(r["ok"], json!(false), "{method} should fail: {r}");
        r["error"]["code"].as_str().unwrap_or_default().to_string()
    }

    /// Waits for a notification `method` (already received or arriving).
    pub fn wait_notification(&mut self, method: &str) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == json!(method))
        {
            return self.notifications.remove(i);
        }
        loop {
            let f = self.next_frame();
            if f["notification"] == json!(true) && f["method"] == json!(method) {
                return f;
            }
            self.notifications.push(f);
        }
    }
}

/// RTP parameters as mediasoup-client in Chromium sends them for VP8 with RTX.
/// Request and error rate limits out of the way, so a test meets only the limit it is about.
pub const NO_RATE_LIMITS: [&str; 8] = [
    "--ws-request-rate",
    "10000000",
    "--ws-request-burst",
    "10000000",
    "--ws-error-rate",
    "10000000",
    "--ws-error-burst",
    "10000000",
];

pub fn vp8_rtp_parameters(ssrc: u32) -> Value {
    json!({
        "mid": "0",
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""},
                              {"type": "ccm", "parameter": "fir"}, {"type": "nack", "parameter": ""},
                              {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}},
            {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {}},
            {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}}
        ],
        "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": ssrc + 1}}],
        "rtcp": {"cname": "test", "reducedSize": true}
    })
}

impl Server {
    /// The server process's id (for reading its /proc entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB (VmRSS), if /proc has it.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Server {
    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// The exit status, once the process has exited within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
