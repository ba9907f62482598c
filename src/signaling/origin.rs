//! Which pages may open a WebSocket: the `Origin` check of an upgrade (RFC 6455 10.2).
//!
//! Browsers attach `Origin` to every WebSocket handshake and let any page open one to any
//! host, so without this check a page on another site could drive a visitor's session here
//! (cross-site WebSocket hijacking). Non-browser clients (the load generator, tests, tools)
//! send no `Origin` and are allowed: the check protects browsers, not the server.
//!
//! "The served host" is the host name of the request's `Host` header; ports are not compared.
//! A page on the same host name is the same site (cookies ignore ports too), and the web UI
//! is legitimately served from another port in development (`next dev`) and in the browser
//! tests (their page server), which connect to this port with `?ws=`.

/// The allowed origins besides the served host itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// `*` anywhere in the list allows every origin.
    allow_all: bool,
    /// Lower-cased `scheme://host[:port]`, without a trailing slash.
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// From the `allowed_origins` setting: origins like `https://app.example.com`, or `*`.
    pub fn new(list: &[String]) -> Self {
        let mut policy = OriginPolicy::default();
        for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry == "*" {
                policy.allow_all = true;
            } else {
                policy
                    .allowed
                    .push(entry.trim_end_matches('/').to_ascii_lowercase());
            }
        }
        policy
    }

    /// True if an upgrade with this `Origin` (None: absent) and `Host` header may proceed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(str::trim) else {
            return true;
        };
        if self.allow_all {
            return true;
        }
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        // `null` (sandboxed frames, file://) and anything unparsable never match a host.
        match (split_origin(&origin), host) {
            (Some(authority), Some(host)) => {
                split_port(authority).0 == split_port(&host.trim().to_ascii_lowercase()).0
            }
            _ => false,
        }
    }
}

/// The authority of an `http(s)://authority` origin; None for anything else (`null`, paths,
/// credentials).
fn split_origin(origin: &str) -> Option<&str> {
    let (scheme, authority) = origin.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains(['/', '@', '?', '#']);
    valid.then_some(authority)
}

/// `host[:port]` with IPv6 literals in brackets (`[::1]:8000`).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let port_at = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => i,
        _ => return (authority, None),
    };
    let (host, port) = (&authority[..port_at], &authority[port_at + 1..]);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        (host, Some(port))
    } else {
        (authority, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_origin_is_allowed_for_non_browser_clients() {
        assert!(policy(&[]).allows(None, Some("sfu.example:8000")));
        assert!(policy(&[]).allows(None, None));
    }

    #[test]
    fn the_served_host_is_allowed_on_any_port() {
        let p = policy(&[]);
        assert!(p.allows(Some("http://localhost:8000"), Some("localhost:8000")));
        assert!(p.allows(Some("HTTP://LocalHost:8000/"), Some("localhost:8000")));
        assert!(p.allows(Some("https://sfu.example"), Some("sfu.example:443")));
        assert!(p.allows(Some("http://sfu.example:80"), Some("sfu.example")));
        assert!(p.allows(Some("http://[::1]:8000"), Some("[::1]:8000")));
        // The browser tests' page server and `next dev` run on other ports.
        assert!(p.allows(Some("http://127.0.0.1:41234"), Some("127.0.0.1:18000")));
        assert!(p.allows(Some("http://localhost:3000"), Some("localhost:8000")));
    }

    #[test]
    fn https_pages_of_the_served_host_are_allowed_with_built_in_tls() {
        // The web app served over --tls-cert/--tls-key opens wss:// with an https Origin.
        let p = policy(&[]);
        assert!(p.allows(Some("https://localhost:8443"), Some("localhost:8443")));
        assert!(p.allows(Some("https://sfu.example"), Some("sfu.example")));
        assert!(!p.allows(Some("https://evil.example"), Some("sfu.example")));
    }

    #[test]
    fn foreign_null_and_malformed_origins_are_refused() {
        let p = policy(&[]);
        assert!(!p.allows(Some("http://evil.example"), Some("localhost:8000")));
        assert!(!p.allows(Some("http://localhost.evil"), Some("localhost:8000")));
        assert!(!p.allows(Some("http://127.0.0.2:8000"), Some("127.0.0.1:8000")));
        assert!(!p.allows(Some("null"), Some("localhost:8000")));
        assert!(!p.allows(Some("http://localhost:8000"), None));
        assert!(!p.allows(Some("ftp://localhost:8000"), Some("localhost:8000")));
        assert!(!p.allows(Some("http://user@localhost:8000"), Some("localhost:8000")));
    }

    #[test]
    fn the_allow_list_admits_exact_origins_and_star_admits_all() {
        let p = policy(&["https://app.example/", " http://localhost:3000 "]);
        assert!(p.allows(Some("https://APP.example"), Some("sfu.example")));
        assert!(!p.allows(Some("https://app.example:8443"), Some("sfu.example")));
        assert!(policy(&["*"]).allows(Some("null"), Some("x")));
    }
}
