// Page script for the browser tests: the unmodified mediasoup-client speaking shared/protocol.md.
// Bundled by harness.mjs with esbuild into dist/client.js; exposes `window.sfu` (async API used by
// the tests through page.evaluate).
import { Device } from 'mediasoup-client';

const state = {
  ws: null,
  nextId: 1,
  pending: new Map(), // id -> {resolve, reject, method}
  notifications: [], // {method, data, t}
  errors: [], // client-side problems (failed auto-consume, ...)
  device: null,
  peerId: null,
  roomId: null,
  peers: new Map(), // peerId -> displayName
  knownProducers: new Map(), // producerId -> {producerId, peerId, kind}
  sendTransport: null,
  recvTransport: null,
  iceTransportPolicy: null, // 'relay': TURN relay candidates only (setIceTransportPolicy)
  producers: new Map(), // producerId -> Producer
  consumers: new Map(), // consumerId -> {consumer, producerId, peerId, kind, el}
  consuming: new Set(), // producerIds being / already consumed
  closedConsumers: [], // {consumerId, producerId, peerId, kind, reason}
  autoConsume: true,
  localStream: null,
  socketClosed: null, // {code, reason} once closed
  // Data channels (enableDataChannels() before join): transports are created with sctp: true.
  sctp: false,
  sctpMaxMessageSize: null, // overrides the server's maxMessageSize towards the browser (tests)
  knownDataProducers: new Map(), // dataProducerId -> {dataProducerId, peerId, label, protocol}
  dataProducers: new Map(), // dataProducerId -> DataProducer
  dataConsumers: new Map(), // dataConsumerId -> {dataConsumer, dataProducerId, peerId, label, messages}
  consumingData: new Set(), // dataProducerIds being / already consumed
  closedDataConsumers: [], // {dataConsumerId, dataProducerId, reason}
  echo: false, // answer every received "ping:<x>" with "pong:<x>" on our first data producer
};

const REQUEST_TIMEOUT_MS = 20_000;

/** Rejects when `promise` has not settled within `ms` (a hang becomes a named failure). */
function withTimeout(promise, what, ms = 2 * REQUEST_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      state.errors.push(`${what} did not finish within ${ms} ms`);
      reject(new Error(`${what} did not finish within ${ms} ms`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class RequestError extends Error {
  constructor(method, error) {
    super(`${method} failed: ${error?.code}: ${error?.message}`);
    this.code = error?.code;
  }
}

function connect(wsUrl) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    state.ws = ws;
    ws.onopen = () => resolve(true);
    ws.onerror = () => reject(new Error(`WebSocket error connecting to ${wsUrl}`));
    ws.onclose = (ev) => {
      state.socketClosed = { code: ev.code, reason: ev.reason };
      for (const [, p] of state.pending) p.reject(new Error(`socket closed (${ev.code}) during ${p.method}`));
      state.pending.clear();
    };
    ws.onmessage = (ev) => onMessage(ev.data);
  });
}

function onMessage(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    state.errors.push(`non-JSON frame from server: ${String(raw).slice(0, 200)}`);
    return;
  }
  if (msg.response) {
    const p = state.pending.get(msg.id);
    if (!p) {
      state.errors.push(`response for unknown id ${msg.id}`);
      return;
    }
    state.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.data ?? {});
    else p.reject(new RequestError(p.method, msg.error));
  } else if (msg.notification) {
    state.notifications.push({ method: msg.method, data: msg.data, t: Date.now() });
    try {
      onNotification(msg.method, msg.data || {});
    } catch (e) {
      state.errors.push(`notification ${msg.method}: ${e.message}`);
    }
  } else {
    state.errors.push(`unexpected frame: ${String(raw).slice(0, 200)}`);
  }
}

function request(method, data = {}) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error(`socket not open for ${method}`));
  const id = state.nextId++;
  return new Promise((resolve, reject) => {
    // Every request gets exactly one response (shared/protocol.md): one that never comes is a
    // server bug, reported as such instead of hanging the test until its own timeout.
    const timer = setTimeout(() => {
      if (!state.pending.delete(id)) return;
      const error = new Error(`${method} (request ${id}) got no response within ${REQUEST_TIMEOUT_MS} ms`);
      state.errors.push(error.message);
      reject(error);
    }, REQUEST_TIMEOUT_MS);
    const done = (fn) => (value) => {
      clearTimeout(timer);
      fn(value);
    };
    state.pending.set(id, { resolve: done(resolve), reject: done(reject), method });
    state.ws.send(JSON.stringify({ request: true, id, method, data }));
  });
}

