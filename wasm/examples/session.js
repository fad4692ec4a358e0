// One MqttClient connection for a UI component, shared by the React hook
// (react/useMqtt.js) and the Vue composable (vue/useMqtt.js), which keep
// only their framework's state and lifecycle: loads the package once,
// connects, reports status / errors / messages through callbacks (none
// after close()), and close() disconnects.
//
// The package is an ES module built by wasm-bindgen --target web: init()
// must run once before any MqttClient. The .wasm is imported as a file
// (esbuild --loader:.wasm=file copies it next to the bundle) and fetched
// relative to the bundle (esbuild keeps import.meta.url with
// --format=esm). With Vite or webpack 5, drop the .wasm import and call
// init() with no argument (docs/wasm.md, Bundlers).

import init, { MqttClient } from '../pkg/ringmq_wasm.js';
import wasmUrl from '../pkg/ringmq_wasm_bg.wasm';

let loaded = null;
export function loadRingmq() {
  loaded ??= init({ module_or_path: new URL(wasmUrl, import.meta.url) });
  return loaded;
}

export const DEFAULT_MAX_MESSAGES = 100;
let seq = 0; // message ids (list keys)
const describe = (e) => String(e && e.message ? e.message : e);

// Connects to `target` (anything MqttClient.connect takes) with
// `connectOptions`; `on` = { status(s), error(text), message(m) } where s
// is 'connecting' | 'connected' | 'reconnecting' | 'disconnected' |
// 'failed' and m = { id, topic, payload (text), bytes (Uint8Array), qos,
// retain, properties }. Returns { ready, close }: `ready` resolves with the
// client at the first CONNACK (rejects if that fails or close() comes
// first); close() sends DISCONNECT (no will, no reconnection), also to a
// connection still being made once it is made.
export function openSession(target, connectOptions, on) {
  let closed = false;
  let client = null;
  let established = false;
  on.status('connecting');
  const ready = loadRingmq().then(async () => {
    if (closed) throw new Error('useMqtt: closed before connecting');
    client = new MqttClient();
    client.on('connect', () => !closed && on.status('connected'));
    client.on('reconnecting', () => !closed && on.status('reconnecting'));
    client.on('disconnect', () => !closed && on.status('disconnected'));
    client.on('error', (e) => !closed && on.error(describe(e)));
    client.on('message', (topic, payload, packet) => {
      if (closed) return;
      on.message({ id: ++seq, topic, payload: new TextDecoder().decode(payload), bytes: payload, qos: packet.qos, retain: packet.retain, properties: packet.properties });
    });
    await client.connect(target, connectOptions);
    established = true;
    if (closed) {
      await client.disconnect();
      throw new Error('useMqtt: closed while connecting');
    }
    return client;
  });
  ready.catch((e) => {
    if (!closed) {
      on.status('failed');
      on.error(describe(e));
    }
  });
  return {
    ready,
    close() {
      closed = true;
      // disconnect() also ends a reconnection in progress.
      if (established) client.disconnect().catch((e) => console.warn('useMqtt: disconnect failed', e));
    },
  };
}
