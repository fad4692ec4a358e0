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
