// active-speaker (shared/protocol.md): the server reads the ssrc-audio-level header extension of
// every audio producer and tells every peer of the room who the dominant speaker is. Chromium's
// fake microphone beeps (speech); a track with `enabled = false` sends silence.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, waitFor, sleep } from './harness.mjs';

/** How soon after the speech (or after joining) every peer must be told. */
const TELL_WITHIN_MS = 3_000;

let h;
before(async () => { h = await startHarness(); });
after(async () => { await h?.close(); });

/** The active-speaker notifications a peer got: [{peerId, producerId, t}]. */
async function speakers(peer) {
  return (await peer.notifications())
    .filter((n) => n.method === 'active-speaker')
    .map((n) => ({ peerId: n.data.peerId, producerId: n.data.producerId ?? null, t: n.t }));
}

/** Waits until `peer` was told `peerId` (null: nobody) is speaking; returns that notification. */
async function toldOf(peer, peerId, { since, within }) {
  const n = await waitFor(async () => (await speakers(peer)).find((s) => s.peerId === peerId && s.t >= since),
    { timeout: within + 5_000, interval: 100, message: `${peer.name} told that ${peerId} speaks` })
    .catch(async (e) => { e.message += `\n${await peer.describe()}`; throw e; });
  assert.ok(n.t - since <= within,
    `${peer.name} told of ${peerId} ${n.t - since} ms after the reference (at most ${within} ms)`);
  return n;
}

test('every peer is told the beeping peer is the active speaker, never the muted one, then nobody',
  { timeout: 180_000 }, async () => {
    const room = roomId('speaker');
    const a = await h.newPeer('speaker-a');
    const b = await h.newPeer('muted-b');
    const c = await h.newPeer('listener-c');
    try {
      // B first: on a server spilling rooms over workers (SFU_ROOM_SPILL_PEERS=1) B and C are
      // on the room's home and the speaker A on the other worker (its audio piped to the home).
      const jb = await b.join(room);
      const ja = await a.join(room);
      // B's microphone is disabled from the start: it sends silence, never speech.
      const [pb] = await b.publish({ video: false, audio: true, audioEnabled: false });
      const [pa] = await a.publish({ video: false, audio: true });
      const published = Date.now();
      assert.equal(pa.kind, 'audio');
      assert.equal(pb.kind, 'audio');
      await Promise.all([a.consumeAll(), b.consumeAll()]);

      const expected = { peerId: ja.peerId, producerId: pa.producerId };
      for (const p of [a, b]) {
        const n = await toldOf(p, ja.peerId, { since: published, within: TELL_WITHIN_MS });
        assert.equal(n.producerId, expected.producerId, `${p.name}: A's audio producer`);
      }

      // A third peer joins and consumes: it is told too.
      const joinedAt = Date.now();
      await c.join(room);
      await c.consumeAll();
      const n = await toldOf(c, ja.peerId, { since: joinedAt, within: TELL_WITHIN_MS });
      assert.equal(n.producerId, expected.producerId, 'C: A\'s audio producer');

      // A while more of A beeping and B muted: B is never named.
      await sleep(3_000);
      for (const p of [a, b, c]) {
        const named = (await speakers(p)).map((s) => s.peerId);
        assert.ok(!named.includes(jb.peerId), `${p.name} was never told B speaks: ${JSON.stringify(named)}`);
        assert.ok(!named.includes(null), `${p.name}: no silence while A beeps: ${JSON.stringify(named)}`);
      }

      // A mutes: after a couple of seconds of silence everyone is told nobody speaks.
      assert.equal(await a.eval(() => window.sfu.setTrackEnabled('audio', false)), 1, 'A has one audio track');
      const mutedAt = Date.now();
      for (const p of [a, b, c]) await toldOf(p, null, { since: mutedAt, within: 2_000 + TELL_WITHIN_MS });
      for (const p of [a, b, c]) {
        const named = (await speakers(p)).map((s) => s.peerId);
        assert.ok(!named.includes(jb.peerId), `${p.name} was never told B speaks: ${JSON.stringify(named)}`);
      }
      for (const p of [a, b, c]) await p.leave();
    } finally {
      for (const p of [a, b, c]) await p.close();
    }
  });
