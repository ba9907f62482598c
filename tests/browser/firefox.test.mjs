// Firefox ESR and Chromium in one room through the web app: each clicks Join, each decodes the
// other's camera and hears the other's microphone (mediasoup-client's Firefox handler on one side,
// its Chrome handler on the other, the real server in between). Firefox is driven by
// puppeteer-core over WebDriver BiDi, Chromium by playwright-core. Prefs: shared/NOTES.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { SFU_URL, CHROMIUM, CHROMIUM_ARGS, FIRST_MEDIA_TIMEOUT, joinInUi, roomId, waitFor } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOT_DIR = path.join(process.env.TEST_OUTPUT ?? path.join(here, '..', '..', 'test-output'), 'screenshots');
const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

const FIREFOX_PREFS = {
  // Fake camera (a coloured frame) and microphone (a 1 kHz tone), allowed without a prompt.
  'media.navigator.streams.fake': true,
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  // ICE on loopback, with real (not mDNS) host addresses.
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  // Remote media plays without a user gesture.
  'media.autoplay.default': 0,
  'media.autoplay.block-webaudio': false,
};

let firefox;
let chrome;

before(async () => {
  firefox = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: FIREFOX_PREFS,
  });
  chrome = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await firefox?.close().catch(() => {});
  await chrome?.close().catch(() => {});
});

const roomUrl = (id, name) => `${SFU_URL}/stream/${encodeURIComponent(id)}/?name=${encodeURIComponent(name)}`;

/**
 * Runs in the page: the remote videos' size and how many new frames each presented during `ms`
 * (requestVideoFrameCallback: Firefox's getVideoPlaybackQuality counts no frames of a
 * MediaStream, so the decoded-frame count of the other tests does not work there).
 */
async function remoteVideoFrames(ms) {
  const videos = [...document.querySelectorAll('video[data-testid="remote-video"]')];
  return Promise.all(videos.map((v) => new Promise((resolve) => {
    let frames = 0;
    let handle = 0;
    const onFrame = () => {
      frames++;
      handle = v.requestVideoFrameCallback(onFrame);
    };
    handle = v.requestVideoFrameCallback(onFrame);
    const startTime = v.currentTime;
    setTimeout(() => {
      v.cancelVideoFrameCallback(handle);
      resolve({ peerId: v.dataset.peerId ?? null, width: v.videoWidth, frames, advanced: v.currentTime - startTime });
    }, ms);
  })));
}

/**
 * Runs in the page: listens to the remote peer's <audio> element's stream through Web Audio for
 * `ms` and returns the peak sample (0 = silence), with the element's state.
 */
async function remoteAudioPeak(ms) {
  const audio = document.querySelector('[data-peer-tile]:not([data-peer-tile="local"]) audio');
  const stream = audio?.srcObject;
  if (!stream || stream.getAudioTracks().length === 0) return { peak: 0, why: 'no remote audio track' };
  const track = stream.getAudioTracks()[0];
  window.__testAudio ??= new AudioContext();
  const ctx = window.__testAudio;
  await Promise.race([ctx.resume().catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let peak = 0;
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 40));
    analyser.getFloatTimeDomainData(samples);
    for (const v of samples) peak = Math.max(peak, Math.abs(v));
  }
  source.disconnect();
  return { peak, track: track.readyState, muted: track.muted, paused: audio.paused, context: ctx.state };
}

/** Waits until the one remote video has a size and presents at least 10 new frames in 2 s. */
async function expectRemoteVideo(name, evaluate) {
  return waitFor(async () => {
    const s = await evaluate(remoteVideoFrames, 2000);
    return s.length === 1 && s[0].width > 0 && s[0].frames >= 10 && s[0].advanced > 0 ? s[0] : null;
  }, { timeout: FIRST_MEDIA_TIMEOUT, interval: 100, message: `${name}: one remote video with videoWidth > 0 presenting new frames` });
}

/**
 * Runs in the page: the remote <audio> element's state, advancing playback time and, over
 * `ms`, the bytes a MediaRecorder got from its track (what the element would play).
 */
