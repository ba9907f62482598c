// Built-in TLS: Chromium loads the web app over HTTPS from the SFU and joins a room over WSS
// (tests/run-tls-browser-test.sh starts the server with a self-signed certificate; Chromium is told
// to accept it). Skipped against a plain-HTTP server (the default `npm test` run).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { SFU_URL, CHROMIUM, CHROMIUM_ARGS, joinInUi as join, roomId, waitFor } from './harness.mjs';

const TLS = SFU_URL.startsWith('https://');
let browser;

before(async () => {
  if (TLS) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close().catch(() => {});
});

async function openUser(name, room) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const pageErrors = [];
  const sockets = [];
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`${SFU_URL}/stream/${encodeURIComponent(room)}/?name=${encodeURIComponent(name)}`);
  return { name, context, page, pageErrors, sockets };
}


/** Frames decoded by the only remote video, once it has a size. */
const remoteFrames = (user) => user.page.evaluate(() => {
  const v = [...document.querySelectorAll('video[data-testid="remote-video"]')];
  return v.length === 1 && v[0].videoWidth > 0 ? v[0].getVideoPlaybackQuality().totalVideoFrames : 0;
});

test('the web app over HTTPS joins a room over WSS and media flows', { skip: !TLS && 'SFU_URL is not https' }, async () => {
  const room = roomId('tls');
  const alice = await openUser('Alice', room);
  const bob = await openUser('Bob', room);
  try {
    assert.equal(await alice.page.evaluate(() => location.protocol), 'https:');
    assert.equal(await alice.page.evaluate(() => window.isSecureContext), true);
    await join(alice);
    await join(bob);
    for (const user of [alice, bob]) {
      assert.ok(user.sockets.length > 0 && user.sockets.every((u) => u.startsWith('wss://')),
        `${user.name}: signaling over WSS, got ${JSON.stringify(user.sockets)}`);
      const first = await waitFor(() => remoteFrames(user), { message: `${user.name}: remote video decoding` });
      await waitFor(async () => (await remoteFrames(user)) >= first + 10,
        { message: `${user.name}: remote frames advancing` });
    }
    const errors = [...alice.pageErrors, ...bob.pageErrors];
    assert.deepEqual(errors, [], `uncaught page errors:\n${errors.join('\n')}`);
  } finally {
    await alice.context.close().catch(() => {});
    await bob.context.close().catch(() => {});
  }
});
