// Bandwidth-adaptive delivery (acceptance test): a simulcast publisher (fake camera, 3 encodings
// 320/640/1280 wide) on the host; subscribers whose Chromium runs in a network namespace with its
// downlink shaped by `tc ... tbf` on the host side of the veth pair. Run by tests/run-shaped-test.sh
// (root), which also starts the reference SFU: its figures are printed beside ours, only ours are
// asserted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHarness, roomId, sleep, buildStatePage, Peer, WS_URL } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const NETNS = process.env.SFU_NETNS;
const HOST_IF = process.env.SFU_NETNS_HOST_IF;
const HOST = process.env.SFU_SHAPED_HOST || '10.232.0.1';
const REF_URL = (process.env.REF_SFU_URL || '').replace(/\/+$/, '');
const REF_MISSING = process.env.REF_SFU_MISSING || 'REF_SFU_URL not set';
const OUT = process.env.TEST_OUTPUT;
const skip = NETNS && HOST_IF ? false : 'run through tests/run-shaped-test.sh (needs root and a network namespace)';

const SAMPLE_MS = 300; // getStats sampling period
const TOP_TIMEOUT = 60_000; // publisher ramp-up until the subscriber decodes the top layer
const TOP_STEADY = 7; // samples (≈ 2 s) in a row on the top layer before shaping starts
const FIT_LIMIT = 5_000; // required: on a fitting layer within this after shaping starts
const FIT_OBSERVE = 12_000; // observed (for the figures) up to this
const LIMITED_WINDOW = 10_000; // fps / width window while limited
const BACK_LIMIT = 10_000; // required: back on the top layer within this after shaping ends
const BACK_OBSERVE = 15_000;
const REF_SETTLE_TIMEOUT = 30_000; // the reference's figures only: do not spend a full ramp-up deadline on them
const SIMULCAST = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
];

let pubSide, subSide, pageUrl;
const peers = [];
before(async () => {
  if (skip) return;
  pubSide = await startHarness({ host: HOST });
  subSide = await startHarness({ host: HOST, executablePath: path.join(here, 'netns-chromium.sh') });
  // The page script with its internal state exposed (producers, consumers) for getStats.
  const page = await buildStatePage('shaped');
  pageUrl = (h) => h.pageUrl.replace(/\/index\.html.*$/, `/${page}`);
});
after(async () => {
  unshape();
  for (const p of peers) await p.close().catch(() => {});
  await pubSide?.close();
  await subSide?.close();
});

/** A peer of harness `h` (its Chromium) talking to the server at `wsUrl`. */
async function newPeer(h, name, wsUrl) {
  const context = await h.browser.newContext();
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  await page.goto(pageUrl(h));
  await page.waitForFunction(() => window.sfuReady === true && !!window.sfuState);
  await page.evaluate((u) => window.sfu.connect(u), wsUrl);
  const peer = new Peer(name, context, page, consoleErrors);
  peers.push(peer);
  return peer;
}

// --- shaping (the namespace's downlink: egress of the host side of the veth pair)
function shape(kbit) {
  execFileSync('tc', ['qdisc', 'replace', 'dev', HOST_IF, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', '16kb', 'latency', '300ms']);
}
function unshape() {
  if (!HOST_IF) return;
  try { execFileSync('tc', ['qdisc', 'del', 'dev', HOST_IF, 'root'], { stdio: 'ignore' }); } catch { /* none */ }
}
/** The tbf's counters (proof that the shaping really bit): bytes sent, packets dropped, overlimits. */
function tbfCounters() {
  const text = execFileSync('tc', ['-s', 'qdisc', 'show', 'dev', HOST_IF], { encoding: 'utf8' });
  const m = /qdisc tbf[\s\S]*?Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/.exec(text);
  return m ? { sentBytes: Number(m[1]), packets: Number(m[2]), dropped: Number(m[3]), overlimits: Number(m[4]) } : null;
}

// --- publisher
/** Camera video with three simulcast encodings (VP8); returns the capture size. */
function publishSimulcast(peer) {
  return peer.eval(async (encodings) => {
    const st = window.sfuState;
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 } });
    const track = stream.getVideoTracks()[0];
    const codec = st.device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
    const producer = await st.sendTransport.produce({ track, codec, encodings });
    st.producers.set(producer.id, producer);
    const s = track.getSettings();
    return { width: s.width, height: s.height, frameRate: s.frameRate, encodings: producer.rtpParameters.encodings.length };
  }, SIMULCAST);
}

