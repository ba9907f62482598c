//! HTTP/1.1 request parsing (httparse) and response encoding for the edge.
//!
//! Sans-IO: functions take bytes and return values; the edge owns the sockets.

/// Largest accepted request head (request line + headers).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// One parsed HTTP request. `path` is percent-decoded and has no query string.
///
/// `Debug` leaves out the query and header values: they may carry access tokens.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_len", &self.query.len())
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True if a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A response; the edge adds `Content-Length` and `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: text.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A complete request as parsed from the connection's buffer.
#[derive(Debug)]
pub struct ParsedRequest {
    pub request: HttpRequest,
    /// Bytes of the buffer this request used (head + body).
    pub consumed: usize,
    pub keep_alive: bool,
    /// False when the path could not be percent-decoded to UTF-8; such requests get a 404.
    pub path_ok: bool,
}

#[derive(Debug)]
pub enum ParseOutcome {
    /// More bytes are needed.
    Partial,
    Complete(ParsedRequest),
    /// The request is unacceptable; answer with this status and close.
    Reject(u16),
}

/// Tries to parse one request from the start of `buf`.
pub fn parse_request(buf: &[u8], max_body: usize) -> ParseOutcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return ParseOutcome::Reject(431),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return ParseOutcome::Reject(431),
        Ok(httparse::Status::Partial) => return ParseOutcome::Partial,
        Err(httparse::Error::TooManyHeaders) => return ParseOutcome::Reject(431),
        Err(_) => return ParseOutcome::Reject(400),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return ParseOutcome::Reject(400);
    };
    if !target.starts_with('/') {
        return ParseOutcome::Reject(400);
    }
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_string(), value)
        })
        .collect();

    let mut content_length: Option<usize> = None;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return ParseOutcome::Reject(400);
        }
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_content_length(value) else {
                return ParseOutcome::Reject(400);
            };
            if content_length.is_some_and(|old| old != n) {
                return ParseOutcome::Reject(400);
            }
            content_length = Some(n);
        }
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > max_body {
        return ParseOutcome::Reject(413);
    }
    let total = head_len + body_len;
    if buf.len() < total {
        return ParseOutcome::Partial;
    }

    let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
    let decoded = percent_decode(raw_path);
    let path_ok = decoded.is_some();
    let mut request = HttpRequest {
        method: method.to_string(),
        path: decoded.unwrap_or_default(),
        query: query.to_string(),
        headers,
        body: buf[head_len..total].to_vec(),
    };
    let keep_alive = if version >= 1 {
        !request.header_has_token("connection", "close")
    } else {
        request.header_has_token("connection", "keep-alive")
    };
    if !path_ok {
        request.path = raw_path.to_string();
    }
    ParseOutcome::Complete(ParsedRequest {
        request,
        consumed: total,
        keep_alive,
        path_ok,
    })
}

/// A `Content-Length` value: ASCII digits only (RFC 9110 8.6; httparse already dropped the
/// optional whitespace around it). `parse::<usize>` alone would take `+5`; a proxy in front
/// of us may read such a value differently and so disagree with us about where the body ends
/// (request smuggling).
fn parse_content_length(value: &str) -> Option<usize> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Decodes `%XX` escapes into bytes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends the encoded response to `out`. With `head_only` the body is left out but
/// `Content-Length` still announces its size (HEAD semantics).
pub fn encode_response(resp: &HttpResponse, head_only: bool, keep_alive: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        resp.status,
        reason_phrase(resp.status)
    );
    if !resp.content_type.is_empty() && is_safe_header_value(&resp.content_type) {
        let _ = write!(out, "Content-Type: {}\r\n", resp.content_type);
    }
    for (name, value) in &resp.headers {
        let reserved = name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("transfer-encoding");
        if !reserved && is_safe_header_value(name) && is_safe_header_value(value) {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    // 204 and 304 never have a body, and must not announce one (RFC 9110 §8.6).
    if !matches!(resp.status, 204 | 304) {
        let _ = write!(out, "Content-Length: {}\r\n", resp.body.len());
    }
    let _ = write!(
        out,
        "Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

/// Rejects CR/LF so a handler cannot inject headers.
fn is_safe_header_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n')
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> ParsedRequest {
        match parse_request(buf, 1024) {
            ParseOutcome::Complete(p) => p,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn a_get_request_is_split_into_path_and_query() {
        let p = complete(b"GET /a%20b/c?x=1&y=2 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(p.request.method, "GET");
        assert_eq!(p.request.path, "/a b/c");
        assert_eq!(p.request.query, "x=1&y=2");
        assert!(p.keep_alive);
        assert!(p.path_ok);
    }

    #[test]
    fn a_body_is_read_by_content_length_and_the_rest_stays_in_the_buffer() {
        let buf = b"POST /api HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET";
        let p = complete(buf);
        assert_eq!(p.request.body, b"abc");
        assert_eq!(&buf[p.consumed..], b"GET");
    }

    #[test]
    fn an_incomplete_body_is_partial() {
        let outcome = parse_request(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", 1024);
        assert!(matches!(outcome, ParseOutcome::Partial));
    }

    #[test]
    fn limits_and_garbage_are_rejected_with_the_right_status() {
        let big = b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
        assert!(matches!(
            parse_request(big, 1024),
            ParseOutcome::Reject(413)
        ));
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(matches!(
            parse_request(&head, 1024),
            ParseOutcome::Reject(431)
        ));
        assert!(matches!(
            parse_request(b"\x00\x01garbage\r\n\r\n", 1024),
            ParseOutcome::Reject(400)
        ));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse_request(chunked, 1024),
            ParseOutcome::Reject(400)
        ));
    }

    #[test]
    fn content_length_must_be_plain_digits_and_duplicates_must_agree() {
        for bad in ["+5", "-1", "5 x", "0x5", "5,5", "", "99999999999999999999"] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\nhello");
            assert!(
                matches!(
                    parse_request(req.as_bytes(), 1024),
                    ParseOutcome::Reject(400)
                ),
                "Content-Length {bad:?} was accepted"
            );
        }
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 4\r\n\r\nhello";
        assert!(matches!(
            parse_request(dup, 1024),
            ParseOutcome::Reject(400)
        ));
        let same = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete(same).request.body, b"hello");
    }

    #[test]
    fn connection_close_and_http_1_0_disable_keep_alive() {
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn percent_decoding_rejects_bad_escapes_and_invalid_utf8() {
        assert_eq!(percent_decode("/%2e%2E/x").as_deref(), Some("/../x"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%2"), None);
        assert_eq!(percent_decode("/%ff"), None);
        let p = complete(b"GET /%ff HTTP/1.1\r\n\r\n");
        assert!(!p.path_ok);
    }

    #[test]
    fn responses_always_carry_content_length_and_drop_injected_headers() {
        let resp = HttpResponse::text(200, "hi").with_header("X-Bad", "a\r\nSet-Cookie: x");
        let mut out = Vec::new();
        encode_response(&resp, true, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(!text.contains("Set-Cookie"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
