import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, expectRising, waitForMedia, waitFor, fetchStats } from './harness.mjs';

let h;
before(async () => { h = await startHarness(); });
after(async () => { await h?.close(); });

const liveFrom = async (peer, peerId) => (await peer.info()).consumers.filter((c) => c.peerId === peerId);

/** Waits until `peer` saw peer-left for `goneId`, and every consumer it had of `gone`'s producers is closed. */
async function expectGone(peer, goneId, goneProducerIds) {
  await waitFor(async () => (await peer.notifications()).some((n) => n.method === 'peer-left' && n.data.peerId === goneId),
    { timeout: 20_000, message: `${peer.name} gets peer-left for ${goneId}` });
  await waitFor(async () => (await liveFrom(peer, goneId)).length === 0,
    { timeout: 20_000, message: `${peer.name}'s consumers of ${goneId} close` });
  const info = await peer.info();
  const closed = info.closedConsumers.filter((c) => goneProducerIds.includes(c.producerId));
  assert.equal(closed.length, goneProducerIds.length, `${peer.name} closed one consumer per producer of ${goneId}: ${JSON.stringify(info.closedConsumers)}`);
  for (const c of closed) {
    assert.ok(['consumer-closed', 'producer-closed'].includes(c.reason), `closed by a server notification, not by ${c.reason}`);
  }
  // The server said so for every producer (producer-closed for it, or consumer-closed for our consumer of it).
  for (const pid of goneProducerIds) {
    const consumerId = closed.find((c) => c.producerId === pid)?.consumerId;
    assert.ok(info.notifications.some((n) => (n.method === 'producer-closed' && n.data.producerId === pid) ||
      (n.method === 'consumer-closed' && n.data.consumerId === consumerId)), `${peer.name} notified that producer ${pid} went away`);
  }
  assert.ok(!info.peers.some((p) => p.peerId === goneId), `${peer.name} no longer lists ${goneId}`);
}

test('a late joiner consumes existing producers, leaving and dropping peers are cleaned up, and the server returns to zero', { timeout: 180_000 }, async (t) => {
  const keys = ['rooms', 'peers', 'transports', 'producers', 'consumers'];
  const baseline = await fetchStats();
  const room = roomId('late');
  const a = await h.newPeer('alice');
  const b = await h.newPeer('bob');
  let c;
  try {
    const ja = await a.join(room);
    const jb = await b.join(room);
    const [pa, pb] = await Promise.all([a.publish({ codec: 'vp8' }), b.publish({ codec: 'vp8' })]);
    const aProducers = pa.map((p) => p.producerId), bProducers = pb.map((p) => p.producerId);
    await Promise.all([a.consumeAll(), b.consumeAll()]);
    await Promise.all([
      waitForMedia(a, 'video', 'framesDecoded', { fromPeerId: jb.peerId }),
      waitForMedia(b, 'video', 'framesDecoded', { fromPeerId: ja.peerId }),
    ]);

    // Carol joins later: the join-room answer lists both peers and all four live producers.
    c = await h.newPeer('carol');
    const jc = await c.join(room);
    assert.deepEqual(jc.peers.map((p) => p.peerId).sort(), [ja.peerId, jb.peerId].sort(), 'join-room peers');
    const listed = jc.producers.map((p) => `${p.peerId}/${p.kind}/${p.producerId}`).sort();
    const expected = [...pa.map((p) => `${ja.peerId}/${p.kind}/${p.producerId}`), ...pb.map((p) => `${jb.peerId}/${p.kind}/${p.producerId}`)].sort();
    assert.deepEqual(listed, expected, 'join-room producers lists every live producer of the others');
    const consumed = await c.consumeAll();
    assert.equal(consumed.length, 4, 'carol consumes all four producers');
    await Promise.all([
      expectRising(c, 'video', 'framesDecoded', 3, { fromPeerId: ja.peerId }),
      expectRising(c, 'video', 'framesDecoded', 3, { fromPeerId: jb.peerId }),
    ]);
    await waitForMedia(c, 'audio', 'packetsReceived', { count: 2 });
    // The earlier peers learnt about carol.
    for (const p of [a, b]) {
      await waitFor(async () => (await p.notifications()).some((n) => n.method === 'peer-joined' && n.data.peerId === jc.peerId),
        { timeout: 10_000, message: `${p.name} gets peer-joined for carol` });
    }

    // Alice leaves with leave-room: bob and carol see peer-left, and their consumers of alice close.
    await a.leave();
    await Promise.all([expectGone(b, ja.peerId, aProducers), expectGone(c, ja.peerId, aProducers)]);
    // Bob's media still flows to carol.
    await expectRising(c, 'video', 'framesDecoded', 3, { fromPeerId: jb.peerId });

    // Bob's page closes (socket drop): carol sees him go as well.
    await b.close();
    await expectGone(c, jb.peerId, bProducers);
    assert.equal((await c.info()).consumers.length, 0, 'carol has no consumers left');

    await c.leave();
    await a.close();
    await c.close();
    // Protocol: counts return to 0 when everyone has left. If other clients were already using the
    // server when this test started (a shared server), only require a return to that baseline.
    const shared = keys.some((k) => baseline[k] > 0);
    if (shared) t.diagnostic(`server was not idle at start (${JSON.stringify(baseline)}): checking counts return to that baseline, not to 0`);
    const stats = await waitFor(async () => {
      const s = await fetchStats();
      return keys.every((k) => s[k] <= (shared ? baseline[k] : 0)) ? s : null;
    }, { timeout: 30_000, interval: 500, message: `GET /api/stats to show ${keys.join(', ')} all ${shared ? 'back to the baseline' : '0'}` });
    assert.ok(Array.isArray(stats.workers), 'stats has workers[]');
  } finally {
    for (const p of [a, b, c]) await p?.close();
  }
});
