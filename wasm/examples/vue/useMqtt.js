// useMqtt: ringmq's WebAssembly MQTT client (wasm/pkg) as a Vue 3
// composable. Call it in setup():
//
//   const { status, error, messages, publish, subscribe, unsubscribe } =
//     useMqtt('wss://broker.example/mqtt', { clientId: 'ui-1', maxMessages: 50 });
//
// `target` is anything MqttClient.connect takes (a ws:// / wss:// URL, a
// MessagePort, a function returning one, { broadcastChannel }). `options`
// are connect's options (docs/wasm.md) plus `maxMessages` (how many
// received messages `messages` keeps, the newest last; default 100); both
// are read once. `status`, `error` and `messages` are refs.
// publish/subscribe called before the CONNACK wait for it. When the
// component (the effect scope) is unmounted the client disconnects
// (DISCONNECT 0x00: no will, no reconnection). The connection itself is
// ../session.js.

import { onScopeDispose, ref, shallowRef } from 'vue';
import { DEFAULT_MAX_MESSAGES, openSession } from '../session.js';

export function useMqtt(target, options = {}) {
  const { maxMessages = DEFAULT_MAX_MESSAGES, ...connectOptions } = options;
  const status = ref('connecting');
  const error = ref(null);
  const messages = shallowRef([]);
  let closed = false;
  const session = openSession(target, connectOptions, {
    status: (s) => (status.value = s),
    error: (e) => (error.value = e),
    message: (m) => (messages.value = [...messages.value, m].slice(-maxMessages)),
  });
  onScopeDispose(() => {
    closed = true;
    session.close();
  });

  const withClient = (fn) => (closed ? Promise.reject(new Error('useMqtt: not connected (unmounted)')) : session.ready.then(fn));
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