function closeConsumer(consumerId, reason) {
  const c = state.consumers.get(consumerId);
  if (!c) return;
  state.consumers.delete(consumerId);
  try { c.consumer.close(); } catch {}
  if (c.el) { c.el.srcObject = null; c.el.remove(); }
  state.closedConsumers.push({ consumerId, producerId: c.producerId, peerId: c.peerId, kind: c.kind, reason });
}

function onNotification(method, data) {
  switch (method) {
    case 'peer-joined':
      state.peers.set(data.peerId, data.displayName);
      break;
    case 'peer-left':
      // Consumers are closed by consumer-closed / producer-closed, not here (the tests check that).
      state.peers.delete(data.peerId);
      break;
    case 'new-producer':
      state.knownProducers.set(data.producerId, { producerId: data.producerId, peerId: data.peerId, kind: data.kind });
      if (state.autoConsume && state.recvTransport) {
        consumeOne(data).catch((e) => state.errors.push(`auto-consume ${data.producerId}: ${e.message}`));
      }
      break;
    case 'producer-closed':
      state.knownProducers.delete(data.producerId);
      for (const [id, c] of [...state.consumers]) if (c.producerId === data.producerId) closeConsumer(id, 'producer-closed');
      break;
    case 'consumer-closed':
      closeConsumer(data.consumerId, 'consumer-closed');
      break;
    case 'new-data-producer':
      state.knownDataProducers.set(data.dataProducerId, data);
      if (state.autoConsume && state.recvTransport && state.sctp) {
        consumeDataOne(data).catch((e) => state.errors.push(`auto-consume-data ${data.dataProducerId}: ${e.message}`));
      }
      break;
    case 'data-producer-closed':
      state.knownDataProducers.delete(data.dataProducerId);
      for (const [id, c] of [...state.dataConsumers]) if (c.dataProducerId === data.dataProducerId) closeDataConsumer(id, 'data-producer-closed');
      break;
    case 'data-consumer-closed':
      closeDataConsumer(data.dataConsumerId, 'data-consumer-closed');
      break;
    case 'producer-paused':
    case 'producer-resumed':
    case 'consumer-layers-changed':
    case 'active-speaker':
    case 'error':
      break;
    default:
      state.errors.push(`unknown notification ${method}`);
  }
}

async function join(roomId, displayName = '') {
  const res = await request('join-room', { roomId, displayName });
  state.peerId = res.peerId;
  state.roomId = roomId;
  for (const p of res.peers || []) state.peers.set(p.peerId, p.displayName);
  for (const p of res.producers || []) state.knownProducers.set(p.producerId, p);
  for (const p of res.dataProducers || []) state.knownDataProducers.set(p.dataProducerId, p);

  try {
    state.device = new Device();
  } catch (e) {
    // Unknown UA: let mediasoup-client probe the browser instead.
    state.device = await Device.factory();
  }
  await state.device.load({ routerRtpCapabilities: res.routerRtpCapabilities });

  state.sendTransport = await makeTransport('send');
  state.recvTransport = await makeTransport('recv');
  return { peerId: res.peerId, peers: res.peers, producers: res.producers, dataProducers: res.dataProducers, routerRtpCapabilities: res.routerRtpCapabilities, handlerName: state.device.handlerName };
}

