// Media quality: bandwidth estimation feedback (the publisher ramps up), loss recovery (NACK/RTX)
// and simulcast layer selection, with real Chromium peers.
//
// The loss test needs a server started with the test-only SFU_FAULT_DROP_OUT_PERCENT (e.g. 5) and the
// same variable set for this runner; without it that test is skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, sleep, waitFor, fetchStats, buildStatePage, Peer, WS_URL } from './harness.mjs';

const DROP_PERCENT = Number(process.env.SFU_FAULT_DROP_OUT_PERCENT || 0);

let h;
let pageUrl;
before(async () => {
  h = await startHarness();
  // The page script with its internal state exposed: these tests read the publisher's own
  // stats and produce with simulcast encodings.
  const page = await buildStatePage('quality');
  pageUrl = h.pageUrl.replace('/index.html', `/${page}`);
});
after(async () => { await h?.close(); });

const peers = [];
after(async () => { for (const p of peers) await p.close().catch(() => {}); });

async function newPeer(name) {
  const context = await h.browser.newContext();
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.sfuReady === true && !!window.sfuState);
  await page.evaluate((u) => window.sfu.connect(u), WS_URL);
  const peer = new Peer(name, context, page, consoleErrors);
  peers.push(peer);
  return peer;
}

/** Bytes the publisher has sent on its video producer (all encodings). */
function videoBytesSent(peer) {
  return peer.eval(async () => {
    let bytes = 0;
    for (const p of window.sfuState.producers.values()) {
      if (p.kind !== 'video') continue;
      for (const s of (await p.getStats()).values()) if (s.type === 'outbound-rtp') bytes += s.bytesSent ?? 0;
    }
    return bytes;
  });
}

/** The subscriber's inbound video stats (first video consumer). */
function inboundVideo(peer) {
  return peer.eval(async () => {
    for (const [consumerId, c] of window.sfuState.consumers) {
      if (c.kind !== 'video') continue;
      for (const s of (await c.consumer.getStats()).values()) {
        if (s.type === 'inbound-rtp') {
          return { consumerId, framesDecoded: s.framesDecoded ?? 0, frameWidth: s.frameWidth ?? 0, freezeCount: s.freezeCount ?? 0,
            nackCount: s.nackCount ?? 0, packetsLost: s.packetsLost ?? 0, packetsReceived: s.packetsReceived ?? 0 };
        }
      }
    }
    return null;
  });
}

async function workerTotals() {
  const stats = await fetchStats();
  const workers = stats.workers ?? [];
  const sum = (k) => workers.reduce((a, w) => a + (w[k] ?? 0), 0);
  return { nacksReceived: sum('nacksReceived'), retransmissionsSent: sum('retransmissionsSent') };
}

async function describe(...ps) {
  return (await Promise.all(ps.map((p) => p.describe()))).join('\n');
}

/** The publisher's video encoder target (what its bandwidth estimate allows), in bps. */
function videoTargetBitrate(peer) {
  return peer.eval(async () => {
    let bps = 0;
    for (const p of window.sfuState.producers.values()) {
      if (p.kind !== 'video') continue;
      for (const s of (await p.getStats()).values()) if (s.type === 'outbound-rtp') bps += s.targetBitrate ?? 0;
    }
    return bps;
  });
}

/** Publishes a 640x480 canvas of coarse random noise: incompressible, so the encoder really
 * sends what the bandwidth estimate allows (the fake camera's simple picture stays far below). */
