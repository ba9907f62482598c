//! A connection speaking HTTP/1.1: requests parsed and answered in order (keep-alive and
//! pipelining), until it closes or upgrades to a WebSocket at `/ws`.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::stream::Stream;
use super::{
    ConnId, ConnState, EdgeConfig, EdgeHandler, EdgeLoop, HttpRequest, HttpResponse,
    HTTP_REQUEST_TIMEOUT, READ_CHUNK,
};
use crate::signaling::http::{encode_response, parse_request, ParseOutcome, ParsedRequest};
use crate::signaling::static_files;

pub(super) struct HttpConn {
    pub(super) stream: Stream,
    pub(super) inbuf: Vec<u8>,
    pub(super) outbuf: Vec<u8>,
    pub(super) written: usize,
    pub(super) after_flush: AfterFlush,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterFlush {
    NextRequest,
    Close,
    Upgrade,
}

impl EdgeLoop {
    /// Flush → parse → read, until the socket would block.
    pub(super) fn drive_http<H: EdgeHandler>(&mut self, id: ConnId, handler: &mut H) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let ConnState::Http(http) = &mut conn.state else {
                return;
            };
            while http.written < http.outbuf.len() {
                match http.stream.write(&http.outbuf[http.written..]) {
                    Ok(0) => return self.remove(id, handler),
                    Ok(n) => {
                        http.written += n;
                        conn.deadline = Some(Instant::now() + HTTP_REQUEST_TIMEOUT);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.remove(id, handler),
                }
            }
            // TLS: the ciphertext rustls still holds goes out before what follows (a close).
            match http.stream.flush() {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.remove(id, handler),
            }
            http.outbuf.clear();
            http.written = 0;
            match http.after_flush {
                AfterFlush::Close => return self.start_linger(id, handler),
                AfterFlush::Upgrade => return self.upgrade(id, handler),
                AfterFlush::NextRequest => {}
            }
            match parse_request(&http.inbuf, self.cfg.max_http_body) {
                ParseOutcome::Complete(parsed) => {
                    http.inbuf.drain(..parsed.consumed);
                    if !conn.probation {
                        conn.deadline = Some(Instant::now() + HTTP_REQUEST_TIMEOUT);
                    }
                    http.after_flush = if conn.probation {
                        answer_on_probation(handler, parsed, &mut http.outbuf)
                    } else {
                        answer(&self.cfg, handler, parsed, &mut http.outbuf)
                    };
                    continue;
                }
                ParseOutcome::Reject(status) => {
                    tracing::debug!(conn = id, status, "bad HTTP request");
                    let resp =
                        HttpResponse::text(status, crate::signaling::http::reason_phrase(status));
                    encode_response(&resp, false, false, &mut http.outbuf);
                    http.after_flush = AfterFlush::Close;
                    continue;
                }
                ParseOutcome::Partial => {}
            }
            let len = http.inbuf.len();
            http.inbuf.resize(len + READ_CHUNK, 0);
            let read = http.stream.read(&mut http.inbuf[len..]);
            http.inbuf.truncate(len + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return self.remove(id, handler),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if http.stream.refused_plain_http() => {
                    return self.start_linger(id, handler)
                }
                Err(_) => return self.remove(id, handler),
            }
        }
    }
}

/// A connection beyond the connection limits gets `/healthz` answered (so monitoring tells a
/// full server from a dead one) and 503 for anything else, then closes.
fn answer_on_probation<H: EdgeHandler>(
    handler: &mut H,
    parsed: ParsedRequest,
    out: &mut Vec<u8>,
) -> AfterFlush {
    let req = &parsed.request;
    let healthz = parsed.path_ok && req.path == "/healthz";
    let resp = match healthz.then(|| handler.http(req)).flatten() {
        Some(resp) => resp,
        None => HttpResponse::text(503, "too many connections\n").with_header("Retry-After", "5"),
    };
    encode_response(&resp, req.method == "HEAD", false, out);
    AfterFlush::Close
}

/// Builds the response for one request into `out` and says what follows it.
fn answer<H: EdgeHandler>(
    cfg: &EdgeConfig,
    handler: &mut H,
    parsed: ParsedRequest,
    out: &mut Vec<u8>,
) -> AfterFlush {
    let req = &parsed.request;
    let after = if parsed.keep_alive {
        AfterFlush::NextRequest
    } else {
        AfterFlush::Close
    };
    if parsed.path_ok && req.path == "/ws" {
        if !cfg.origins.allows(req.header("origin"), req.header("host")) {
            tracing::debug!(origin = ?req.header("origin"), "websocket upgrade from a foreign origin refused");
            let resp = HttpResponse::text(403, "origin not allowed\n");
            encode_response(&resp, false, false, out);
            return AfterFlush::Close;
        }
        if let Some(accept) = websocket_accept(req) {
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .as_bytes(),
            );
            return AfterFlush::Upgrade;
        }
        let resp = HttpResponse::text(400, "expected a WebSocket upgrade\n");
        encode_response(&resp, false, parsed.keep_alive, out);
        return after;
    }
    let resp = if !parsed.path_ok {
        HttpResponse::not_found()
    } else {
        handler.http(req).unwrap_or_else(|| {
            static_files::serve(
                &req.method,
                &req.path,
                cfg.web_root.as_deref(),
                &cfg.hls_root,
            )
        })
    };
    encode_response(&resp, req.method == "HEAD", parsed.keep_alive, out);
    after
}

/// The `Sec-WebSocket-Accept` value if `req` is a valid WebSocket upgrade.
fn websocket_accept(req: &HttpRequest) -> Option<String> {
    let ok = req.method == "GET"
        && req.header_has_token("upgrade", "websocket")
        && req.header_has_token("connection", "upgrade")
        && req.header("sec-websocket-version").map(str::trim) == Some("13");
    let key = req.header("sec-websocket-key")?.trim();
    (ok && !key.is_empty()).then(|| tungstenite::handshake::derive_accept_key(key.as_bytes()))
}