/** Key-frame requests the publisher has received (PLI + FIR): the total over its video encodings and per rid. */
function keyFrameRequests(peer) {
  return peer.eval(async () => {
    const byRid = {};
    let total = 0;
    for (const p of window.sfuState.producers.values()) {
      if (p.kind !== 'video') continue;
      for (const s of (await p.getStats()).values()) {
        if (s.type !== 'outbound-rtp') continue;
        const n = (s.pliCount ?? 0) + (s.firCount ?? 0);
        total += n;
        byRid[s.rid ?? s.ssrc] = (byRid[s.rid ?? s.ssrc] ?? 0) + n;
      }
    }
    return { total, byRid };
  });
}
const kfDelta = (a, b) => Object.fromEntries(Object.entries(b.byRid).map(([k, v]) => [k, v - (a.byRid[k] ?? 0)]));

// --- subscriber sampling
function inboundVideo(peer) {
  return peer.eval(async () => {
    for (const c of window.sfuState.consumers.values()) {
      if (c.kind !== 'video') continue;
      for (const s of (await c.consumer.getStats()).values()) {
        if (s.type === 'inbound-rtp') {
          return {
            frameWidth: s.frameWidth ?? 0, framesDecoded: s.framesDecoded ?? 0, bytesReceived: s.bytesReceived ?? 0,
            // For the samples file (diagnosis of a freeze): what the receiver saw and asked for.
            framesReceived: s.framesReceived ?? 0, framesDropped: s.framesDropped ?? 0, keyFramesDecoded: s.keyFramesDecoded ?? 0,
            packetsLost: s.packetsLost ?? 0, pliCount: s.pliCount ?? 0, nackCount: s.nackCount ?? 0, freezeCount: s.freezeCount ?? 0,
            jitterBufferDelay: s.jitterBufferDelay ?? 0, jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
          };
        }
      }
    }
    return null;
  });
}

/** Samples a subscriber's inbound video every SAMPLE_MS; `decoding`: framesDecoded advanced since the last sample. */
class Sampler {
  constructor(peer) { Object.assign(this, { peer, samples: [], running: true, waiters: [] }); this.loop = this.run(); }
  async run() {
    let prev = null;
    while (this.running) {
      const t = Date.now();
      let v = null;
      try { v = await inboundVideo(this.peer); } catch { /* page closing */ }
      if (v) {
        const s = { t, ...v, decoding: !!prev && v.framesDecoded > prev.framesDecoded };
        this.samples.push(s);
        prev = v;
        for (const w of [...this.waiters]) if (w.pred(s)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(s); }
      }
      await sleep(Math.max(0, SAMPLE_MS - (Date.now() - t)));
    }
  }
  get last() { return this.samples.at(-1) ?? null; }
  /** The first sample from now on satisfying `pred`, or null after `timeout` ms. */
  until(pred, timeout) {
    return new Promise((resolve) => {
      const w = { pred, resolve: (s) => { clearTimeout(timer); resolve(s); } };
      const timer = setTimeout(() => { const i = this.waiters.indexOf(w); if (i >= 0) this.waiters.splice(i, 1); resolve(null); }, timeout);
      this.waiters.push(w);
    });
  }
  /** Frames/s, largest and smallest width over the samples in [from, to]. */
  window(from, to) {
    const s = this.samples.filter((x) => x.t >= from && x.t <= to);
    if (s.length < 2) return { fps: 0, maxWidth: s[0]?.frameWidth ?? 0, minWidth: s[0]?.frameWidth ?? 0, samples: s.length, kbps: 0 };
    const a = s[0], b = s.at(-1), secs = (b.t - a.t) / 1000;
    return {
      fps: (b.framesDecoded - a.framesDecoded) / secs,
      kbps: ((b.bytesReceived - a.bytesReceived) * 8) / secs / 1000,
      maxWidth: Math.max(...s.map((x) => x.frameWidth)),
      minWidth: Math.min(...s.map((x) => x.frameWidth)),
      samples: s.length,
    };
  }
  async stop() { this.running = false; await this.loop; }
  /** Widths over time, run-length coded: "1280x12 1280!x3 640x30" (! = no new frame decoded). */
  trace() {
    const runs = [];
    for (const s of this.samples) {
      const k = `${s.frameWidth}${s.decoding ? '' : '!'}`;
      if (runs.at(-1)?.k === k) runs.at(-1).n++; else runs.push({ k, n: 1 });
    }
    return runs.map((r) => (r.n > 1 ? `${r.k}x${r.n}` : r.k)).join(' ');
  }
}