async function makeTransport(direction) {
  const opts = await request('create-transport', state.sctp ? { direction, sctp: true } : { direction });
  // iceServers: TURN credentials when the server has TURN configured (shared/protocol.md "Networks").
  const options = { id: opts.id, iceParameters: opts.iceParameters, iceCandidates: opts.iceCandidates, dtlsParameters: opts.dtlsParameters,
    iceServers: opts.iceServers, ...(state.iceTransportPolicy ? { iceTransportPolicy: state.iceTransportPolicy } : {}) };
  if (opts.sctpParameters) {
    options.sctpParameters = state.sctpMaxMessageSize
      ? { ...opts.sctpParameters, maxMessageSize: state.sctpMaxMessageSize } : opts.sctpParameters;
  }
  const transport = direction === 'send' ? state.device.createSendTransport(options) : state.device.createRecvTransport(options);
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    request('connect-transport', { transportId: transport.id, dtlsParameters }).then(() => callback(), errback);
  });
  if (direction === 'send') {
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      request('produce', { transportId: transport.id, kind, rtpParameters, appData })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
      request('produce-data', { transportId: transport.id, sctpStreamParameters, label, protocol, appData })
        .then(({ dataProducerId }) => callback({ id: dataProducerId }), errback);
    });
  }
  transport.on('connectionstatechange', (s) => state.notifications.push({ method: `local:${direction}-transport`, data: { state: s }, t: Date.now() }));
  return transport;
}

/**
 * A 640x360 canvas track that shows the wall clock as 20 black/white blocks (10 ms units), so a
 * viewer can read when each frame was drawn (glass-to-glass latency).
 */
function clockTrack() {
  const canvas = Object.assign(document.createElement('canvas'), { width: 640, height: 360 });
  const g = canvas.getContext('2d');
  const draw = () => {
    const t = Math.floor(Date.now() / 10) & 0xfffff;
    g.fillStyle = '#808080';
    g.fillRect(0, 0, 640, 360);
    for (let bit = 0; bit < 20; bit++) {
      g.fillStyle = (t >> bit) & 1 ? '#ffffff' : '#000000';
      g.fillRect(64 * (bit % 10), bit < 10 ? 60 : 220, 64, 80);
    }
  };
  draw();
  setInterval(draw, 1000 / 30);
  return canvas.captureStream(30).getVideoTracks()[0];
}

async function publish({ video = true, audio = true, codec = 'vp8', clock = false, audioEnabled = true } = {}) {
  const stream = await withTimeout(navigator.mediaDevices.getUserMedia({
    video: video && !clock ? { width: 640, height: 480, frameRate: 15 } : false,
    audio: !!audio,
  }), 'getUserMedia');
  if (video && clock) stream.addTrack(clockTrack());
  // audioEnabled false: the microphone is muted from its first packet (it sends silence).
  for (const t of stream.getAudioTracks()) t.enabled = audioEnabled;
  state.localStream = stream;
  const out = [];
  for (const track of stream.getTracks()) {
    const opts = { track };
    if (track.kind === 'video') {
      const mime = `video/${codec}`.toLowerCase();
      const c = state.device.rtpCapabilities.codecs.find((x) => x.mimeType.toLowerCase() === mime);
      if (!c) throw new Error(`device cannot send ${codec}: ${state.device.rtpCapabilities.codecs.map((x) => x.mimeType).join(',')}`);
      opts.codec = c;
    }
    const producer = await withTimeout(state.sendTransport.produce(opts), `produce ${track.kind}`);
    state.producers.set(producer.id, producer);
    out.push({ producerId: producer.id, kind: producer.kind, codec: producer.rtpParameters.codecs[0].mimeType });
  }
  return out;
}

async function consumeOne({ producerId, peerId, kind }) {
  if (state.consuming.has(producerId)) return null;
  state.consuming.add(producerId);
  const res = await request('consume-media', { transportId: state.recvTransport.id, producerId, rtpCapabilities: state.device.rtpCapabilities });
  const consumer = await state.recvTransport.consume({ id: res.consumerId, producerId: res.producerId, kind: res.kind, rtpParameters: res.rtpParameters });
  const el = document.createElement(res.kind === 'video' ? 'video' : 'audio');
  el.muted = true;
  el.autoplay = true;
  el.playsInline = true;
  el.dataset.consumerId = consumer.id;
  el.srcObject = new MediaStream([consumer.track]);
  document.body.appendChild(el);
  el.play().catch(() => {});
  const entry = { consumer, producerId: res.producerId, peerId: peerId ?? state.knownProducers.get(producerId)?.peerId ?? null, kind: res.kind, el };
  state.consumers.set(consumer.id, entry);
  await request('resume-consumer', { consumerId: consumer.id });
  return { consumerId: consumer.id, producerId: res.producerId, kind: res.kind, codec: res.rtpParameters.codecs[0].mimeType };
}