async function remoteAudioState(ms) {
  const audio = document.querySelector('[data-peer-tile]:not([data-peer-tile="local"]) audio');
  const stream = audio?.srcObject;
  const track = stream?.getAudioTracks()[0];
  if (!track) return { why: 'no remote audio track' };
  const startTime = audio.currentTime;
  let bytes = 0;
  const recorder = new MediaRecorder(new MediaStream([track]));
  recorder.ondataavailable = (e) => { bytes += e.data.size; };
  recorder.start(200);
  await new Promise((r) => setTimeout(r, ms));
  await new Promise((r) => { recorder.onstop = r; recorder.stop(); });
  return { track: track.readyState, muted: track.muted, paused: audio.paused, advanced: audio.currentTime - startTime, bytes };
}

/**
 * The other peer is heard: Web Audio finds a non-silent signal where it runs (Chromium);
 * headless Firefox has no audio output, so its AudioContext stays suspended: there the remote
 * track must be live and unmuted (Firefox unmutes a remote track when RTP arrives), its element
 * playing with advancing time, and a recorder of the track must receive encoded audio.
 */
async function expectRemoteAudio(name, evaluate, { webAudio }) {
  let last;
  await waitFor(async () => {
    last = await evaluate(remoteAudioState, 1500);
    return last.track === 'live' && !last.muted && !last.paused && last.advanced > 0.5 && last.bytes > 500;
  }, { timeout: FIRST_MEDIA_TIMEOUT, interval: 100, message: `${name}: the remote audio plays and receives data` });
  if (webAudio) {
    await waitFor(async () => {
      last = { ...last, ...(await evaluate(remoteAudioPeak, 1500)) };
      return last.peak > 0.01;
    }, { timeout: FIRST_MEDIA_TIMEOUT, interval: 100, message: `${name}: the remote audio is not silent` });
  }
  return last;
}

/** A Firefox and a Chromium user, each having clicked Join in `room`. */
async function joinBoth(t, room) {
  const fox = await firefox.newPage();
  const errors = [];
  fox.on('pageerror', (e) => errors.push(`firefox: ${e.message}`));
  const context = await chrome.newContext({ viewport: { width: 1280, height: 800 } });
  const chromePage = await context.newPage();
  chromePage.on('pageerror', (e) => errors.push(`chromium: ${e.message}`));
  // What the server answered Chromium (does it offer data channels?).
  const chromeFrames = [];
  chromePage.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    try { chromeFrames.push(JSON.parse(String(payload))); } catch { /* not JSON */ }
  }));
  const both = {
    fox, chromePage, errors, chromeFrames,
    foxEval: (fn, arg) => fox.evaluate(fn, arg),
    chromeEval: (fn, arg) => chromePage.evaluate(fn, arg),
    close: async () => {
      await fox.close().catch(() => {});
      await context.close().catch(() => {});
    },
  };
  try {
    const ua = await fox.evaluate(() => navigator.userAgent);
    assert.match(ua, /Firefox\//, `the puppeteer browser is Firefox (${ua})`);
    t.diagnostic(`Firefox: ${ua}`);

    // Firefox: open the room page and click Join once the camera preview is ready.
    await fox.goto(roomUrl(room, 'Fox'));
    const joinButton = await fox.waitForFunction(() => {
      const b = [...document.querySelectorAll('button')].find((el) => el.textContent.trim() === 'Join');
      return b && !b.disabled ? b : null;
    }, { timeout: FIRST_MEDIA_TIMEOUT, polling: 250 });
    await joinButton.click();
    await fox.waitForFunction(() => [...document.querySelectorAll('button')].some((el) => el.textContent.trim() === 'Leave'),
      { timeout: FIRST_MEDIA_TIMEOUT, polling: 250 });

    // Chromium joins the same room.
    await chromePage.goto(roomUrl(room, 'Chrome'));
    await joinInUi({ name: 'Chromium', page: chromePage });
    return both;
  } catch (error) {
    await both.close();
    throw error;
  }
}

