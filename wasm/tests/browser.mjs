// Runs the wasm package's scenarios (wasm/tests/scenarios.js) in headless
// Chromium (Debian's /usr/bin/chromium, driven by puppeteer-core from
// tests/node), against the in-tab broker and against the real ringmq
// binary over ws://, and the React and Vue examples (wasm/tests/frameworks.js).
// Started by wasm/tests/run.sh after wasm/build.sh and wasm/examples/build.sh.
//
//   node wasm/tests/browser.mjs [--bench [--runs N]]
//   node wasm/tests/browser.mjs --profile KIND SUBSCRIBERS
//     (one fan-out of wasm/tests/bench.js, KIND wasm or mqttjs, under
//     Chrome's CPU profiler; prints where the time went, by function and
//     by category: wasm code, the JS glue, the rest)
//
// Environment: RINGMQ_BIN (default $CARGO_TARGET_DIR/debug/ringmq or
// target/debug/ringmq), CHROMIUM (default /usr/bin/chromium).
// Exit status 0 only if every scenario passed.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFile, mkdtemp, writeFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, normalize, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { bridgeSuite } from './bridge.mjs';

const root = normalize(join(dirname(fileURLToPath(import.meta.url)), '../..'));
const require = createRequire(join(root, 'tests/node/package.json'));
const puppeteer = require('puppeteer-core');
const profileAt = process.argv.indexOf('--profile');
const profile = profileAt > 0 ? { kind: process.argv[profileAt + 1] || 'wasm', subs: Number(process.argv[profileAt + 2] || 16) } : null;
const bench = process.argv.includes('--bench') || profile !== null;
const runsAt = process.argv.indexOf('--runs');
const benchRuns = runsAt > 0 ? Number(process.argv[runsAt + 1]) : 5;
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
const targetDir = process.env.CARGO_TARGET_DIR || join(root, 'target');
const ringmqBin = process.env.RINGMQ_BIN || join(targetDir, 'debug/ringmq');
const SCENARIO_TIMEOUT_MS = 60_000;

// Only these trees are served (the page, the package, MQTT.js's bundle).
const SERVED = ['/wasm/tests/', '/wasm/pkg/', '/wasm/examples/', '/tests/node/node_modules/mqtt/dist/'];
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };

function serve() {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!SERVED.some((p) => path.startsWith(p))) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(root, path));
      const headers = { 'content-type': TYPES[extname(path)] || 'application/octet-stream', 'cache-control': 'no-store' };
      if (bench) {
        // Cross-origin isolation: performance.now() at 5 us, not 100 us.
        headers['cross-origin-opener-policy'] = 'same-origin';
        headers['cross-origin-embedder-policy'] = 'require-corp';
      }
      res.writeHead(200, headers);
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Every ringmq started, killed when this process exits however it exits.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

