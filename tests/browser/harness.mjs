// Test harness: bundles the page script, serves it, drives Debian's Chromium through playwright-core.
// Works against any server speaking shared/protocol.md, chosen by env SFU_URL.
import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SFU_URL = (process.env.SFU_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
export const WS_URL = `${SFU_URL.replace(/^http/, 'ws')}/ws`;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Generous deadline for first frames etc. (2-core machines, cold Chromium). */
export const FIRST_MEDIA_TIMEOUT = Number(process.env.FIRST_MEDIA_TIMEOUT_MS || 60_000);

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--disable-quic', '--autoplay-policy=no-user-gesture-required',
];

export const roomId = (prefix = 'r') => `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;

/** How long the web app's UI may take to show a control. */
export const UI_TIMEOUT = 30_000;

/** Presses the web app's "Join" and waits for the in-room controls ("Leave"). */
export async function joinInUi(user) {
  const joinButton = user.page.getByRole('button', { name: 'Join', exact: true });
  await joinButton.waitFor({ timeout: UI_TIMEOUT });
  await waitFor(() => joinButton.isEnabled(), { timeout: FIRST_MEDIA_TIMEOUT, message: `${user.name}: Join enabled` });
  await joinButton.click();
  await user.page.getByRole('button', { name: 'Leave', exact: true }).waitFor({ timeout: FIRST_MEDIA_TIMEOUT });
}

/** Size and decoded-frame count of every video matching `selector`. */
export function videoStates(page, selector) {
  return page.evaluate((sel) => [...document.querySelectorAll(sel)].map((v) => ({
    peerId: v.dataset.peerId ?? null,
    width: v.videoWidth,
    height: v.videoHeight,
    frames: v.getVideoPlaybackQuality().totalVideoFrames,
    paused: v.paused,
  })), selector);
}

/**
 * Waits until exactly `count` videos match `selector`, all with videoWidth > 0, and then until each
 * one's decoded-frame count has advanced by at least 10 frames past that point (i.e. it is playing,
 * not showing one frozen frame). Returns the last states.
 */
export async function expectDecoding(user, selector, { count = 1 } = {}) {
  const what = `${user.name}: ${count} × ${selector}`;
  const first = await waitFor(async () => {
    const s = await videoStates(user.page, selector);
    return s.length === count && s.every((v) => v.width > 0 && v.frames > 0) ? s : null;
  }, { timeout: FIRST_MEDIA_TIMEOUT, interval: 250, message: `${what} with videoWidth > 0` });
  return waitFor(async () => {
    const s = await videoStates(user.page, selector);
    return s.length === count && s.every((v, i) => v.width > 0 && v.frames >= first[i].frames + 10) ? s : null;
  }, { timeout: FIRST_MEDIA_TIMEOUT, interval: 250, message: `${what} decoded frames advancing from ${JSON.stringify(first)}` });
}

export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Polls `fn` until it returns a truthy value (returned); throws after `timeout` with `message`. */
export async function waitFor(fn, { timeout = FIRST_MEDIA_TIMEOUT, interval = 250, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last, lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (${detail})`);
    }
    await sleep(interval);
  }
}

export async function fetchStats() {
  const res = await fetch(`${SFU_URL}/api/stats`);
  assert.equal(res.status, 200, 'GET /api/stats status');
  return res.json();
}

let bundlePromise;
/** Bundles client/sfu-client.js into dist/ (once per process). */
export function buildPage() {
  bundlePromise ??= (async () => {
    const dist = path.join(here, 'dist');
    await fs.mkdir(dist, { recursive: true });
    await esbuild.build({
      entryPoints: [path.join(here, 'client', 'sfu-client.js')],
      bundle: true, format: 'iife', platform: 'browser', target: 'chrome110',
      outfile: path.join(dist, 'client.js'), logLevel: 'warning',
    });
    await fs.writeFile(path.join(dist, 'index.html'),
      '<!doctype html><html><head><meta charset="utf-8"><title>sfu test peer</title></head>' +
      '<body><script src="client.js"></script></body></html>\n');
    return dist;
  })();
  return bundlePromise;
}

