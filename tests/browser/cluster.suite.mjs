// The cluster (issue #17, shared/protocol.md "Cluster"): a throwaway redis-server and three nodes
// on loopback, started and stopped by this file; peers are the real web app in Chromium. The cases
// run in order on one cluster: placement and the API, media across entry nodes, SIGKILL of a
// room's owner, Redis going away and coming back, and SIGTERM draining.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT, joinInUi, roomId, waitFor, expectDecoding } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const SFU = path.join(root, 'target', 'release', 'sfu');
const OUT = path.join(process.env.TEST_OUTPUT ?? path.join(root, 'test-output'), 'cluster');
const REDIS_PORT = Number(process.env.TEST_REDIS_PORT || 6391);
const BASE_PORT = Number(process.env.TEST_PORT || 18011);
const BASE_RTC_PORT = Number(process.env.TEST_RTC_PORT || 31700);
/** Acceptance: a dead owner's room is back on a survivor within this. */
const FAILOVER_MS = 15_000;
/** Acceptance: new rooms work again this soon after Redis is back. */
const REDIS_RECOVERY_MS = 10_000;
const REMOTE = 'video[data-testid="remote-video"]';

fs.mkdirSync(OUT, { recursive: true });

let redis = null;
const nodes = [];
let browser;
const users = [];

function startRedis() {
  const log = fs.openSync(path.join(OUT, 'redis.log'), 'a');
  redis = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', log, log] });
  return waitFor(() => redisPing(), { timeout: 10_000, message: `redis-server on ${REDIS_PORT}` });
}

/** PING over RESP: true once redis-server answers. */
function redisPing() {
  return new Promise((resolve) => {
    const s = net.connect(REDIS_PORT, '127.0.0.1');
    s.setTimeout(500, () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
  });
}

async function stopRedis() {
  if (!redis) return;
  const p = redis;
  redis = null;
  await exitOf(p, 'SIGKILL');
}

function exitOf(child, signal) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    if (signal) child.kill(signal);
  });
}

/** Node `i` (0, 1, 2): its own HTTP and media ports, one worker, the cluster's Redis. */
function startNode(i) {
  const port = BASE_PORT + i;
  const url = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(OUT, `node${i}.log`), 'a');
  const child = spawn(SFU, ['--listen', `127.0.0.1:${port}`, '--rtc-port', String(BASE_RTC_PORT + 10 * i), '--workers', '1',
    '--web-root', path.join(root, 'web', 'out'), '--hls-root', path.join(OUT, `hls${i}`)], {
    stdio: ['ignore', log, log],
    env: { ...process.env, SFU_REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}`, SFU_PUBLIC_URL: url, SFU_NODE_ID: `node${i}`, SFU_DRAIN_TIMEOUT: '120' },
  });
  nodes[i] = { i, id: `node${i}`, url, ws: `ws://127.0.0.1:${port}/ws`, child };
  return nodes[i];
}

const alive = () => nodes.filter((n) => n && n.child.exitCode === null && n.child.signalCode === null);

async function getJson(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text() };
}

async function clusterIds(node) {
  try {
    const { body } = await getJson(`${node.url}/api/cluster`);
    return body.nodes.map((n) => n.id).sort();
  } catch { return []; }
}

/** Waits until every live node lists exactly the live nodes. */
async function waitForMembership() {
  const want = alive().map((n) => n.id).sort();
  await waitFor(async () => {
    for (const n of alive()) if ((await clusterIds(n)).join() !== want.join()) return false;
    return true;
  }, { timeout: 15_000, message: `every node lists ${want}` });
}

/** join-room through `entry`, following `moved`; resolves with the open socket and the node it joined on. */
function joinWs(entry, room, hops = 3) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(entry);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`join ${room} via ${entry}: timeout`)); }, 10_000);
    ws.on('open', () => ws.send(JSON.stringify({ request: true, id: 1, method: 'join-room', data: { roomId: room } })));
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
    ws.on('message', (raw) => {
      const msg = JSON.parse(raw.toString());
      if (!msg.response) return;
      clearTimeout(timer);
      if (msg.ok) return resolve({ ws, url: entry, moved: hops < 3 });
      ws.close();
      if (msg.error.code === 'moved' && hops > 0) return resolve(joinWs(msg.error.url, room, hops - 1));
      const e = new Error(`join ${room} via ${entry}: ${msg.error.code}: ${msg.error.message}`);
      e.code = msg.error.code;
      reject(e);
    });
  });
}

const nodeOfWs = (url) => nodes.find((n) => n?.ws === url);

