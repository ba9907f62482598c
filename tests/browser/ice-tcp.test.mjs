// ICE-TCP (shared/protocol.md "Networks"): with UDP to the server's media port dropped on
// loopback (tests/run-ice-tcp-browser-test.sh adds the iptables rule and removes it after), two
// Chromium peers still publish and decode each other, over the server's passive TCP candidate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, roomId, exchangeMedia, SFU_URL } from './harness.mjs';

const skip = process.env.TEST_UDP_BLOCKED === '1' ? false : 'run through tests/run-ice-tcp-browser-test.sh (it blocks UDP to the media port)';
let h;

before(async () => {
  if (!skip) h = await startHarness();
});
after(async () => {
  await h?.close();
});

async function iceTcpConnections() {
  const res = await fetch(new URL('/api/stats', SFU_URL.replace(/^ws/, 'http')));
  const stats = await res.json();
  return stats.workers.reduce((n, w) => n + (w.iceTcp?.connections ?? 0), 0);
}

test('with UDP blocked, two peers publish and decode each other over ICE-TCP', { skip, timeout: 150_000 }, async () => {
  const room = roomId('ice-tcp');
  const a = await h.newPeer('alice-tcp');
  const b = await h.newPeer('bob-tcp');
  try {
    const ja = await a.join(room);
    const jb = await b.join(room);
    const pairs = await exchangeMedia(a, b, ja, jb);
    for (const [i, p] of [a, b].entries()) {
      for (const dir of ['send', 'recv']) {
        assert.equal(pairs[i][dir].localProtocol, 'tcp', `${p.name} ${dir}: the selected pair is TCP: ${JSON.stringify(pairs[i])}`);
      }
    }
    assert.ok(await iceTcpConnections() >= 4, 'the server counts the four transports\' TCP connections');
    await a.leave();
    await b.leave();
  } catch (e) {
    e.message += `\n${await a.describe()}\n${await b.describe()}`;
    throw e;
  } finally {
    await a.close();
    await b.close();
  }
});
