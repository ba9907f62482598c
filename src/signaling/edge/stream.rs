//! The byte stream under the HTTP and WebSocket code: the socket itself, or TLS over it.
//!
//! With TLS each connection has a `rustls::ServerConnection`. Reading pulls ciphertext from
//! the non-blocking socket into it and hands plaintext to the parsers; writing puts
//! plaintext into it and pushes ciphertext to the socket. Both behave like the socket: they
//! return `WouldBlock` when the socket does, so the edge's edge-triggered loop, its output
//! limits and its deadlines work unchanged. The handshake happens inside the first reads
//! and is bounded by the connection's HTTP deadline like a slow request; a handshake error
//! (garbage, a wrong protocol version) is a read error that drops that connection only. A
//! client speaking plain HTTP (first byte not a TLS handshake record) gets a plain-text 400
//! and the connection lingers like any refused request.
//!
//! rustls holds at most one write's worth of ciphertext beyond the kernel's buffer: a write
//! first pushes out what is pending and reports `WouldBlock` while the socket is full, so
//! the bytes a slow reader pins stay in the WebSocket queue, where the limits count them.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub(super) struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// The first byte was seen to start a TLS handshake record.
    tls_seen: bool,
    /// The client spoke plain HTTP and got [`PLAIN_HTTP_ANSWER`].
    refused_plain: bool,
}

/// The first byte of a TLS ClientHello record (content type "handshake").
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What a plain-HTTP client gets instead of a TLS alert it cannot read.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
    Content-Length: 37\r\nConnection: close\r\n\r\nthis port speaks HTTPS: use https://\n";

impl Stream {
    /// Wraps an accepted socket; TLS when the edge has a certificate.
    pub(super) fn new(tcp: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Stream> {
        Ok(match tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let tls = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
                Stream::Tls(Box::new(TlsStream {
                    tcp,
                    tls,
                    tls_seen: false,
                    refused_plain: false,
                }))
            }
        })
    }

    /// The read error was a plain-HTTP client answered in plain text: linger (FIN after
    /// the answer, not a reset that could discard it) instead of dropping at once.
    pub(super) fn refused_plain_http(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.refused_plain)
    }

    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(t) => &t.tcp,
        }
    }

    pub(super) fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(t) => &mut t.tcp,
        }
    }

    /// Ends TLS with a close_notify (best effort: a full socket loses it, as it would lose
    /// a FIN's timing) and gives the socket back for lingering.
    pub(super) fn into_tcp(self) -> TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(t) if !t.tls_seen => t.tcp,
            Stream::Tls(mut t) => {
                t.tls.send_close_notify();
                let _ = t.push_ciphertext();
                t.tcp
            }
        }
    }
}

impl TlsStream {
    /// Writes pending ciphertext until there is none or the socket would block.
    fn push_ciphertext(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// A client speaking plain HTTP to the TLS port gets a readable 400 and an error (the
    /// connection closes) instead of a TLS alert.
    fn check_first_byte(&mut self) -> io::Result<bool> {
        let mut first = [0u8; 1];
        match self.tcp.peek(&mut first)? {
            0 => Ok(false),
            _ if first[0] == TLS_HANDSHAKE_RECORD => {
                self.tls_seen = true;
                Ok(true)
            }
            _ => {
                let _ = self.tcp.write(PLAIN_HTTP_ANSWER);
                self.refused_plain = true;
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not TLS (plain HTTP on the HTTPS port?)",
                ))
            }
        }
    }
}

/// A `WouldBlock` from the socket is not an error of a best-effort push.
fn ignore_would_block(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.tls_seen && !self.check_first_byte()? {
            return Ok(0);
        }
        loop {
            // Plaintext already decrypted first: rustls refuses more ciphertext while its
            // plaintext buffer is full.
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: the end, as for a plain socket.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) => return Err(err),
            }
            let eof = match self.tls.read_tls(&mut self.tcp) {
                Ok(n) => n == 0,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if let Err(err) = self.tls.process_new_packets() {
                // rustls queued an alert that tells the peer why; send it if it fits.
                let _ = self.push_ciphertext();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            // Handshake messages (and key updates) go back at once.
            ignore_would_block(self.push_ciphertext())?;
            if eof {
                return match self.tls.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                    Err(err) => Err(err),
                };
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // While earlier ciphertext waits for the socket, take no more.
        self.push_ciphertext()?;
        let n = self.tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        ignore_would_block(self.push_ciphertext())?;
        Ok(n)
    }

    /// Done when every byte is in the socket; `WouldBlock` while some are not.
    fn flush(&mut self) -> io::Result<()> {
        self.tls.writer().flush()?;
        self.push_ciphertext()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}
