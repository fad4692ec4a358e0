// MQTT.js in a real browser against a running ringmq over ws://: serves a
// page and MQTT.js's browser bundle (node_modules/mqtt/dist/mqtt.min.js) on
// 127.0.0.1:HTTP_PORT, starts headless Chromium and drives it through the
// DevTools protocol over a pipe (--remote-debugging-pipe: no extra npm
// package), and runs in the page: two clients (MQTT 5 and 3.1.1), a
// subscription, a QoS 0 and a QoS 1 publish, and a check of what arrives.
//
//   node browser_pubsub.mjs WS_URL HTTP_PORT [CHROMIUM]
//
// The broker's ws listener must allow the page's Origin
// (http://127.0.0.1:HTTP_PORT) if it has an allow-list. Prints the
// browser's user agent and OK, exit 0; any failure or a 30 s timeout exits
// 1 with the reason on stderr.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [wsUrl, httpPort, chromium = '/usr/bin/chromium'] = process.argv.slice(2);
if (!wsUrl || !httpPort) {
  console.error('usage: node browser_pubsub.mjs WS_URL HTTP_PORT [CHROMIUM]');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const bundle = readFileSync(join(here, 'node_modules/mqtt/dist/mqtt.min.js'));
const profile = mkdtempSync(join(tmpdir(), 'ringmq-chromium-'));
let browser;
let finishing = false;
const finish = async (code, message) => {
  if (finishing) return;
  finishing = true;
  if (message) (code === 0 ? console.log : console.error)(message);
  if (browser && browser.exitCode === null && browser.signalCode === null) {
    const exited = new Promise((resolve) => browser.once('exit', resolve));
    browser.kill('SIGKILL');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
  } catch (e) {
    console.error(`note: profile ${profile} left behind: ${e.message}`);
  }
  process.exit(code);
};
const fail = (why) => finish(1, `FAIL: ${why}`);
setTimeout(() => fail('timed out after 30 s'), 30_000).unref();

// What runs in the browser: MQTT.js's own browser build, global `mqtt`.
const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>ringmq browser test</title>
<script src="/mqtt.min.js"></script>
<script>
window.runTest = async (url) => {
  const connect = (clientId, protocolVersion) => new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { clientId, protocolVersion, reconnectPeriod: 0, connectTimeout: 5000 });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    c.once('close', () => reject(new Error(clientId + ': connection closed')));
  });
  const sub = await connect('browser-sub', 5);
  const pub = await connect('browser-pub', 4);
  const got = [];
  const done = new Promise((resolve) => sub.on('message', (topic, payload) => {
    got.push(topic + '=' + new TextDecoder().decode(payload));
    if (got.length === 2) resolve();
  }));
  const granted = await sub.subscribeAsync('browser/#', { qos: 1 });
  if (granted.length !== 1 || granted[0].qos !== 1) {
    throw new Error('SUBACK: ' + JSON.stringify(granted));
  }
  await pub.publishAsync('browser/a', 'hello from ' + navigator.userAgent.split(' ').find((p) => p.startsWith('HeadlessChrome')), { qos: 0 });
  await pub.publishAsync('browser/b', 'y'.repeat(30000), { qos: 1 });
  await done;
  await pub.endAsync();
  await sub.endAsync();
  return { userAgent: navigator.userAgent, got };
};
</script></head><body>ringmq</body></html>`;

const server = http.createServer((req, res) => {
  if (req.url === '/mqtt.min.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
  } else if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' }).end(page);
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(httpPort), '127.0.0.1', resolve);
});
server.unref();

// The DevTools protocol over fds 3 (to Chromium) and 4 (from Chromium):
// JSON messages, each ended by a NUL byte.
browser = spawn(
  chromium,
  ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--remote-debugging-pipe',
    `--user-data-dir=${profile}`, 'about:blank'],
  { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
);
let stderr = '';
browser.stderr.on('data', (d) => { stderr += d; });
browser.once('error', (e) => fail(`cannot start ${chromium}: ${e.message}`));
browser.once('exit', (code) => fail(`chromium exited (${code}): ${stderr.slice(-2000)}`));
const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];
let nextId = 1;
const waiting = new Map();
let pending = Buffer.alloc(0);
fromBrowser.on('data', (chunk) => {
  pending = Buffer.concat([pending, chunk]);
  let end;
  while ((end = pending.indexOf(0)) >= 0) {
    const message = JSON.parse(pending.subarray(0, end).toString('utf8'));
    pending = pending.subarray(end + 1);
    const w = message.id !== undefined && waiting.get(message.id);
    if (!w) continue;
    waiting.delete(message.id);
    if (message.error) w.reject(new Error(`${w.method}: ${JSON.stringify(message.error)}`));
    else w.resolve(message.result);
  }
});
const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
  const id = nextId++;
  waiting.set(id, { resolve, reject, method });
  toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
});
const evaluate = async (sessionId, expression) => {
  const r = await send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, sessionId);
  if (r.exceptionDetails) {
    const d = r.exceptionDetails;
    throw new Error((d.exception && d.exception.description) || d.text);
  }
  return r.result.value;
};

try {
  const { targetId } = await send('Target.createTarget', { url: `http://127.0.0.1:${httpPort}/` });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  // Wait for the page and its MQTT.js bundle.
  for (let i = 0; ; i++) {
    const ready = await evaluate(sessionId, "document.readyState === 'complete' && typeof window.runTest === 'function' && typeof mqtt");
    if (ready === 'object') break;
    if (i > 100) throw new Error(`page not ready: ${ready}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const { userAgent, got } = await evaluate(sessionId, `runTest(${JSON.stringify(wsUrl)})`);
  if (!/HeadlessChrome/.test(userAgent)) throw new Error(`not a browser: ${userAgent}`);
  const want = [`browser/a=hello from ${userAgent.split(' ').find((p) => p.startsWith('HeadlessChrome'))}`,
    `browser/b=${'y'.repeat(30000)}`];
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`received ${JSON.stringify(got.map((g) => g.slice(0, 60)))}`);
  }
  browser.removeAllListeners('exit');
  await finish(0, `${userAgent}\nOK`);
} catch (e) {
  fail(e && e.message ? e.message : String(e));
}