/** A sample predicate that holds once `pred` has held for `n` samples in a row. */
function steady(pred, n) {
  let run = 0;
  return (s) => { run = pred(s) ? run + 1 : 0; return run >= n; };
}

const secs = (ms) => (ms == null ? 'never' : `${(ms / 1000).toFixed(1)} s`);

/** Writes a sampler's samples (times in ms relative to the first) to TEST_OUTPUT, for diagnosis. */
async function saveSamples(name, sampler, marks) {
  if (!OUT || sampler.samples.length === 0) return;
  const t0 = sampler.samples[0].t;
  const rel = Object.fromEntries(Object.entries(marks).map(([k, v]) => [k, v - t0]));
  const samples = sampler.samples.map((x) => ({ ...x, t: x.t - t0 }));
  const file = path.join(OUT, `shaped-samples-${name.replace(/[^A-Za-z0-9]+/g, '-')}.json`);
  await fs.writeFile(file, JSON.stringify({ startedAt: new Date(t0).toISOString(), marks: rel, samples })).catch(() => {});
}

async function report(line) {
  console.log(line);
  if (OUT) await fs.appendFile(path.join(OUT, 'shaped-figures.txt'), `${new Date().toISOString()} ${line}\n`).catch(() => {});
}

/**
 * The down-switch scenario against the server at `wsUrl`: the subscriber decodes the top layer, its
 * downlink is shaped to 600 kbit/s, then unshaped. Returns the figures (null times: never seen).
 */
async function downSwitch(label, wsUrl) {
  const room = roomId(`shaped-${label.replace(/[^A-Za-z0-9]+/g, '-')}`);
  const pub = await newPeer(pubSide, `${label}-pub`, wsUrl);
  const sub = await newPeer(subSide, `${label}-sub`, wsUrl);
  let sampler;
  const f = { label };
  try {
    await pub.join(room);
    await sub.join(room);
    const capture = await publishSimulcast(pub);
    f.topWidth = capture.width;
    f.captureFps = capture.frameRate;
    await sub.consumeAll();
    sampler = new Sampler(sub);
    const t0 = Date.now();
    // Shaping starts once the subscriber is steadily on the top layer (TOP_STEADY samples in a row),
    // so a wobble of the server's own ramp-up is not mistaken for the down-switch under test.
    const top = await sampler.until(steady((s) => s.decoding && s.frameWidth >= f.topWidth, TOP_STEADY), TOP_TIMEOUT);
    if (!top) throw new Error(`${label}: the subscriber was never steadily (${TOP_STEADY} samples in a row) on the top layer (${f.topWidth} wide) within ${TOP_TIMEOUT / 1000} s before shaping; widths seen: ${sampler.trace()}`);
    f.rampMs = top.t - t0;

    shape(600);
    const tShape = Date.now();
    const fit = await sampler.until((s) => s.decoding && s.frameWidth > 0 && s.frameWidth <= 640, FIT_OBSERVE);
    f.fitMs = fit ? fit.t - tShape : null;
    f.fitWidth = fit?.frameWidth ?? null;
    const from = fit ? fit.t : Date.now();
    while (Date.now() < from + LIMITED_WINDOW) await sleep(Math.min(SAMPLE_MS, from + LIMITED_WINDOW - Date.now()));
    Object.assign(f, { limited: sampler.window(from, Date.now()), tbf: tbfCounters() });

    unshape();
    const tUnshape = Date.now();
    const back = await sampler.until((s) => s.decoding && s.frameWidth >= f.topWidth, BACK_OBSERVE);
    f.backMs = back ? back.t - tUnshape : null;
    f.trace = sampler.trace();
    await saveSamples(`600k-${label}`, sampler, { shapedAt: tShape, unshapedAt: tUnshape });
    return f;
  } finally {
    unshape();
    await sampler?.stop();
    await pub.close();
    await sub.close();
  }
}

function downSwitchLine(f) {
  if (f.error) return `shaped 600k [${f.label}] not measured: ${f.error}`;
  const l = f.limited;
  return `shaped 600k [${f.label}] time to fit ${secs(f.fitMs)}${f.fitWidth ? ` (${f.fitWidth} wide)` : ''}, ` +
    `fps while limited ${l.fps.toFixed(1)}, max width while limited ${l.maxWidth}, time back to top ${secs(f.backMs)} ` +
    `| ramp to top ${secs(f.rampMs)}, ${l.kbps.toFixed(0)} kbit/s received while limited, tbf dropped ${f.tbf?.dropped} pkt, capture ${f.topWidth} wide ${f.captureFps} fps`;
}

