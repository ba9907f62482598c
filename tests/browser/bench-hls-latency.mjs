// Glass-to-glass latency of the HLS path: a publisher draws the wall clock into its video; the
// /watch page decodes it from the frames it shows. Both pages run on this machine (one clock).
//   SFU_URL=http://127.0.0.1:8000 node bench-hls-latency.mjs [seconds]
import { startHarness, roomId, waitFor, SFU_URL } from './harness.mjs';

const seconds = Number(process.argv[2] || 20);
const h = await startHarness();
const room = roomId('g2g');
const pub = await h.newPeer('clock');
try {
  await pub.join(room);
  await pub.publish({ video: true, audio: true, clock: true });
  const context = await h.browser.newContext();
  const page = await context.newPage();
  await page.goto(`${SFU_URL}/watch?roomId=${room}`);
  await waitFor(() => page.evaluate(() => (document.querySelector('video[data-testid="hls-video"]')?.currentTime ?? 0) > 0),
    { timeout: 90_000, message: 'HLS playback starts' });
  const samples = await page.evaluate(async (secs) => {
    const video = document.querySelector('video[data-testid="hls-video"]');
    const canvas = Object.assign(document.createElement('canvas'), { width: 640, height: 360 });
    const g = canvas.getContext('2d', { willReadFrequently: true });
    const out = [];
    const end = performance.now() + secs * 1000;
    while (performance.now() < end) {
      await new Promise((r) => video.requestVideoFrameCallback(r));
      g.drawImage(video, 0, 0, 640, 360);
      let t = 0;
      for (let bit = 0; bit < 20; bit++) {
        const x = 64 * (bit % 10) + 32, y = bit < 10 ? 100 : 260;
        const [r, gg, b] = g.getImageData(x, y, 1, 1).data;
        if ((r + gg + b) / 3 > 128) t |= 1 << bit;
      }
      const now = Math.floor(Date.now() / 10) & 0xfffff;
      const ms = ((now - t) & 0xfffff) * 10;
      if (ms < 60_000) out.push(ms);
    }
    return out;
  }, seconds);
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
  const result = { samples: samples.length, medianMs: q(0.5), p90Ms: q(0.9), minMs: samples[0], maxMs: samples.at(-1) };
  console.log(`HLS glass-to-glass over ${seconds} s: median ${result.medianMs} ms, p90 ${result.p90Ms} ms (min ${result.minMs}, max ${result.maxMs}, ${result.samples} frames)`);
  console.log(JSON.stringify(result));
  await context.close();
} finally {
  await pub.close();
  await h.close();
}
