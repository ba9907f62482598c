// Signed room tokens (protocol.md, "Access (tokens)"; issue #13) through the web app in Chromium:
// invite links with a valid token join and show the token's name, expired / other-room / missing /
// badly signed links get the access screen, a token without `publish` joins receive-only, and the
// copied invite link never carries the inviter's token. The tokens are signed here (node:crypto,
// HS256) with the secret tests/run-tokens-browser-test.sh gives the server; skipped without it
// (the default `npm test` run, whose server has access off).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';
import { SFU_URL, CHROMIUM, CHROMIUM_ARGS, FIRST_MEDIA_TIMEOUT, UI_TIMEOUT, joinInUi as join, roomId, waitFor } from './harness.mjs';

const SECRET = process.env.SFU_AUTH_SECRET || '';
const skip = !SECRET && 'SFU_AUTH_SECRET is not set (the server has access off)';
let browser;
const users = [];

before(async () => {
  if (!skip) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  for (const u of users) await u.context.close().catch(() => {});
  await browser?.close().catch(() => {});
});

const base64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT (HS256) with `claims`; `exp` defaults to 10 minutes from now. */
function sign(claims, secret = SECRET) {
  const payload = { exp: Math.floor(Date.now() / 1000) + 600, ...claims };
  const unsigned = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url(payload)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

const roomUrl = (id, token) =>
  `${SFU_URL}/stream/${encodeURIComponent(id)}/${token ? `?token=${encodeURIComponent(token)}` : ''}`;

/**
 * A user is a browser context (own fake camera and mic) on `url`. Kept: uncaught page errors,
 * every WebSocket the page opens, and every text the page writes to the clipboard (recorded by
 * an init script, so reading it back does not depend on headless clipboard support).
 */
async function openUser(name, url) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  await context.addInitScript(() => {
    window.__copied = [];
    const clipboard = navigator.clipboard;
    if (!clipboard) return;
    const write = clipboard.writeText.bind(clipboard);
    clipboard.writeText = (text) => {
      window.__copied.push(String(text));
      return write(text).catch(() => undefined);
    };
  });
  const page = await context.newPage();
  const user = { name, context, page, pageErrors: [], sockets: [] };
  page.on('pageerror', (e) => user.pageErrors.push(`${name}: ${e.message}`));
  page.on('websocket', (ws) => user.sockets.push(ws.url()));
  users.push(user);
  await page.goto(url);
  return user;
}

async function closeUsers(...list) {
  for (const user of list) {
    if (!user) continue;
    await user.context.close().catch(() => {});
    users.splice(users.indexOf(user), 1);
  }
}

function assertNoPageErrors(...list) {
  const errors = list.flatMap((u) => u.pageErrors);
  assert.deepEqual(errors, [], `uncaught page errors:\n${errors.join('\n')}`);
}

/** Remote tiles: peer id, shown name, decoded frames of its video (0 until it has a size). */
const remoteTiles = (user) => user.page.evaluate(() =>
  [...document.querySelectorAll('[data-peer-tile]:not([data-peer-tile="local"])')].map((tile) => {
    const video = tile.querySelector('video[data-testid="remote-video"]');
    return {
      peerId: tile.getAttribute('data-peer-tile'),
      text: tile.textContent ?? '',
      frames: video && video.videoWidth > 0 ? video.getVideoPlaybackQuality().totalVideoFrames : 0,
    };
  }));

/** Waits until `user` shows `count` remote tiles whose videos decode (frames advancing by 10). */
async function expectRemoteDecoding(user, count) {
  const first = await waitFor(async () => {
    const tiles = await remoteTiles(user);
    return tiles.length === count && tiles.every((t) => t.frames > 0) ? tiles : null;
  }, { timeout: FIRST_MEDIA_TIMEOUT, message: `${user.name}: ${count} remote video(s) decoding` });
  return waitFor(async () => {
    const tiles = await remoteTiles(user);
    const start = new Map(first.map((t) => [t.peerId, t.frames]));
    return tiles.length === count && tiles.every((t) => t.frames >= (start.get(t.peerId) ?? Infinity) + 10) ? tiles : null;
  }, { timeout: FIRST_MEDIA_TIMEOUT, message: `${user.name}: remote frames advancing from ${JSON.stringify(first)}` });
}