function publishNoise(peer) {
  return peer.eval(async () => {
    const st = window.sfuState;
    const canvas = document.createElement('canvas');
    canvas.width = 640; canvas.height = 480;
    const small = document.createElement('canvas');
    small.width = 160; small.height = 120;
    const ctx = canvas.getContext('2d');
    const sctx = small.getContext('2d');
    const img = sctx.createImageData(160, 120);
    setInterval(() => {
      const d = img.data;
      for (let i = 0; i < d.length; i += 4) {
        d[i] = Math.random() * 255; d[i + 1] = Math.random() * 255; d[i + 2] = Math.random() * 255; d[i + 3] = 255;
      }
      sctx.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(small, 0, 0, 640, 480);
    }, 66);
    const track = canvas.captureStream(15).getVideoTracks()[0];
    const codec = st.device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
    const producer = await st.sendTransport.produce({ track, codec });
    st.producers.set(producer.id, producer);
  });
}

async function bwePair(name) {
  const room = roomId(name);
  const pub = await newPeer(`${name}-pub`);
  const sub = await newPeer(`${name}-sub`);
  await pub.join(room);
  await sub.join(room);
  return { pub, sub };
}

test('transport-cc feedback lets a Chromium publisher send a noisy video above 1 Mbps within 15 s', { timeout: 150_000 }, async () => {
  const { pub, sub } = await bwePair('bwe-noise');
  try {
    await publishNoise(pub);
    await sub.consumeAll();
    await waitFor(async () => (await inboundVideo(sub))?.framesDecoded > 0, { message: 'first decoded frame' });
    // Within 15 s of media flowing, some one-second window carries more than 1 Mbps.
    let best = 0;
    let last = await videoBytesSent(pub);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && best <= 1_000_000) {
      const t0 = Date.now();
      await sleep(1000);
      const now = await videoBytesSent(pub);
      best = Math.max(best, ((now - last) * 8 * 1000) / (Date.now() - t0));
      last = now;
    }
    const target = await videoTargetBitrate(pub);
    assert.ok(best > 1_000_000, `publisher video bitrate peaked at ${Math.round(best / 1000)} kbps (target ${target}), want > 1000\n${await describe(pub, sub)}`);
  } finally {
    await pub.close();
    await sub.close();
  }
});

test('a camera publisher\'s bandwidth estimate ramps above 1 Mbps within 30 s and the subscriber decodes 640 wide', { timeout: 150_000 }, async () => {
  const { pub, sub } = await bwePair('bwe-camera');
  try {
    await pub.publish({ video: true, audio: false });
    await sub.consumeAll();
    await waitFor(async () => (await inboundVideo(sub))?.framesDecoded > 0, { message: 'first decoded frame' });
    // Without feedback Chromium stays at its 300 kbps start bitrate. With it, once the initial
    // probes are over its estimate grows by roughly 8 % a second, so 300 kbps → 1 Mbps can take
    // ≈ 15 s: a 15 s deadline was a coin toss on a busy 2-core CI machine (961 kbps seen once).
    // 30 s still fails without feedback.
    let lastTarget;
    await waitFor(async () => { lastTarget = await videoTargetBitrate(pub); return lastTarget > 1_000_000; },
      { timeout: 30_000, message: 'encoder target bitrate > 1 Mbps' })
      .catch(async (e) => { throw new Error(`${e.message}; last target ${lastTarget} bps\n${await describe(pub, sub)}`); });
    const v = await waitFor(async () => { const s = await inboundVideo(sub); return s?.frameWidth >= 640 ? s : null; },
      { timeout: 20_000, message: 'subscriber frameWidth >= 640' });
    assert.ok(v.frameWidth >= 640);
  } finally {
    await pub.close();
    await sub.close();
  }
});

