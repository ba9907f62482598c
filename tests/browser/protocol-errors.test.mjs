import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { roomId } from './harness.mjs';
import { WsClient } from './ws-client.mjs';

const open = [];
const client = async () => { const c = await WsClient.open(); open.push(c); return c; };
after(() => { for (const c of open) c.ws.terminate(); });

function assertError(res, codes, what) {
  codes = [].concat(codes);
  assert.equal(res.response, true, `${what}: a response`);
  assert.equal(res.ok, false, `${what}: ok is false (${JSON.stringify(res)})`);
  assert.ok(res.error && typeof res.error.message === 'string', `${what}: error {code, message}`);
  assert.ok(codes.includes(res.error.code), `${what}: error code ${res.error.code}, expected ${codes.join(' or ')}`);
}

test('a frame that is not JSON gets an error notification and the socket stays open', async () => {
  const c = await client();
  c.sendRaw('this is {not json');
  const n = await c.notification('error');
  assert.equal(n.data.code, 'bad-request');
  assert.equal(typeof n.data.message, 'string');
  // Still usable: the next request gets its response.
  const r = await c.request('no-such-method');
  assert.equal(r.response, true);
});

test('a request without a usable id gets an error notification and the socket stays open', async () => {
  const c = await client();
  c.sendRaw(JSON.stringify({ request: true, method: 'join-room', data: { roomId: roomId('noid') } }));
  const n = await c.notification('error');
  assert.equal(n.data.code, 'bad-request');
  const r = await c.request('no-such-method');
  assert.equal(r.response, true);
});

test('an unknown method gets a bad-request response with the same id', async () => {
  const c = await client();
  c.sendRaw(JSON.stringify({ request: true, id: 4242, method: 'frobnicate', data: {} }));
  const r = await c.next((m) => m.response && m.id === 4242);
  assertError(r, 'bad-request', 'unknown method');
});

test('pipelined requests each get exactly one response, in order', async () => {
  const c = await client();
  const room = roomId('pipe');
  const ids = [11, 12, 13, 14, 15];
  const reqs = [
    ['join-room', { roomId: room, displayName: 'pipe' }],
    ['create-transport', { direction: 'send' }],
    ['create-transport', { direction: 'recv' }],
    ['frobnicate', {}],
    ['leave-room', {}],
  ];
  reqs.forEach(([method, data], i) => c.sendRaw(JSON.stringify({ request: true, id: ids[i], method, data })));
  await c.next((m) => m.response && m.id === 15);
  await new Promise((r) => setTimeout(r, 300)); // catch duplicates that would arrive late
  const responses = c.frames.filter((m) => m.response);
  assert.deepEqual(responses.map((m) => m.id), ids, 'one response per request, in request order');
  assert.deepEqual(responses.map((m) => m.ok), [true, true, true, false, true]);
  const [, send, recv] = responses;
  for (const t of [send.data, recv.data]) {
    assert.ok(t.id && t.iceParameters && Array.isArray(t.iceCandidates) && t.iceCandidates.length > 0 && t.dtlsParameters, 'TransportOptions shape');
    assert.equal(t.iceParameters.iceLite, true, 'iceLite');
    assert.equal(t.dtlsParameters.role, 'auto', 'dtls role auto');
    assert.ok(t.dtlsParameters.fingerprints.some((f) => f.algorithm === 'sha-256'), 'sha-256 fingerprint');
  }
  assert.notEqual(send.data.id, recv.data.id);
});

test('a socket joins at most one room', async () => {
  const c = await client();
  await c.call('join-room', { roomId: roomId('once') });
  assertError(await c.request('join-room', { roomId: roomId('twice') }), ['invalid-state', 'bad-request'], 'second join-room');
  await c.call('leave-room');
});

test('join-room with an invalid room id is a bad-request', async () => {
  const c = await client();
  assertError(await c.request('join-room', { roomId: 'no spaces/allowed' }), 'bad-request', 'invalid roomId');
  assertError(await c.request('join-room', { roomId: 'x'.repeat(65) }), 'bad-request', '65-char roomId');
  assertError(await c.request('join-room', { roomId: '' }), 'bad-request', 'empty roomId');
});

test('create-transport before join-room is invalid-state', async () => {
  const c = await client();
  assertError(await c.request('create-transport', { direction: 'send' }), 'invalid-state', 'create-transport before join');
});

test('produce before join-room is invalid-state', async () => {
  const c = await client();
  assertError(await c.request('produce', { transportId: randomUUID(), kind: 'audio', rtpParameters: {} }), 'invalid-state', 'produce before join');
});

test('consume-media with an unknown producer id is not-found', async () => {
  const c = await client();
  const j = await c.call('join-room', { roomId: roomId('proto'), displayName: 'node' });
  const t = await c.call('create-transport', { direction: 'recv' });
  const r = await c.request('consume-media', { transportId: t.id, producerId: randomUUID(), rtpCapabilities: j.routerRtpCapabilities });
  assertError(r, 'not-found', 'unknown producer');
  const r2 = await c.request('resume-consumer', { consumerId: randomUUID() });
  assertError(r2, 'not-found', 'unknown consumer');
  await c.call('leave-room');
});

test('produce with a codec the router lacks is rejected', async () => {
  const c = await client();
  const j = await c.call('join-room', { roomId: roomId('proto'), displayName: 'node' });
  assert.ok(!j.routerRtpCapabilities.codecs.some((x) => /AV1X/i.test(x.mimeType)));
  const t = await c.call('create-transport', { direction: 'send' });
  const rtpParameters = {
    mid: '0',
    codecs: [{ mimeType: 'video/AV1X', payloadType: 101, clockRate: 90000, parameters: {}, rtcpFeedback: [] }],
    headerExtensions: [],
    encodings: [{ ssrc: 11111111 }],
    rtcp: { cname: 'node-test', reducedSize: true },
  };
  const r = await c.request('produce', { transportId: t.id, kind: 'video', rtpParameters });
  assertError(r, ['bad-request', 'unsupported'], 'unknown codec');
  await c.call('leave-room');
});

test('a frame over 64 KiB closes the socket with 1009, and a fresh peer can still join afterwards', async () => {
  const c = await client();
  c.sendRaw(JSON.stringify({ request: true, id: 1, method: 'join-room', data: { roomId: 'big', pad: 'x'.repeat(70 * 1024) } }));
  const closed = await Promise.race([c.closed, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 10_000).unref())]);
  assert.equal(closed.code, 1009, 'close code');

  const d = await client();
  const j = await d.call('join-room', { roomId: roomId('after'), displayName: 'fresh' });
  assert.ok(j.peerId, 'peerId');
  assert.ok(j.routerRtpCapabilities?.codecs?.length > 0, 'router capabilities');
  assert.deepEqual(j.peers, []);
  assert.deepEqual(j.producers, []);
  assert.deepEqual(await d.call('leave-room'), {});
});