test('a Firefox and a Chromium user join one room through the web app and see and hear each other', { timeout: 240_000 }, async (t) => {
  const { foxEval, chromeEval, fox, chromePage, errors, close } = await joinBoth(t, roomId('firefox'));
  try {
    const atFox = await expectRemoteVideo('Firefox', foxEval);
    const atChrome = await expectRemoteVideo('Chromium', chromeEval);
    t.diagnostic(`video: Firefox decodes ${JSON.stringify(atFox)}, Chromium decodes ${JSON.stringify(atChrome)}`);

    const heardByFox = await expectRemoteAudio('Firefox', foxEval, { webAudio: false });
    const heardByChrome = await expectRemoteAudio('Chromium', chromeEval, { webAudio: true });
    t.diagnostic(`audio: Firefox hears ${JSON.stringify(heardByFox)}, Chromium hears ${JSON.stringify(heardByChrome)}`);

    // Each shows the other's name.
    const names = async (evaluate) => evaluate(() => document.querySelector('[data-peer-tile]:not([data-peer-tile="local"])')?.textContent ?? '');
    assert.match(await names(foxEval), /Chrome/, 'Firefox shows the Chromium user by name');
    assert.match(await names(chromeEval), /Fox/, 'Chromium shows the Firefox user by name');

    await fs.mkdir(SCREENSHOT_DIR, { recursive: true });
    await fox.screenshot({ path: path.join(SCREENSHOT_DIR, 'firefox-room.png') });
    await chromePage.screenshot({ path: path.join(SCREENSHOT_DIR, 'firefox-room-chromium-side.png') });
    assert.deepEqual(errors, [], 'no uncaught page errors');
  } finally {
    await close();
  }
});

/** Runs in the page: opens the chat panel (if closed) and returns its status. */
function chatStatus() {
  if (!document.querySelector('[data-testid="chat-panel"]')) document.querySelector('button[aria-label="Chat"]')?.click();
  return document.querySelector('[data-testid="chat-panel"]')?.dataset.chatStatus ?? null;
}

/** Runs in the page: sends `text` through the chat form (React sees a real input event). */
function sendChat(text) {
  const box = document.querySelector('textarea[aria-label="Message"]');
  const setValue = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
  setValue.call(box, text);
  box.dispatchEvent(new Event('input', { bubbles: true }));
  return new Promise((resolve) => setTimeout(() => {
    document.querySelector('button[aria-label="Send"]').click();
    resolve(true);
  }, 100));
}

const chatTexts = () => [...document.querySelectorAll('[data-testid="chat-message"]')]
  .map((m) => `${m.querySelector('[data-testid="chat-sender"]')?.textContent}: ${m.querySelector('[data-testid="chat-text"]')?.textContent}`);

test('chat between Firefox and Chromium over data channels', { timeout: 240_000 }, async (t) => {
  const { foxEval, chromeEval, chromeFrames, errors, close } = await joinBoth(t, roomId('firefox-chat'));
  try {
    await waitFor(() => chromeFrames.filter((f) => f.response && f.data?.iceParameters).length >= 2,
      { timeout: FIRST_MEDIA_TIMEOUT, message: 'both create-transport answers (Chromium)' });
    if (!chromeFrames.some((f) => f.response && f.ok && f.data?.iceParameters && f.data.sctpParameters)) {
      t.skip('the server answered create-transport {sctp: true} without sctpParameters (no data channels yet)');
      return;
    }
    for (const [name, evaluate] of [['Firefox', foxEval], ['Chromium', chromeEval]]) {
      await waitFor(async () => (await evaluate(chatStatus)) === 'ready', { timeout: FIRST_MEDIA_TIMEOUT, message: `${name}: chat ready` });
    }
    await waitFor(() => chromeFrames.some((f) => f.response && f.ok && f.data?.dataConsumerId),
      { timeout: FIRST_MEDIA_TIMEOUT, message: "Chromium consumes Firefox's chat producer" });
    await foxEval(sendChat, 'from Firefox');
    await waitFor(async () => (await chromeEval(chatTexts)).includes('Fox: from Firefox'),
      { timeout: FIRST_MEDIA_TIMEOUT, message: "Chromium shows Firefox's message" });
    await chromeEval(sendChat, 'from Chromium');
    await waitFor(async () => JSON.stringify(await foxEval(chatTexts)) === JSON.stringify(['You: from Firefox', 'Chrome: from Chromium']),
      { timeout: FIRST_MEDIA_TIMEOUT, message: "Firefox shows its message and Chromium's reply" });
    assert.deepEqual(errors, [], 'no uncaught page errors');
  } finally {
    await close();
  }
});
