// The React example: subscribes to one topic, shows the last messages
// received, and publishes what the form sends. Built by
// wasm/examples/build.sh into wasm/examples/react/dist/app.js, which
// exports mount(); index.html mounts it, wasm/tests/frameworks.js tests it.

import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useMqtt } from './useMqtt.js';

export function App({ target, topic = 'chat/room', clientId = '', maxMessages = 20 }) {
  const { status, error, messages, publish, subscribe } = useMqtt(target, { clientId, maxMessages, keepAlive: 30 });
  const [suback, setSuback] = useState(null);
  const [sent, setSent] = useState(null);

  useEffect(() => {
    subscribe(topic, { qos: 1 }).then(setSuback, (e) => setSuback('failed: ' + e.message));
  }, [subscribe, topic]);

  const onSubmit = (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const payload = String(new FormData(form).get('payload') || '');
    publish(topic, payload, { qos: 1 }).then(
      (code) => setSent(`published, reason code ${code}`),
      (err) => setSent('publish failed: ' + err.message),
    );
    form.reset();
  };

  return (
    <section className="mqtt">
      <p>
        Status: <b data-testid="status">{status}</b>
        {error && <span data-testid="error"> ({error})</span>}
      </p>
      <p>
        Topic <code>{topic}</code>, SUBACK: <span data-testid="suback">{suback === null ? '...' : JSON.stringify(suback)}</span>
      </p>
      <ul data-testid="messages">
        {messages.map((m) => (
          <li key={m.id}>
            <code>{m.topic}</code>: {m.payload}
          </li>
        ))}
      </ul>
      <form data-testid="publish" onSubmit={onSubmit}>
        <input name="payload" placeholder="message" />
        <button type="submit" disabled={status !== 'connected'}>Publish</button>
      </form>
      {sent && <p data-testid="sent">{sent}</p>}
    </section>
  );
}

// Renders App into `el`; returns the function that unmounts it (and so
// disconnects).
export function mount(el, props) {
  const root = createRoot(el);
  root.render(<App {...props} />);
  return () => root.unmount();
}