/**
 * Bundles the page script again as `<name>client.js` with its internal state exposed as
 * `window.sfuState` (producers, transports, consumers: for tests that read their own getStats or
 * produce with simulcast encodings), served as `<name>.html`. Returns the page's file name.
 */
export async function buildStatePage(name) {
  const dist = await buildPage();
  const src = await fs.readFile(path.join(here, 'client', 'sfu-client.js'), 'utf8');
  await esbuild.build({
    stdin: { contents: `${src}\nwindow.sfuState = state;\n`, resolveDir: path.join(here, 'client'), sourcefile: `${name}-client.js` },
    bundle: true, format: 'iife', platform: 'browser', target: 'chrome110',
    outfile: path.join(dist, `${name}client.js`), logLevel: 'warning',
  });
  await fs.writeFile(path.join(dist, `${name}.html`),
    `<!doctype html><html><head><meta charset="utf-8"><title>sfu ${name} peer</title></head>` +
    `<body><script src="${name}client.js"></script></body></html>\n`);
  return `${name}.html`;
}

function servePage(dist, host) {
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = http.createServer(async (req, res) => {
    const name = new URL(req.url, 'http://x').pathname.replace(/^\/+/, '') || 'index.html';
    if (!/^[a-z]+\.(html|js)$/.test(name)) { res.statusCode = 404; return res.end(); }
    try {
      const body = await fs.readFile(path.join(dist, name));
      res.setHeader('content-type', types[path.extname(name)]);
      res.end(body);
    } catch { res.statusCode = 404; res.end(); }
  });
  return new Promise((resolve) => server.listen(0, host, () => resolve(server)));
}

/**
 * One per test file: one Chromium process, one page server; peers are separate browser contexts.
 * `host`: the address the page server listens on (the browser must reach it); `executablePath`:
 * another Chromium launcher (e.g. one that runs it inside a network namespace).
 */
