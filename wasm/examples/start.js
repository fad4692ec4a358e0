// Starts an example app (react/ or vue/ dist/app.js's mount) in the page's
// #app from the query: ?url=ws://HOST:PORT/mqtt (required), &topic=
// (default chat/room), &clientId= (default: the broker assigns one).
export function start(mount) {
  const el = document.getElementById('app');
  const q = new URLSearchParams(location.search);
  const url = q.get('url');
  if (!url) {
    el.textContent = 'Add ?url=ws://HOST:PORT/mqtt (a broker with a WebSocket listener).';
    return;
  }
  mount(el, { target: url, topic: q.get('topic') || 'chat/room', clientId: q.get('clientId') || '' });
}
