// Exactly-once across a reconnection, in the browser (run by
// wasm/tests/browser.mjs): a proxy between the WASM client and the broker
// splits both byte streams into MQTT packets and cuts the connection at a
// chosen packet (the PUBLISH, PUBREC, PUBREL or PUBCOMP of a QoS 2 flow,
// the PUBLISH or PUBACK of QoS 1). The client reconnects with its session
// and resends under the original packet id; the subscriber must see the
// message exactly once. The same for the receiving client: its
// connection cut at its PUBREC (the broker sends the PUBLISH again) or at
// the broker's PUBREL; its callback must see the message once. Over MessagePorts to the in-tab broker (a proxy
// port pair) and over ws:// to the ringmq binary (a WebSocket subclass
// installed as window.WebSocket for the scenario).

import { eq, sleep, text, until } from './scenarios.js';

const R = () => window.ringmq;

// Splits a byte stream into whole MQTT packets (fixed header, Remaining
// Length as a Variable Byte Integer, body).
export class PacketSplitter {
  constructor() {
    this.buf = new Uint8Array(0);
  }
  push(bytes) {
    const joined = new Uint8Array(this.buf.length + bytes.length);
    joined.set(this.buf);
    joined.set(bytes, this.buf.length);
    const out = [];
    let at = 0;
    for (;;) {
      let len = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      while (i < joined.length && i < at + 5) {
        const b = joined[i++];
        len += (b & 127) * mul;
        mul *= 128;
        if (!(b & 128)) {
          complete = true;
          break;
        }
      }
      if (!complete || i + len > joined.length) break;
      out.push(joined.slice(at, i + len));
      at = i + len;
    }
    this.buf = joined.slice(at);
    return out;
  }
}

const TYPES = { 3: 'PUBLISH', 4: 'PUBACK', 5: 'PUBREC', 6: 'PUBREL', 7: 'PUBCOMP' };

// A cut: once armed, the first packet of `type` going `dir` ('up': client -> broker,
// 'down': broker -> client) is not forwarded and the connection ends.
// One cut per plan; later connections pass everything.
export function plan(dir, type) {
  return {
    dir, type, done: false, armed: false, name: `${TYPES[type]} ${dir === 'up' ? 'to the broker' : 'to the client'} lost`,
    hits(d, packet) {
      if (!this.armed || this.done || d !== this.dir || packet[0] >> 4 !== this.type) return false;
      this.done = true;
      return true;
    },
  };
}

// A port factory for `client.connect`: each connection goes through a
// proxy (a MessageChannel on the client's side, a broker port on the
// other) that forwards packet by packet and applies `cut`.
function cuttingPorts(broker, cut) {
  return () => {
    const channel = new MessageChannel();
    const toClient = channel.port2;
    const toBroker = broker.createClientPort();
    const up = new PacketSplitter();
    const down = new PacketSplitter();
    let dead = false;
    const end = () => {
      dead = true;
      toClient.postMessage('close');
      toBroker.postMessage('close');
      toClient.close();
      toBroker.close();
    };
    const relay = (dir, splitter, to) => (e) => {
      if (dead) return;
      if (e.data === 'close') return end();
      for (const packet of splitter.push(new Uint8Array(e.data))) {
        if (cut.hits(dir, packet)) return end();
        to.postMessage(packet);
      }
    };
    toClient.onmessage = relay('up', up, toBroker);
    toBroker.onmessage = relay('down', down, toClient);
    return channel.port1;
  };
}

// Installs a WebSocket subclass as window.WebSocket that applies `cut`
// to the next connections the WASM client opens (wasm-bindgen resolves
// `WebSocket` when it constructs one); returns the function restoring it.
export function cuttingWebSocket(cut) {
  const Native = window.WebSocket;
  class CutWebSocket extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      this.up = new PacketSplitter();
      this.down = new PacketSplitter();
      this.dead = false;
      this.handler = null;
      super.onmessage = (e) => {
        if (this.dead) return;
        for (const packet of this.down.push(new Uint8Array(e.data))) {
          if (cut.hits('down', packet)) return this.end();
          if (this.handler) this.handler(new MessageEvent('message', { data: packet.buffer }));
        }
      };
    }
    set onmessage(f) {
      this.handler = f;
    }
    get onmessage() {
      return this.handler;
    }
    send(data) {
      if (this.dead) return;
      for (const packet of this.up.push(new Uint8Array(data))) {
        if (cut.hits('up', packet)) return this.end();
        super.send(packet);
      }
    }
    end() {
      this.dead = true;
      super.close(); // the close event reaches the client's onclose
    }
  }
  window.WebSocket = CutWebSocket;
  return () => {
    window.WebSocket = Native;
  };
}

