// A subscriber whose network drops for 5 s recovers without user action. Run by
// tests/run-network-drop-test.sh, which puts the subscriber's Chromium in a network namespace.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHarness, roomId, waitFor, expectRising } from './harness.mjs';

const NETNS = process.env.SFU_NETNS;
const HOST_IF = process.env.SFU_NETNS_HOST_IF;
const here = path.dirname(fileURLToPath(import.meta.url));
const harnesses = [];
after(async () => { for (const h of harnesses) await h.close(); });

async function framesFrom(peer, fromPeerId) {
  const stats = await peer.stats();
  return stats.filter((s) => s.kind === 'video' && s.peerId === fromPeerId).reduce((n, s) => n + s.framesDecoded, 0);
}

test('a subscriber whose network drops for 5 s recovers without user action', {
  timeout: 240_000,
  skip: NETNS && HOST_IF ? false : 'run through tests/run-network-drop-test.sh (needs a network namespace)',
}, async () => {
  const host = '10.231.0.1';
  const pubSide = await startHarness({ host });
  harnesses.push(pubSide);
  const subSide = await startHarness({ host, executablePath: path.join(here, 'netns-chromium.sh') });
  harnesses.push(subSide);
  const room = roomId('drop');
  const pub = await pubSide.newPeer('publisher');
  const sub = await subSide.newPeer('subscriber');
  const jp = await pub.join(room);
  await sub.join(room);
  await pub.publish({ video: true, audio: true });
  await sub.consumeAll();
  await expectRising(sub, 'video', 'framesDecoded', 3, { fromPeerId: jp.peerId });

  // The outage is the scenario under test, not a wait for a condition.
  execFileSync('ip', ['link', 'set', HOST_IF, 'down']);
  try {
    await new Promise((r) => setTimeout(r, 5000));
  } finally {
    execFileSync('ip', ['link', 'set', HOST_IF, 'up']);
  }
  const atRestore = await framesFrom(sub, jp.peerId);
  await waitFor(async () => (await framesFrom(sub, jp.peerId)) >= atRestore + 60, {
    timeout: 60_000, interval: 500, message: 'video decodes again after the outage',
  });
  const info = await sub.info();
  assert.equal(info.socketClosed, null, 'the signaling socket stayed open');
});
