// TURN relay (shared/protocol.md "Networks"): a coturn started here on loopback with
// --use-auth-secret, the server started with SFU_TURN_URLS / SFU_TURN_SECRET (the same secret),
// and two Chromium peers limited to iceTransportPolicy 'relay' publish and decode each other
// through relay candidates, with the test client and with the web app (?iceTransportPolicy=relay).
// Run through the Makefile's test-browser target (it sets the env).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startHarness, roomId, exchangeMedia, waitFor, SFU_URL, FIRST_MEDIA_TIMEOUT } from './harness.mjs';

const URLS = process.env.SFU_TURN_URLS;
const SECRET = process.env.SFU_TURN_SECRET;
const skip = URLS && SECRET ? false : 'run with SFU_TURN_URLS=turn:127.0.0.1:<port> and SFU_TURN_SECRET (Makefile test-browser)';

let h, coturn, coturnDir, coturnLog = '';

/** Resolves once something answers a STUN Binding request on udp host:port (deadline-bound). */
async function stunAnswers(host, port) {
  const sock = dgram.createSocket('udp4');
  try {
    return await new Promise((resolve) => {
      const req = Buffer.alloc(20);
      req.writeUInt16BE(0x0001, 0); // Binding request, no attributes
      req.writeUInt32BE(0x2112a442, 4);
      randomBytes(12).copy(req, 8);
      const timer = setTimeout(() => resolve(false), 300);
      sock.on('message', (m) => { clearTimeout(timer); resolve(m.length >= 20 && m.readUInt16BE(0) === 0x0101); });
      sock.on('error', () => { clearTimeout(timer); resolve(false); });
      sock.send(req, port, host);
    });
  } finally {
    sock.close();
  }
}

before(async () => {
  if (skip) return;
  const m = /^turns?:([^:?]+):(\d+)/.exec(URLS.split(',')[0].trim());
  assert.ok(m, `SFU_TURN_URLS must start with turn:<ip>:<port>, got ${URLS}`);
  const [, host, port] = m;
  try { execFileSync('sh', ['-c', 'command -v turnserver']); } catch {
    assert.fail('turnserver (Debian coturn) is missing: apt-get install -y coturn (make deps-system does, as root)');
  }
  coturnDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sfu-coturn-'));
  const conf = path.join(coturnDir, 'turnserver.conf');
  // Loopback only; the SFU's media address is 127.0.0.1 too, hence allow-loopback-peers.
  await fs.writeFile(conf, [
    `listening-ip=${host}`, `relay-ip=${host}`, `listening-port=${port}`,
    'min-port=49160', 'max-port=49260', 'realm=sfu.test', 'fingerprint',
    'use-auth-secret', `static-auth-secret=${SECRET}`,
    'allow-loopback-peers', 'no-cli', 'no-tls', 'no-dtls', 'no-multicast-peers',
    `pidfile=${path.join(coturnDir, 'turnserver.pid')}`, 'log-file=stdout', 'simple-log', 'verbose', '',
  ].join('\n'), { mode: 0o600 });
  coturn = spawn('turnserver', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [coturn.stdout, coturn.stderr]) s.on('data', (d) => { coturnLog = (coturnLog + d).slice(-20_000); });
  const exited = new Promise((r) => coturn.once('exit', (code) => r(code)));
  await waitFor(async () => {
    if (coturn.exitCode !== null) throw new Error(`turnserver exited (${coturn.exitCode}): ${coturnLog.slice(-2000)}`);
    return stunAnswers(host, Number(port));
  }, { timeout: 15_000, interval: 100, message: `turnserver answering STUN on ${host}:${port}` });
  coturn.exited = exited;
  h = await startHarness();
});