function closeDataConsumer(dataConsumerId, reason) {
  const c = state.dataConsumers.get(dataConsumerId);
  if (!c) return;
  state.dataConsumers.delete(dataConsumerId);
  try { c.dataConsumer.close(); } catch {}
  state.closedDataConsumers.push({ dataConsumerId, dataProducerId: c.dataProducerId, reason });
}

/** Transports created from now on run SCTP; `maxMessageSize` overrides what the browser is told. */
function enableDataChannels({ maxMessageSize } = {}) {
  state.sctp = true;
  state.sctpMaxMessageSize = maxMessageSize ?? null;
  return true;
}

/** transport.produceData() through produce-data; resolves once the channel is open. */
async function produceData({ label = 'chat', protocol = '', ordered = true } = {}) {
  const dp = await withTimeout(state.sendTransport.produceData({ label, protocol, ordered }), 'produceData');
  state.dataProducers.set(dp.id, dp);
  if (dp.readyState !== 'open') {
    await withTimeout(new Promise((resolve, reject) => {
      dp.on('open', resolve);
      dp.on('error', reject);
    }), `data producer ${dp.id} open`);
  }
  return { dataProducerId: dp.id, streamId: dp.sctpStreamParameters.streamId };
}

/** Sends `text` on a data producer; returns the send time. A send the browser refuses throws. */
function sendData(dataProducerId, text) {
  const dp = state.dataProducers.get(dataProducerId) ?? [...state.dataProducers.values()][0];
  if (!dp) throw new Error('no data producer');
  dp.send(text);
  return Date.now();
}

/** consume-data and recvTransport.consumeData() for one data producer; records its messages. */
async function consumeDataOne({ dataProducerId, peerId }) {
  if (state.consumingData.has(dataProducerId)) return null;
  state.consumingData.add(dataProducerId);
  const res = await request('consume-data', { transportId: state.recvTransport.id, dataProducerId });
  const dataConsumer = await withTimeout(state.recvTransport.consumeData({ id: res.dataConsumerId, dataProducerId: res.dataProducerId,
    sctpStreamParameters: res.sctpStreamParameters, label: res.label, protocol: res.protocol }), 'consumeData');
  const entry = { dataConsumer, dataProducerId: res.dataProducerId, label: res.label, messages: [],
    peerId: peerId ?? state.knownDataProducers.get(dataProducerId)?.peerId ?? null };
  state.dataConsumers.set(dataConsumer.id, entry);
  dataConsumer.on('message', (data) => {
    const text = typeof data === 'string' ? data : `binary:${data.byteLength}`;
    entry.messages.push({ text: text.length > 64 ? `len:${text.length}` : text, t: Date.now() });
    if (state.echo && text.startsWith('ping:')) {
      const dp = [...state.dataProducers.values()][0];
      if (dp && dp.readyState === 'open') dp.send(`pong:${text.slice(5)}`);
    }
  });
  return { dataConsumerId: dataConsumer.id, dataProducerId: res.dataProducerId, streamId: res.sctpStreamParameters.streamId, label: res.label };
}

async function consumeAllData() {
  const out = [];
  for (const p of [...state.knownDataProducers.values()]) {
    const r = await consumeDataOne(p);
    if (r) out.push(r);
  }
  return out;
}

/** Messages received per data consumer. */
function dataReceived() {
  return [...state.dataConsumers.entries()].map(([dataConsumerId, c]) => ({ dataConsumerId, dataProducerId: c.dataProducerId,
    peerId: c.peerId, label: c.label, readyState: c.dataConsumer.readyState, messages: c.messages }));
}

async function consumeAll() {
  const out = [];
  for (const p of [...state.knownProducers.values()]) {
    const r = await consumeOne(p);
    if (r) out.push(r);
  }
  return out;
}

