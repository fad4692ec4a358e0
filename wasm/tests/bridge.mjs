// The bridge tests' native side (run by wasm/tests/browser.mjs): the page's
// in-tab broker is bridged to the real ringmq binary over ws://; MQTT.js
// clients in node, on the same binary, play the external world:
//
// - out: an in-tab publish on tele/# reaches a native subscriber as
//   tab1/tele/# at QoS 1, retained messages stay retained;
// - in: native publishes on tab1/cmd/# (QoS 1 and 2) reach the in-tab
//   subscriber as remote/cmd/#;
// - both: chat/# crosses each way exactly once (no echo);
// - the external connection is cut mid-stream (ringmq keeps the session):
//   nothing lost out, QoS 2 once each way (bridgeCutMidStream, in the page);
// - the binary is stopped and started again on the same port: the bridge
//   reports disconnect, queues in-tab QoS 1 messages (QoS 0 ones are
//   dropped and counted), reconnects, resubscribes and delivers the queue.

import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const mqtt = createRequire(join(root, 'tests/node/package.json'))('mqtt');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: expected ${w}, got ${g}`);
}

async function until(pred, what, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(20);
  }
}

// A native MQTT 5 client on ringmq; `got` collects what it receives.
async function native(url, clientId) {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, clientId, reconnectPeriod: 0, connectTimeout: 5000 });
  const got = [];
  c.on('message', (topic, payload, packet) => got.push({ topic, text: payload.toString(), qos: packet.qos, retain: packet.retain }));
  return { c, got };
}

// `page(name, arg)` runs a scenario of wasm/tests/bridge.js in the page
// (throws on failure); `check(name, fn)` records one test (resolves with
// its result, or null when it failed); `stop()` stops the binary and
// `start()` starts it again on the same port.
export async function bridgeSuite({ page, check, url, stop, start }) {
  const clients = [];
  const open = async (id) => {
    const n = await native(url, id);
    clients.push(n);
    return n;
  };
  try {
    await check('bridgeOptionsRefused', () => page('bridgeOptionsRefused', { url }));
    const up = await check('bridgeStart', () => page('bridgeStart', { url }));
    if (!up) return;
    const sub = await open('native-sub');
    await sub.c.subscribeAsync(['tab1/tele/#', 'chat/#'], { qos: 2 });
    const pub = await open('native-pub');

    await check('bridgeOut', async () => {
      eq(await page('bridgePublish', { topic: 'tele/temp', payload: '21.5', qos: 1 }), 0x00, 'in-tab PUBACK');
      await until(() => sub.got.some((m) => m.topic === 'tab1/tele/temp'), 'tab1/tele/temp at the native subscriber');
      const m = sub.got.find((x) => x.topic === 'tab1/tele/temp');
      eq([m.text, m.qos], ['21.5', 1], 'mapped topic, payload, QoS 1');
      // Retained in the tab, retained on ringmq (retain-as-published).
      await page('bridgePublish', { topic: 'tele/status', payload: 'online', qos: 1, retain: true });
      await until(async () => (await page('bridgeStats')).forwardedOut >= 2, 'the retained message acknowledged by ringmq');
      const late = await open('native-late');
      await late.c.subscribeAsync('tab1/tele/status', { qos: 1 });
      await until(() => late.got.length > 0, 'the retained message');
      eq([late.got[0].text, late.got[0].retain], ['online', true], 'retained on ringmq');
      return await page('bridgeStats');
    });

    await check('bridgeIn', async () => {
      // The bridge subscribes once connected: probe until it is in place.
      await until(async () => {
        await pub.c.publishAsync('tab1/cmd/probe', 'p', { qos: 0 });
        return (await page('bridgeInbox', { topic: 'remote/cmd/probe' })).length > 0;
      }, 'the inbound subscription');
      await pub.c.publishAsync('tab1/cmd/light', 'on', { qos: 2 });
      await pub.c.publishAsync('tab1/cmd/fan', 'off', { qos: 1 });
      const light = await page('bridgeWaitFor', { topic: 'remote/cmd/light', text: 'on' });
      const fan = await page('bridgeWaitFor', { topic: 'remote/cmd/fan', text: 'off' });
      eq([light.qos, fan.qos], [2, 1], 'QoS 2 and 1 kept through the bridge');
      await pub.c.publishAsync('elsewhere/cmd/x', 'no', { qos: 1 });
      await sleep(200);
      eq((await page('bridgeInbox')).filter((m) => m.text === 'no').length, 0, 'unmapped topics stay out');
      return await page('bridgeStats');
    });

    await check('bridgeBothNoEcho', async () => {
      await page('bridgePublish', { topic: 'chat/fromtab', payload: 'hi from the tab', qos: 1 });
      await pub.c.publishAsync('chat/fromnode', 'hi from node', { qos: 1 });
      await page('bridgeWaitFor', { topic: 'chat/fromnode', text: 'hi from node' });
      await until(() => sub.got.some((m) => m.topic === 'chat/fromtab'), 'chat/fromtab on ringmq');
      const before = await page('bridgeStats');
      // A loop would keep forwarding; give it time to show.
      await sleep(500);
      const count = (list, topic) => list.filter((m) => m.topic === topic).length;
      eq([count(sub.got, 'chat/fromtab'), count(sub.got, 'chat/fromnode')], [1, 1], 'each once on ringmq');
      const tab = await page('bridgeInbox');
      eq([count(tab, 'chat/fromtab'), count(tab, 'chat/fromnode')], [1, 1], 'each once in the tab');
      const after = await page('bridgeStats');
      eq([after.forwardedIn, after.forwardedOut], [before.forwardedIn, before.forwardedOut], 'no forwarding after the exchange');
      return after;
    });

    // A cut of the external connection mid-stream, ringmq keeping the
    // session: no loss out (even past queueMaxMessages), QoS 2 exactly
    // once both ways (wasm/tests/bridge.js).
    await check('bridgeCutMidStream', () => page('bridgeCutMidStream', { url }));

    await check('bridgeRestart', async () => {
      const before = await page('bridgeStats');
      for (const n of clients.splice(0)) n.c.end(true);
      await stop();
      await page('bridgeWaitEvent', { name: 'disconnect' });
      // While down: QoS 1 waits in the bridge's queue, QoS 0 is dropped.
      await page('bridgePublish', { topic: 'tele/queued', payload: 'kept', qos: 1, retain: true });
      await page('bridgePublish', { topic: 'tele/lost', payload: 'x', qos: 0 });
      const down = await page('bridgeStats');
      eq([down.connected, down.queued, down.droppedOut - before.droppedOut], [false, 1, 1], 'queued while down');
      await start();
      const info = await page('bridgeWaitEvent', { name: 'connect', count: 2, ms: 20_000 });
      eq(info.reconnected, true, 'reconnected');
      await page('bridgeUntilStats', { key: 'forwardedOut', atLeast: before.forwardedOut + 1 });
      eq((await page('bridgeStats')).queued, 0, 'queue delivered');
      // The restarted binary kept nothing: the retained message came from
      // the queue, and the inbound subscription was made again.
      const fresh = await open('native-after');
      await fresh.c.subscribeAsync('tab1/tele/queued', { qos: 1 });
      await until(() => fresh.got.length > 0, 'the queued message on the new ringmq');
      eq([fresh.got[0].text, fresh.got[0].retain], ['kept', true], 'queued message, retained');
      await until(async () => {
        await fresh.c.publishAsync('tab1/cmd/after', 'back', { qos: 1 });
        return (await page('bridgeInbox', { topic: 'remote/cmd/after' })).length > 0;
      }, 'inbound messages after the restart');
      return await page('bridgeStats');
    });

    await check('bridgeClose', () => page('bridgeClose'));
  } finally {
    for (const n of clients) n.c.end(true);
  }
}
