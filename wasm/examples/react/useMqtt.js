// useMqtt: ringmq's WebAssembly MQTT client (wasm/pkg) as a React hook.
//
//   const { status, error, messages, publish, subscribe, unsubscribe } =
//     useMqtt('wss://broker.example/mqtt', { clientId: 'ui-1', maxMessages: 50 });
//
// `target` is anything MqttClient.connect takes (a ws:// / wss:// URL, a
// MessagePort, a function returning one, { broadcastChannel }); keep it
// stable (a string, or a function made once with useMemo / outside the
// component): a new target means a new connection. `options` are
// connect's options (docs/wasm.md) plus `maxMessages` (how many received
// messages `messages` keeps, the newest last; default 100); they are read
// when the connection is made. Unmounting disconnects (DISCONNECT 0x00:
// no will, no reconnection).
//
// The package is an ES module built by wasm-bindgen --target web: init()
// must run once before any MqttClient. The .wasm is imported as a file
// (esbuild --loader:.wasm=file copies it next to the bundle) and fetched
// relative to the bundle.

import { useCallback, useEffect, useRef, useState } from 'react';
import init, { MqttClient } from '../../pkg/ringmq_wasm.js';
import wasmUrl from '../../pkg/ringmq_wasm_bg.wasm';

let loaded = null;
function loadRingmq() {
  loaded ??= init({ module_or_path: new URL(wasmUrl, import.meta.url) });
  return loaded;
}

const DEFAULT_MAX_MESSAGES = 100;
let seq = 0; // message ids (list keys)
const notConnected = () => Promise.reject(new Error('useMqtt: not connected (unmounted or connection failed)'));

export function useMqtt(target, options = {}) {
  const [status, setStatus] = useState('connecting');
  const [error, setError] = useState(null);
  const [messages, setMessages] = useState([]);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  // Resolves with the client at its first CONNACK (rejects if that fails
  // or the component goes first): subscribe/publish called before wait.
  const clientRef = useRef(null);

  useEffect(() => {
    const { maxMessages = DEFAULT_MAX_MESSAGES, ...connectOptions } = optionsRef.current;
    let closed = false;
    let client = null;
    let established = false;
    setStatus('connecting');
    setError(null);
    setMessages([]);
    const ready = loadRingmq().then(async () => {
      if (closed) throw new Error('useMqtt: unmounted before connecting');
      client = new MqttClient();
      client.on('connect', () => !closed && setStatus('connected'));
      client.on('reconnecting', () => !closed && setStatus('reconnecting'));
      client.on('disconnect', () => !closed && setStatus('disconnected'));
      client.on('error', (e) => !closed && setError(String(e && e.message ? e.message : e)));
      client.on('message', (topic, payload, packet) => {
        if (closed) return;
        const m = { id: ++seq, topic, payload: new TextDecoder().decode(payload), bytes: payload, qos: packet.qos, retain: packet.retain, properties: packet.properties };
        setMessages((list) => [...list, m].slice(-maxMessages));
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
        setStatus('failed');
        setError(String(e && e.message ? e.message : e));
      }
    });
    clientRef.current = ready;
    return () => {
      closed = true;
      clientRef.current = null;
      // A connection still being made is closed once it is (above);
      // disconnect() also ends a reconnection in progress.
      if (established) {
        client.disconnect().catch((e) => console.warn('useMqtt: disconnect failed', e));
      }
    };
  }, [target]);

  const withClient = useCallback((fn) => (clientRef.current ? clientRef.current.then(fn) : notConnected()), []);
  const publish = useCallback((topic, payload, opts) => withClient((c) => c.publish(topic, payload, opts)), [withClient]);
  const subscribe = useCallback((filter, opts) => withClient((c) => c.subscribe(filter, opts)), [withClient]);
  const unsubscribe = useCallback((filter) => withClient((c) => c.unsubscribe(filter)), [withClient]);
  const clearMessages = useCallback(() => setMessages([]), []);

  return { status, error, messages, publish, subscribe, unsubscribe, clearMessages };
}