/** Waits for the access screen and returns its reason and text. */
async function accessError(user) {
  const box = user.page.locator('[data-testid="access-error"]');
  await box.waitFor({ timeout: UI_TIMEOUT });
  return { reason: await box.getAttribute('data-reason'), text: await box.innerText() };
}

/** Presses Join (once the camera is up) without waiting to be in the room. */
async function pressJoin(user) {
  const button = user.page.getByRole('button', { name: 'Join', exact: true });
  await button.waitFor({ timeout: UI_TIMEOUT });
  await waitFor(() => button.isEnabled(), { timeout: FIRST_MEDIA_TIMEOUT, message: `${user.name}: Join enabled` });
  await button.click();
}

const signalingSockets = (user) => user.sockets.filter((u) => new URL(u).pathname === '/ws');

test('two users with valid tokens join one room, see each other and are named by their tokens', { skip }, async () => {
  const room = roomId('tok');
  // `?name=` in the URL loses against the token's `name` claim.
  const alice = await openUser('Alice', `${roomUrl(room, sign({ sub: 'alice', room, name: 'Alice Token' }))}&name=Mallory`);
  const bob = await openUser('Bob', roomUrl(room, sign({ sub: 'bob', room: '*', name: 'Bob Token' })));
  try {
    await join(alice);
    await join(bob);
    for (const user of [alice, bob]) {
      const sockets = signalingSockets(user);
      assert.ok(sockets.length > 0 && sockets.every((u) => new URL(u).searchParams.get('token')),
        `${user.name}: signaling URL carries the token, got ${JSON.stringify(user.sockets)}`);
    }
    const [seenByBob] = await expectRemoteDecoding(bob, 1);
    const [seenByAlice] = await expectRemoteDecoding(alice, 1);
    assert.match(seenByBob.text, /Alice Token/, `Bob sees Alice under her token's name: ${JSON.stringify(seenByBob)}`);
    assert.match(seenByAlice.text, /Bob Token/, `Alice sees Bob under his token's name: ${JSON.stringify(seenByAlice)}`);

    // The invite link Alice copies from the room is the bare room URL: not her token.
    await alice.page.getByRole('button', { name: 'Copy invite link', exact: true }).click();
    const [invite] = await waitFor(() => alice.page.evaluate(() => window.__copied),
      { timeout: UI_TIMEOUT, message: 'Alice: the invite link written to the clipboard' }).then((c) => (c.length ? c : null));
    assert.ok(invite, 'Alice: an invite link was copied');
    assert.doesNotMatch(invite, /token/i, `invite link ${invite} carries no token`);
    assert.match(new URL(invite).pathname, new RegExp(`^/stream/${room}/?$`), `invite link ${invite} names the room`);
    assertNoPageErrors(alice, bob);
  } finally {
    await closeUsers(alice, bob);
  }
});

test('a link whose token has expired shows the expired screen and opens no signaling socket', { skip }, async () => {
  const room = roomId('tok');
  const carol = await openUser('Carol', roomUrl(room, sign({ sub: 'carol', room, exp: Math.floor(Date.now() / 1000) - 60 })));
  try {
    const { reason, text } = await accessError(carol);
    assert.equal(reason, 'expired');
    assert.match(text, /expired/i, `the heading says the link has expired: ${text}`);
    assert.match(text, /Ask the host for a new link\./);
    assert.equal(await carol.page.getByRole('button', { name: 'Join', exact: true }).count(), 0, 'no Join button');
    assert.deepEqual(signalingSockets(carol), [], 'no WebSocket to /ws');
    assertNoPageErrors(carol);
  } finally {
    await closeUsers(carol);
  }
});

