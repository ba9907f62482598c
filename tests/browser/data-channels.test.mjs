// Data channels (shared/protocol.md item 12) between real Chromium peers through the SFU:
// mediasoup-client DataProducer/DataConsumer over SCTP over each transport's DTLS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, waitFor, fetchStats } from './harness.mjs';

let h;
before(async () => { h = await startHarness(); });
after(async () => { await h?.close(); });

const DATA_TIMEOUT = 30_000;

/** The live data producers and consumers, all workers together. */
async function dataCounts() {
  const s = await fetchStats();
  const sum = (k) => s.workers.reduce((n, w) => n + (w[k] ?? 0), 0);
  return { dataProducers: sum('dataProducers'), dataConsumers: sum('dataConsumers'), dataChannels: s.workers[0]?.dataChannels ?? {} };
}

const received = async (peer, fromPeerId) => (await peer.eval(() => window.sfu.dataReceived()))
  .filter((c) => !fromPeerId || c.peerId === fromPeerId);

async function waitForMessage(peer, fromPeerId, text) {
  return waitFor(async () => (await received(peer, fromPeerId)).some((c) => c.messages.some((m) => m.text === text)),
    { timeout: DATA_TIMEOUT, message: `${peer.name} receives "${text}" from ${fromPeerId}` });
}

async function waitForOpenConsumers(peer, count) {
  return waitFor(async () => {
    const rows = await received(peer);
    return rows.length >= count && rows.every((r) => r.readyState === 'open') ? rows : null;
  }, { timeout: DATA_TIMEOUT, message: `${peer.name} has ${count} open data consumers` });
}

test('two peers exchange data-channel messages both ways, a late joiner consumes the existing data producers, oversized messages are dropped, and the counts return to zero', { timeout: 180_000 }, async () => {
  const baseline = await dataCounts();
  const room = roomId('data');
  const a = await h.newPeer('alice');
  const b = await h.newPeer('bob');
  let c;
  try {
    // Alice's browser is told a larger maxMessageSize than the server's, so that it sends an
    // oversized message if it lets itself (Chromium caps at its own 256 KiB and refuses).
    await a.eval(() => window.sfu.enableDataChannels({ maxMessageSize: 400_000 }));
    await b.eval(() => window.sfu.enableDataChannels());
    const ja = await a.join(room);
    const jb = await b.join(room);
    assert.deepEqual(jb.dataProducers, [], 'no data producers yet');

    const pa = await a.eval(() => window.sfu.produceData({ label: 'chat' }));
    const pb = await b.eval(() => window.sfu.produceData({ label: 'chat' }));
    assert.ok(pa.dataProducerId && pb.dataProducerId, 'produce-data answers dataProducerId');
    // new-data-producer makes each consume the other's (auto-consume, like new-producer).
    await Promise.all([waitForOpenConsumers(a, 1), waitForOpenConsumers(b, 1)]);
    const counts = await dataCounts();
    assert.equal(counts.dataProducers - baseline.dataProducers, 2, 'two data producers live');
    assert.equal(counts.dataConsumers - baseline.dataConsumers, 2, 'two data consumers live');

    await a.eval((id) => window.sfu.sendData(id, 'hello from alice'), pa.dataProducerId);
    await b.eval((id) => window.sfu.sendData(id, 'hello from bob'), pb.dataProducerId);
    await Promise.all([waitForMessage(b, ja.peerId, 'hello from alice'), waitForMessage(a, jb.peerId, 'hello from bob')]);

    // Round trip alice → SFU → bob (echo) → SFU → alice, measured in alice's page.
    await b.eval(() => window.sfu.setEcho(true));
    const rtts = await a.eval(async ({ id, n }) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const tag = `rt-${i}-${Math.random()}`;
        const t0 = performance.now();
        window.sfu.sendData(id, `ping:${tag}`);
        const deadline = t0 + 5000;
        for (;;) {
          const got = window.sfu.dataReceived().some((c) => c.messages.some((m) => m.text === `pong:${tag}`));
          if (got) { out.push(performance.now() - t0); break; }
          if (performance.now() > deadline) { out.push(Infinity); break; }
          await new Promise((r) => setTimeout(r, 1));
        }
      }
      return out;
    }, { id: pa.dataProducerId, n: 10 });
    const sorted = [...rtts].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)];
    console.log(`data-channel round trip through the SFU: median ${median.toFixed(1)} ms`);
    assert.ok(median < 100, `round trip under 100 ms on loopback (median ${median.toFixed(1)} ms, all ${rtts.map((r) => r.toFixed(1)).join(', ')})`);
    await b.eval(() => window.sfu.setEcho(false));

    // A message of exactly maxMessageSize arrives; one over it is dropped and counted, and the
    // channel keeps working.
    await a.eval((id) => window.sfu.sendData(id, 'y'.repeat(262_144)), pa.dataProducerId);
    await waitForMessage(b, ja.peerId, 'len:262144');
    const droppedBefore = (await dataCounts()).dataChannels.droppedOversize ?? 0;
    const refused = await a.eval((id) => {
      try { window.sfu.sendData(id, 'z'.repeat(300_000)); return null; } catch (e) { return e.message; }
    }, pa.dataProducerId);
    await a.eval((id) => window.sfu.sendData(id, 'after the oversized one'), pa.dataProducerId);
    await waitForMessage(b, ja.peerId, 'after the oversized one');
    assert.ok(!(await received(b, ja.peerId)).some((c) => c.messages.some((m) => m.text === 'len:300000')), 'the oversized message never arrives');
    if (refused === null) {
      // The browser sent it: the server dropped and counted it.
      await waitFor(async () => ((await dataCounts()).dataChannels.droppedOversize ?? 0) > droppedBefore,
        { timeout: 5_000, message: 'droppedOversize counts it' });
    } else {
      // Chromium refuses it itself; the server's drop is covered by the Rust test
      // rtc::sctp::association_tests::a_message_over_max_message_size_is_dropped_and_the_stream_keeps_working.
      assert.match(refused, /max-message-size/);
    }

    // Carol joins later: join-room lists both data producers and she consumes them.
    c = await h.newPeer('carol');
    await c.eval(() => window.sfu.enableDataChannels());
    const jc = await c.join(room);
    assert.deepEqual(jc.dataProducers.map((p) => p.dataProducerId).sort(), [pa.dataProducerId, pb.dataProducerId].sort(),
      'join-room dataProducers lists the live ones');
    assert.ok(jc.dataProducers.every((p) => p.label === 'chat' && typeof p.protocol === 'string'));
    const consumed = await c.eval(() => window.sfu.consumeAllData());
    assert.equal(consumed.length, 2, 'carol consumes both');
    await waitForOpenConsumers(c, 2);
    await a.eval((id) => window.sfu.sendData(id, 'hi carol'), pa.dataProducerId);
    await b.eval((id) => window.sfu.sendData(id, 'hi carol from bob'), pb.dataProducerId);
    await Promise.all([waitForMessage(c, ja.peerId, 'hi carol'), waitForMessage(c, jb.peerId, 'hi carol from bob'),
      waitForMessage(b, ja.peerId, 'hi carol')]);

    // close-data-producer: its consumers get data-consumer-closed, the others data-producer-closed.
    assert.deepEqual(await a.request('close-data-producer', { dataProducerId: pa.dataProducerId }), {});
    for (const p of [b, c]) {
      await waitFor(async () => {
        const n = await p.notifications();
        return n.some((x) => x.method === 'data-producer-closed' && x.data.dataProducerId === pa.dataProducerId) &&
          n.some((x) => x.method === 'data-consumer-closed');
      }, { timeout: 10_000, message: `${p.name} hears the data producer and its consumer close` });
    }
    await assert.rejects(a.request('close-data-producer', { dataProducerId: pa.dataProducerId }), /not-found/);
    await assert.rejects(a.request('consume-data', { transportId: 'nope', dataProducerId: pb.dataProducerId }), /not-found/);

    for (const e of [a, b, c]) assert.deepEqual((await e.info()).errors, [], `${e.name} client errors`);
    await a.leave();
    await b.leave();
    await c.leave();
    await waitFor(async () => {
      const now = await dataCounts();
      return now.dataProducers === baseline.dataProducers && now.dataConsumers === baseline.dataConsumers;
    }, { timeout: 15_000, message: 'data counts return to the baseline' });
  } finally {
    await a.close();
    await b.close();
    await c?.close();
  }
});

