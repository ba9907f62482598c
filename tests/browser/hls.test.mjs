// HLS /watch: a room's live stream through FFmpeg, played by hls.js on the watch page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readlink } from 'node:fs/promises';
import { startHarness, roomId, waitFor, SFU_URL } from './harness.mjs';

const run = promisify(execFile);
let h;
before(async () => { h = await startHarness(); });
after(async () => { await h?.close(); });

const playlistUrl = (room) => `${SFU_URL}/hls/${room}/index.m3u8`;

async function playlist(room) {
  const res = await fetch(playlistUrl(room));
  return res.ok ? res.text() : null;
}

const mediaSequence = (text) => Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1] ?? -1);
const segments = (text) => text.split('\n').filter((l) => l && !l.startsWith('#'));

async function waitForLive(room, minSegments = 2) {
  return waitFor(async () => {
    const text = await playlist(room);
    return text && segments(text).length >= minSegments ? text : null;
  }, { timeout: 60_000, interval: 500, message: `HLS playlist of ${room} with ${minSegments} segments` });
}

/** Opens /watch?roomId= and returns a function reading the player's currentTime. */
async function openWatch(room) {
  const context = await h.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${SFU_URL}/watch?roomId=${room}`);
  const time = () => page.evaluate(() => document.querySelector('video[data-testid="hls-video"]')?.currentTime ?? 0);
  return { context, page, time, errors };
}

/** FFmpeg processes whose working directory is the room's HLS folder. */
async function ffmpegPidsOf(room) {
  const { stdout } = await run('pgrep', ['-x', 'ffmpeg']).catch(() => ({ stdout: '' }));
  const pids = [];
  for (const pid of stdout.trim().split('\n').filter(Boolean)) {
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
    if (cwd.endsWith(`/${room}`)) pids.push(pid);
  }
  return pids;
}

async function expectAdvancing(time, seconds, label) {
  const start = await waitFor(async () => { const t = await time(); return t > 0 ? t : null; },
    { timeout: 60_000, message: `${label}: playback starts` });
  await waitFor(async () => (await time()) >= start + seconds,
    { timeout: (seconds + 30) * 1000, interval: 500, message: `${label}: currentTime advances ${seconds} s` });
}

test('a publisher\'s room becomes an H.264 + AAC HLS stream that the watch page plays', async () => {
  const room = roomId('hls');
  const pub = await h.newPeer('hls-publisher');
  const watch = await openWatch(room);
  try {
    await pub.join(room);
    await pub.publish({ video: true, audio: true, codec: 'vp8' });
    const text = await waitForLive(room);
    assert.match(text, /#EXTM3U/);
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name',
      '-of', 'json', playlistUrl(room)], { timeout: 60_000 });
    const streams = JSON.parse(stdout).streams.map((s) => `${s.codec_type}:${s.codec_name}`).sort();
    assert.ok(streams.includes('video:h264'), `video is H.264: ${streams}`);
    assert.ok(streams.includes('audio:aac'), `audio is AAC: ${streams}`);
    await expectAdvancing(watch.time, 10, 'watch page');
    assert.deepEqual(watch.errors, []);
  } finally {
    await watch.context.close();
    await pub.close();
  }
});

test('the stream survives a second publisher joining and FFmpeg being killed', { timeout: 180_000 }, async () => {
  const room = roomId('hls2');
  const a = await h.newPeer('hls-a');
  const b = await h.newPeer('hls-b');
  const watch = await openWatch(room);
  try {
    await a.join(room);
    await a.publish({ video: true, audio: true, codec: 'vp8' });
    const first = await waitForLive(room);
    await expectAdvancing(watch.time, 3, 'before the second publisher');

    await b.join(room);
    await b.publish({ video: true, audio: true, codec: 'vp8' });
    // The pipeline is rebuilt with a discontinuity; the media sequence never goes back.
    const after = await waitFor(async () => {
      const text = await playlist(room);
      return text && /#EXT-X-DISCONTINUITY/.test(text) && mediaSequence(text) >= mediaSequence(first) ? text : null;
    }, { timeout: 60_000, interval: 500, message: 'playlist continues after the rebuild' });
    assert.ok(mediaSequence(after) >= mediaSequence(first));
    await expectAdvancing(watch.time, 3, 'after the second publisher');

    const pids = await ffmpegPidsOf(room);
    assert.ok(pids.length >= 1, 'an FFmpeg process runs for the room');
    for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
    const before = await watch.time();
    await waitFor(async () => (await watch.time()) > before + 3,
      { timeout: 45_000, interval: 500, message: 'playback resumes after FFmpeg was killed' });
    const text = await playlist(room);
    assert.ok(mediaSequence(text) >= mediaSequence(after), 'media sequence did not go back');
  } finally {
    await watch.context.close();
    await a.close();
    await b.close();
  }
});

test('HLS paths outside a room folder, bad ids and internal files are 404', async () => {
  const room = roomId('hlsx');
  for (const p of ['/hls/..%2f..%2fetc/passwd', '/hls/bad%20id/index.m3u8', `/hls/${room}/..%2f..%2f..%2fetc%2fpasswd`,
    '/hls/%2e%2e/%2e%2e/etc/passwd', `/hls/${room}/room.sdp`, `/hls/${room}/ffmpeg.log`, '/hls/x/../../Cargo.toml']) {
    const res = await fetch(`${SFU_URL}${p}`);
    assert.equal(res.status, 404, p);
    const body = await res.text();
    assert.ok(!body.includes('root:'), `${p} leaks nothing`);
  }
});
