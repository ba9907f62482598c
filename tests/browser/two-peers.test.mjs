import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, expectRising } from './harness.mjs';

let h;
before(async () => { h = await startHarness(); });
after(async () => { await h?.close(); });

async function twoPeers(codec) {
  const room = roomId(`two-${codec}`);
  const a = await h.newPeer(`alice-${codec}`);
  const b = await h.newPeer(`bob-${codec}`);
  try {
    const ja = await a.join(room);
    const jb = await b.join(room);
    assert.ok(ja.peerId && jb.peerId && ja.peerId !== jb.peerId, 'distinct peer ids');
    assert.deepEqual(jb.peers.map((p) => p.peerId), [ja.peerId], 'second peer sees the first in join-room');
    const capCodecs = ja.routerRtpCapabilities.codecs.map((c) => c.mimeType.toLowerCase());
    assert.ok(capCodecs.includes(`video/${codec}`), `router offers ${codec}: ${capCodecs}`);

    const [pa, pb] = await Promise.all([a.publish({ video: true, audio: true, codec }), b.publish({ video: true, audio: true, codec })]);
    for (const p of [pa, pb]) {
      assert.deepEqual(p.map((x) => x.kind).sort(), ['audio', 'video']);
      assert.equal(p.find((x) => x.kind === 'video').codec.toLowerCase(), `video/${codec}`);
    }
    // Each consumes the other's producers (new-producer auto-consume, plus whatever it missed).
    await Promise.all([a.consumeAll(), b.consumeAll()]);

    const [va, vb] = await Promise.all([
      expectRising(a, 'video', 'framesDecoded', 5, { fromPeerId: jb.peerId }),
      expectRising(b, 'video', 'framesDecoded', 5, { fromPeerId: ja.peerId }),
    ]);
    for (const v of [...va, ...vb]) {
      assert.equal(v.codec.toLowerCase(), `video/${codec}`, 'consumer codec');
      assert.ok(v.frameWidth > 0, 'decoded frames have a width');
    }
    await Promise.all([
      expectRising(a, 'audio', 'packetsReceived', 5, { fromPeerId: jb.peerId }),
      expectRising(b, 'audio', 'packetsReceived', 5, { fromPeerId: ja.peerId }),
    ]);
    // Exactly one consumer per remote producer.
    for (const p of [a, b]) assert.equal((await p.stats()).length, 2, `${p.name} has 2 consumers`);
    await a.leave();
    await b.leave();
  } finally {
    await a.close();
    await b.close();
  }
}

test('two peers publishing VP8 and Opus each decode the other\'s video and receive its audio', { timeout: 120_000 }, () => twoPeers('vp8'));

test('two peers publishing H264 and Opus each decode the other\'s video and receive its audio', { timeout: 120_000 }, () => twoPeers('h264'));
