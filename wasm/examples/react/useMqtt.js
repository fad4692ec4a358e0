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
// when the connection is made. publish/subscribe called before the
// CONNACK wait for it. Unmounting disconnects (DISCONNECT 0x00: no will,
// no reconnection). The connection itself is ../session.js.

import { useCallback, useEffect, useRef, useState } from 'react';
import { DEFAULT_MAX_MESSAGES, openSession } from '../session.js';

const notConnected = () => Promise.reject(new Error('useMqtt: not connected (unmounted)'));

export function useMqtt(target, options = {}) {
  const [status, setStatus] = useState('connecting');
  const [error, setError] = useState(null);
  const [messages, setMessages] = useState([]);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  // The current connection's `ready` promise (null once unmounted).
  const readyRef = useRef(null);

  useEffect(() => {
    const { maxMessages = DEFAULT_MAX_MESSAGES, ...connectOptions } = optionsRef.current;
    setError(null);
    setMessages([]);
    const session = openSession(target, connectOptions, {
      status: setStatus,
      error: setError,
      message: (m) => setMessages((list) => [...list, m].slice(-maxMessages)),
    });
    readyRef.current = session.ready;
    return () => {
      readyRef.current = null;
      session.close();
    };
  }, [target]);

  const withClient = useCallback((fn) => (readyRef.current ? readyRef.current.then(fn) : notConnected()), []);
  const publish = useCallback((topic, payload, opts) => withClient((c) => c.publish(topic, payload, opts)), [withClient]);
  const subscribe = useCallback((filter, opts) => withClient((c) => c.subscribe(filter, opts)), [withClient]);
  const unsubscribe = useCallback((filter) => withClient((c) => c.unsubscribe(filter)), [withClient]);
  const clearMessages = useCallback(() => setMessages([]), []);

  return { status, error, messages, publish, subscribe, unsubscribe, clearMessages };
}
