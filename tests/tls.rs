//! Built-in TLS (`--tls-cert/--tls-key`): HTTPS and WSS on the listen port with a
//! self-signed certificate made here, plain HTTP and hostile TLS clients that affect only
//! their own connection, and the start-up errors for bad files.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, NO_RATE_LIMITS};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A self-signed certificate for localhost / 127.0.0.1 in its own folder.
struct TestCert {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<ClientConfig>,
}

impl TestCert {
    fn new(name: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!("sfu-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        TestCert {
            dir,
            cert: cert_path,
            key: key_path,
            client: Arc::new(client),
        }
    }

    fn connect(&self, port: u16) -> std::io::Result<Tls> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
        let conn = ClientConnection::new(
            self.client.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .map_err(std::io::Error::other)?;
        Ok(StreamOwned::new(conn, tcp))
    }

    /// GET over HTTPS; (status, body).
    fn get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let mut s = self.connect(port).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = Vec::new();
        // The server ends with close_notify; tolerate a bare FIN after the body anyway.
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    fn start_server(&self) -> Server {
        let (cert, key) = (self.cert.to_str().unwrap(), self.key.to_str().unwrap());
        Server::start_probing(
            &["--workers", "1", "--tls-cert", cert, "--tls-key", key],
            |server| self.get(server.port, "/healthz").map(|(s, _)| s) == Some(200),
        )
    }

