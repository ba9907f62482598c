// Real-browser tests of the web UI served by the SFU (web/out): the room page, the create-room lobby,
// the HLS watch page, plus screenshots for a human to look at. Selectors follow protocol.md
// ("UI hooks for automated browser tests") and web/components/room/*.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { SFU_URL, CHROMIUM, CHROMIUM_ARGS, FIRST_MEDIA_TIMEOUT, UI_TIMEOUT, joinInUi as join, roomId, waitFor, videoStates, expectDecoding } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const SCREENSHOT_DIR = path.join(process.env.TEST_OUTPUT ?? path.join(repoRoot, 'test-output'), 'screenshots');
/** Deadline for UI state changes that need a server round trip but no new media. */

let browser;
const users = [];

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  for (const u of users) await u.context.close().catch(() => {});
  await browser?.close().catch(() => {});
});

/** A user is a browser context (own fake camera and mic) with one page; uncaught page errors are kept. */
async function openUser(name, url, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  const user = { name, context, page, pageErrors };
  users.push(user);
  await page.goto(url);
  return user;
}

async function closeUser(user) {
  await user.context.close().catch(() => {});
  users.splice(users.indexOf(user), 1);
}

function assertNoPageErrors(...list) {
  const errors = list.flatMap((u) => u.pageErrors);
  assert.deepEqual(errors, [], `uncaught page errors:\n${errors.join('\n')}`);
}

const roomUrl = (id, name) => `${SFU_URL}/stream/${encodeURIComponent(id)}/?name=${encodeURIComponent(name)}`;


const REMOTE = 'video[data-testid="remote-video"]';
const LOCAL = 'video[data-testid="local-video"]';
const remoteOf = (peerId) => `${REMOTE}[data-peer-id="${peerId}"]`;

/** The peer id of the only remote video on the page. */
async function onlyRemotePeerId(user) {
  const states = await videoStates(user.page, REMOTE);
  assert.equal(states.length, 1, `${user.name}: expected one remote video, have ${JSON.stringify(states)}`);
  assert.ok(states[0].peerId, `${user.name}: the remote video has a data-peer-id`);
  return states[0].peerId;
}

async function screenshot(page, name) {
  await fs.mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name);
  await page.screenshot({ path: file });
  const { size } = await fs.stat(file);
  assert.ok(size > 0, `${file} is empty`);
  return file;
}

test('two users in one room see each other, see camera off, and see the other leave', async () => {
  const room = roomId('ui');
  const alice = await openUser('Alice', roomUrl(room, 'Alice'));
  const bob = await openUser('Bob', roomUrl(room, 'Bob'));
  try {
    await join(alice);
    await join(bob);

    // Each local preview plays and each user decodes the other's camera.
    await expectDecoding(alice, LOCAL);
    await expectDecoding(bob, LOCAL);
    await expectDecoding(alice, REMOTE);
    await expectDecoding(bob, REMOTE);
    const bobId = await onlyRemotePeerId(alice);
    const aliceId = await onlyRemotePeerId(bob);
    assert.notEqual(aliceId, bobId, 'the two users have different peer ids');

    // Bob stops his camera: Alice's tile for Bob shows the camera-off placeholder.
    const bobTile = alice.page.locator(`[data-peer-tile="${bobId}"]`);
    assert.equal(await bobTile.getByText('Camera off').count(), 0, "Bob's tile shows camera off before he stops it");
    await bob.page.getByRole('button', { name: 'Stop camera', exact: true }).click();
    await bob.page.getByRole('button', { name: 'Start camera', exact: true }).waitFor({ timeout: UI_TIMEOUT });
    await bobTile.getByText('Camera off').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    // The placeholder replaces the video: it is faded out (opacity 0) or has no source.
    await waitFor(() => alice.page.evaluate((sel) => {
      const v = document.querySelector(sel);
      return !v || v.srcObject === null || getComputedStyle(v).opacity === '0';
    }, remoteOf(bobId)), { timeout: UI_TIMEOUT, message: "Alice: Bob's remote video hidden while his camera is off" });
    // Alice's own tile on Bob's side is unaffected.
    await expectDecoding(bob, REMOTE);

    // Bob starts it again: the placeholder goes away and frames flow again.
    await bob.page.getByRole('button', { name: 'Start camera', exact: true }).click();
    await bobTile.getByText('Camera off').waitFor({ state: 'detached', timeout: UI_TIMEOUT });
    await expectDecoding(alice, remoteOf(bobId));

    // Bob leaves: he is back at the pre-join screen and Alice's video for him goes away.
    await bob.page.getByRole('button', { name: 'Leave', exact: true }).click();
    await bob.page.getByRole('button', { name: 'Join', exact: true }).waitFor({ timeout: UI_TIMEOUT });
    await waitFor(async () => (await alice.page.locator(remoteOf(bobId)).count()) === 0,
      { timeout: UI_TIMEOUT, message: "Alice: Bob's remote video removed after he left" });
    assert.equal(await alice.page.locator(`[data-peer-tile="${bobId}"]`).count(), 0, "Alice: Bob's tile removed");
    await expectDecoding(alice, LOCAL);
    assertNoPageErrors(alice, bob);
  } finally {
    await closeUser(alice);
    await closeUser(bob);
  }
});

