// The WASM client in a dedicated worker talking to the page's in-tab
// broker over a transferred MessagePort (createClientPort()). The worker
// is the example's own, wasm/examples/worker.js, so the example is what
// is tested; its connection is taken over once and it reconnects over the
// same port. Run by wasm/tests/browser.mjs.

import { eq, sleep, text, until } from './scenarios.js';

const R = () => window.ringmq;

function within(ms, promise, what) {
  return Promise.race([promise, sleep(ms).then(() => { throw new Error('timed out: ' + what); })]);
}

export async function workerClient() {
  const broker = new (R().InTabBroker)({ sysInterval: 0 });
  const connected = [];
  broker.on('clientConnected', (i) => connected.push(i.clientId));
  const worker = new Worker('/wasm/examples/worker.js', { type: 'module' });
  const errors = [];
  try {
    const ready = new Promise((resolve, reject) => {
      worker.onmessage = (e) => {
        if (e.data.error) {
          errors.push(e.data.error);
          reject(new Error('worker: ' + e.data.error));
        } else if (e.data.ready) {
          resolve(e.data);
        }
      };
      worker.onerror = (e) => reject(new Error('worker failed to load: ' + (e.message || 'error event')));
    });
    const port = broker.createClientPort();
    worker.postMessage({ port, clientId: 'in-worker' }, [port]);
    const r = await within(15_000, ready, 'the worker connecting');
    eq(r.codes, [2], "the worker's SUBACK");
    eq(connected, ['in-worker'], 'the broker saw the worker connect');

    const page = new (R().MqttClient)();
    const got = [];
    page.on('message', (topic, payload, packet) => got.push([topic, text(payload), packet.qos]));
    await page.connect(broker.createClientPort(), { clientId: 'page' });
    await page.subscribe('page/#', { qos: 2 });
    // Request/response served by the worker.
    for (const n of [3, 12, 1000]) {
      const answer = await page.request('worker/square', String(n), { qos: 1, timeoutMs: 5000 });
      eq(text(answer.payload), String(n * n), `square of ${n} from the worker`);
    }
    // QoS 2 both ways through the worker.
    eq(await page.publish('worker/echo', 'ping', { qos: 2 }), 0, 'PUBCOMP from the broker');
    await until(() => got.length === 1, 'the echo from the worker');
    eq(got, [['page/echo', 'ping', 2]], 'echo at QoS 2');
    eq(broker.stats().connections, 2, 'page and worker connected');
    // The worker's connection is taken over by a page client with its id:
    // the worker reconnects over the port it was given (one port, one
    // connection after the other), takes its id back and serves again.
    const intruder = new (R().MqttClient)();
    await intruder.connect(broker.createClientPort(), { clientId: 'in-worker', reconnect: false });
    await until(() => connected.length === 4, 'the worker reconnecting over its port', 10_000);
    eq(connected, ['in-worker', 'page', 'in-worker', 'in-worker'], 'worker, page, intruder, worker again');
    await until(() => !intruder.connected, 'the intruder taken over', 5000);
    // Its subscription is made again right after its CONNACK: a request
    // racing it goes unanswered, so try a few times.
    let again = null;
    for (let i = 0; i < 5 && !again; i++) {
      again = await page.request('worker/square', '7', { qos: 1, timeoutMs: 1000 }).catch(() => null);
    }
    eq(again && text(again.payload), '49', 'served after reconnecting over the same port');
    eq(broker.stats().connections, 2, 'page and worker connected');
    eq(errors, [], 'no error reported by the worker');
    await page.disconnect();
    return { connected };
  } finally {
    worker.terminate();
    broker.close();
  }
}
