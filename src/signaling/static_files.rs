//! Static files for the edge: the exported web UI and the HLS directory.
//!
//! Every path is checked twice: syntactically (no `..`, NUL, backslash; ids match
//! `^[A-Za-z0-9_-]{1,64}$`) and after canonicalization (the file must stay under its root,
//! so a symlink cannot lead outside it).

use std::path::{Path, PathBuf};

use super::http::HttpResponse;

/// Files bigger than this are not served (the edge buffers whole responses in memory).
const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Answers a GET/HEAD for `path` (already percent-decoded) from the web root or the HLS root.
pub fn serve(method: &str, path: &str, web_root: Option<&Path>, hls_root: &Path) -> HttpResponse {
    if method != "GET" && method != "HEAD" {
        return HttpResponse::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD");
    }
    if path.contains("..") || path.contains('\0') || path.contains('\\') {
        return HttpResponse::not_found();
    }
    if let Some(rest) = path.strip_prefix("/hls/") {
        return serve_hls(rest, hls_root);
    }
    match web_root.filter(|root| root.is_dir()) {
        Some(root) => serve_web(path, root),
        None if path == "/" => HttpResponse::text(
            200,
            "The web UI is not built. Run `make run` to build it and start the server.\n",
        )
        .with_header("Cache-Control", "no-cache"),
        None => HttpResponse::not_found(),
    }
}

pub use super::protocol::is_valid_room_id;

/// `^[A-Za-z0-9_-]{1,64}\.(m3u8|ts|m4s|mp4)$`
fn is_valid_hls_file(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, ext)) => is_valid_room_id(stem) && matches!(ext, "m3u8" | "ts" | "m4s" | "mp4"),
        None => false,
    }
}

fn serve_hls(rest: &str, hls_root: &Path) -> HttpResponse {
    let Some((room, file)) = rest.split_once('/') else {
        return HttpResponse::not_found();
    };
    if !is_valid_room_id(room) || !is_valid_hls_file(file) {
        return HttpResponse::not_found();
    }
    let Some(found) = resolve_under(hls_root, &[room, file]) else {
        return HttpResponse::not_found();
    };
    let cache = if file.ends_with(".m3u8") {
        "no-cache"
    } else {
        "public, max-age=60"
    };
    file_response(200, &found, Some(cache))
}

fn serve_web(path: &str, root: &Path) -> HttpResponse {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.contains(&".") {
        return HttpResponse::not_found();
    }
    let mut candidates: Vec<Vec<String>> = Vec::new();
    let owned: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    if owned.is_empty() {
        candidates.push(vec!["index.html".into()]);
    } else {
        if !path.ends_with('/') {
            candidates.push(owned.clone());
        }
        let mut index = owned.clone();
        index.push("index.html".into());
        candidates.push(index);
        if !path.ends_with('/') {
            let mut html = owned.clone();
            if let Some(last) = html.last_mut() {
                last.push_str(".html");
            }
            candidates.push(html);
        }
    }
    // The room page is exported once under the placeholder id `_`.
    if let [first, room] = segments.as_slice() {
        if *first == "stream" && is_valid_room_id(room) {
            candidates.push(vec!["stream".into(), "_".into(), "index.html".into()]);
        }
    }
    for candidate in &candidates {
        let parts: Vec<&str> = candidate.iter().map(String::as_str).collect();
        if let Some(found) = resolve_under(root, &parts) {
            return file_response(200, &found, cache_control_for(&parts));
        }
    }
    match resolve_under(root, &["404.html"]) {
        Some(page) => file_response(404, &page, Some("no-cache")),
        None => HttpResponse::not_found(),
    }
}

fn cache_control_for(parts: &[&str]) -> Option<&'static str> {
    if parts.len() > 2 && parts[0] == "_next" && parts[1] == "static" {
        Some("public, max-age=31536000, immutable")
    } else if parts.last().is_some_and(|p| p.ends_with(".html")) {
        Some("no-cache")
    } else {
        None
    }
}

/// Joins `parts` under `root` and returns the canonical path if it is a regular file that
/// stays inside the canonical root.
fn resolve_under(root: &Path, parts: &[&str]) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for part in parts {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('/') {
            return None;
        }
        path.push(part);
    }
    let canonical_root = root.canonicalize().ok()?;
    let canonical = path.canonicalize().ok()?;
    if !canonical.starts_with(&canonical_root) {
        return None;
    }
    let meta = std::fs::metadata(&canonical).ok()?;
    (meta.is_file() && meta.len() <= MAX_FILE_SIZE).then_some(canonical)
}

