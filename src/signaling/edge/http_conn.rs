//! A connection speaking HTTP/1.1: requests parsed and answered in order (keep-alive and
//! pipelining), until it closes or upgrades to a WebSocket at `/ws`.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::stream::Stream;
use super::{
    ConnId, ConnState, EdgeConfig, EdgeHandler, EdgeLoop, EdgeOut, HttpRequest, HttpResponse,
    HTTP_REQUEST_TIMEOUT, READ_CHUNK,
};
use crate::signaling::access::{self, Claims};
use crate::signaling::http::{encode_response, parse_request, ParseOutcome, ParsedRequest};
use crate::signaling::static_files;

pub(super) struct HttpConn {
    pub(super) stream: Stream,
    pub(super) inbuf: Vec<u8>,
    pub(super) outbuf: Vec<u8>,
    pub(super) written: usize,
    pub(super) after_flush: AfterFlush,
    /// The verified token of an upgrade request, handed to `ws_open` (access on only).
    pub(super) claims: Option<Claims>,
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
                    let mut out = EdgeOut::default();
                    http.after_flush = if conn.probation {
                        answer_on_probation(handler, parsed, &mut http.outbuf)
                    } else {
                        let reply = Reply {
                            out: &mut http.outbuf,
                            claims: &mut http.claims,
                            actions: &mut out,
                        };
                        answer(&self.cfg, handler, parsed, reply)
                    };
                    // What the request did to WebSockets (an admin kick, a room closed).
                    if !out.is_empty() {
                        self.apply(handler, &mut out);
                    }
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
    let resp = match healthz
        .then(|| handler.http(req, &mut EdgeOut::default()))
        .flatten()
    {
        Some(resp) => resp,
        None => HttpResponse::text(503, "too many connections\n").with_header("Retry-After", "5"),
    };
    encode_response(&resp, req.method == "HEAD", false, out);
    AfterFlush::Close
}

/// Where [`answer`] puts what it produces.
struct Reply<'a> {
    /// The encoded response.
    out: &'a mut Vec<u8>,
    /// The verified token of a WebSocket upgrade.
    claims: &'a mut Option<Claims>,
    /// Actions on WebSockets the handler asked for.
    actions: &'a mut EdgeOut,
}

/// Builds the response for one request and says what follows it.
fn answer<H: EdgeHandler>(
    cfg: &EdgeConfig,
    handler: &mut H,
    parsed: ParsedRequest,
    reply: Reply<'_>,
) -> AfterFlush {
    let out = reply.out;
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
        let claims = match &cfg.access {
            None => None,
            Some(checker) => {
                let token = access::query_param(&req.query, "token").unwrap_or_default();
                match checker.verify(&token) {
                    Ok(claims) => Some(claims),
                    Err(reason) => {
                        tracing::debug!(%reason, "websocket upgrade refused");
                        encode_response(&unauthorized(reason), false, parsed.keep_alive, out);
                        return after;
                    }
                }
            }
        };
        if let Some(accept) = websocket_accept(req) {
            *reply.claims = claims;
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
    } else if let Err(refused) = authorize(cfg, req) {
        refused
    } else {
        let resp = handler.http(req, reply.actions).unwrap_or_else(|| {
            static_files::serve(
                &req.method,
                &req.path,
                cfg.web_root.as_deref(),
                &cfg.hls_root,
            )
        });
        carry_hls_token(cfg, req, resp)
    };
    encode_response(&resp, req.method == "HEAD", parsed.keep_alive, out);
    after
}

/// With access on: `/api/*` and `/metrics` need an admin Bearer token, `/hls/<room>/…` a
/// `?token=` for that room with `subscribe` (shared/protocol.md "Access"). Everything else is
/// open.
fn authorize(cfg: &EdgeConfig, req: &HttpRequest) -> Result<(), HttpResponse> {
    let Some(checker) = &cfg.access else {
        return Ok(());
    };
    let path = req.path.as_str();
    if path == "/api" || path.starts_with("/api/") || path == "/metrics" {
        let token = access::bearer(req.header("authorization")).unwrap_or_default();
        let claims = checker.verify(token).map_err(unauthorized)?;
        if !claims.grants.admin {
            return Err(forbidden("this token has no admin grant"));
        }
    } else if let Some(rest) = path.strip_prefix("/hls/") {
        let token = access::query_param(&req.query, "token").unwrap_or_default();
        let claims = checker.verify(&token).map_err(unauthorized)?;
        let room = rest.split('/').next().unwrap_or_default();
        if !claims.admits_room(room) {
            return Err(forbidden("this token is for another room"));
        }
        if !claims.grants.subscribe {
            return Err(forbidden("this token has no subscribe grant"));
        }
    }
    Ok(())
}

/// A served HLS playlist passes its `?token=` on to the URIs in it.
fn carry_hls_token(cfg: &EdgeConfig, req: &HttpRequest, mut resp: HttpResponse) -> HttpResponse {
    let playlist = req.path.starts_with("/hls/") && req.path.ends_with(".m3u8");
    if cfg.access.is_some() && playlist && resp.status == 200 {
        if let Some(token) = access::query_param(&req.query, "token") {
            resp.body = access::carry_token(&resp.body, &token);
        }
    }
    resp
}

fn unauthorized(reason: access::TokenError) -> HttpResponse {
    let body = serde_json::json!({"error": {"code": "unauthorized", "message": format!("{reason}; ask for a new token")}});
    HttpResponse::json(401, &body).with_header("WWW-Authenticate", "Bearer")
}

fn forbidden(message: &str) -> HttpResponse {
    let body = serde_json::json!({"error": {"code": "forbidden", "message": message}});
    HttpResponse::json(403, &body)
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