// One case: a subscriber on 'eo/#' (QoS 2), a publisher whose connection
// is cut by `cut`; publishes once and returns what the subscriber got and
// what the publish resolved with. `connectTo(cut)`: the publisher's target.
async function runCase({ qos, cut, connectTo, subscriberTarget, options, topic, expected }) {
  const sub = new (R().MqttClient)();
  const got = [];
  sub.on('message', (t, payload, packet) => got.push([t, text(payload), packet.qos]));
  await sub.connect(subscriberTarget, { clientId: 'eo-sub-' + topic.replaceAll('/', '-') });
  await sub.subscribe('eo/#', { qos: 2 });
  const c = new (R().MqttClient)();
  const events = [];
  c.on('connect', (i) => events.push(['connect', i.reconnected, i.sessionPresent]));
  c.on('reconnecting', () => events.push(['reconnecting']));
  await c.connect(connectTo(cut), { reconnect: { initialDelayMs: 10, maxDelayMs: 200 }, ...options });
  // Two publishes completed first: the cut one then has packet id 3, not
  // the 1 a fresh connection would hand out, so a resend under a new id
  // (not exactly-once) is a new message to the broker and shows as a
  // second delivery.
  for (let i = 0; i < 2; i++) await c.publish('eo-warm/x', 'w', { qos: 1 });
  cut.armed = true;
  const reason = await Promise.race([
    c.publish(topic, 'once', { qos }),
    sleep(10_000).then(() => { throw new Error(`${cut.name}: the publish did not complete`); }),
  ]);
  eq(cut.done, true, `${cut.name}: the connection was cut`);
  // The expected deliveries (5 s at most), then time for one more to
  // arrive if there were a duplicate.
  const count = () => got.filter(([t]) => t === topic).length;
  await until(() => count() >= expected, `${cut.name}: ${expected} deliveries (got ${count()})`, 5000);
  await sleep(200);
  const deliveries = count();
  await Promise.all([c.disconnect(), sub.disconnect()]);
  return { reason, deliveries, events };
}

const V5_SESSION = { clientId: 'eo-pub', sessionExpiryInterval: 300 };
const V311_SESSION = { clientId: 'eo-pub-311', protocolVersion: 4, cleanStart: false };

// The flows and where each is cut: [name, qos, cut, options, expected
// reason, expected deliveries, whether the session is kept].
function cases() {
  return [
    ['qos2 PUBLISH lost', 2, plan('up', 3), V5_SESSION, 0, 1, true],
    ['qos2 PUBREC lost', 2, plan('down', 5), V5_SESSION, 0, 1, true],
    ['qos2 PUBREL lost', 2, plan('up', 6), V5_SESSION, 0, 1, true],
    // The broker had completed the flow: PUBCOMP 0x92 Packet Identifier
    // not found, "not an error during recovery" (MQTT 5.0 section 3.7.2.1).
    ['qos2 PUBCOMP lost', 2, plan('down', 7), V5_SESSION, 0x92, 1, true],
    ['qos2 v3.1.1 PUBREC lost', 2, plan('down', 5), V311_SESSION, 0, 1, true],
    ['qos2 v3.1.1 PUBCOMP lost', 2, plan('down', 7), V311_SESSION, 0, 1, true],
    ['qos1 PUBLISH lost', 1, plan('up', 3), V5_SESSION, 0, 1, true],
    // QoS 1 is at least once: the broker got the PUBLISH, the resent one
    // (DUP) is delivered again.
    ['qos1 PUBACK lost', 1, plan('down', 4), V5_SESSION, 0, 2, true],
    // No session kept (no expiry): the PUBREC had come, the broker had
    // accepted and forwarded the message; the publish resolves with 0 and
    // nothing is resent.
    ['qos2 no session, PUBREL lost', 2, plan('up', 6), { clientId: 'eo-nos' }, 0, 1, false],
  ];
}

