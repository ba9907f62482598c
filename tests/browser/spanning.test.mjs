// A room spanning two workers (docs/architecture.md, "Rooms spanning workers"): with
// SFU_ROOM_SPILL_PEERS=1 the server puts every other peer of a room on the second worker, so
// media crosses workers in both directions. `make test-browser` runs this file (and the
// two-peer and late-join suites) against such a server; against a server that keeps rooms on
// one worker it is skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, expectRising, waitFor, fetchStats } from './harness.mjs';

const spanning = process.env.SFU_ROOM_SPILL_PEERS === '1';
let h;
before(async () => { if (spanning) h = await startHarness(); });
after(async () => { await h?.close(); });

const perWorker = (stats, key) => stats.workers.map((w) => w[key]);

test('a room spanning two workers delivers media to consumers on both, and closes cleanly',
  { timeout: 240_000, skip: spanning ? false : 'needs a server with SFU_ROOM_SPILL_PEERS=1 (make test-browser runs it)' },
  async () => {
    const before = await fetchStats();
    assert.equal(before.workers.length, 2, 'the server runs two workers');
    const room = roomId('span');
    const names = ['ana', 'ben', 'cai'];
    const peers = [];
    try {
      for (const n of names) peers.push(await h.newPeer(n));
      const joined = [];
      for (const p of peers) joined.push(await p.join(room));
      const ids = joined.map((j) => j.peerId);
      // The last joiner's answer lists the others (one of them hosted on the other worker).
      assert.deepEqual(joined[2].peers.map((p) => p.peerId).sort(), [ids[0], ids[1]].sort());

      const published = await Promise.all(peers.map((p) => p.publish({ video: true, audio: true, codec: 'vp8' })));
      await Promise.all(peers.map((p) => p.consumeAll()));

      // Both workers host peers, producers and consumers of the room; media is piped both ways.
      // (Consumers of producers announced by new-producer are created asynchronously: wait
      // for all twelve.)
      const s = await waitFor(async () => {
        const st = await fetchStats();
        const ok = st.consumers === 12 &&
          perWorker(st, 'peers').every((n) => n > 0) && perWorker(st, 'consumers').every((n) => n > 0) &&
          perWorker(st, 'pipedProducers').every((n) => n > 0) && perWorker(st, 'pipePacketsIn').every((n) => n > 0);
        return ok ? st : null;
      }, { timeout: 60_000, message: 'peers, consumers and piped media on both workers' });
      assert.equal(s.rooms, 1, 'one room (counted on its home worker)');
      assert.equal(perWorker(s, 'roomReplicas').reduce((a, b) => a + b, 0), 1, 'one replica on the other worker');
      assert.equal(s.peers, 3);
      assert.equal(s.producers, 6, 'three peers × (audio + video)');
      assert.equal(s.consumers, 12, 'each peer consumes the other two');

      // Every peer decodes every other peer's video and receives its audio, whichever worker
      // hosts the producer.
      await Promise.all(peers.flatMap((p, i) => ids.filter((_, j) => j !== i).map((from) =>
        expectRising(p, 'video', 'framesDecoded', 4, { fromPeerId: from }))));
      await Promise.all(peers.flatMap((p, i) => ids.filter((_, j) => j !== i).map((from) =>
        expectRising(p, 'audio', 'packetsReceived', 3, { fromPeerId: from }))));

      // A peer on the second worker pauses its video: the others (on both workers) are told.
      const benVideo = published[1].find((p) => p.kind === 'video')?.producerId;
      assert.ok(benVideo, 'ben has a video producer');
      await peers[1].request('pause-producer', { producerId: benVideo });
      for (const p of [peers[0], peers[2]]) {
        await waitFor(async () => (await p.notifications()).some((n) => n.method === 'producer-paused' && n.data.producerId === benVideo),
          { timeout: 20_000, message: `${p.name} gets producer-paused` });
      }
      // Someone joining now learns that it is paused (join answer and consume answer).
      const eve = await h.newPeer('eve');
      try {
        const je = await eve.join(room);
        const listed = je.producers.find((p) => p.producerId === benVideo);
        assert.equal(listed?.paused, true, `join-room lists ben's video as paused: ${JSON.stringify(je.producers)}`);
        assert.ok(je.producers.filter((p) => p.producerId !== benVideo).every((p) => p.paused === false));
      } finally {
        await eve.close();
      }
      await peers[1].request('resume-producer', { producerId: benVideo });
      await expectRising(peers[0], 'video', 'framesDecoded', 3, { fromPeerId: ids[1] });

      // Ben's socket drops: both other peers get peer-left and lose their consumers of him.
      await peers[1].close();
      for (const p of [peers[0], peers[2]]) {
        await waitFor(async () => (await p.notifications()).some((n) => n.method === 'peer-left' && n.data.peerId === ids[1]),
          { timeout: 20_000, message: `${p.name} gets peer-left for ben` });
        await waitFor(async () => (await p.info()).consumers.filter((c) => c.peerId === ids[1]).length === 0,
          { timeout: 20_000, message: `${p.name}'s consumers of ben close` });
      }
      // Ana and Cai (both on the home worker now) still see each other.
      await expectRising(peers[2], 'video', 'framesDecoded', 3, { fromPeerId: ids[0] });

      // A newcomer goes to the second worker again (it hosts the fewest peers of the room) and
      // gets everything from the home worker through a fresh replica.
      const dan = await h.newPeer('dan');
      peers.push(dan);
      const jd = await dan.join(room);
      assert.deepEqual(jd.peers.map((p) => p.peerId).sort(), [ids[0], ids[2]].sort());
      assert.equal(jd.producers.length, 4, 'ana and cai produce audio and video');
      await dan.consumeAll();
      await expectRising(dan, 'video', 'framesDecoded', 3, { fromPeerId: ids[0] });
      const s2 = await fetchStats();
      assert.ok(perWorker(s2, 'peers').every((n) => n > 0), `dan is on the other worker: ${JSON.stringify(perWorker(s2, 'peers'))}`);
    } finally {
      for (const p of peers) await p.close();
    }
    // Everything is released on both workers.
    const keys = ['rooms', 'peers', 'transports', 'producers', 'consumers'];
    await waitFor(async () => {
      const st = await fetchStats();
      const ok = keys.every((k) => st[k] === before[k]) &&
        perWorker(st, 'roomReplicas').every((n) => n === 0) && perWorker(st, 'pipedProducers').every((n) => n === 0);
      return ok ? st : null;
    }, { timeout: 30_000, message: 'live counts back to where they were (no replicas, no piped producers)' });
  });
