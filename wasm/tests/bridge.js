// Browser side of the bridge tests (wasm/tests/bridge.mjs drives them with
// native MQTT.js clients on the real ringmq binary): an in-tab broker
// bridged to ringmq over ws://, with one in-tab subscriber and one in-tab
// publisher. State lives in window.B between steps.

import { until, sleep } from './scenarios.js';

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