async function stats() {
  const out = [];
  for (const [consumerId, c] of state.consumers) {
    const row = { consumerId, producerId: c.producerId, peerId: c.peerId, kind: c.kind,
      codec: c.consumer.rtpParameters.codecs[0].mimeType, framesDecoded: 0, packetsReceived: 0, frameWidth: 0 };
    try {
      const report = await c.consumer.getStats();
      for (const s of report.values()) {
        if (s.type !== 'inbound-rtp') continue;
        row.framesDecoded = s.framesDecoded ?? 0;
        row.packetsReceived = s.packetsReceived ?? 0;
        row.frameWidth = s.frameWidth ?? 0;
        const codec = s.codecId && report.get(s.codecId);
        if (codec) row.statsCodec = codec.mimeType;
      }
    } catch (e) {
      row.error = e.message;
    }
    out.push(row);
  }
  return out;
}

/** Sets `enabled` of the published tracks of `kind` (disabled: the browser sends silence / black). */
function setTrackEnabled(kind, enabled) {
  const tracks = state.localStream?.getTracks().filter((t) => t.kind === kind) ?? [];
  for (const t of tracks) t.enabled = !!enabled;
  return tracks.length;
}

/** 'relay' limits the next transports to TURN relay candidates (before join). */
function setIceTransportPolicy(policy) {
  state.iceTransportPolicy = policy;
  return true;
}

/** Both transports' selected candidate pairs: the local and remote candidate types and protocols. */
async function selectedCandidatePairs() {
  const out = {};
  for (const [name, t] of [['send', state.sendTransport], ['recv', state.recvTransport]]) {
    if (!t) continue;
    const report = await t.getStats();
    let pair = null;
    for (const s of report.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    }
    if (!pair) for (const s of report.values()) if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    const local = pair && report.get(pair.localCandidateId);
    const remote = pair && report.get(pair.remoteCandidateId);
    out[name] = pair ? { state: pair.state, localType: local?.candidateType, localProtocol: local?.protocol,
      relayProtocol: local?.relayProtocol, remoteType: remote?.candidateType, remoteAddress: `${remote?.address}:${remote?.port}` } : null;
  }
  return out;
}

async function leave() {
  await request('leave-room', {});
  for (const id of [...state.consumers.keys()]) closeConsumer(id, 'left');
  for (const p of state.producers.values()) p.close();
  state.producers.clear();
  for (const id of [...state.dataConsumers.keys()]) closeDataConsumer(id, 'left');
  for (const p of state.dataProducers.values()) p.close();
  state.dataProducers.clear();
  state.sendTransport?.close();
  state.recvTransport?.close();
  state.sendTransport = state.recvTransport = null;
  state.localStream?.getTracks().forEach((t) => t.stop());
  state.peerId = null;
  return true;
}

function info() {
  return {
    peerId: state.peerId,
    roomId: state.roomId,
    peers: [...state.peers.entries()].map(([peerId, displayName]) => ({ peerId, displayName })),
    knownProducers: [...state.knownProducers.values()],
    producers: [...state.producers.keys()],
    consumers: [...state.consumers.entries()].map(([consumerId, c]) => ({ consumerId, producerId: c.producerId, peerId: c.peerId, kind: c.kind })),
    closedConsumers: state.closedConsumers,
    knownDataProducers: [...state.knownDataProducers.values()],
    dataProducers: [...state.dataProducers.keys()],
    dataConsumers: dataReceived().map(({ dataConsumerId, dataProducerId, peerId }) => ({ dataConsumerId, dataProducerId, peerId })),
    closedDataConsumers: state.closedDataConsumers,
    notifications: state.notifications.filter((n) => !n.method.startsWith('local:')),
    transportStates: state.notifications.filter((n) => n.method.startsWith('local:')).map((n) => `${n.method}=${n.data.state}`),
    errors: state.errors,
    socketClosed: state.socketClosed,
  };
}

window.sfu = {
  connect,
  request,
  join,
  publish,
  consumeOne,
  consumeAll,
  stats,
  leave,
  info,
  setIceTransportPolicy,
  setTrackEnabled,
  selectedCandidatePairs,
  notifications: () => state.notifications.filter((n) => !n.method.startsWith('local:')),
  setAutoConsume: (v) => { state.autoConsume = !!v; },
  enableDataChannels,
  produceData,
  sendData,
  consumeDataOne,
  consumeAllData,
  dataReceived,
  setEcho: (v) => { state.echo = !!v; return true; },
};
window.sfuReady = true;