test('a room created from the lobby can be joined through its invite link', async (t) => {
  const host = await openUser('Host', `${SFU_URL}/stream`, { permissions: ['clipboard-read', 'clipboard-write'] });
  let guest;
  try {
    // "Create room" asks the server for a fresh id (POST /api/rooms) and navigates to its page.
    // The response is passed through unchanged; it is read here because the page navigates away.
    let answer;
    await host.page.route((u) => u.pathname === '/api/rooms', async (route) => {
      const response = await route.fetch();
      if (route.request().method() === 'POST') answer = { status: response.status(), body: await response.text() };
      await route.fulfill({ response });
    });
    await host.page.getByRole('button', { name: 'Create room', exact: true }).click();
    await waitFor(() => answer, { timeout: UI_TIMEOUT, message: 'POST /api/rooms from the page' });
    assert.equal(answer.status, 200, `POST /api/rooms status (${answer.body})`);
    const { roomId: id } = JSON.parse(answer.body);
    assert.match(id, /^[A-Za-z0-9_-]{1,64}$/, 'the created room id');
    await host.page.waitForURL((u) => u.pathname === `/stream/${id}/` || u.pathname === `/stream/${id}`, { timeout: UI_TIMEOUT });
    await join(host);
    await expectDecoding(host, LOCAL);

    // The invite link from "Copy invite link" (clipboard), else the URL the host landed on.
    await host.page.getByRole('button', { name: 'Copy invite link', exact: true }).click();
    const copied = await waitFor(() => host.page.evaluate(() => navigator.clipboard.readText()),
      { timeout: 5_000, message: 'invite link on the clipboard' }).catch(() => null);
    const invite = copied ?? host.page.url();
    t.diagnostic(`invite link ${invite} (${copied ? 'from the clipboard' : 'the page URL; clipboard not readable'})`);
    assert.equal(new URL(invite).origin, new URL(SFU_URL).origin, `invite link ${invite} is on the server's origin`);
    assert.match(new URL(invite).pathname, new RegExp(`^/stream/${id}/?$`), `invite link ${invite} names the room`);

    guest = await openUser('Guest', invite);
    await join(guest);
    await expectDecoding(host, REMOTE);
    await expectDecoding(guest, REMOTE);
    assertNoPageErrors(host, guest);
  } finally {
    await closeUser(host);
    if (guest) await closeUser(guest);
  }
});

test('screenshots of the lobby with camera preview and of a two-person room are written', async () => {
  const lobby = await openUser('Lobby', `${SFU_URL}/stream`);
  let files = [];
  try {
    await expectDecoding(lobby, LOCAL);
    await lobby.page.getByText('Starting camera…').waitFor({ state: 'detached', timeout: UI_TIMEOUT });
    files.push(await screenshot(lobby.page, 'stream-lobby.png'));
    assertNoPageErrors(lobby);
  } finally {
    await closeUser(lobby);
  }

  const room = roomId('shot');
  const ada = await openUser('Ada', roomUrl(room, 'Ada'));
  const grace = await openUser('Grace', roomUrl(room, 'Grace'));
  try {
    await join(ada);
    await join(grace);
    await expectDecoding(ada, LOCAL);
    await expectDecoding(ada, REMOTE);
    await expectDecoding(grace, REMOTE);
    files.push(await screenshot(ada.page, 'room-two-people.png'));
    assertNoPageErrors(ada, grace);
  } finally {
    await closeUser(ada);
    await closeUser(grace);
  }

  for (const file of files) {
    const { size } = await fs.stat(file);
    assert.ok(size > 1000, `${file} is ${size} bytes`);
  }
});

test('the watch page shows the HLS player and an offline state for a room without a stream', async () => {
  const room = roomId('watch');
  const viewer = await openUser('Viewer', `${SFU_URL}/watch?roomId=${encodeURIComponent(room)}`);
  try {
    await viewer.page.locator('video[data-testid="hls-video"]').waitFor({ state: 'attached', timeout: UI_TIMEOUT });
    await viewer.page.getByText('This room is offline').waitFor({ state: 'visible', timeout: FIRST_MEDIA_TIMEOUT });
    await viewer.page.getByText('Offline', { exact: true }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    assert.equal(await viewer.page.locator('video[data-testid="hls-video"]').count(), 1, 'one hls-video element');
    assert.equal(await viewer.page.getByRole('heading', { name: 'Watch a room' }).count(), 1, 'the page rendered');
    assertNoPageErrors(viewer);
  } finally {
    await closeUser(viewer);
  }
});
