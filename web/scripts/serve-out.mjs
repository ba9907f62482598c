#!/usr/bin/env node
// Development-only server for the static export (out/): maps /stream/<roomId>/ to the single
// exported room page like the Rust server does, answers POST /api/rooms, and forwards the /ws
// WebSocket to an SFU (default: the reference SFU on 127.0.0.1:8100).
// HLS_DIR=<dir> serves /hls/<roomId>/* from <dir>/<roomId>/ (e.g. an ffmpeg test stream).
//   PORT=3000 SFU=127.0.0.1:8100 node scripts/serve-out.mjs
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { connect } from "node:net";
import { extname, join, normalize } from "node:path";
import { randomBytes } from "node:crypto";

const root = join(import.meta.dirname, "..", "out");
const port = Number(process.env.PORT ?? 3000);
const [sfuHost, sfuPort] = (process.env.SFU ?? "127.0.0.1:8100").split(":");
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain",
  ".woff2": "font/woff2",
};

function resolveFile(pathname) {
  const room = pathname.match(/^\/stream\/([A-Za-z0-9_-]{1,64})\/?$/);
  if (room) return join(root, "stream", "_", "index.html");
  const file = normalize(join(root, decodeURIComponent(pathname)));
  if (!file.startsWith(root)) return null;
  for (const candidate of [file, join(file, "index.html")]) {
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // next candidate
    }
  }
  return null;
}

const server = createServer((req, res) => {
  const { pathname } = new URL(req.url ?? "/", "http://x");
  if (req.method === "POST" && pathname === "/api/rooms") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ roomId: randomBytes(6).toString("base64url") }));
    return;
  }
  if (pathname.startsWith("/hls/")) {
    const hls = pathname.match(/^\/hls\/([A-Za-z0-9_-]{1,64})\/([A-Za-z0-9_.-]+\.(m3u8|ts|m4s|mp4))$/);
    const file = hls && process.env.HLS_DIR ? join(process.env.HLS_DIR, hls[1], hls[2]) : null;
    let found = false;
    try {
      found = file !== null && statSync(file).isFile();
    } catch {
      // not there (yet)
    }
    if (!found) {
      res.writeHead(404).end("not found");
      return;
    }
    const type = file.endsWith(".m3u8") ? "application/vnd.apple.mpegurl" : "video/mp2t";
    res.writeHead(200, { "content-type": type, "cache-control": "no-cache" });
    createReadStream(file).pipe(res);
    return;
  }
  const file = resolveFile(pathname);
  if (!file) {
    res.writeHead(404, { "content-type": "text/html; charset=utf-8" });
    createReadStream(join(root, "404.html")).pipe(res);
    return;
  }
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});

server.on("upgrade", (req, socket, head) => {
  const upstream = connect(Number(sfuPort), sfuHost, () => {
    const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join("\r\n");
    upstream.write(`${req.method} ${req.url} HTTP/1.1\r\n${headers}\r\n\r\n`);
    upstream.write(head);
    socket.pipe(upstream).pipe(socket);
  });
  const close = () => {
    socket.destroy();
    upstream.destroy();
  };
  upstream.on("error", close);
  socket.on("error", close);
});

server.listen(port, "127.0.0.1", () => console.log(`serving ${root} on http://127.0.0.1:${port}`));