// Starts ringmq with one ws listener on `port` (0: any); resolves with
// { child, port } once its "listening addresses=" line appears.
async function startRingmq(dir, port) {
  const config = join(dir, 'ringmq.toml');
  await writeFile(config, `[[listener]]\nbind = "127.0.0.1:${port}"\nprotocol = "ws"\n`);
  const child = spawn(ringmqBin, ['serve', '--config', config, '--shards', '2'], {
    env: { ...process.env, RUST_LOG: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('ringmq did not start:\n' + log));
    }, 15_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ringmq exited (${code}):\n${log}`));
    });
    child.stderr.on('data', (d) => {
      log += d;
      const m = /addresses=?"?([0-9.]+):(\d+)/.exec(log);
      if (m && /listening/.test(log)) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({ child, port: Number(m[2]) });
      }
    });
  });
}

// Starts ringmq again on `port` (the client's URL): a few tries, 300 ms
// apart, should the port not be free yet; 20 s at most in all.
async function restartOn(dir, port) {
  const end = Date.now() + 20_000;
  for (;;) {
    try {
      return await startRingmq(dir, port);
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

// Stops ringmq: SIGTERM, then SIGKILL if it is still there after 2 s
// (a graceful stop waits for its clients; the test wants it gone).
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
}

async function open(browser, base) {
  const dbg = (m) => process.env.DEBUG && console.error('open: ' + m);
  dbg('newPage');
  const page = await browser.newPage();
  dbg('goto');
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push('[pageerror] ' + e.message));
  await page.goto(base + '/wasm/tests/page.html');
  dbg('loaded');
  await page.waitForFunction('window.ready || window.loadError', { timeout: 20_000, polling: 100 });
  const err = await page.evaluate('window.loadError');
  if (err) throw new Error('page did not load: ' + err);
  page.logs = logs;
  return page;
}

const results = [];

// wasm/examples/FW/index.html?url= (the bundle as a user opens it) on
// ringmq: it connects and subscribes, a message an MQTT.js client
// publishes on ringmq shows in the rendered list, and what is typed into
// the page's form and submitted (puppeteer's keyboard and click) reaches
// the MQTT.js client and the list. Unmounting is checked in-tab
// (wasm/tests/frameworks.js), where the broker reports the client gone.
async function examplePageOnRingmq(browser, base, fw, url) {
  const mqtt = require('mqtt');
  const topic = `frameworks/${fw}/${process.pid}`;
  const other = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `${fw}-other`, reconnectPeriod: 0, connectTimeout: 5000 });
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push('[pageerror] ' + e.message));
  try {
    const got = [];
    other.on('message', (t, p) => got.push(`${t}: ${p}`));
    await other.subscribeAsync(topic, { qos: 1 });
    await page.goto(`${base}/wasm/examples/${fw}/index.html?url=${encodeURIComponent(url)}&topic=${encodeURIComponent(topic)}&clientId=${fw}-page`);
    const sel = (id) => `[data-testid=${id}]`;
    const textOf = (id) => page.$eval(sel(id), (e) => e.textContent).catch(() => null);
    const wait = async (pred, what, ms = 10_000) => {
      const end = Date.now() + ms;
      while (!(await pred())) {
        if (Date.now() > end) throw new Error(`${fw}: timed out waiting for ${what}\n${logs.slice(-10).join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await wait(async () => (await textOf('status')) === 'connected' && (await textOf('suback')) === '[1]', 'status connected and SUBACK [1]');
    const listed = () => page.$$eval(`${sel('messages')} li`, (lis) => lis.map((li) => li.textContent));
    await other.publishAsync(topic, 'from MQTT.js', { qos: 1 });
    await wait(async () => (await listed()).includes(`${topic}: from MQTT.js`), "MQTT.js's message in the list");
    await page.type(`${sel('publish')} input[name=payload]`, 'typed on the page');
    await page.click(`${sel('publish')} button`);
    await wait(async () => got.includes(`${topic}: typed on the page`), "the form's message at the MQTT.js client");
    await wait(async () => (await listed()).includes(`${topic}: typed on the page`), "the form's message in the list");
    return { listed: (await listed()).length };
  } finally {
    await page.close();
    await other.endAsync();
  }
}

// One fan-out under the CPU profiler (CDP Profiler, 100 us sampling):
// self time by function (top 25) and by category.
async function profileFanout(page, { kind, subs }) {
  const cdp = await page.createCDPSession();
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
  await cdp.send('Profiler.start');
  const out = await page.evaluate((k, n) => window.bench.fanout(k, n), kind, subs);
  const { profile: prof } = await cdp.send('Profiler.stop');
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = prof.timeDeltas;
  prof.samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}${f.functionName ? '' : ':' + (f.lineNumber + 1)}`;
    self.set(name, (self.get(name) || 0) + (deltas[i] || 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const category = (name) => (/wasm-function|\.wasm|^\$/.test(name) ? 'wasm code'
    : /ringmq_wasm\.js/.test(name) ? 'JS glue (ringmq_wasm.js)'
      : /mqtt\.min\.js/.test(name) ? 'MQTT.js'
        : /^\((idle|program|garbage collector)\)/.test(name) ? name.split(' ')[0] : 'other JS');
  const cats = new Map();
  for (const [name, us] of self) cats.set(category(name), (cats.get(category(name)) || 0) + us);
  console.log(JSON.stringify(out));
  console.log('by category (share of samples):');
  for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1])) console.log(`  ${(100 * us / total).toFixed(1).padStart(5)}%  ${c}`);
  console.log('top functions by self time:');
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${(100 * us / total).toFixed(1).padStart(5)}%  ${name}`);
  }
}

// ONLY=name1,name2 runs just those scenarios (debugging).
const only = process.env.ONLY ? process.env.ONLY.split(',') : null;

