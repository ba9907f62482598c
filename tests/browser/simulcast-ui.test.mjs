// Bandwidth-adaptive delivery through the web app (web/lib/room-session.ts, web/lib/video-layers.ts):
// the camera is published as three simulcast encodings, each remote tile asks for the layer its
// rendered width needs (set-consumer-preferred-layers), a `consumer-layers-changed` with
// spatialLayer null shows the tile's "Paused: low bandwidth" badge, and `producer-max-spatial-layer`
// (dynacast) switches the publisher's upper encodings off and on again.
//
// The web app exposes no debug hooks, so an init script taps the page's WebSocket (frames sent and
// received; a notification can be injected as if the server had sent it) and its RTCPeerConnections
// (outbound-rtp stats, sender encodings). That way the test needs no server support for the
// notifications themselves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { SFU_URL, CHROMIUM, CHROMIUM_ARGS, FIRST_MEDIA_TIMEOUT, UI_TIMEOUT, joinInUi, roomId, waitFor, expectDecoding } from './harness.mjs';

const REMOTE = 'video[data-testid="remote-video"]';
const roomUrl = (id, name) => `${SFU_URL}/stream/${encodeURIComponent(id)}/?name=${encodeURIComponent(name)}`;

/** Runs in the page before its scripts: records signaling frames and peer connections. */
function tapPage() {
  const tap = { sent: [], received: [], sockets: [], pcs: [] };
  window.__tap = tap;
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      tap.sockets.push(this);
      this.addEventListener('message', (event) => {
        try { tap.received.push(JSON.parse(event.data)); } catch { /* not JSON */ }
      });
    }
    send(data) {
      try { tap.sent.push(JSON.parse(data)); } catch { /* not JSON */ }
      return super.send(data);
    }
  };
  const NativePeerConnection = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePeerConnection {
    constructor(...args) {
      super(...args);
      tap.pcs.push(this);
    }
  };
}

let browser;
const users = [];

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  for (const u of users) await u.context.close().catch(() => {});
  await browser?.close().catch(() => {});
});

async function openUser(name, url, viewport) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript(tapPage);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  const user = { name, context, page, pageErrors };
  users.push(user);
  await page.goto(url);
  return user;
}

/** The answer to the page's request of `method` whose data passes `match` (runs in the page). */
function answerOf(user, method, match = '() => true') {
  return user.page.evaluate(([method, match]) => {
    const matches = new Function(`return (${match})`)();
    const request = window.__tap.sent.find((m) => m.request && m.method === method && matches(m.data));
    if (!request) return null;
    const response = window.__tap.received.find((m) => m.response && m.id === request.id);
    return response ? { request: request.data, response } : null;
  }, [method, match]);
}

/** Hands `data` to the page's live signaling socket as if the server had sent the notification. */
function injectNotification(user, method, data) {
  return user.page.evaluate(([method, data]) => {
    const socket = window.__tap.sockets.filter((s) => s.readyState === WebSocket.OPEN).at(-1);
    socket.dispatchEvent(new MessageEvent('message', { data: JSON.stringify({ notification: true, method, data }) }));
  }, [method, data]);
}

/** The `active` flags of the page's simulcast video sender's encodings. */
function senderActiveFlags(user) {
  return user.page.evaluate(() => {
    for (const pc of window.__tap.pcs) {
      if (pc.connectionState === 'closed') continue;
      for (const sender of pc.getSenders()) {
        const encodings = sender.track?.kind === 'video' ? sender.getParameters().encodings : [];
        if (encodings.length > 1) return encodings.map((e) => e.active);
      }
    }
    return null;
  });
}

/** The spatial layers the page asked for, in order, for `consumerId`. */
function layerRequests(user, consumerId) {
  return user.page.evaluate((consumerId) => window.__tap.sent
    .filter((m) => m.method === 'set-consumer-preferred-layers' && m.data.consumerId === consumerId)
    .map((m) => m.data.spatialLayer), consumerId);
}

/** The layer the app's rule gives the tile: by its width in device pixels; 0 when off screen. */
function expectedLayer(user, peerId) {
  return user.page.evaluate((peerId) => {
    const rect = document.querySelector(`[data-peer-tile="${peerId}"]`).getBoundingClientRect();
    const onScreen = rect.bottom > 0 && rect.top < innerHeight && rect.right > 0 && rect.left < innerWidth;
    const width = rect.width * devicePixelRatio;
    return { width, onScreen, layer: !onScreen ? 0 : width <= 320 ? 0 : width <= 640 ? 1 : 2 };
  }, peerId);
}

