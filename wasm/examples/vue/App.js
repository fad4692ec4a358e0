// The Vue 3 example: subscribes to one topic, shows the last messages
// received, and publishes what the form sends (render function, so no
// template compiler or .vue loader is needed). Built by
// wasm/examples/build.sh into wasm/examples/vue/dist/app.js, which exports
// mount(); index.html mounts it, wasm/tests/frameworks.js tests it.

import { createApp, defineComponent, h, ref } from 'vue';
import { useMqtt } from './useMqtt.js';

export const App = defineComponent({
  props: {
    target: { required: true },
    topic: { type: String, default: 'chat/room' },
    clientId: { type: String, default: '' },
    maxMessages: { type: Number, default: 20 },
  },
  setup(props) {
    const { status, error, messages, publish, subscribe } = useMqtt(props.target, {
      clientId: props.clientId,
      maxMessages: props.maxMessages,
      keepAlive: 30,
    });
    const suback = ref(null);
    const sent = ref(null);
    subscribe(props.topic, { qos: 1 }).then(
      (codes) => (suback.value = codes),
      (e) => (suback.value = 'failed: ' + e.message),
    );
    const onSubmit = (e) => {
      e.preventDefault();
      const form = e.currentTarget;
      const payload = String(new FormData(form).get('payload') || '');
      publish(props.topic, payload, { qos: 1 }).then(
        (code) => (sent.value = `published, reason code ${code}`),
        (err) => (sent.value = 'publish failed: ' + err.message),
      );
      form.reset();
    };
    return () =>
      h('section', { class: 'mqtt' }, [
        h('p', ['Status: ', h('b', { 'data-testid': 'status' }, status.value), error.value ? h('span', { 'data-testid': 'error' }, ` (${error.value})`) : null]),
        h('p', ['Topic ', h('code', props.topic), ', SUBACK: ', h('span', { 'data-testid': 'suback' }, suback.value === null ? '...' : JSON.stringify(suback.value))]),
        h('ul', { 'data-testid': 'messages' }, messages.value.map((m) => h('li', { key: m.id }, [h('code', m.topic), ': ' + m.payload]))),
        h('form', { 'data-testid': 'publish', onSubmit }, [
          h('input', { name: 'payload', placeholder: 'message' }),
          h('button', { type: 'submit', disabled: status.value !== 'connected' }, 'Publish'),
        ]),
        sent.value ? h('p', { 'data-testid': 'sent' }, sent.value) : null,
      ]);
  },
});

// Mounts App into `el`; returns the function that unmounts it (and so
// disconnects).
export function mount(el, props) {
  const app = createApp(App, props);
  app.mount(el);
  return () => app.unmount();
}