test('with 5% of forwarded packets dropped, NACKs are answered with retransmissions and video keeps decoding', { timeout: 150_000, skip: DROP_PERCENT > 0 ? false : 'needs SFU_FAULT_DROP_OUT_PERCENT on the server and this runner' }, async () => {
  const room = roomId('nack');
  const pub = await newPeer('nack-pub');
  const sub = await newPeer('nack-sub');
  try {
    await pub.join(room);
    await sub.join(room);
    await pub.publish({ video: true, audio: false });
    await sub.consumeAll();
    await waitFor(async () => (await inboundVideo(sub))?.framesDecoded > 0, { message: 'first decoded frame' });
    const before = await workerTotals();
    const a = await inboundVideo(sub);
    await sleep(10_000);
    const b = await inboundVideo(sub);
    const after = await workerTotals();
    const detail = `${JSON.stringify({ a, b, before, after })}\n${await describe(pub, sub)}`;
    assert.ok(b.framesDecoded - a.framesDecoded >= 50, `frames decoded in 10 s: ${b.framesDecoded - a.framesDecoded}\n${detail}`);
    assert.ok(b.nackCount > a.nackCount, `the subscriber sent NACKs\n${detail}`);
    assert.ok(after.nacksReceived > before.nacksReceived, `the server counted NACKs\n${detail}`);
    assert.ok(after.retransmissionsSent > before.retransmissionsSent, `the server retransmitted\n${detail}`);
    assert.ok(b.freezeCount - a.freezeCount <= 3, `few freezes: ${b.freezeCount - a.freezeCount}\n${detail}`);
  } finally {
    await pub.close();
    await sub.close();
  }
});

test('a simulcast consumer receives the layer it prefers and switches up on request', { timeout: 180_000 }, async () => {
  const room = roomId('simulcast');
  const pub = await newPeer('sim-pub');
  const sub = await newPeer('sim-sub');
  try {
    await pub.join(room);
    await sub.join(room);
    await pub.eval(async () => {
      const st = window.sfuState;
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 15 } });
      const track = stream.getVideoTracks()[0];
      const codec = st.device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
      const producer = await st.sendTransport.produce({
        track, codec,
        encodings: [{ rid: 'r0', scaleResolutionDownBy: 4 }, { rid: 'r1', scaleResolutionDownBy: 2 }, { rid: 'r2' }],
      });
      st.producers.set(producer.id, producer);
      return producer.rtpParameters.encodings.length;
    });
    await sub.consumeAll();
    const first = await waitFor(async () => { const s = await inboundVideo(sub); return s?.framesDecoded > 0 ? s : null; },
      { message: 'first decoded frame' });
    await sub.request('set-consumer-preferred-layers', { consumerId: first.consumerId, spatialLayer: 0 });
    const low = await waitFor(async () => { const s = await inboundVideo(sub); return s && s.frameWidth > 0 && s.frameWidth <= 320 ? s : null; },
      { timeout: 30_000, message: 'frameWidth <= 320 on layer 0' }).catch(async (e) => { e.message += `\n${await describe(pub, sub)}`; throw e; });
    await sleep(2000);
    const lowLater = await inboundVideo(sub);
    assert.ok(lowLater.framesDecoded > low.framesDecoded, 'layer 0 keeps decoding');
    assert.ok(lowLater.frameWidth <= 320, `still low: ${lowLater.frameWidth}`);

    await sub.request('set-consumer-preferred-layers', { consumerId: first.consumerId, spatialLayer: 2 });
    const high = await waitFor(async () => { const s = await inboundVideo(sub); return s?.frameWidth >= 640 ? s : null; },
      { timeout: 30_000, message: 'frameWidth >= 640 on layer 2' }).catch(async (e) => { e.message += `\n${await describe(pub, sub)}`; throw e; });
    await sleep(2000);
    const highLater = await inboundVideo(sub);
    assert.ok(highLater.framesDecoded > high.framesDecoded, 'the high layer keeps decoding');

    const changes = (await sub.notifications()).filter((n) => n.method === 'consumer-layers-changed').map((n) => n.data);
    assert.ok(changes.some((c) => c.consumerId === first.consumerId && c.spatialLayer === 0), `layers-changed to 0: ${JSON.stringify(changes)}`);
    assert.ok(changes.at(-1).spatialLayer >= 1, `last layers-changed is up again: ${JSON.stringify(changes)}`);
    assert.deepEqual(sub.consoleErrors, [], 'no errors on the subscriber page');
  } finally {
    await pub.close();
    await sub.close();
  }
});