test('a 600 kbit/s shaped subscriber of a simulcast publisher switches down within 5 s, decodes ≥ 15 fps on a fitting layer, and back up within 10 s once unshaped', {
  timeout: 330_000, skip,
}, async () => {
  let ref = null;
  if (REF_URL) {
    try {
      ref = await downSwitch('reference mediasoup', `${REF_URL.replace(/^http/, 'ws')}/ws`);
    } catch (e) {
      ref = { label: 'reference mediasoup', error: e.message };
    }
    await report(downSwitchLine(ref));
  } else {
    await report(`shaped 600k [reference mediasoup] skipped: ${REF_MISSING}`);
  }

  const ours = await downSwitch('ours', WS_URL);
  await report(downSwitchLine(ours));
  const legend = `(width x samples of ${SAMPLE_MS} ms, ! = no new frame)`;
  if (ref && !ref.error) await report(`shaped 600k reference trace ${legend}: ${ref.trace}`);
  await report(`shaped 600k ours trace ${legend}: ${ours.trace}`);

  const failures = [];
  if (!ours.tbf || ours.tbf.dropped + ours.tbf.overlimits === 0) failures.push(`the tbf never limited anything (${JSON.stringify(ours.tbf)}): the shaping did not bite`);
  if (ours.fitMs == null) failures.push(`never on a layer ≤ 640 wide and decoding within ${FIT_OBSERVE / 1000} s of shaping (want ≤ ${FIT_LIMIT / 1000} s)`);
  else if (ours.fitMs > FIT_LIMIT) failures.push(`time to a fitting layer ${secs(ours.fitMs)} > ${FIT_LIMIT / 1000} s`);
  if (ours.limited.fps < 15) failures.push(`decoded ${ours.limited.fps.toFixed(2)} frames/s while limited, want ≥ 15`);
  if (ours.limited.maxWidth > 640) failures.push(`frameWidth reached ${ours.limited.maxWidth} while limited, want ≤ 640`);
  if (ours.backMs == null) failures.push(`not back on the top layer (${ours.topWidth} wide) within ${BACK_OBSERVE / 1000} s of unshaping`);
  else if (ours.backMs > BACK_LIMIT) failures.push(`back on the top layer after ${secs(ours.backMs)} > ${BACK_LIMIT / 1000} s`);
  assert.ok(failures.length === 0, `our server under a 600 kbit/s downlink:\n  - ${failures.join('\n  - ')}\n${downSwitchLine(ours)}`);
});

/**
 * One room against the server at `wsUrl`: a publisher, a subscriber shaped to 300 kbit/s from the
 * start and an unlimited one. Waits (up to `settleTimeout`) until both are on their own layer at
 * once, then measures a LIMITED_WINDOW; counts the publisher's key-frame requests throughout.
 */
async function twoSubscribers(label, wsUrl, settleTimeout) {
  const room = roomId(`shaped-two-${label.replace(/[^A-Za-z0-9]+/g, '-')}`);
  const pub = await newPeer(pubSide, `${label}-two-pub`, wsUrl);
  const slow = await newPeer(subSide, `${label}-two-slow`, wsUrl);
  const fast = await newPeer(pubSide, `${label}-two-fast`, wsUrl);
  const samplers = [];
  const f = { label };
  try {
    shape(300);
    await pub.join(room);
    await slow.join(room);
    await fast.join(room);
    const capture = await publishSimulcast(pub);
    f.topWidth = capture.width;
    const t0 = Date.now();
    const kf0 = await keyFrameRequests(pub);
    await slow.consumeAll();
    await fast.consumeAll();
    const [ss, fs_] = [new Sampler(slow), new Sampler(fast)];
    samplers.push(ss, fs_);
    // Both on their own layer at once (the publisher may need a while to ramp up to the top layer).
    const slowOk = (x) => x && x.decoding && x.frameWidth > 0 && x.frameWidth <= 320;
    const fastOk = (x) => x && x.decoding && x.frameWidth >= capture.width;
    const deadline = Date.now() + settleTimeout;
    while (Date.now() < deadline && !(slowOk(ss.last) && fastOk(fs_.last))) await sleep(SAMPLE_MS);
    f.settledMs = slowOk(ss.last) && fastOk(fs_.last) ? Date.now() - t0 : null;
    const from = Date.now();
    const kfFrom = await keyFrameRequests(pub);
    while (Date.now() < from + LIMITED_WINDOW) await sleep(Math.min(SAMPLE_MS, from + LIMITED_WINDOW - Date.now()));
    f.slow = ss.window(from, Date.now());
    f.fast = fs_.window(from, Date.now());
    f.tbf = tbfCounters();
    const kf1 = await keyFrameRequests(pub);
    f.keyFrames = kf1.total - kf0.total;
    f.keyFramesByRid = kfDelta(kf0, kf1);
    f.keyFramesWindow = kf1.total - kfFrom.total;
    f.windowSeconds = (Date.now() - from) / 1000;
    f.seconds = (Date.now() - t0) / 1000;
    f.kfRate = f.keyFrames / f.seconds;
    f.traces = `shaped ${ss.trace()} | unlimited ${fs_.trace()}`;
    await saveSamples(`300k-${label}-shaped`, ss, { windowFrom: from });
    await saveSamples(`300k-${label}-unlimited`, fs_, { windowFrom: from });
    return f;
  } finally {
    unshape();
    for (const x of samplers) await x.stop();
    await pub.close();
    await slow.close();
    await fast.close();
  }
}