export async function startHarness({ host = '127.0.0.1', executablePath = CHROMIUM } = {}) {
  const dist = await buildPage();
  const server = await servePage(dist, host);
  const pageUrl = `http://${host}:${server.address().port}/index.html?ws=${encodeURIComponent(WS_URL)}`;
  // Media APIs need a secure context; only loopback pages are one without TLS.
  const origin = `http://${host}:${server.address().port}`;
  const args = host === '127.0.0.1' ? CHROMIUM_ARGS : [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${origin}`];
  const browser = await chromium.launch({ executablePath, args, headless: true });
  const peers = [];

  async function newPeer(name) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.sfuReady === true);
    await page.evaluate((u) => window.sfu.connect(u), WS_URL);
    const peer = new Peer(name, context, page, consoleErrors);
    peers.push(peer);
    return peer;
  }

  async function close() {
    for (const p of peers) await p.close().catch(() => {});
    await browser.close().catch(() => {});
    await new Promise((r) => server.close(r));
  }

  return { browser, newPeer, close, pageUrl };
}

export class Peer {
  constructor(name, context, page, consoleErrors) {
    Object.assign(this, { name, context, page, consoleErrors, closed: false });
  }
  eval(fn, arg) { return this.page.evaluate(fn, arg); }
  join(room, displayName = this.name) { return this.eval(([r, d]) => window.sfu.join(r, d), [room, displayName]); }
  publish(opts = {}) { return this.eval((o) => window.sfu.publish(o), opts); }
  consumeAll() { return this.eval(() => window.sfu.consumeAll()); }
  stats() { return this.eval(() => window.sfu.stats()); }
  info() { return this.eval(() => window.sfu.info()); }
  notifications() { return this.eval(() => window.sfu.notifications()); }
  request(method, data) { return this.eval(([m, d]) => window.sfu.request(m, d), [method, data]); }
  leave() { return this.eval(() => window.sfu.leave()); }
  /** Closes the page (and its context): the server sees the socket drop. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    await this.context.close();
  }
  /** A short description for assertion messages. */
  async describe() {
    try { return JSON.stringify({ name: this.name, ...(await this.info()), stats: await this.stats(), console: this.consoleErrors.slice(-5) }); }
    catch (e) { return `${this.name}: ${e.message}`; }
  }
}

/** Waits until `peer` has `count` live consumers of `kind` (optionally from `fromPeerId`) whose metric > 0. */
export async function waitForMedia(peer, kind, metric, { count = 1, fromPeerId, timeout = FIRST_MEDIA_TIMEOUT } = {}) {
  const pick = (rows) => rows.filter((r) => r.kind === kind && (!fromPeerId || r.peerId === fromPeerId));
  try {
    return await waitFor(async () => {
      const rows = pick(await peer.stats());
      return rows.length >= count && rows.every((r) => r[metric] > 0) ? rows : null;
    }, { timeout, interval: 500, message: `${peer.name}: ${count} ${kind} consumer(s) with ${metric} > 0` });
  } catch (e) {
    e.message += `\n${await peer.describe()}`;
    throw e;
  }
}

/**
 * Asserts that `metric` of every matching consumer of `peer` keeps rising over `seconds`:
 * first waits (up to FIRST_MEDIA_TIMEOUT) for it to be > 0, then samples at the start, the middle
 * and the end of the window and requires both halves to increase.
 */
export async function expectRising(peer, kind, metric, seconds = 5, { count = 1, fromPeerId } = {}) {
  await waitForMedia(peer, kind, metric, { count, fromPeerId });
  const pick = (rows) => new Map(rows.filter((r) => r.kind === kind && (!fromPeerId || r.peerId === fromPeerId)).map((r) => [r.consumerId, r]));
  const samples = [pick(await peer.stats())];
  const t0 = Date.now();
  for (const frac of [0.5, 1]) {
    const until = t0 + frac * seconds * 1000;
    while (Date.now() < until) await sleep(Math.min(250, until - Date.now()));
    samples.push(pick(await peer.stats()));
  }
  const [a, b, c] = samples;
  assert.ok(a.size >= count, `${peer.name}: expected ${count} ${kind} consumers, have ${a.size}`);
  for (const [id, r0] of a) {
    const r1 = b.get(id), r2 = c.get(id);
    assert.ok(r1 && r2, `${peer.name}: ${kind} consumer ${id} vanished during the window`);
    const v = [r0[metric], r1[metric], r2[metric]];
    assert.ok(v[1] > v[0] && v[2] > v[1], `${peer.name}: ${kind} ${metric} of consumer ${id} (from ${r0.peerId}) not rising over ${seconds}s: ${v.join(' -> ')}`);
  }
  return [...c.values()];
}

/**
 * Both peers (joined as `ja`, `jb`) publish camera + mic, consume each other and decode video;
 * returns each peer's selected ICE candidate pairs ({send, recv}, from window.sfu).
 */
export async function exchangeMedia(a, b, ja, jb) {
  await Promise.all([a.publish({ video: true, audio: true }), b.publish({ video: true, audio: true })]);
  await Promise.all([a.consumeAll(), b.consumeAll()]);
  await Promise.all([
    expectRising(a, 'video', 'framesDecoded', 4, { fromPeerId: jb.peerId }),
    expectRising(b, 'video', 'framesDecoded', 4, { fromPeerId: ja.peerId }),
  ]);
  const pairs = [];
  for (const p of [a, b]) {
    pairs.push(await waitFor(async () => {
      const s = await p.eval(() => window.sfu.selectedCandidatePairs());
      return s.send && s.recv ? s : null;
    }, { timeout: 10_000, message: `${p.name}: selected candidate pairs` }));
  }
  return pairs;
}