/** The owner every live node names for `room` (waits until they agree). */
async function ownerEverywhere(room) {
  return waitFor(async () => {
    const owners = new Set();
    for (const n of alive()) {
      const { status, body } = await getJson(`${n.url}/api/rooms/${room}`).catch(() => ({ status: 0 }));
      if (status !== 200 || !body.node) return null;
      owners.add(body.node);
    }
    return owners.size === 1 ? [...owners][0] : null;
  }, { timeout: 10_000, message: `every node names one owner of ${room}` });
}

async function openUser(name, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const user = { name, context, page, pageErrors: [] };
  page.on('pageerror', (e) => user.pageErrors.push(`${name}: ${e.message}`));
  users.push(user);
  await page.goto(url);
  return user;
}

const roomUrl = (node, room, name) => `${node.url}/stream/${encodeURIComponent(room)}/?name=${encodeURIComponent(name)}`;

/** Whether the page plays the other peer's audio: a live, unmuted remote audio track. */
function hearsAudio(user) {
  return user.page.evaluate(() => [...document.querySelectorAll('audio')].some((a) => {
    const track = a.srcObject?.getAudioTracks?.()[0];
    return track && track.readyState === 'live' && !track.muted && !a.paused;
  }));
}

async function expectSeeAndHear(...list) {
  for (const u of list) {
    await expectDecoding(u, REMOTE);
    await waitFor(() => hearsAudio(u), { timeout: UI_TIMEOUT, message: `${u.name} plays the other's audio` });
  }
}

before(async () => {
  await startRedis();
  for (let i = 0; i < 3; i++) startNode(i);
  for (const n of nodes) {
    await waitFor(async () => (await getJson(`${n.url}/healthz`).catch(() => ({}))).status === 200,
      { timeout: 20_000, message: `${n.id} healthy` });
  }
  await waitForMembership();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  for (const u of users) await u.context.close().catch(() => {});
  await browser?.close().catch(() => {});
  for (const n of nodes) if (n) await exitOf(n.child, 'SIGKILL');
  await stopRedis();
});

test('every node lists the cluster; rooms spread over the nodes; every node names a room\'s owner', async () => {
  for (const n of nodes) {
    const { body } = await getJson(`${n.url}/api/cluster`);
    assert.deepEqual(body.nodes.map((x) => x.id).sort(), ['node0', 'node1', 'node2'], `${n.id}: /api/cluster`);
    for (const x of body.nodes) {
      assert.equal(typeof x.url, 'string');
      assert.equal(x.draining, false);
      assert.equal(typeof x.rooms, 'number');
      assert.equal(typeof x.peers, 'number');
    }
  }
  const rooms = [0, 1, 2, 3].map(() => roomId('place'));
  const joined = [];
  try {
    for (const [k, room] of rooms.entries()) joined.push(await joinWs(nodes[k % 3].ws, room));
    const owners = [];
    for (const [k, room] of rooms.entries()) {
      const owner = await ownerEverywhere(room);
      assert.equal(owner, nodeOfWs(joined[k].url).id, `${room}: the named owner is the node the peer joined on`);
      owners.push(owner);
    }
    assert.ok(new Set(owners).size >= 2, `four rooms on at least two nodes: ${owners}`);
    // A second peer entering through a node that does not own the room is moved to the owner.
    const other = nodes.find((n) => n.id !== owners[0]);
    const second = await joinWs(other.ws, rooms[0]);
    joined.push(second);
    assert.equal(nodeOfWs(second.url).id, owners[0], 'the second peer lands on the owner');
    assert.ok(second.moved, 'it was moved there');
    const { body } = await getJson(`${nodes.find((n) => n.id === owners[0]).url}/api/rooms/${rooms[0]}`);
    assert.equal(body.peers.length, 2, 'both peers are in the one room');
  } finally {
    for (const j of joined) j.ws.close();
  }
});

let ada, bob, sharedRoom;

test('peers entering through different nodes see and hear each other (web app)', { timeout: 180_000 }, async () => {
  sharedRoom = roomId('cl');
  ada = await openUser('Ada', roomUrl(nodes[0], sharedRoom, 'Ada'));
  await joinInUi(ada);
  bob = await openUser('Bob', roomUrl(nodes[1], sharedRoom, 'Bob'));
  await joinInUi(bob);
  await expectSeeAndHear(ada, bob);
  const owner = await ownerEverywhere(sharedRoom);
  const { body } = await getJson(`${nodes.find((n) => n.id === owner).url}/api/rooms/${sharedRoom}`);
  assert.deepEqual(body.peers.map((p) => p.displayName).sort(), ['Ada', 'Bob']);
  assert.deepEqual([...ada.pageErrors, ...bob.pageErrors], []);
});