function twoSubscribersLine(f) {
  if (f.error) return `shaped 300k + unlimited [${f.label}] not measured: ${f.error}`;
  return `shaped 300k + unlimited [${f.label}] both on their layer after ${secs(f.settledMs)}; ` +
    `shaped: max width ${f.slow.maxWidth}, ${f.slow.fps.toFixed(1)} fps, ${f.slow.kbps.toFixed(0)} kbit/s; ` +
    `unlimited: min width ${f.fast.minWidth}, ${f.fast.fps.toFixed(1)} fps; ` +
    `key-frame requests ${f.keyFrames} in ${f.seconds.toFixed(1)} s = ${f.kfRate.toFixed(2)}/s ` +
    `| of them ${f.keyFramesWindow} in the last ${f.windowSeconds.toFixed(1)} s (both settled), per rid ${JSON.stringify(f.keyFramesByRid)}, tbf dropped ${f.tbf?.dropped} pkt`;
}

test('one room: a 300 kbit/s shaped subscriber gets a low layer, an unlimited one keeps the top layer, and the publisher sees ≤ 1 key-frame request/s', {
  timeout: 240_000, skip,
}, async () => {
  let ref = null;
  if (REF_URL) {
    try {
      ref = await twoSubscribers('reference mediasoup', `${REF_URL.replace(/^http/, 'ws')}/ws`, REF_SETTLE_TIMEOUT);
    } catch (e) {
      ref = { label: 'reference mediasoup', error: e.message };
    }
    await report(twoSubscribersLine(ref));
  } else {
    await report(`shaped 300k + unlimited [reference mediasoup] skipped: ${REF_MISSING}`);
  }

  const f = await twoSubscribers('ours', WS_URL, TOP_TIMEOUT);
  const line = twoSubscribersLine(f);
  await report(line);
  const legend = `(width x samples of ${SAMPLE_MS} ms, ! = no new frame)`;
  if (ref && !ref.error) await report(`shaped 300k reference traces ${legend}: ${ref.traces}`);
  await report(`shaped 300k ours traces ${legend}: ${f.traces}`);

  const failures = [];
  if (f.settledMs == null) failures.push(`never both at once (shaped ≤ 320 wide and decoding, unlimited ≥ ${f.topWidth} wide and decoding) within ${TOP_TIMEOUT / 1000} s`);
  if (f.slow.maxWidth > 320) failures.push(`the shaped subscriber's frameWidth reached ${f.slow.maxWidth}, want ≤ 320`);
  if (f.slow.fps < 10) failures.push(`the shaped subscriber decoded ${f.slow.fps.toFixed(2)} frames/s, want ≥ 10`);
  if (f.fast.minWidth < f.topWidth) failures.push(`the unlimited subscriber's frameWidth fell to ${f.fast.minWidth}, want ${f.topWidth} throughout`);
  if (f.fast.fps < 15) failures.push(`the unlimited subscriber decoded ${f.fast.fps.toFixed(2)} frames/s, want ≥ 15`);
  if (f.kfRate > 1) failures.push(`the publisher got ${f.keyFrames} key-frame requests in ${f.seconds.toFixed(1)} s (${f.kfRate.toFixed(2)}/s), want ≤ 1/s`);
  assert.ok(failures.length === 0, `our server, one room with a 300 kbit/s and an unlimited subscriber:\n  - ${failures.join('\n  - ')}\n${line}`);
});
