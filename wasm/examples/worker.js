// A dedicated worker running the WASM client against the in-tab broker of
// the page that started it (wasm/examples/worker.html; also loaded by the
// browser tests, wasm/tests/worker.js). The page sends
// { port, clientId } with the port transferred (a MessagePort from
// broker.createClientPort()); the worker connects over it (and
// reconnects over the same port if the connection ends) and serves:
//   worker/square  request/response: answers n * n to the response topic
//                  with the request's correlation data;
//   worker/echo    publishes the payload back on page/echo at QoS 2.
// It posts { ready: true } once subscribed, { error } if anything fails.
//
// Bundlers: start it with
//   new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })
// (Vite and webpack 5 both recognise that form and bundle the worker and
// the .wasm it loads); see docs/wasm.md.
import init, { MqttClient } from '../pkg/ringmq_wasm.js';

const loaded = init(); // fetches ringmq_wasm_bg.wasm next to the module

self.onmessage = async (e) => {
  const { port, clientId } = e.data;
  try {
    await loaded;
    const client = new MqttClient();
    client.on('message', (topic, payload, packet) => {
      const props = packet.properties;
      if (topic === 'worker/square' && props.responseTopic) {
        const n = Number(new TextDecoder().decode(payload));
        client.publish(props.responseTopic, String(n * n), { qos: 1, properties: { correlationData: props.correlationData } })
          .catch((err) => self.postMessage({ error: String(err) }));
      } else if (topic === 'worker/echo') {
        client.publish('page/echo', payload, { qos: 2 }).catch((err) => self.postMessage({ error: String(err) }));
      }
    });
    client.on('error', (err) => self.postMessage({ error: String(err) }));
    await client.connect(port, { clientId: clientId || 'worker' });
    const codes = await client.subscribe('worker/#', { qos: 2 });
    self.postMessage({ ready: true, codes });
  } catch (err) {
    self.postMessage({ error: String(err && err.stack || err) });
  }
};
