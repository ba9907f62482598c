import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, expectRising, waitFor } from './harness.mjs';

let h;
before(async () => { h = await startHarness(); });
after(async () => { await h?.close(); });

test('one publisher and three subscribers: all three subscribers decode the video and receive the audio', { timeout: 150_000 }, async () => {
  const room = roomId('fanout');
  const pub = await h.newPeer('publisher');
  const subs = [];
  for (let i = 1; i <= 3; i++) subs.push(await h.newPeer(`subscriber-${i}`));
  try {
    // Subscribers join first and rely on new-producer notifications to consume.
    const joined = [];
    for (const s of subs) joined.push(await s.join(room));
    const jp = await pub.join(room);
    assert.equal(jp.peers.length, 3, 'publisher sees the three subscribers in join-room');
    const produced = await pub.publish({ video: true, audio: true, codec: 'vp8' });
    const producerIds = produced.map((p) => p.producerId).sort();

    // Every subscriber gets new-producer for both producers, with the publisher's peer id.
    for (const s of subs) {
      await waitFor(async () => {
        const got = (await s.notifications()).filter((n) => n.method === 'new-producer');
        return got.length >= 2 && got.every((n) => n.data.peerId === jp.peerId) &&
          JSON.stringify(got.map((n) => n.data.producerId).sort()) === JSON.stringify(producerIds);
      }, { timeout: 20_000, message: `${s.name} gets new-producer for both producers` });
      await s.consumeAll(); // no-op when auto-consume already did it
    }
    await Promise.all(subs.map((s) => expectRising(s, 'video', 'framesDecoded', 5, { fromPeerId: jp.peerId })));
    await Promise.all(subs.map((s) => expectRising(s, 'audio', 'packetsReceived', 3, { fromPeerId: jp.peerId })));
    for (const s of subs) assert.equal((await s.stats()).length, 2, `${s.name} has exactly 2 consumers`);
  } finally {
    for (const p of [pub, ...subs]) await p.close();
  }
});