async function run(page, name, arg = {}) {
  if (only && !only.includes(name)) return null;
  const t0 = Date.now();
  try {
    const out = await Promise.race([
      page.evaluate((n, a) => window.scenarios[n](a), name, arg),
      new Promise((_, rej) => setTimeout(() => rej(new Error('timed out')), SCENARIO_TIMEOUT_MS)),
    ]);
    results.push([name, true]);
    console.log(`ok   ${name} (${Date.now() - t0} ms) ${JSON.stringify(out)}`);
    return out;
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e.message}\n${page.logs.slice(-20).join('\n')}`);
    return null;
  }
}

// Runs scenario `name` in `page`; throws (with the page's last logs) when
// it fails or takes longer than SCENARIO_TIMEOUT_MS.
async function call(page, name, arg = {}) {
  let timer;
  try {
    return await Promise.race([
      page.evaluate((n, a) => window.scenarios[n](a), name, arg),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`${name} timed out`)), SCENARIO_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    throw new Error(`${name}: ${e.message}\n${page.logs.slice(-20).join('\n')}`);
  } finally {
    clearTimeout(timer);
  }
}

// Records test `name` run by node-side `fn`; its result, or null if it failed.
async function check(name, fn) {
  if (only && !only.includes(name)) return null;
  const t0 = Date.now();
  try {
    const out = await fn();
    results.push([name, true]);
    console.log(`ok   ${name} (${Date.now() - t0} ms) ${JSON.stringify(out)}`);
    return out ?? true;
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e.message}`);
    return null;
  }
}

async function main() {
  for (const [what, path] of [['chromium', chromium], ['ringmq binary', ringmqBin], ['wasm/pkg (run wasm/build.sh)', join(root, 'wasm/pkg/ringmq_wasm.js')],
    ['the React example bundle (run wasm/examples/build.sh)', join(root, 'wasm/examples/react/dist/app.js')],
    ['the Vue example bundle (run wasm/examples/build.sh)', join(root, 'wasm/examples/vue/dist/app.js')]]) {
    if (!existsSync(path)) throw new Error(`${what} missing: ${path}`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'ringmq-wasm-'));
  const step = (m) => process.env.DEBUG && console.error('step: ' + m);
  step('server');
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  step('ringmq');
  let ringmq = await startRingmq(dir, 0);
  step('chromium');
  const url = `ws://127.0.0.1:${ringmq.port}/mqtt`;
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // A benchmark's evaluate runs for minutes (CDP's default bound: 180 s).
    protocolTimeout: bench ? 900_000 : 180_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--user-data-dir=${join(dir, 'chromium')}`],
  });
  try {
    step('page');
    const page = await open(browser, base);
    step('scenarios');
    if (profile) {
      page.setDefaultTimeout(600_000);
      await profileFanout(page, profile);
      return;
    }
    if (bench) {
      // The benchmark's own bound: 10 minutes (run.sh does not run it).
      page.setDefaultTimeout(600_000);
      const out = await page.evaluate((runs) => window.bench.all({ runs }), benchRuns);
      console.log(JSON.stringify(out, null, 2));
      console.log(`chromium ${await browser.version()}, ${benchRuns} runs`);
      return;
    }
    for (const name of ['inTabQos', 'inTabRetainWillEvents', 'inTabSessionExpiry', 'inTabShared', 'inTabAuthAclRequest', 'inTabReconnect', 'inTabPortReconnect', 'inTabExactlyOnce', 'workerClient', 'mqttjsInTab', 'reactApp', 'vueApp']) {
      await run(page, name);
    }
    await run(page, 'wsRingmq', { url });
    await run(page, 'mqttjsInterop', { url });
    await run(page, 'wsExactlyOnce', { url });
    // The examples' own pages (index.html?url=) on ringmq over ws://.
    for (const fw of ['react', 'vue']) {
      await check(`${fw}PageWs`, () => examplePageOnRingmq(browser, base, fw, url));
    }
    // Two pages of one origin over a BroadcastChannel.
    const guest = await open(browser, base);
    const name = 'ringmq-test-' + process.pid;
    await run(page, 'channelHost', { name });
    await run(guest, 'channelGuest', { name });
    await run(page, 'channelHostCheck');
    await run(guest, 'channelGuestCheck');
    // The in-tab broker bridged to ringmq (wasm/tests/bridge.mjs), which
    // is restarted on the same port in the middle.
    const bridgePage = await open(browser, base);
    await bridgeSuite({
      page: (n, a) => call(bridgePage, n, a),
      check,
      url,
      stop: () => stop(ringmq.child),
      start: async () => {
        ringmq = await restartOn(dir, ringmq.port);
      },
    });
    // ringmq goes away and comes back on the same port (a new process).
    if (await run(page, 'wsReconnectStart', { url })) {
      await stop(ringmq.child);
      await run(page, 'wsReconnectLost');
      ringmq = await restartOn(dir, ringmq.port);
      await run(page, 'wsReconnectBack', { url });
    }
  } finally {
    step('closing');
    // A browser that does not close in 5 s is killed.
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
    browser.process()?.kill('SIGKILL');
    step('stopping ringmq');
    await stop(ringmq.child);
    step('stopped');
    server.closeAllConnections();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
  const failed = results.filter(([, ok]) => !ok).map(([n]) => n);
  console.log(`${results.length - failed.length} passed, ${failed.length} failed${failed.length ? ': ' + failed.join(', ') : ''}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
