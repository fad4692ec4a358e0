// Reconnection to the ringmq binary over ws:// (run by
// wasm/tests/browser.mjs, which stops the binary between wsReconnectStart
// and wsReconnectLost and starts it again on the same port before
// wsReconnectBack). The client backs off exponentially while the broker
// is away, queues a QoS 1 publish meanwhile, and on the restarted broker
// (a new process: no session kept) subscribes again and gets messages.
// Every wait is bounded.

import { eq, text, until } from './scenarios.js';

const R = () => window.ringmq;

let state = null;

export async function wsReconnectStart({ url }) {
  const c = new (R().MqttClient)();
  const got = [];
  const events = [];
  c.on('message', (topic, payload) => got.push([topic, text(payload)]));
  c.on('connect', (i) => events.push(['connect', i.reconnected, i.sessionPresent]));
  c.on('disconnect', (i) => events.push(['disconnect', i.reasonCode ?? null]));
  c.on('reconnecting', (i) => events.push(['reconnecting', i.attempt, i.delayMs]));
  c.on('error', () => {}); // connection refused while the broker is away
  await c.connect(url, {
    clientId: 'rc', sessionExpiryInterval: 300, connectTimeoutMs: 3000,
    reconnect: { initialDelayMs: 100, maxDelayMs: 800 },
  });
  eq(await c.subscribe('rc/#', { qos: 1 }), [1], 'SUBACK');
  state = { c, got, events, queued: null };
  return { ok: true };
}

// The broker has been stopped: at least three failed attempts, spaced by
// growing delays; a QoS 1 publish waits for the next connection.
export async function wsReconnectLost() {
  const { c, events } = state;
  const attempts = () => events.filter((e) => e[0] === 'reconnecting');
  await until(() => attempts().length >= 3, 'three reconnection attempts', 15_000);
  const delays = attempts().map((e) => e[2]);
  if (!(delays[2] > delays[0])) throw new Error('backoff: delays do not grow: ' + JSON.stringify(delays));
  eq(c.connected, false, 'not connected while the broker is away');
  state.queued = c.publish('rc/queued', 'while away', { qos: 1 });
  return { delays };
}

// The broker is back on the same port.
export async function wsReconnectBack({ url }) {
  const { c, got, events, queued } = state;
  await until(() => events.some((e) => e[0] === 'connect' && e[1]), 'reconnected to ringmq', 20_000);
  eq(events.find((e) => e[0] === 'connect' && e[1]), ['connect', true, false], 'reconnected, no session on the new process');
  // PUBACK 0 or 0x10: the resubscription goes out first, but its SUBACK
  // may not be in when the publish is routed (the session's shard).
  const code = await queued;
  if (code !== 0 && code !== 0x10) throw new Error('queued publish: PUBACK 0x' + code.toString(16));
  // Another client publishes until the restored subscription delivers
  // (a few tries at most: the SUBACK is on its way).
  const p = new (R().MqttClient)();
  await p.connect(url, { clientId: 'rc-pub' });
  for (let i = 0; i < 50 && !got.some(([t]) => t === 'rc/x'); i++) {
    await p.publish('rc/x', 'after restart', { qos: 1 });
    await until(() => got.some(([t]) => t === 'rc/x'), 'x', 100).catch(() => {});
  }
  await until(() => got.some(([t]) => t === 'rc/x'), 'delivery after resubscribing', 1000);
  await Promise.all([c.disconnect(), p.disconnect()]);
  state = null;
  return { events: events.length, got };
}

// One MessagePort, several connections (wasm/src/broker/ports.rs): a
// client connected with a plain port (not a port function) is taken over
// by another client with its id (the broker ends its connection with
// "close"); it reconnects over the same port ("open"), gets its session
// back and receives on it; disconnect() ("close") frees the port. The
// connection counts show that nothing is left behind.
export async function inTabPortReconnect() {
  const broker = new (R().InTabBroker)({ sysInterval: 0 });
  try {
    const c = new (R().MqttClient)();
    const events = [];
    const got = [];
    c.on('connect', (i) => events.push(['connect', i.reconnected, i.sessionPresent]));
    c.on('disconnect', (i) => events.push(['disconnect', i.reasonCode ?? null]));
    c.on('message', (t, payload) => got.push([t, text(payload)]));
    const port = broker.createClientPort();
    await c.connect(port, { clientId: 'pr', sessionExpiryInterval: 300, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    eq(await c.subscribe('pr/#', { qos: 1 }), [1], 'SUBACK');
    const intruder = new (R().MqttClient)();
    const intruderEvents = [];
    intruder.on('disconnect', (i) => intruderEvents.push(i.reasonCode ?? null));
    await intruder.connect(broker.createClientPort(), { clientId: 'pr', cleanStart: false, sessionExpiryInterval: 300, reconnect: false });
    // The first client was taken over (0x8E), reconnected over its port
    // and took the session back from the intruder.
    await until(() => events.filter((e) => e[0] === 'connect').length === 2, 'the reconnection over the same port', 5000);
    eq(events, [['connect', false, false], ['disconnect', 0x8e], ['connect', true, true]], 'taken over, then back with the session');
    await until(() => intruderEvents.length === 1, 'the intruder taken over in turn', 5000);
    eq(c.connected, true, 'connected again');
    const p = new (R().MqttClient)();
    await p.connect(broker.createClientPort(), { clientId: 'pr-pub' });
    eq(await p.publish('pr/x', 'over the same port', { qos: 1 }), 0, 'PUBACK (a subscriber)');
    await until(() => got.length === 1, 'the message on the second connection', 2000);
    eq(got, [['pr/x', 'over the same port']], 'received');
    eq(broker.stats().connections, 2, 'the client and the publisher, nothing else');
    await c.disconnect();
    await until(() => broker.stats().connections === 1, 'the client gone', 2000);
    await p.disconnect();
    return { events, sessions: broker.stats().sessions };
  } finally {
    broker.close();
  }
}