// The receiver side: the subscriber's connection is cut (its PUBREC to
// the broker lost, or the broker's PUBREL to it); it reconnects with its
// session, the broker sends the PUBLISH again (DUP) or the PUBREL, and
// the message must reach the `message` callback once.
async function runReceiverCase({ cut, connectTo, publisherTarget, options, topic }) {
  const sub = new (R().MqttClient)();
  const got = [];
  const events = [];
  sub.on('message', (t, payload, packet) => got.push([t, text(payload), packet.qos]));
  sub.on('connect', (i) => events.push(['connect', i.reconnected, i.sessionPresent]));
  await sub.connect(connectTo(cut), { reconnect: { initialDelayMs: 10, maxDelayMs: 200 }, ...options });
  eq(await sub.subscribe('eo/#', { qos: 2 }), [2], 'SUBACK');
  const pub = new (R().MqttClient)();
  await pub.connect(publisherTarget, { clientId: options.clientId + '-pub' });
  cut.armed = true;
  await pub.publish(topic, 'once', { qos: 2 });
  await until(() => cut.done, `${cut.name}: the connection was cut`, 5000);
  await until(() => events.length >= 2, `${cut.name}: the subscriber reconnected`, 5000);
  // Time for the broker's resend, and for a second delivery if there were one.
  await sleep(300);
  const deliveries = got.filter(([t]) => t === topic).length;
  await Promise.all([pub.disconnect(), sub.disconnect()]);
  return { deliveries, events };
}

function receiverCases() {
  return [
    ['receiver qos2 PUBREC lost', plan('up', 5), V5_SESSION, true],
    ['receiver qos2 PUBREL lost', plan('down', 6), V5_SESSION, true],
    ['receiver qos2 v3.1.1 PUBREC lost', plan('up', 5), V311_SESSION, true],
  ];
}

async function runAll(make) {
  const out = {};
  let n = 0;
  for (const [name, qos, cut, options, reason, deliveries, kept] of cases()) {
    const { target, subscriberTarget, close } = make();
    const topic = `eo/${n++}`;
    // Own client ids per case: ringmq keeps the sessions of earlier cases.
    const own = { ...options, clientId: `${options.clientId}-${n}` };
    const got = await runCase({ qos, cut, connectTo: target, subscriberTarget, options: own, topic, expected: deliveries });
    close();
    eq(got.reason, reason, `${name}: the publish's reason code`);
    eq(got.deliveries, deliveries, `${name}: deliveries to the subscriber`);
    eq(got.events.at(-1), ['connect', true, kept], `${name}: reconnected, session ${kept ? '' : 'not '}kept`);
    out[name] = got.deliveries;
  }
  for (const [name, cut, options, kept] of receiverCases()) {
    const { target, subscriberTarget, close } = make();
    const topic = `eo/${n++}`;
    const own = { ...options, clientId: `${options.clientId}-r${n}` };
    const got = await runReceiverCase({ cut, connectTo: target, publisherTarget: subscriberTarget, options: own, topic });
    close();
    eq(got.deliveries, 1, `${name}: deliveries to the subscriber's callback`);
    eq(got.events.at(-1), ['connect', true, kept], `${name}: reconnected, session ${kept ? '' : 'not '}kept`);
    out[name] = got.deliveries;
  }
  return out;
}

// The in-tab broker over MessagePorts (deterministic: the proxy sees every
// packet, nothing else is on the line).
export async function inTabExactlyOnce() {
  return runAll(() => {
    const broker = new (R().InTabBroker)({ sysInterval: 0 });
    return {
      target: (cut) => cuttingPorts(broker, cut),
      subscriberTarget: broker.createClientPort(),
      close: () => broker.close(),
    };
  });
}

// The ringmq binary over ws://, the WebSocket cut in the page.
export async function wsExactlyOnce({ url }) {
  let restore = null;
  try {
    return await runAll(() => ({
      target: (cut) => {
        restore = cuttingWebSocket(cut);
        return url;
      },
      subscriberTarget: url,
      close: () => {
        if (restore) restore();
        restore = null;
      },
    }));
  } finally {
    if (restore) restore();
  }
}
