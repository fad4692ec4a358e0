// useMqtt: ringmq's WebAssembly MQTT client (wasm/pkg) as a Vue 3
// composable. Call it in setup():
//
//   const { status, error, messages, publish, subscribe, unsubscribe } =
//     useMqtt('wss://broker.example/mqtt', { clientId: 'ui-1', maxMessages: 50 });
//
// `target` is anything MqttClient.connect takes (a ws:// / wss:// URL, a
// MessagePort, a function returning one, { broadcastChannel }). `options`
// are connect's options (docs/wasm.md) plus `maxMessages` (how many
// received messages `messages` keeps, the newest last; default 100).
// `status`, `error` and `messages` are refs. When the component (the
// effect scope) is unmounted the client disconnects (DISCONNECT 0x00: no
// will, no reconnection). publish/subscribe called before the CONNACK
// wait for it.
//
// The package is an ES module built by wasm-bindgen --target web: init()
// must run once before any MqttClient. The .wasm is imported as a file
// (esbuild --loader:.wasm=file copies it next to the bundle) and fetched
// relative to the bundle.

import { onScopeDispose, ref, shallowRef } from 'vue';
import init, { MqttClient } from '../../pkg/ringmq_wasm.js';
import wasmUrl from '../../pkg/ringmq_wasm_bg.wasm';

let loaded = null;
function loadRingmq() {
  loaded ??= init({ module_or_path: new URL(wasmUrl, import.meta.url) });
  return loaded;
}

const DEFAULT_MAX_MESSAGES = 100;
let seq = 0; // message ids (list keys)

export function useMqtt(target, options = {}) {
  const { maxMessages = DEFAULT_MAX_MESSAGES, ...connectOptions } = options;
  const status = ref('connecting');
  const error = ref(null);
  const messages = shallowRef([]);
  let closed = false;
  let client = null;
  let established = false;

  // Resolves with the client at its first CONNACK; rejects if that fails
  // or the scope is disposed first.
  const ready = loadRingmq().then(async () => {
    if (closed) throw new Error('useMqtt: unmounted before connecting');
    client = new MqttClient();
    client.on('connect', () => !closed && (status.value = 'connected'));
    client.on('reconnecting', () => !closed && (status.value = 'reconnecting'));
    client.on('disconnect', () => !closed && (status.value = 'disconnected'));
    client.on('error', (e) => !closed && (error.value = String(e && e.message ? e.message : e)));
    client.on('message', (topic, payload, packet) => {
      if (closed) return;
      const m = { id: ++seq, topic, payload: new TextDecoder().decode(payload), bytes: payload, qos: packet.qos, retain: packet.retain, properties: packet.properties };
      messages.value = [...messages.value, m].slice(-maxMessages);
    });
    await client.connect(target, connectOptions);
    established = true;
    if (closed) {
      await client.disconnect();
      throw new Error('useMqtt: unmounted while connecting');
    }
    return client;
  });
  ready.catch((e) => {
    if (!closed) {
      status.value = 'failed';
      error.value = String(e && e.message ? e.message : e);
    }
  });

  onScopeDispose(() => {
    closed = true;
    // A connection still being made is closed once it is (above);
    // disconnect() also ends a reconnection in progress.
    if (established) client.disconnect().catch((e) => console.warn('useMqtt: disconnect failed', e));
  });

  const withClient = (fn) => (closed ? Promise.reject(new Error('useMqtt: unmounted')) : ready.then(fn));
  return {
    status,
    error,
    messages,
    publish: (topic, payload, opts) => withClient((c) => c.publish(topic, payload, opts)),
    subscribe: (filter, opts) => withClient((c) => c.subscribe(filter, opts)),
    unsubscribe: (filter) => withClient((c) => c.unsubscribe(filter)),
    clearMessages: () => {
      messages.value = [];
    },
  };
}