    /// Opens `wss://localhost:port/ws` (with a browser's `Origin`) and joins `room`.
    fn join(&self, port: u16, room: &str) -> Value {
        let stream = self.connect(port).expect("tls connect");
        let mut req = format!("wss://localhost:{port}/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Origin",
            format!("https://localhost:{port}").parse().unwrap(),
        );
        let (mut ws, resp) = tungstenite::client(req, stream).expect("wss handshake");
        assert_eq!(resp.status(), 101);
        let join = json!({"request": true, "id": 1, "method": "join-room",
                          "data": {"roomId": room, "displayName": "tls"}});
        ws.send(Message::text(join.to_string())).unwrap();
        loop {
            match ws.read().expect("wss read") {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["response"] == json!(true) && v["id"] == json!(1) {
                        let _ = ws.close(None);
                        return v;
                    }
                }
                Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn https_and_wss_serve_on_the_listen_port() {
    let cert = TestCert::new("serve");
    let server = cert.start_server();
    let (status, body) = cert.get(server.port, "/healthz").expect("https healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let joined = cert.join(server.port, "tls-room");
    assert_eq!(joined["ok"], json!(true), "{joined}");
    // A foreign https origin is still refused at the upgrade.
    let stream = cert.connect(server.port).unwrap();
    let mut req = format!("wss://localhost:{}/ws", server.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    assert!(tungstenite::client(req, stream).is_err());
}

#[test]
fn plain_http_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving() {
    let cert = TestCert::new("plain");
    let server = cert.start_server();
    for _ in 0..3 {
        let (status, body) = server.get("/healthz").expect("an answer, not a hang");
        assert_eq!(status, 400);
        assert!(body.contains("https://"), "{body}");
    }
    // A plain WebSocket client gets no WebSocket.
    assert!(tungstenite::connect(format!("ws://127.0.0.1:{}/ws", server.port)).is_err());
    assert_eq!(cert.get(server.port, "/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(cert.join(server.port, "after-plain")["ok"], json!(true));
}

/// Bytes that start like a TLS record but are not one, and a ClientHello cut short.
fn hostile_clients(port: u16) -> Vec<TcpStream> {
    let mut socks = Vec::new();
    for i in 0..40u32 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        match i % 4 {
            0 => {} // opens and stalls before the handshake
            1 => {
                // a record header announcing 16 KiB, then a few bytes, then nothing
                s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00])
                    .unwrap();
            }
            2 => {
                // garbage after a handshake content type
                let junk: Vec<u8> = (0..512u32).map(|b| (b * 7 + i) as u8).collect();
                s.write_all(&[0x16, 0x03, 0x03, 0x02, 0x00]).unwrap();
                s.write_all(&junk).unwrap();
            }
            _ => {
                // pure noise
                s.write_all(&[0xff; 300]).unwrap();
            }
        }
        socks.push(s);
    }
    socks
}

#[test]
fn garbage_and_stalled_handshakes_do_not_stop_other_clients() {
    let cert = TestCert::new("hostile");
    let server = cert.start_server();
    let mut socks = hostile_clients(server.port);
    let start = Instant::now();
    for round in 0..3 {
        let (status, _) = cert.get(server.port, "/healthz").expect("healthz");
        assert_eq!(status, 200, "round {round}");
        let joined = cert.join(server.port, &format!("hostile-{round}"));
        assert_eq!(joined["ok"], json!(true), "{joined}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "others were slowed"
    );
    // The garbage ones are closed by the server (EOF or reset), not left open.
    for (i, s) in socks.iter_mut().enumerate().filter(|(i, _)| i % 4 == 2) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue, // an alert first
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false
                }
                Err(_) => break true, // reset
            }
        };
        assert!(closed, "garbage client {i} still open");
    }
    drop(socks);
    assert_eq!(cert.get(server.port, "/healthz").map(|(s, _)| s), Some(200));
}

fn start_error(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--no-pin"])
        .args(args)
        .output()
        .expect("run sfu");
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bad_certificate_files_are_start_up_errors_that_name_the_problem() {
    let a = TestCert::new("err-a");
    let b = TestCert::new("err-b");
    let err = start_error(&["--tls-cert", path(&a.cert), "--tls-key", path(&b.key)]);
    assert!(
        err.contains("does not match") && err.contains(path(&b.key)),
        "{err}"
    );
    let missing = a.dir.join("missing.pem");
    let err = start_error(&["--tls-cert", path(&a.cert), "--tls-key", path(&missing)]);
    assert!(
        err.contains("cannot read TLS key file") && err.contains(path(&missing)),
        "{err}"
    );
    let empty = a.dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = start_error(&["--tls-cert", path(&empty), "--tls-key", path(&a.key)]);
    assert!(
        err.contains("no PEM certificate") && err.contains(path(&empty)),
        "{err}"
    );
    let err = start_error(&["--tls-cert", path(&a.cert), "--tls-key", path(&empty)]);
    assert!(err.contains("no PEM private key"), "{err}");
    let err = start_error(&["--tls-cert", path(&a.cert)]);
    assert!(err.contains("tls_key is not"), "{err}");
}

/// A masked WebSocket text frame carrying one byte that is not JSON (answered with an
/// `error` notification).
const BAD_FRAME: [u8; 7] = [0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1];

#[test]
fn a_wss_client_that_never_reads_is_closed_at_its_output_limit() {
    let cert = TestCert::new("noread");
    let (c, k) = (path(&cert.cert).to_string(), path(&cert.key).to_string());
    // Rate limits off: only the output limit stands between the flood and memory (the server
    // logs "closing a client that does not read"; with the limits on, the rate limiter
    // would close it first).
    let server = Server::start_probing(
        &[
            &[
                "--workers",
                "1",
                "--tls-cert",
                &c,
                "--tls-key",
                &k,
                "--max-ws-pending-out",
                "262144",
            ][..],
            &NO_RATE_LIMITS,
        ]
        .concat(),
        |s| cert.get(s.port, "/healthz").map(|(s, _)| s) == Some(200),
    );
    let connections = || {
        let (_, body) = cert.get(server.port, "/api/stats").expect("stats");
        serde_json::from_str::<Value>(&body).unwrap()["connections"]
            .as_u64()
            .unwrap()
    };
    let stream = cert.connect(server.port).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("wss://localhost:{}/ws", server.port), stream).unwrap();
    assert_eq!(connections(), 1, "the WSS client is open");
    let chunk: Vec<u8> = BAD_FRAME.iter().copied().cycle().take(7 * 1024).collect();
    // 300 000 bad frames: ~30 MB of answers, far beyond the socket buffers and the limit.
    let end = Instant::now() + Duration::from_secs(20);
    let mut written = 0;
    for _ in 0..300 {
        if ws.get_mut().write_all(&chunk).is_err() || Instant::now() > end {
            break; // the server closed us
        }
        written += 1;
    }
    eprintln!("non-reader wrote {written} of 300 chunks");
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections() > 0 {
        assert!(Instant::now() < deadline, "the non-reader was not closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(ws);
    assert_eq!(cert.join(server.port, "after-noread")["ok"], json!(true));
}