test('a token for another room shows wrong-room; no token or a badly signed one is refused by the server', { skip }, async () => {
  const room = roomId('tok');
  const other = await openUser('Dave', roomUrl(room, sign({ sub: 'dave', room: `${room}-other` })));
  const none = await openUser('Erin', roomUrl(room, null));
  const forged = await openUser('Frank', roomUrl(room, sign({ sub: 'frank', room }, `${SECRET}-not`)));
  try {
    const wrongRoom = await accessError(other);
    assert.equal(wrongRoom.reason, 'wrong-room');
    assert.match(wrongRoom.text, /another room/);
    assert.deepEqual(signalingSockets(other), [], 'no WebSocket to /ws for another room\'s token');

    // Only the server knows these are refused: the pre-join form, Join, then the access screen.
    await Promise.all([pressJoin(none), pressJoin(forged)]);
    const missing = await accessError(none);
    assert.equal(missing.reason, 'missing');
    assert.match(missing.text, /needs an invite link/);
    const invalid = await accessError(forged);
    assert.equal(invalid.reason, 'invalid');
    assert.match(invalid.text, /not valid/);
    for (const { text } of [wrongRoom, missing, invalid]) assert.match(text, /Ask the host for a new link\./);
    assertNoPageErrors(other, none, forged);
  } finally {
    await closeUsers(other, none, forged);
  }
});

test('a token without publish joins receive-only and still sees the room', { skip }, async () => {
  const room = roomId('tok');
  const host = await openUser('Host', roomUrl(room, sign({ sub: 'host', room, name: 'Host' })));
  const viewer = await openUser('Viewer', roomUrl(room, sign({ sub: 'viewer', room, name: 'Viewer', grants: { publish: false } })));
  try {
    await join(host);
    await join(viewer);
    await expectRemoteDecoding(viewer, 1);
    // The host sees the viewer's tile, without video (the viewer never opened a camera).
    const tiles = await waitFor(async () => {
      const t = await remoteTiles(host);
      return t.length === 1 && /Viewer/.test(t[0].text) ? t : null;
    }, { timeout: UI_TIMEOUT, message: 'Host: the viewer\'s tile' });
    assert.equal(tiles[0].frames, 0, 'the viewer sends no video');
    assert.equal(await viewer.page.locator('video[data-testid="local-video"]').evaluate((v) => v.srcObject === null
      || v.srcObject.getVideoTracks().length === 0), true, 'the viewer has no local camera track');
    assertNoPageErrors(host, viewer);
  } finally {
    await closeUsers(host, viewer);
  }
});

test('the watch page shows the access screen for a missing or other room\'s token', { skip }, async () => {
  const room = roomId('tok');
  const none = await openUser('Watcher', `${SFU_URL}/watch/?roomId=${room}`);
  const other = await openUser('Watcher2', `${SFU_URL}/watch/?roomId=${room}&token=${sign({ sub: 'w', room: `${room}-x` })}`);
  try {
    assert.equal((await accessError(none)).reason, 'missing');
    assert.equal((await accessError(other)).reason, 'wrong-room');
    assertNoPageErrors(none, other);
  } finally {
    await closeUsers(none, other);
  }
});

test('the watch page plays a room\'s HLS stream through its token', { skip, timeout: 90_000 }, async () => {
  const room = roomId('tok');
  const host = await openUser('Streamer', roomUrl(room, sign({ sub: 'streamer', room })));
  const watchToken = sign({ sub: 'watcher', room, grants: { publish: false } });
  const watcher = await openUser('Watcher', `${SFU_URL}/watch/?roomId=${room}&token=${watchToken}`);
  try {
    await join(host);
    // The server hands the token on to the segment URIs of the playlist it serves.
    const playlist = await waitFor(async () => {
      const res = await fetch(`${SFU_URL}/hls/${room}/index.m3u8?token=${watchToken}`);
      const text = res.ok ? await res.text() : '';
      return text.split('\n').some((l) => l && !l.startsWith('#')) ? text : null;
    }, { timeout: FIRST_MEDIA_TIMEOUT, interval: 500, message: 'a playlist with segments' });
    const segments = playlist.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(segments.every((s) => s.includes('token=')), `segment URIs carry the token:\n${playlist}`);
    const time = () => watcher.page.evaluate(() => document.querySelector('video[data-testid="hls-video"]')?.currentTime ?? 0);
    const start = await waitFor(async () => { const t = await time(); return t > 0 ? t : null; },
      { timeout: FIRST_MEDIA_TIMEOUT, message: 'watch page: playback starts' });
    await waitFor(async () => (await time()) >= start + 3, { timeout: 30_000, message: 'watch page: playback advances 3 s' });
    assert.equal(await watcher.page.locator('[data-testid="access-error"]').count(), 0, 'no access screen');
    assertNoPageErrors(host, watcher);
  } finally {
    await closeUsers(host, watcher);
  }
});