after(async () => {
  await h?.close();
  if (coturn && coturn.exitCode === null) {
    coturn.kill('SIGTERM');
    const gone = await Promise.race([coturn.exited, new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
    if (gone === 'timeout') coturn.kill('SIGKILL');
  }
  if (coturnDir) await fs.rm(coturnDir, { recursive: true, force: true });
});

test('two relay-only peers publish and decode each other through coturn', { skip, timeout: 150_000 }, async () => {
  const room = roomId('turn');
  const a = await h.newPeer('alice-relay');
  const b = await h.newPeer('bob-relay');
  try {
    for (const p of [a, b]) await p.eval(() => window.sfu.setIceTransportPolicy('relay'));
    const ja = await a.join(room);
    const jb = await b.join(room);
    // The answers carried credentials (the client passed them to mediasoup-client).
    const t = await a.request('create-transport', { direction: 'recv' });
    assert.ok(Array.isArray(t.iceServers) && t.iceServers[0].urls.length > 0, `iceServers in ${JSON.stringify(Object.keys(t))}`);
    assert.match(t.iceServers[0].username, new RegExp(`^\\d+:${ja.peerId}$`));

    const pairs = await exchangeMedia(a, b, ja, jb);
    for (const [i, p] of [a, b].entries()) {
      for (const dir of ['send', 'recv']) {
        assert.equal(pairs[i][dir].localType, 'relay', `${p.name} ${dir}: local candidate is a relay: ${JSON.stringify(pairs[i])}`);
      }
    }
    await a.leave();
    await b.leave();
  } catch (e) {
    e.message += `\n${await a.describe()}\n${await b.describe()}\n--- coturn log (tail)\n${coturnLog.slice(-3000)}`;
    throw e;
  } finally {
    await a.close();
    await b.close();
  }
});

/** Records the page's RTCPeerConnections (mediasoup-client's transports) so the test can read their stats. */
function recordPeerConnections() {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
}

/** Every connected peer connection's selected local candidate type (and its configured policy). */
function selectedLocalTypes() {
  return Promise.all(window.__pcs.filter((pc) => pc.connectionState === 'connected').map(async (pc) => {
    const report = await pc.getStats();
    let type = null;
    for (const s of report.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = report.get(s.selectedCandidatePairId);
      type = pair && report.get(pair.localCandidateId)?.candidateType;
    }
    return { type, policy: pc.getConfiguration().iceTransportPolicy };
  }));
}

test('the web app passes iceServers on and ?iceTransportPolicy=relay makes it relay', { skip, timeout: 150_000 }, async () => {
  const room = roomId('turn-web');
  const users = [];
  try {
    for (const name of ['ann', 'ben']) {
      const context = await h.browser.newContext({ viewport: { width: 1280, height: 800 } });
      await context.addInitScript(recordPeerConnections);
      const page = await context.newPage();
      users.push({ name, context, page });
      await page.goto(`${SFU_URL}/stream/${room}/?name=${name}&iceTransportPolicy=relay`);
      const joinButton = page.getByRole('button', { name: 'Join', exact: true });
      await joinButton.waitFor({ timeout: 30_000 });
      await waitFor(() => joinButton.isEnabled(), { message: `${name}: Join enabled` });
      await joinButton.click();
      await page.getByRole('button', { name: 'Leave', exact: true }).waitFor({ timeout: FIRST_MEDIA_TIMEOUT });
    }
    for (const u of users) {
      // The other's video plays: a size and advancing decoded frames.
      const frames = () => u.page.evaluate(() => [...document.querySelectorAll('video[data-testid="remote-video"]')]
        .map((v) => (v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0)));
      const first = await waitFor(async () => { const f = await frames(); return f.length === 1 && f[0] > 0 && f; },
        { message: `${u.name}: remote video with frames` });
      await waitFor(async () => (await frames())[0] >= first[0] + 10, { timeout: 20_000, message: `${u.name}: remote frames advancing` });
      const types = await waitFor(async () => {
        const t = await u.page.evaluate(selectedLocalTypes);
        return t.length === 2 && t.every((x) => x.type) && t;
      }, { timeout: 20_000, message: `${u.name}: two connected transports with a selected pair` });
      assert.deepEqual(types, [{ type: 'relay', policy: 'relay' }, { type: 'relay', policy: 'relay' }], `${u.name}: ${JSON.stringify(types)}`);
    }
  } catch (e) {
    e.message += `\n--- coturn log (tail)\n${coturnLog.slice(-3000)}`;
    throw e;
  } finally {
    for (const u of users) await u.context.close().catch(() => {});
  }
});