test('SIGKILL of the owner: the room is back on a survivor within 15 s, and the web app reconnects there', { timeout: 180_000 }, async () => {
  assert.ok(ada && bob, 'the previous case put Ada and Bob in a room');
  const ownerId = await ownerEverywhere(sharedRoom);
  const victim = nodes.find((n) => n.id === ownerId);
  const killedAt = Date.now();
  await exitOf(victim.child, 'SIGKILL');
  // Back when both pages decode each other again, on a survivor.
  const survivorOwner = await waitFor(async () => {
    for (const n of alive()) {
      const { status, body } = await getJson(`${n.url}/api/rooms/${sharedRoom}`).catch(() => ({ status: 0 }));
      if (status === 200 && body.peers?.length === 2) return n.id;
    }
    return null;
  }, { timeout: FAILOVER_MS, interval: 200, message: `${sharedRoom} back on a survivor with both peers` });
  const rejoinedMs = Date.now() - killedAt;
  assert.notEqual(survivorOwner, victim.id);
  await expectSeeAndHear(ada, bob);
  const mediaMs = Date.now() - killedAt;
  console.log(`# failover: owner ${victim.id} killed; both peers back in the room on ${survivorOwner} after ${rejoinedMs} ms, decoding each other after ${mediaMs} ms`);
  assert.ok(rejoinedMs <= FAILOVER_MS, `back within ${FAILOVER_MS} ms (took ${rejoinedMs})`);
  // The killed node's record lapses everywhere; it comes back under the same id.
  await waitForMembership();
  startNode(victim.i);
  await waitFor(async () => (await getJson(`${victim.url}/healthz`).catch(() => ({}))).status === 200,
    { timeout: 20_000, message: `${victim.id} restarted` });
  await waitForMembership();
});

test('Redis killed and restarted: no node crashes, rooms keep their media, new rooms work again within 10 s', { timeout: 180_000 }, async () => {
  await stopRedis();
  const entry = alive()[0];
  // New rooms are refused with a clear error while Redis is away.
  const refused = await waitFor(async () => {
    try {
      const j = await joinWs(entry.ws, roomId('noredis'));
      j.ws.close();
      return null;
    } catch (e) { return e; }
  }, { timeout: 10_000, message: 'a new room refused without Redis' });
  assert.match(refused.message, /Redis/, `the error names the cause: ${refused.message}`);
  await expectSeeAndHear(ada, bob);
  assert.equal(alive().length, 3, 'every node still runs');
  for (const n of alive()) assert.equal((await getJson(`${n.url}/healthz`)).status, 200, `${n.id} healthy without Redis`);

  await startRedis();
  const back = Date.now();
  const fresh = await waitFor(async () => {
    try { return await joinWs(entry.ws, roomId('redis-back')); } catch { return null; }
  }, { timeout: REDIS_RECOVERY_MS, interval: 250, message: `a new room within ${REDIS_RECOVERY_MS} ms of Redis returning` });
  console.log(`# redis back: a new room joined after ${Date.now() - back} ms`);
  fresh.ws.close();
  await waitForMembership();
  // The existing room's lease was re-asserted: every node names its owner again.
  await ownerEverywhere(sharedRoom);
  await expectSeeAndHear(ada, bob);
});

test('SIGTERM drains: healthz 503, the room keeps its media, new rooms go elsewhere, the node exits once empty', { timeout: 180_000 }, async () => {
  const ownerId = await ownerEverywhere(sharedRoom);
  const node = nodes.find((n) => n.id === ownerId);
  node.child.kill('SIGTERM');
  await waitFor(async () => (await getJson(`${node.url}/healthz`).catch(() => ({}))).status === 503,
    { timeout: 5_000, message: `${node.id}: /healthz 503 while draining` });
  await waitFor(async () => {
    const { body } = await getJson(`${alive().find((n) => n !== node).url}/api/cluster`);
    return body.nodes.find((n) => n.id === node.id)?.draining === true;
  }, { timeout: 5_000, message: `the cluster shows ${node.id} draining` });
  await expectSeeAndHear(ada, bob);
  // A new room entering through the draining node is placed on another.
  const fresh = await joinWs(node.ws, roomId('drain'));
  assert.notEqual(nodeOfWs(fresh.url).id, node.id, 'the new room lives elsewhere');
  fresh.ws.close();
  assert.equal(node.child.exitCode, null, 'the node keeps running while its room has peers');
  for (const u of [ada, bob]) await u.context.close();
  users.length = 0;
  await waitFor(() => node.child.exitCode !== null, { timeout: 15_000, message: `${node.id} exits once its room is empty` });
  assert.equal(node.child.exitCode, 0, 'a drained node exits cleanly');
  await waitFor(async () => !(await clusterIds(alive()[0])).includes(node.id),
    { timeout: 5_000, message: `${node.id} left the cluster at once` });
});