test('the web app publishes three simulcast layers, asks for the layer a tile needs, shows bandwidth pauses and follows dynacast', { timeout: 240_000 }, async (t) => {
  const room = roomId('simulcast-ui');
  const ada = await openUser('Ada', roomUrl(room, 'Ada'), { width: 1280, height: 800 });
  const bob = await openUser('Bob', roomUrl(room, 'Bob'), { width: 1920, height: 1080 });
  await joinInUi(ada);
  await joinInUi(bob);
  await expectDecoding(bob, REMOTE);

  // Ada's camera: three encodings, L1T3 each, and three outbound-rtp streams carrying bytes.
  const produced = await waitFor(() => answerOf(ada, 'produce', '(d) => d.appData?.source === "camera"'),
    { timeout: UI_TIMEOUT, message: 'Ada: answer to produce of the camera' });
  const encodings = produced.request.rtpParameters.encodings;
  assert.equal(encodings.length, 3, `three camera encodings: ${JSON.stringify(encodings)}`);
  assert.deepEqual(encodings.map((e) => e.scalabilityMode), ['L1T3', 'L1T3', 'L1T3']);
  const cameraProducerId = produced.response.data.producerId;
  const audio = await answerOf(ada, 'produce', '(d) => d.kind === "audio"');
  assert.equal(audio?.request.rtpParameters.encodings.length, 1, 'audio stays one encoding');
  const streams = await waitFor(() => ada.page.evaluate(async () => {
    const widths = [];
    for (const pc of window.__tap.pcs) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'video' && r.bytesSent > 0) widths.push(r.frameWidth ?? 0);
      });
    }
    return widths.length === 3 ? widths.sort((a, b) => a - b) : null;
  }), { timeout: FIRST_MEDIA_TIMEOUT, message: "Ada: three video outbound-rtp streams sending" });

  // Bob's tile of Ada asks for the layer its width needs, and again (once) when the width changes.
  const consumed = await waitFor(() => answerOf(bob, 'consume-media', `(d) => d.producerId === ${JSON.stringify(cameraProducerId)}`),
    { timeout: UI_TIMEOUT, message: "Bob: answer to consume-media of Ada's camera" });
  const { consumerId, rtpParameters } = consumed.response.data;
  const mode = rtpParameters.encodings[0].scalabilityMode ?? '';
  const adaId = await bob.page.locator(REMOTE).getAttribute('data-peer-id');
  assert.match(mode, /^L3T/, "Bob's consumer of Ada's camera is simulcast with three spatial layers");
  {
    const asksFor = (what) => waitFor(async () => {
      const { layer } = await expectedLayer(bob, adaId);
      return (await layerRequests(bob, consumerId)).at(-1) === layer;
    }, { timeout: UI_TIMEOUT, message: `Bob ${what} asks for the layer of his tile of Ada` });
    for (const viewport of [{ width: 1920, height: 1080 }, { width: 320, height: 800 }, { width: 1280, height: 800 }]) {
      await bob.page.setViewportSize(viewport);
      await asksFor(`at ${viewport.width} px`);
    }
    // One column, Ada's tile below Bob's own: scrolled out of view it needs only layer 0.
    await bob.page.setViewportSize({ width: 600, height: 900 });
    await bob.page.locator(`[data-peer-tile="${adaId}"]`).scrollIntoViewIfNeeded();
    await asksFor('with the tile in view');
    assert.equal((await expectedLayer(bob, adaId)).layer, 1, 'a 576 px tile in view needs layer 1');
    await bob.page.setViewportSize({ width: 600, height: 200 });
    await bob.page.evaluate(() => window.scrollTo(0, 0));
    assert.equal((await expectedLayer(bob, adaId)).onScreen, false, "Ada's tile is off screen");
    await asksFor('with the tile off screen');
    await bob.page.setViewportSize({ width: 1280, height: 800 });
    await asksFor('back at 1280 px');
    await new Promise((r) => setTimeout(r, 1_000));
    const asked = await layerRequests(bob, consumerId);
    assert.ok(asked.every((layer, i) => i === 0 || layer !== asked[i - 1]), `only changes are sent: ${JSON.stringify(asked)}`);
  }

  // The server pauses Ada's video for Bob's bandwidth, then resumes it on a layer.
  const tile = bob.page.locator(`[data-peer-tile="${adaId}"]`);
  assert.equal(await tile.getAttribute('data-bandwidth-paused'), 'false');
  await injectNotification(bob, 'consumer-layers-changed', { consumerId, spatialLayer: null, temporalLayer: null });
  await bob.page.locator(`[data-peer-tile="${adaId}"][data-bandwidth-paused="true"]`).waitFor({ timeout: UI_TIMEOUT });
  await tile.getByText('Paused: low bandwidth').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await injectNotification(bob, 'consumer-layers-changed', { consumerId, spatialLayer: 0, temporalLayer: 2 });
  await tile.getByText('Paused: low bandwidth').waitFor({ state: 'detached', timeout: UI_TIMEOUT });
  assert.equal(await tile.getAttribute('data-bandwidth-paused'), 'false');

  // Dynacast: only layer 0 needed → Ada's upper encodings stop; needed again → they are back.
  assert.deepEqual(await senderActiveFlags(ada), [true, true, true]);
  await injectNotification(ada, 'producer-max-spatial-layer', { producerId: 'no-such-producer', spatialLayer: 0 });
  await injectNotification(ada, 'producer-max-spatial-layer', { producerId: cameraProducerId, spatialLayer: 0 });
  await waitFor(async () => JSON.stringify(await senderActiveFlags(ada)) === '[true,false,false]',
    { timeout: UI_TIMEOUT, message: 'Ada: only the lowest encoding active' });
  await injectNotification(ada, 'producer-max-spatial-layer', { producerId: cameraProducerId, spatialLayer: 2 });
  await waitFor(async () => JSON.stringify(await senderActiveFlags(ada)) === '[true,true,true]',
    { timeout: UI_TIMEOUT, message: 'Ada: all encodings active again' });
  await expectDecoding(bob, REMOTE);

  const errors = [...ada.pageErrors, ...bob.pageErrors];
  assert.deepEqual(errors, [], `uncaught page errors:\n${errors.join('\n')}`);
  t.diagnostic(`outbound widths ${JSON.stringify(streams)}, consumer mode ${mode || '(none)'}, layer asks ${JSON.stringify(await layerRequests(bob, consumerId))}`);
});