test('10,000 messages a second from one peer are rate-limited while another peer\'s messages keep arriving promptly', { timeout: 120_000 }, async () => {
  const room = roomId('flood');
  const [a, b, c] = [await h.newPeer('flooder'), await h.newPeer('steady'), await h.newPeer('listener')];
  try {
    for (const p of [a, b, c]) await p.eval(() => window.sfu.enableDataChannels());
    const ja = await a.join(room);
    const jb = await b.join(room);
    await c.join(room);
    const pa = await a.eval(() => window.sfu.produceData({ label: 'chat' }));
    const pb = await b.eval(() => window.sfu.produceData({ label: 'chat' }));
    await waitForOpenConsumers(c, 2);
    const droppedBefore = (await dataCounts()).dataChannels.droppedRate ?? 0;

    // The flood: 10,000 messages of ~100 bytes within about a second, in 10 ms slices.
    const flood = a.eval(async (id) => {
      const body = 'f'.repeat(90);
      for (let slice = 0; slice < 100; slice++) {
        for (let i = 0; i < 100; i++) window.sfu.sendData(id, `${body}${slice * 100 + i}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }, pa.dataProducerId);
    // Meanwhile the steady peer sends one message every 50 ms.
    const sent = await b.eval(async (id) => {
      const out = [];
      for (let i = 0; i < 20; i++) {
        out.push({ text: `steady-${i}`, t: window.sfu.sendData(id, `steady-${i}`) });
        await new Promise((r) => setTimeout(r, 50));
      }
      return out;
    }, pb.dataProducerId);
    await flood;
    for (const m of sent) await waitForMessage(c, jb.peerId, m.text);
    const fromB = (await received(c, jb.peerId))[0].messages;
    const delays = sent.map((m) => fromB.find((x) => x.text === m.text).t - m.t);
    const worst = Math.max(...delays);
    console.log(`steady peer's messages during the flood: worst delay ${worst} ms`);
    assert.ok(worst < 500, `the steady peer's messages arrive within 500 ms during the flood (delays ${delays.join(', ')})`);

    // The flooder is limited: the server drops (and counts) what is over its rate; the rest arrives.
    await waitFor(async () => ((await dataCounts()).dataChannels.droppedRate ?? 0) > droppedBefore,
      { timeout: 10_000, message: 'the server counts the flood\'s excess in droppedRate' });
    const fromA = (await received(c, ja.peerId))[0].messages.length;
    assert.ok(fromA > 0 && fromA < 10_000, `some but not all of the flood reached the listener (${fromA})`);
    for (const e of [a, b, c]) assert.deepEqual((await e.info()).errors, [], `${e.name} client errors`);
  } finally {
    await a.close();
    await b.close();
    await c.close();
  }
});
