// In-browser benchmarks of the in-tab broker (node wasm/tests/browser.mjs
// --bench [--runs N]): messages per second from one publisher to N
// subscribers, and round-trip latency (publish -> delivery back to the
// publisher), with the WASM client and with MQTT.js (through
// PortWebSocket) against the same broker in the same run; each
// measurement repeated `runs` times (the clients' order alternating from
// run to run) and reported as the median, with the spread.

import { PortWebSocket, sleep, until } from './scenarios.js';

const R = () => window.ringmq;
const MESSAGES = 10_000;
const SUBSCRIBERS = [1, 4, 16];
const ROUNDS = 1000;
const PAYLOAD = new Uint8Array(64);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

// A subscriber/publisher pair of one kind: { subscribe(cb), publish(topic, payload), close() }.
async function wasmClient(broker, id) {
  const c = new (R().MqttClient)();
  await c.connect(broker.createClientPort(), { clientId: id, inflightMax: 1000 });
  return {
    onMessage: (f) => c.on('message', (t) => f(t)),
    subscribe: (f) => c.subscribe(f, { qos: 0 }),
    publish: (t, p, qos = 0) => c.publish(t, p, { qos }),
    close: () => c.disconnect(),
  };
}

async function mqttjsClient(broker, id) {
  const m = window.mqtt.connect('ws://in-tab.invalid', {
    clientId: id, protocolVersion: 5, reconnectPeriod: 0,
    createWebsocket: () => new PortWebSocket(broker.createClientPort()),
  });
  await new Promise((res, rej) => { m.once('connect', res); m.once('error', rej); });
  return {
    onMessage: (f) => m.on('message', (t) => f(t)),
    subscribe: (f) => new Promise((res, rej) => m.subscribe(f, { qos: 0 }, (e) => (e ? rej(e) : res()))),
    publish: (t, p, qos = 0) => new Promise((res, rej) => m.publish(t, p, { qos }, (e) => (e ? rej(e) : res()))),
    close: () => new Promise((res) => m.end(false, {}, res)),
  };
}

// One publisher, `subs` subscribers, QoS 1 publishes in windows of 100
// (so the publisher cannot outrun the broker without bound): delivered
// messages per second.
export async function fanout(kind, subs) {
  const make = kind === 'wasm' ? wasmClient : mqttjsClient;
  const broker = new (R().InTabBroker)({ sysInterval: 0 });
  let delivered = 0;
  const clients = [];
  for (let i = 0; i < subs; i++) {
    const c = await make(broker, `s${i}`);
    c.onMessage(() => delivered++);
    await c.subscribe('bench/#');
    clients.push(c);
  }
  const pub = await make(broker, 'pub');
  const t0 = performance.now();
  for (let i = 0; i < MESSAGES; i += 100) {
    const batch = [];
    for (let j = 0; j < 100; j++) batch.push(pub.publish('bench/x', PAYLOAD, 1));
    await Promise.all(batch);
  }
  await until(() => delivered >= MESSAGES * subs, 'all deliveries', 120_000);
  const s = (performance.now() - t0) / 1000;
  for (const c of [...clients, pub]) await c.close();
  broker.close();
  return { kind, subscribers: subs, messages: MESSAGES, deliveredPerSecond: Math.round((MESSAGES * subs) / s) };
}

// Round trip: publish to a topic the same client subscribes to, wait for
// it, 1000 times; median and p99 in ms.
async function roundTrip(kind) {
  const make = kind === 'wasm' ? wasmClient : mqttjsClient;
  const broker = new (R().InTabBroker)({ sysInterval: 0 });
  const c = await make(broker, 'rt');
  let arrived = null;
  c.onMessage(() => arrived && arrived());
  await c.subscribe('rt');
  const times = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await new Promise((res) => { arrived = res; c.publish('rt', PAYLOAD, 0); });
    times.push(performance.now() - t0);
  }
  await c.close();
  broker.close();
  return { kind, rounds: times.length, medianMs: median(times), p99Ms: percentile(times, 0.99) };
}

// Every measurement `runs` times; medians (and min / max) per client
// kind and subscriber count, the round trip's median and p99 as the
// medians of the runs' values.
export async function all({ runs = 5 } = {}) {
  const fan = {};
  const rt = {};
  for (let r = 0; r < runs; r++) {
    const kinds = r % 2 ? ['mqttjs', 'wasm'] : ['wasm', 'mqttjs'];
    for (const kind of kinds) {
      for (const subs of SUBSCRIBERS) {
        const x = await fanout(kind, subs);
        (fan[`${kind} ${subs}`] ||= []).push(x.deliveredPerSecond);
      }
      const y = await roundTrip(kind);
      (rt[kind] ||= []).push(y);
      await sleep(100);
    }
  }
  const fanout_ = Object.entries(fan).map(([key, v]) => {
    const [kind, subs] = key.split(' ');
    return { kind, subscribers: Number(subs), messages: MESSAGES, runs: v.length,
      deliveredPerSecondMedian: median(v), min: Math.min(...v), max: Math.max(...v) };
  });
  const roundTrip_ = Object.entries(rt).map(([kind, v]) => ({
    kind, rounds: ROUNDS, runs: v.length,
    medianMs: median(v.map((x) => x.medianMs)), p99Ms: median(v.map((x) => x.p99Ms)),
  }));
  return { fanout: fanout_, roundTrip: roundTrip_, timerResolution: crossOriginIsolated ? 'isolated (5 us)' : 'not isolated (100 us)' };
}
