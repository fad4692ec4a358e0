// Browser side of the bridge tests (wasm/tests/bridge.mjs drives them with
// native MQTT.js clients on the real ringmq binary): an in-tab broker
// bridged to ringmq over ws://, with one in-tab subscriber and one in-tab
// publisher. State lives in window.B between steps.

import { until, sleep } from './scenarios.js';
import { plan, cuttingWebSocket } from './resume.js';

const R = () => window.ringmq;
const text = (payload) => new TextDecoder().decode(payload);

function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: expected ${w}, got ${g}`);
}

async function localClient(broker, clientId) {
  const c = new (R().MqttClient)();
  const got = [];
  c.on('message', (topic, payload, packet) => got.push({ topic, text: text(payload), qos: packet.qos, retain: packet.retain }));
  await c.connect(() => broker.createClientPort(), { clientId });
  return { c, got };
}

// The mappings of the tests: tele/# out as tab1/tele/#; tab1/cmd/# in as
// remote/cmd/#; chat/# both ways, same names.
const TOPICS = [
  { pattern: 'tele/#', direction: 'out', qos: 1, remotePrefix: 'tab1/' },
  { pattern: 'cmd/#', direction: 'in', qos: 2, localPrefix: 'remote/', remotePrefix: 'tab1/' },
  { pattern: 'chat/#', direction: 'both', qos: 1 },
];

export async function bridgeStart({ url }) {
  const broker = new (R().InTabBroker)({});
  const events = [];
  const bridge = broker.addBridge({
    url,
    clientId: 'tab-bridge',
    keepAlive: 5,
    reconnect: { initialDelayMs: 200, maxDelayMs: 1000 },
    queueMaxMessages: 100,
    topics: TOPICS,
  });
  for (const name of ['connect', 'disconnect', 'reconnecting', 'error']) {
    bridge.on(name, (info) => events.push([name, name === 'error' ? String(info && info.message) : info]));
  }
  const sub = await localClient(broker, 'tab-sub');
  eq(await sub.c.subscribe(['remote/cmd/#', 'chat/#'], { qos: 2 }), [2, 2], 'in-tab SUBACK');
  const pub = await localClient(broker, 'tab-pub');
  window.B = { broker, bridge, events, sub, pub };
  await until(() => bridge.connected, 'the bridge to connect', 10_000);
  return { events: events.map((e) => e[0]), stats: bridge.stats() };
}

// Publishes from the in-tab publisher; `wait: false` does not wait for
// the acknowledgement (publishing while the bridge is down is fine: the
// in-tab broker is up).
export async function bridgePublish({ topic, payload, qos = 0, retain = false, wait = true }) {
  const p = window.B.pub.c.publish(topic, payload, { qos, retain });
  return wait ? await p : null;
}

// What the in-tab subscriber received on `topic` (all topics if absent).
export function bridgeInbox({ topic } = {}) {
  return window.B.sub.got.filter((m) => !topic || m.topic === topic);
}

export async function bridgeWaitFor({ topic, text: want, ms = 10_000 }) {
  await until(() => window.B.sub.got.some((m) => m.topic === topic && m.text === want), `${topic} in the tab`, ms);
  return window.B.sub.got.find((m) => m.topic === topic && m.text === want);
}

export function bridgeStats() {
  return window.B.bridge.stats();
}

// Waits until the bridge reported `name` `count` times in all.
export async function bridgeWaitEvent({ name, count = 1, ms = 15_000 }) {
  const n = () => window.B.events.filter((e) => e[0] === name).length;
  await until(() => n() >= count, `${count} ${name} event(s) of the bridge`, ms);
  return window.B.events.filter((e) => e[0] === name).at(-1)[1];
}

export async function bridgeUntilStats({ key, atLeast, ms = 15_000 }) {
  await until(() => window.B.bridge.stats()[key] >= atLeast, `stats.${key} >= ${atLeast}`, ms);
  return window.B.bridge.stats();
}

// Bad options throw, naming what is wrong; nothing is started.
export async function bridgeOptionsRefused({ url }) {
  const broker = new (R().InTabBroker)({});
  const refused = (options) => {
    try {
      broker.addBridge(options);
    } catch (e) {
      return e.message;
    }
    throw new Error('accepted: ' + JSON.stringify(options));
  };
  const topics = [{ pattern: 'a/#' }];
  const messages = [
    refused({ topics }),
    refused({ url: 'http://x', topics }),
    refused({ url, topics: [] }),
    refused({ url, topics: [{ pattern: 'a/#/b' }] }),
    refused({ url, topics: [{ pattern: 'a', direction: 'sideways' }] }),
    refused({ url, protocolVersion: 4, topics: [{ pattern: 'a', direction: 'both' }] }),
    refused({ url, topics: [{ pattern: 'a', localPrefix: 'x/+/' }] }),
    refused({ url, cleanStart: false, topics }),
    refused({ url, topics: [{ pattern: 'a', qos: 3 }] }),
  ];
  for (const [m, want] of [
    [0, 'url'], [1, 'ws://'], [2, 'topics'], [3, 'not a valid topic filter'], [4, 'direction'],
    [5, 'protocolVersion 5'], [6, 'localPrefix'], [7, 'clientId'], [8, 'qos'],
  ]) {
    if (!messages[m].includes(want)) throw new Error(`message ${m} should name ${want}: ${messages[m]}`);
  }
  eq(broker.stats().sessions, 0, 'no bridge session was left behind');
  broker.close();
  return messages.length;
}

// Closes the bridge: its local session leaves the in-tab broker, and
// in-tab messages are no longer forwarded.
export async function bridgeClose() {
  const { broker, bridge } = window.B;
  const before = broker.stats().sessions;
  await bridge.close();
  eq(bridge.connected, false, 'closed');
  eq(broker.stats().sessions, before - 1, 'the bridge session left the in-tab broker');
  const out = bridge.stats().forwardedOut;
  await window.B.pub.c.publish('tele/after-close', 'x', { qos: 1 });
  await sleep(100);
  eq(bridge.stats().forwardedOut, out, 'nothing forwarded after close');
  broker.close();
  return bridge.stats();
}

// At least once out, exactly once for QoS 2 both ways, across a cut of
// the external connection in the middle of a stream (ringmq keeps the
// bridge's session: the cut is in the page, a WebSocket subclass).
// Out: the connection is cut where ringmq's PUBREC to the bridge is lost,
// and 30 more messages are published in the tab while the bridge is
// down, with a queue of 4 (`queueMaxMessages`): none may be lost (they
// stay unacknowledged in the in-tab broker until ringmq took them), no
// QoS 2 one may arrive twice. In: the bridge's PUBREC to ringmq is lost
// in a stream of 20 QoS 2 messages; ringmq sends them again after the
// reconnection and each must reach the in-tab subscriber once.
export async function bridgeCutMidStream({ url }) {
  const MqttClient = R().MqttClient;
  // The external side's own clients, on native WebSockets (made before
  // the cutting class is installed).
  const extSub = new MqttClient();
  const extGot = [];
  extSub.on('message', (topic, payload, packet) => extGot.push([topic, text(payload), packet.qos]));
  await extSub.connect(url, { clientId: 'cut-ext-sub' });
  eq(await extSub.subscribe('cut/out/#', { qos: 2 }), [2], 'external SUBACK');
  const extPub = new MqttClient();
  await extPub.connect(url, { clientId: 'cut-ext-pub' });
  const plans = [];
  const restore = cuttingWebSocket({ hits: (d, packet) => plans.some((p) => p.hits(d, packet)) });
  const broker = new (R().InTabBroker)({ sysInterval: 0 });
  try {
    const events = [];
    const bridge = broker.addBridge({
      url,
      clientId: 'cut-bridge-' + Math.random().toString(16).slice(2),
      cleanStart: false,
      sessionExpiryInterval: 300,
      reconnect: { initialDelayMs: 300, maxDelayMs: 600 },
      queueMaxMessages: 4,
      topics: [
        { pattern: 'out/#', direction: 'out', qos: 2, remotePrefix: 'cut/' },
        { pattern: 'in/#', direction: 'in', qos: 2, localPrefix: 'from/', remotePrefix: 'cut/' },
      ],
    });
    for (const name of ['connect', 'disconnect']) bridge.on(name, (info) => events.push([name, info]));
    bridge.on('error', () => {});
    const sub = await localClient(broker, 'cut-sub');
    eq(await sub.c.subscribe('from/#', { qos: 2 }), [2], 'in-tab SUBACK');
    const pub = await localClient(broker, 'cut-pub');
    await until(() => bridge.connected, 'the bridge to connect', 10_000);
    // The bridge subscribes once connected: probe until it is in place.
    for (let t = 0; !sub.got.some((m) => m.topic === 'from/in/probe'); t++) {
      if (t > 100) throw new Error('timed out waiting for the inbound subscription');
      await extPub.publish('cut/in/probe', 'p', { qos: 0 });
      await sleep(50);
    }

    // Out.
    const out = plan('down', 5);
    plans.push(out);
    const sent = [];
    const publish = async (i) => {
      const qos = i % 2 ? 1 : 2;
      sent.push([`cut/out/q${qos}`, `m${i}`, qos]);
      await pub.c.publish(`out/q${qos}`, `m${i}`, { qos });
    };
    let i = 0;
    out.armed = true;
    for (; i < 10; i++) await publish(i);
    await until(() => events.some((e) => e[0] === 'disconnect'), 'the cut', 5000);
    eq(out.done, true, 'cut at the PUBREC');
    for (const end = i + 30; i < end; i++) await publish(i);
    const down = bridge.stats();
    const missing = () => sent.filter(([t, m]) => !extGot.some(([gt, gm]) => gt === t && gm === m)).map((x) => x[1]);
    try {
      await until(() => missing().length === 0, 'every message on ringmq', 15_000);
    } catch (e) {
      throw new Error(`${e.message}: missing ${missing()}, stats ${JSON.stringify(bridge.stats())}`);
    }
    await until(() => bridge.stats().queued === 0, 'nothing left queued', 5000);
    await sleep(200);
    const twice = sent.filter(([t, m, q]) => q === 2 && extGot.filter(([gt, gm]) => gt === t && gm === m).length !== 1);
    eq(twice.map((x) => x[1]), [], 'QoS 2 messages delivered other than once on ringmq');
    const afterOut = bridge.stats();
    eq(afterOut.droppedOut, 0, 'nothing dropped');

    // In.
    const inCut = plan('up', 5);
    plans.push(inCut);
    inCut.armed = true;
    const connects = events.filter((e) => e[0] === 'connect').length;
    const names = [];
    for (let k = 0; k < 20; k++) {
      names.push(`n${k}`);
      await extPub.publish('cut/in/x', `n${k}`, { qos: 2 });
    }
    await until(() => events.filter((e) => e[0] === 'connect').length > connects, 'the bridge to reconnect', 10_000);
    eq(inCut.done, true, 'cut at the bridge\'s PUBREC');
    const count = (n) => sub.got.filter((m) => m.topic === 'from/in/x' && m.text === n).length;
    await until(() => names.every((n) => count(n) >= 1), 'every inbound message in the tab', 15_000);
    await sleep(300);
    eq(names.filter((n) => count(n) !== 1), [], 'inbound QoS 2 messages delivered other than once');
    const reconnected = events.filter((e) => e[0] === 'connect').map((e) => [e[1].reconnected, e[1].sessionPresent]);
    eq(reconnected.slice(1), [[true, true], [true, true]], 'reconnected twice with the session');
    await bridge.close();
    await Promise.all([sub.c.disconnect(), pub.c.disconnect()]);
    return { queuedWhileDown: down.queued, out: sent.length, in: names.length, stats: afterOut };
  } finally {
    restore();
    broker.close();
    await Promise.all([extSub.disconnect(), extPub.disconnect()]);
  }
}
