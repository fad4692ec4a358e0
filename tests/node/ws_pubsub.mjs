// MQTT.js over WebSocket against a running ringmq: two clients (MQTT 5 and
// 3.1.1), a subscription, QoS 0 and QoS 1 publishes, and a check of what
// arrives. Usage: node ws_pubsub.mjs URL [CA_FILE]. Exit 0 on success; any
// failure or a 10 s timeout exits 1 with the reason on stderr.
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';

const [url, caFile] = process.argv.slice(2);
if (!url) {
  console.error('usage: node ws_pubsub.mjs URL [CA_FILE]');
  process.exit(2);
}
const tls = caFile ? { ca: readFileSync(caFile), rejectUnauthorized: true } : {};
const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out after 10 s'), 10_000).unref();

const connect = (clientId, protocolVersion) =>
  new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { clientId, protocolVersion, reconnectPeriod: 0, connectTimeout: 5000, ...tls });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    c.once('close', () => reject(new Error(`${clientId}: connection closed`)));
  });

try {
  const sub = await connect('node-sub', 5);
  const pub = await connect('node-pub', 4);
  const got = [];
  const done = new Promise((resolve) => {
    sub.on('message', (topic, payload) => {
      got.push(`${topic}=${payload.toString()}`);
      if (got.length === 2) resolve();
    });
  });
  await sub.subscribeAsync('node/#', { qos: 1 });
  await pub.publishAsync('node/a', 'hello over websocket', { qos: 0 });
  await pub.publishAsync('node/b', 'x'.repeat(60_000), { qos: 1 });
  await done;
  const want = ['node/a=hello over websocket', `node/b=${'x'.repeat(60_000)}`];
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    fail(`received ${JSON.stringify(got.map((g) => g.slice(0, 40)))}`);
  }
  await pub.endAsync();
  await sub.endAsync();
  console.log('OK');
  process.exit(0);
} catch (e) {
  fail(e && e.message ? e.message : String(e));
}
