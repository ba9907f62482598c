// Late joiner's first decoded remote frame: a publisher is live; a new peer joins, consumes it,
// and we time join-room → first decoded video frame. Median of several trials.
//   SFU_URL=http://127.0.0.1:8000 node bench-first-frame.mjs [trials]
import { startHarness, roomId, waitFor } from './harness.mjs';

const trials = Number(process.argv[2] || 7);
const h = await startHarness();
const room = roomId('ff');
const pub = await h.newPeer('publisher');
const times = [];
try {
  await pub.join(room);
  await pub.publish({ video: true, audio: false });
  for (let i = 0; i < trials; i++) {
    const late = await h.newPeer(`late-${i}`);
    const t0 = Date.now();
    await late.join(room);
    await late.consumeAll();
    await waitFor(async () => (await late.stats()).some((s) => s.kind === 'video' && s.framesDecoded > 0),
      { timeout: 30_000, interval: 10, message: 'first decoded frame' });
    times.push(Date.now() - t0);
    await late.close();
  }
} finally {
  await pub.close();
  await h.close();
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
console.log(`late joiner first frame (join-room → first decoded frame), ${trials} trials: median ${median} ms, min ${times[0]} ms, max ${times.at(-1)} ms`);
console.log(JSON.stringify({ medianMs: median, times }));
