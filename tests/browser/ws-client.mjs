// A bare protocol client for Node (the `ws` package), for tests that speak the envelope directly.
import WebSocket from 'ws';
import { WS_URL } from './harness.mjs';

export class WsClient {
  static async open(url = WS_URL) {
    const c = new WsClient(new WebSocket(url));
    await new Promise((resolve, reject) => { c.ws.once('open', resolve); c.ws.once('error', reject); });
    return c;
  }
  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.frames = []; // every parsed frame, in order
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('error', () => {});
    ws.on('message', (raw) => {
      let m;
      try { m = JSON.parse(raw.toString()); } catch { m = { unparsable: raw.toString() }; }
      this.frames.push(m);
      this.waiters = this.waiters.filter((w) => !(w.pred(m) && (w.resolve(m), true)));
    });
  }
  /** Resolves with the first frame (past or future) matching pred. */
  next(pred, timeout = 10_000, what = 'frame') {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames).slice(0, 2000)}`)), timeout);
      this.waiters.push({ pred, resolve: (m) => { clearTimeout(timer); resolve(m); } });
    });
  }
  sendRaw(s) { this.ws.send(s); }
  /** Sends a request; resolves with the whole response envelope. */
  request(method, data = {}, timeout = 10_000) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ request: true, id, method, data }));
    return this.next((m) => m.response === true && m.id === id, timeout, `response to ${method} #${id}`);
  }
  /** Sends a request; resolves with data, throws on ok:false. */
  async call(method, data = {}) {
    const r = await this.request(method, data);
    if (!r.ok) throw new Error(`${method}: ${JSON.stringify(r.error)}`);
    return r.data;
  }
  notification(method, timeout) {
    return this.next((m) => m.notification === true && m.method === method, timeout, `notification ${method}`);
  }
  close() { this.ws.close(); return this.closed; }
}
