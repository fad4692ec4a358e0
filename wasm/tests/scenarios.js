// Browser scenarios of the wasm package, run in headless Chromium by
// wasm/tests/browser.mjs (each exported function is one test; it throws on
// a failed check and returns a summary). They use the in-tab broker over
// MessagePort / BroadcastChannel and the real ringmq binary over ws://.

const R = () => window.ringmq;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const text = (payload) => new TextDecoder().decode(payload);

function assert(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

export function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: expected ${w}, got ${g}`);
}

// Waits for `pred()` (checked every 5 ms: the test's own wait, not the
// library's) or fails after `ms`.
export async function until(pred, what, ms = 5000) {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(5);
  }
}

// Messages received by `client`, as { topic, text, payload, packet }.
function inbox(client) {
  const got = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, text: text(payload), payload, packet }));
  return got;
}

async function client(target, options) {
  const c = new (R().MqttClient)();
  const got = inbox(c);
  const info = await c.connect(target, options);
  return { c, got, info };
}

// QoS 0/1/2 through the in-tab broker over MessagePorts, v5 and v3.1.1,
// properties, reason codes, unsubscribe.
export async function inTabQos() {
  const broker = new (R().InTabBroker)({});
  const sub = await client(broker.createClientPort(), { clientId: 'sub' });
  eq(sub.info.sessionPresent, false, 'first session');
  eq(await sub.c.subscribe('t/#', { qos: 2 }), [2], 'SUBACK granted QoS');
  const pub = await client(broker.createClientPort(), { clientId: 'pub' });
  eq(await pub.c.publish('t/0', 'zero', { qos: 0 }), 0, 'QoS 0 resolves once written');
  const properties = {
    responseTopic: 'reply/here',
    correlationData: new Uint8Array([9, 8, 7]),
    userProperties: [['k', 'v'], ['k', 'w']],
    contentType: 'text/plain',
    messageExpiryInterval: 60,
  };
  eq(await pub.c.publish('t/1', 'one', { qos: 1, properties }), 0, 'PUBACK reason');
  eq(await pub.c.publish('t/2', new Uint8Array([0, 1, 2, 255]), { qos: 2 }), 0, 'PUBCOMP reason');
  eq(await pub.c.publish('nobody/listens', 'x', { qos: 1 }), 0x10, 'PUBACK 0x10 no matching subscribers');
  await until(() => sub.got.length >= 3, 'three messages');
  eq(sub.got.map((m) => [m.topic, m.packet.qos]), [['t/0', 0], ['t/1', 1], ['t/2', 2]], 'topics and QoS');
  eq(sub.got[0].text, 'zero', 'payload');
  eq(Array.from(sub.got[2].payload), [0, 1, 2, 255], 'binary payload');
  const p = sub.got[1].packet.properties;
  eq(p.responseTopic, 'reply/here', 'response topic');
  eq(Array.from(p.correlationData), [9, 8, 7], 'correlation data');
  eq(p.userProperties, [['k', 'v'], ['k', 'w']], 'user properties (order, repeats)');
  eq(p.contentType, 'text/plain', 'content type');
  assert(p.messageExpiryInterval > 0 && p.messageExpiryInterval <= 60, 'message expiry forwarded');
  // MQTT 3.1.1 client on the same broker.
  const old = await client(broker.createClientPort(), { clientId: 'v311', protocolVersion: 4 });
  eq(await old.c.publish('t/3', 'v3', { qos: 1 }), 0, 'v3.1.1 PUBACK');
  await until(() => sub.got.length === 4, 'the v3.1.1 message');
  eq(await sub.c.unsubscribe('t/#'), [0], 'UNSUBACK');
  await pub.c.publish('t/4', 'after', { qos: 1 });
  await sleep(50);
  eq(sub.got.length, 4, 'nothing after unsubscribe');
  // Bad input is refused with a clear error, nothing sent.
  let refused = null;
  await pub.c.publish('bad/#', 'x', { qos: 1 }).catch((e) => { refused = String(e); });
  assert(refused && refused.includes('InvalidTopic'), 'wildcard topic refused: ' + refused);
  await Promise.all([sub.c.disconnect(), pub.c.disconnect(), old.c.disconnect()]);
  eq(pub.c.connected, false, 'disconnected');
  broker.close();
  return { messages: sub.got.length };
}

// Retained messages, the will (on a lost connection and on DISCONNECT
// 0x04), broker events.
export async function inTabRetainWillEvents() {
  const broker = new (R().InTabBroker)({});
  const connected = [];
  const gone = [];
  const seen = [];
  broker.on('clientConnected', (i) => connected.push(i.clientId));
  broker.on('clientDisconnected', (i) => gone.push(i.clientId));
  broker.on('message', (topic, payload, packet) => seen.push([topic, text(payload), packet.retain]));
  const pub = await client(broker.createClientPort(), { clientId: 'pub' });
  await pub.c.publish('state/lamp', 'on', { qos: 1, retain: true });
  const late = await client(broker.createClientPort(), { clientId: 'late' });
  await late.c.subscribe('state/+', { qos: 1 });
  await until(() => late.got.length === 1, 'the retained message');
  eq([late.got[0].text, late.got[0].packet.retain], ['on', true], 'retained delivery');
  // retainHandling 2: no retained message at subscribe.
  const none = await client(broker.createClientPort(), { clientId: 'none' });
  await none.c.subscribe('state/+', { qos: 1, retainHandling: 2 });
  await sleep(50);
  eq(none.got.length, 0, 'retainHandling 2 sends no retained message');
  // Will on a connection lost without DISCONNECT.
  await late.c.subscribe('will/#', { qos: 1 });
  const port = broker.createClientPort();
  const dying = await client(port, { clientId: 'dying', will: { topic: 'will/dying', payload: 'gone', qos: 1 } });
  port.postMessage('close'); // the transport ends under the client
  await until(() => late.got.some((m) => m.topic === 'will/dying'), 'the will after a lost connection');
  // Will on DISCONNECT 0x04, none on a normal DISCONNECT.
  const w4 = await client(broker.createClientPort(), { clientId: 'w4', will: { topic: 'will/w4', payload: 'x' } });
  await w4.c.disconnect({ reasonCode: 4 });
  const w0 = await client(broker.createClientPort(), { clientId: 'w0', will: { topic: 'will/w0', payload: 'x' } });
  await w0.c.disconnect();
  await until(() => late.got.some((m) => m.topic === 'will/w4'), 'the will on DISCONNECT 0x04');
  await sleep(50);
  assert(!late.got.some((m) => m.topic === 'will/w0'), 'no will after a normal DISCONNECT');
  await until(() => gone.includes('w0') && gone.includes('dying'), 'clientDisconnected events');
  for (const id of ['pub', 'late', 'none', 'dying', 'w4', 'w0']) assert(connected.includes(id), 'clientConnected ' + id);
  assert(seen.some(([t, v]) => t === 'state/lamp' && v === 'on'), 'message event');
  assert(seen.some(([t]) => t === 'will/dying'), 'message event for the will');
  // broker.publish from the page.
  broker.publish('state/door', 'open', { qos: 1, retain: true });
  await until(() => late.got.some((m) => m.topic === 'state/door'), 'broker.publish delivery');
  eq(broker.stats().retained, 2, 'retained count');
  // `dying` never learns that the broker side went away (a MessagePort has
  // no close event); its DISCONNECT goes nowhere.
  await Promise.all([pub.c.disconnect(), late.c.disconnect(), none.c.disconnect(), dying.c.disconnect()]);
  broker.close();
  return { connected: connected.length, events: seen.length };
}

// Persistent sessions: queued messages on return, expiry by the broker's
// timer (setTimeout, no polling) after sessionExpiryInterval.
export async function inTabSessionExpiry() {
  const broker = new (R().InTabBroker)({});
  const opts = { clientId: 'keeper', cleanStart: false, sessionExpiryInterval: 60 };
  const a = await client(broker.createClientPort(), opts);
  await a.c.subscribe('news/#', { qos: 1 });
  await a.c.disconnect();
  const pub = await client(broker.createClientPort(), { clientId: 'p' });
  eq(await pub.c.publish('news/1', 'while away', { qos: 1 }), 0, 'queued for the stored session');
  const b = await client(broker.createClientPort(), opts);
  eq(b.info.sessionPresent, true, 'session kept');
  await until(() => b.got.length === 1, 'the queued message');
  eq(b.got[0].text, 'while away', 'queued payload');
  await b.c.disconnect();
  const short = { clientId: 'short', cleanStart: false, sessionExpiryInterval: 1 };
  const s1 = await client(broker.createClientPort(), short);
  await s1.c.subscribe('x', { qos: 1 });
  await s1.c.disconnect();
  const s2 = await client(broker.createClientPort(), short);
  eq(s2.info.sessionPresent, true, 'within the expiry');
  await s2.c.disconnect();
  await sleep(1600);
  const s3 = await client(broker.createClientPort(), short);
  eq(s3.info.sessionPresent, false, 'expired after 1 s');
  await Promise.all([s3.c.disconnect(), pub.c.disconnect()]);
  broker.close();
  return { ok: true };
}

// Shared subscriptions: each message to exactly one member.
export async function inTabShared() {
  const broker = new (R().InTabBroker)({});
  const m1 = await client(broker.createClientPort(), { clientId: 'm1' });
  const m2 = await client(broker.createClientPort(), { clientId: 'm2' });
  eq(await m1.c.subscribe('$share/g/jobs/#', { qos: 1 }), [1], 'shared SUBACK');
  await m2.c.subscribe('$share/g/jobs/#', { qos: 1 });
  const pub = await client(broker.createClientPort(), { clientId: 'p' });
  for (let i = 0; i < 20; i++) await pub.c.publish('jobs/' + i, String(i), { qos: 1 });
  await until(() => m1.got.length + m2.got.length === 20, 'all 20 jobs');
  await sleep(50);
  const all = [...m1.got, ...m2.got].map((m) => Number(m.text)).sort((a, b) => a - b);
  eq(all, [...Array(20).keys()], 'each job once');
  assert(m1.got.length > 0 && m2.got.length > 0, 'both members get work');
  await Promise.all([m1.c.disconnect(), m2.c.disconnect(), pub.c.disconnect()]);
  broker.close();
  return { m1: m1.got.length, m2: m2.got.length };
}

// Users (plain passwords), the ACL, subscription options, request/response.
export async function inTabAuthAclRequest() {
  const acl = 'user alice\ntopic readwrite app/#\ntopic deny app/secret\ntopic write ringmq/response/#\nuser bob\ntopic readwrite app/#\ntopic readwrite ringmq/response/#\n';
  const broker = new (R().InTabBroker)({ allowAnonymous: false, users: { alice: 'pw-a', bob: 'pw-b' }, acl });
  let err = null;
  await client(broker.createClientPort(), { clientId: 'x', username: 'alice', password: 'wrong' }).catch((e) => { err = e; });
  eq(err && err.reasonCode, 0x86, 'bad password: CONNACK 0x86');
  err = null;
  await client(broker.createClientPort(), { clientId: 'anon' }).catch((e) => { err = e; });
  eq(err && err.reasonCode, 0x87, 'anonymous refused: CONNACK 0x87');
  const alice = await client(broker.createClientPort(), { clientId: 'a', username: 'alice', password: 'pw-a' });
  eq(await alice.c.publish('app/secret', 'x', { qos: 1 }), 0x87, 'ACL: PUBACK 0x87 not authorized');
  eq(await alice.c.subscribe(['app/#', 'other/#'], { qos: 1, noLocal: true, subscriptionIdentifier: 7 }), [1, 0x87], 'ACL on SUBSCRIBE');
  const bob = await client(broker.createClientPort(), { clientId: 'b', username: 'bob', password: 'pw-b' });
  await bob.c.publish('app/x', 'from bob', { qos: 1 });
  await alice.c.publish('app/y', 'own', { qos: 1 }); // noLocal: not back to alice
  await until(() => alice.got.length === 1, "bob's message");
  eq(alice.got[0].packet.properties.subscriptionIdentifiers, [7], 'subscription identifier');
  await sleep(30);
  eq(alice.got.map((m) => m.text), ['from bob'], 'noLocal');
  // alice answers requests on app/echo.
  alice.c.on('message', (topic, payload, packet) => {
    const p = packet.properties;
    if (topic === 'app/echo' && p.responseTopic) {
      alice.c.publish(p.responseTopic, 'echo:' + text(payload), { qos: 1, properties: { correlationData: p.correlationData } });
    }
  });
  await alice.c.subscribe('app/echo', { qos: 1 });
  const answer = await bob.c.request('app/echo', 'ping', { qos: 1, timeoutMs: 3000 });
  eq(text(answer.payload), 'echo:ping', 'request/response');
  await Promise.all([alice.c.disconnect(), bob.c.disconnect()]);
  broker.close();
  return { ok: true };
}

// Reconnection: the in-tab broker goes away and a new one comes; the
// client reconnects with backoff (port factory), subscribes again (no
// session kept), and publishes queued meanwhile go out.
export async function inTabReconnect() {
  let broker = new (R().InTabBroker)({});
  const c = new (R().MqttClient)();
  const got = inbox(c);
  const events = [];
  c.on('connect', (i) => events.push(['connect', i.reconnected, i.sessionPresent]));
  c.on('disconnect', (i) => events.push(['disconnect', i.reasonCode ?? null]));
  c.on('reconnecting', (i) => events.push(['reconnecting', i.attempt]));
  await c.connect(() => broker.createClientPort(), { clientId: 'r', reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  await c.subscribe('r/#', { qos: 1 });
  broker.close(); // v5: DISCONNECT 0x8B, then the port closes
  await until(() => events.some((e) => e[0] === 'reconnecting'), 'reconnecting');
  const queued = c.publish('r/queued', 'sent after reconnecting', { qos: 1 });
  broker = new (R().InTabBroker)({});
  await until(() => events.filter((e) => e[0] === 'connect').length === 2, 'reconnected');
  eq(await queued, 0, 'queued QoS 1 publish acknowledged after reconnecting');
  const other = await client(broker.createClientPort(), { clientId: 'o' });
  await other.c.publish('r/after', 'hello again', { qos: 1 });
  await until(() => got.some((m) => m.topic === 'r/after'), 'delivery on the restored subscription');
  eq(events[0], ['connect', false, false], 'first connect');
  eq(events[1], ['disconnect', 0x8b], 'disconnect 0x8B server shutting down');
  eq(events.at(-1), ['connect', true, false], 'reconnected without a session');
  await Promise.all([c.disconnect(), other.c.disconnect()]);
  broker.close();
  return { events: events.length };
}

// The WASM client against the real ringmq over ws://.
export async function wsRingmq({ url }) {
  const a = await client(url, { clientId: 'wasm-a' });
  const b = await client(url, { clientId: 'wasm-b', protocolVersion: 4 });
  eq(await a.c.subscribe('ws/#', { qos: 2 }), [2], 'SUBACK over ws');
  for (const qos of [0, 1, 2]) eq(await b.c.publish('ws/' + qos, 'q' + qos, { qos }), 0, 'ack over ws QoS ' + qos);
  await until(() => a.got.length === 3, 'three messages over ws');
  eq(a.got.map((m) => [m.topic, m.text, m.packet.qos]).sort(), [['ws/0', 'q0', 0], ['ws/1', 'q1', 1], ['ws/2', 'q2', 2]], 'ws delivery');
  const big = new Uint8Array(200_000).map((_, i) => i & 255);
  await b.c.publish('ws/big', big, { qos: 1 });
  await until(() => a.got.length === 4, 'a 200 kB message');
  eq(a.got[3].payload.length, big.length, 'large payload intact');
  await Promise.all([a.c.disconnect(), b.c.disconnect()]);
  return { ok: true };
}

// MQTT.js (in the page) and the WASM client on ringmq over ws://, both ways.
export async function mqttjsInterop({ url }) {
  const w = await client(url, { clientId: 'wasm-i' });
  await w.c.subscribe('interop/to-wasm', { qos: 1 });
  const m = window.mqtt.connect(url, { clientId: 'mqttjs-i', protocolVersion: 5, reconnectPeriod: 0 });
  const mgot = [];
  m.on('message', (topic, payload, packet) => mgot.push([topic, new TextDecoder().decode(payload), packet.properties || {}]));
  await new Promise((res, rej) => { m.once('connect', res); m.once('error', rej); });
  await new Promise((res, rej) => m.subscribe('interop/to-mqttjs', { qos: 1 }, (e) => (e ? rej(e) : res())));
  await new Promise((res, rej) => m.publish('interop/to-wasm', 'from MQTT.js', { qos: 1, properties: { contentType: 'x/y' } }, (e) => (e ? rej(e) : res())));
  await w.c.publish('interop/to-mqttjs', 'from wasm', { qos: 1, properties: { userProperties: [['a', 'b']] } });
  await until(() => w.got.length === 1 && mgot.length === 1, 'both directions');
  eq([w.got[0].text, w.got[0].packet.properties.contentType], ['from MQTT.js', 'x/y'], 'MQTT.js -> wasm');
  eq(mgot[0][1], 'from wasm', 'wasm -> MQTT.js');
  await new Promise((res) => m.end(false, {}, res));
  await w.c.disconnect();
  return { ok: true };
}

// A WebSocket-like object over a MessagePort, so that MQTT.js (which takes
// a `createWebsocket` factory in the browser) can talk to the in-tab broker.
export class PortWebSocket {
  constructor(port) {
    this.port = port;
    Object.assign(this, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
    this.binaryType = 'arraybuffer';
    this.readyState = 0;
    this.bufferedAmount = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    port.onmessage = (e) => {
      if (e.data === 'close') return this._closed();
      const d = e.data;
      this.onmessage && this.onmessage({ data: d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength) });
    };
    setTimeout(() => { this.readyState = 1; this.onopen && this.onopen({}); }, 0);
  }
  send(data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.port.postMessage(bytes.slice());
  }
  close() {
    if (this.readyState > 1) return;
    this.port.postMessage('close');
    this._closed();
  }
  _closed() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.port.close();
    this.onclose && this.onclose({ code: 1000, reason: '' });
  }
  addEventListener(name, f) { this['on' + name] = f; }
  removeEventListener(name) { this['on' + name] = null; }
}

// MQTT.js on the in-tab broker through PortWebSocket, with a WASM client.
export async function mqttjsInTab() {
  const broker = new (R().InTabBroker)({});
  const w = await client(broker.createClientPort(), { clientId: 'wasm' });
  await w.c.subscribe('tab/#', { qos: 2 });
  const m = window.mqtt.connect('ws://in-tab.invalid', {
    clientId: 'mqttjs', protocolVersion: 5, reconnectPeriod: 0,
    createWebsocket: () => new PortWebSocket(broker.createClientPort()),
  });
  const mgot = [];
  m.on('message', (topic, payload) => mgot.push([topic, new TextDecoder().decode(payload)]));
  await new Promise((res, rej) => { m.once('connect', res); m.once('error', rej); });
  await new Promise((res, rej) => m.subscribe('back/#', { qos: 1 }, (e) => (e ? rej(e) : res())));
  for (const qos of [0, 1, 2]) {
    await new Promise((res, rej) => m.publish('tab/' + qos, 'mqttjs ' + qos, { qos }, (e) => (e ? rej(e) : res())));
  }
  await w.c.publish('back/1', 'wasm says hi', { qos: 1 });
  await until(() => w.got.length === 3 && mgot.length === 1, 'MQTT.js <-> wasm in the tab');
  eq(w.got.map((m) => m.packet.qos), [0, 1, 2], 'QoS from MQTT.js');
  eq(mgot, [['back/1', 'wasm says hi']], 'wasm -> MQTT.js');
  await new Promise((res) => m.end(false, {}, res));
  await w.c.disconnect();
  broker.close();
  return { ok: true };
}

// BroadcastChannel, page 1: the broker listens on `name`, a client here.
let channelSide = null;
export async function channelHost({ name }) {
  const broker = new (R().InTabBroker)({});
  broker.listenBroadcastChannel(name);
  const here = await client({ broadcastChannel: name }, { clientId: 'host-client' });
  await here.c.subscribe('tabs/to-host', { qos: 1 });
  channelSide = { broker, here };
  return { ok: true };
}

// Page 2: a client over the channel exchanges messages with page 1.
export async function channelGuest({ name }) {
  const g = await client({ broadcastChannel: name }, { clientId: 'guest' });
  await g.c.subscribe('tabs/to-guest', { qos: 1 });
  eq(await g.c.publish('tabs/to-host', 'hello host', { qos: 1 }), 0, 'PUBACK across tabs');
  channelSide = { guest: g };
  return { ok: true };
}

export async function channelHostCheck() {
  const { broker, here } = channelSide;
  await until(() => here.got.length === 1, 'message from the other tab');
  eq(here.got[0].text, 'hello host', 'payload across tabs');
  eq(await here.c.publish('tabs/to-guest', 'hello guest', { qos: 2 }), 0, 'PUBCOMP');
  return { connections: broker.stats().connections };
}

export async function channelGuestCheck() {
  const { guest } = channelSide;
  await until(() => guest.got.length === 1, 'message from the host tab');
  eq(guest.got[0].text, 'hello guest', 'payload to the guest');
  await guest.c.disconnect();
  return { ok: true };
}
