// The React and Vue examples (wasm/examples/{react,vue}, bundled by
// wasm/examples/build.sh into dist/app.js) mounted in the test page and
// connected to an in-tab broker of the page: the rendered list shows what
// another client publishes and what the app's own form publishes, keeps
// only the last `maxMessages`, and unmounting disconnects the app's
// client (the broker reports it gone). Run by wasm/tests/browser.mjs.

import { eq, text, until } from './scenarios.js';

const R = () => window.ringmq;

// The rendered list's entries, as "topic: payload".
const shown = (el) => [...el.querySelectorAll('[data-testid=messages] li')].map((li) => li.textContent);
const testid = (el, id) => el.querySelector(`[data-testid=${id}]`)?.textContent;

async function appScenario(bundle, name) {
  const { mount } = await import(bundle);
  const broker = new (R().InTabBroker)({ sysInterval: 0 });
  const connected = [];
  const gone = [];
  broker.on('clientConnected', (i) => connected.push(i.clientId));
  broker.on('clientDisconnected', (i) => gone.push(i));
  const el = document.createElement('div');
  document.body.append(el);
  const clientId = name + '-app';
  let unmount = null;
  const other = new (R().MqttClient)();
  try {
    unmount = mount(el, { target: () => broker.createClientPort(), topic: 'chat/room', clientId, maxMessages: 3 });
    await until(() => testid(el, 'status') === 'connected', `${name}: status "connected" (shown: ${testid(el, 'status')}, error: ${testid(el, 'error')})`, 10_000);
    await until(() => testid(el, 'suback') === '[1]', `${name}: SUBACK [1] shown (shown: ${testid(el, 'suback')})`);
    eq(connected, [clientId], 'the broker saw the app connect');

    // Another client publishes: the app's list shows it.
    const got = [];
    other.on('message', (topic, payload) => got.push(`${topic}: ${text(payload)}`));
    await other.connect(broker.createClientPort(), { clientId: 'other' });
    eq(await other.subscribe('chat/room', { qos: 1 }), [1], "the other client's SUBACK");
    eq(await other.publish('chat/room', 'hello from outside', { qos: 1 }), 0, 'PUBACK');
    await until(() => shown(el).includes('chat/room: hello from outside'), `${name}: the message in the list (shown: ${JSON.stringify(shown(el))})`);

    // The app's form publishes: the other client gets it, and the app
    // (subscribed to the same topic) lists it too.
    const form = el.querySelector('[data-testid=publish]');
    form.querySelector('input[name=payload]').value = 'typed in the app';
    form.requestSubmit();
    await until(() => got.includes('chat/room: typed in the app'), `${name}: the other client receiving the form's message (got: ${JSON.stringify(got)})`);
    await until(() => shown(el).includes('chat/room: typed in the app'), `${name}: the form's message in the list (shown: ${JSON.stringify(shown(el))})`);
    await until(() => testid(el, 'sent') === 'published, reason code 0', `${name}: the form's PUBACK shown (shown: ${testid(el, 'sent')})`);
    eq(form.querySelector('input[name=payload]').value, '', 'the form is cleared');

    // Only the last maxMessages (3) are shown, oldest first.
    for (const n of [1, 2, 3, 4]) await other.publish('chat/room', `n${n}`, { qos: 1 });
    await until(() => shown(el).at(-1) === 'chat/room: n4', `${name}: the last message in the list (shown: ${JSON.stringify(shown(el))})`);
    eq(shown(el), ['chat/room: n2', 'chat/room: n3', 'chat/room: n4'], 'the last 3 messages, oldest first');

    // Unmounting disconnects: the broker reports the app's client gone,
    // and it does not come back (no reconnection).
    unmount();
    unmount = null;
    eq(el.children.length, 0, 'the app is gone from the DOM');
    await until(() => gone.some((g) => g.clientId === clientId), `${name}: the broker seeing the app's client go (gone: ${JSON.stringify(gone)})`);
    const reason = gone.find((g) => g.clientId === clientId).reason;
    if (!/^ClientDisconnect/.test(reason)) throw new Error(`${name}: the app's client went without a DISCONNECT: ${reason}`);
    const before = connected.length;
    await new Promise((r) => setTimeout(r, 300));
    eq(connected.length, before, 'no reconnection after unmounting');
    eq(broker.stats().connections, 1, 'only the other client left connected');
    return { shown: 3, reason };
  } finally {
    if (unmount) unmount();
    if (other.connected) await other.disconnect();
    el.remove();
    broker.close();
  }
}

export const reactApp = () => appScenario('/wasm/examples/react/dist/app.js', 'react');
export const vueApp = () => appScenario('/wasm/examples/vue/dist/app.js', 'vue');