fn file_response(status: u16, path: &Path, cache: Option<&str>) -> HttpResponse {
    let body = match std::fs::read(path) {
        Ok(body) => body,
        Err(err) => {
            tracing::debug!(path = %path.display(), %err, "static file read failed");
            return HttpResponse::not_found();
        }
    };
    let mut resp = HttpResponse {
        status,
        content_type: content_type_for(path).into(),
        body,
        headers: Vec::new(),
    };
    if let Some(cache) = cache {
        resp.headers.push(("Cache-Control".into(), cache.into()));
    }
    resp
}

pub fn content_type_for(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "map" => "application/json",
        "wasm" => "application/wasm",
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "m4s" | "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::TempDir;

    fn body(resp: &HttpResponse) -> &str {
        std::str::from_utf8(&resp.body).unwrap()
    }

    fn header<'a>(resp: &'a HttpResponse, name: &str) -> Option<&'a str> {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn pages_resolve_as_file_index_html_and_dot_html() {
        let web = TempDir::new("static-web");
        let hls = TempDir::new("static-hls");
        web.write("index.html", "home");
        web.write("watch/index.html", "watch");
        web.write("about.html", "about");
        web.write("_next/static/chunks/a.js", "js");
        let get = |p: &str| serve("GET", p, Some(&web.0), &hls.0);
        assert_eq!(body(&get("/")), "home");
        assert_eq!(body(&get("/watch")), "watch");
        assert_eq!(body(&get("/watch/")), "watch");
        assert_eq!(body(&get("/about")), "about");
        let js = get("/_next/static/chunks/a.js");
        assert_eq!(js.content_type, "text/javascript; charset=utf-8");
        assert_eq!(
            header(&js, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(header(&get("/"), "cache-control"), Some("no-cache"));
    }

    #[test]
    fn stream_room_paths_fall_back_to_the_placeholder_page_and_unknown_paths_to_404_html() {
        let web = TempDir::new("static-web");
        let hls = TempDir::new("static-hls");
        web.write("stream/_/index.html", "room page");
        web.write("404.html", "custom 404");
        let get = |p: &str| serve("GET", p, Some(&web.0), &hls.0);
        assert_eq!(body(&get("/stream/abc-1")), "room page");
        assert_eq!(body(&get("/stream/abc_1/")), "room page");
        let bad = get("/stream/bad.id");
        assert_eq!((bad.status, body(&bad)), (404, "custom 404"));
        assert_eq!(get("/nope").status, 404);
    }

    #[test]
    fn hls_serves_only_valid_ids_inside_the_root() {
        let web = TempDir::new("static-web");
        let hls = TempDir::new("static-hls");
        hls.write("room1/index.m3u8", "#EXTM3U");
        hls.write("room1/seg_1.ts", "ts");
        let get = |p: &str| serve("GET", p, Some(&web.0), &hls.0);
        let playlist = get("/hls/room1/index.m3u8");
        assert_eq!(playlist.status, 200);
        assert_eq!(playlist.content_type, "application/vnd.apple.mpegurl");
        assert_eq!(header(&playlist, "cache-control"), Some("no-cache"));
        let seg = get("/hls/room1/seg_1.ts");
        assert_eq!(seg.content_type, "video/mp2t");
        assert_eq!(header(&seg, "cache-control"), Some("public, max-age=60"));
        for bad in [
            "/hls/room1/../room1/index.m3u8",
            "/hls/bad id/x.m3u8",
            "/hls/room1/index.txt",
            "/hls/room1/sub/index.m3u8",
            "/hls/room2/index.m3u8",
            "/hls/room1",
        ] {
            assert_eq!(get(bad).status, 404, "{bad}");
        }
    }

    #[test]
    fn symlinks_escaping_the_root_are_refused() {
        let web = TempDir::new("static-web");
        let hls = TempDir::new("static-hls");
        let outside = TempDir::new("static-outside");
        outside.write("secret.ts", "secret");
        std::fs::create_dir_all(hls.0.join("room1")).unwrap();
        std::os::unix::fs::symlink(outside.0.join("secret.ts"), hls.0.join("room1/a.ts")).unwrap();
        std::os::unix::fs::symlink(&outside.0, web.0.join("out")).unwrap();
        assert_eq!(
            serve("GET", "/hls/room1/a.ts", Some(&web.0), &hls.0).status,
            404
        );
        assert_eq!(
            serve("GET", "/out/secret.ts", Some(&web.0), &hls.0).status,
            404
        );
    }

    #[test]
    fn a_missing_web_root_answers_a_hint_page() {
        let hls = TempDir::new("static-hls");
        let missing = hls.0.join("does-not-exist");
        let home = serve("GET", "/", Some(&missing), &hls.0);
        assert_eq!(home.status, 200);
        assert!(body(&home).contains("make run"));
        assert_eq!(serve("GET", "/", None, &hls.0).status, 200);
        assert_eq!(serve("GET", "/x", None, &hls.0).status, 404);
        assert_eq!(serve("POST", "/", None, &hls.0).status, 405);
    }
}
