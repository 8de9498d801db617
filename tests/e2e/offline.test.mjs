// After one visit the service worker has the app shell (page, scripts, the wasm module, the
// catalog): with the network off and the server gone, a reload still opens WebGPU and runs the
// self-test. Shards are not in the service worker's cache (they live in IndexedDB).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSite, launchBrowser, ROOT } from './harness.mjs';

test('after one visit the page opens offline: shell, wasm and catalog from the service worker', async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const log = [];
    page.on('pageerror', (e) => log.push(e.message));
    await page.goto(site.url);
    await page.waitForSelector('body[data-offline="ready"]', { timeout: 60_000 });
    await page.waitForSelector('body[data-probe="done"]', { timeout: 60_000 });
    const build = fs.readFileSync(path.join(ROOT, 'www/pkg/build.js'), 'utf8').match(/WEBSD_BUILD = '(\w+)'/)[1];
    assert.deepEqual(await page.evaluate(() => caches.keys()), [`websd-shell-${build}`], 'one cache, named after this build');
    const cached = await page.evaluate(async (name) => (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname), `websd-shell-${build}`);
    for (const path of ['/index.html', '/www/app.js', '/www/worker.js', '/www/store.js', '/www/pkg/websd_bg.wasm', '/www/models.json', '/manifest.webmanifest']) {
      assert.ok(cached.includes(path), `${path} is not cached: ${cached.join(', ')}`);
    }
    assert.ok(!cached.some((p) => p.endsWith('.bin')), 'a shard is in the service worker cache');

    // Offline for real: the browser's network emulation, and the server closed.
    site.close();
    await context.setOffline(true);
    site.requests.length = 0;
    await page.reload();
    await page.waitForSelector('body[data-probe="done"]', { timeout: 60_000 }).catch((e) => {
      throw new Error(`offline reload did not run the self-test: ${e.message}\n${log.join('\n')}`);
    });
    assert.match(await page.textContent('h1'), /websd/);
    assert.match(await page.textContent('#gpu-status'), /WebGPU is ready/);
    assert.ok(await page.$('#model-select option[value="tiny-sd1"]'), 'the catalog did not load offline');
    assert.deepEqual(site.requests, [], 'requests reached the (closed) server');
  } finally {
    await browser.close();
  }
});

test('a new build replaces the cached shell: new cache filled, the old one deleted', async () => {
  // Two builds, told apart only by www/pkg/build.js (as build.sh writes it): the server answers
  // build "aaaa" first, then "bbbb".
  let build = 'aaaa';
  const site = await startSite({
    intercept: (req, res, pathname) => {
      if (pathname !== '/www/pkg/build.js') return false;
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
      res.end(`self.WEBSD_BUILD = '${build}';\n`);
      return true;
    },
  });
  const browser = await launchBrowser();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(site.url);
    await page.waitForSelector('body[data-offline="ready"]', { timeout: 60_000 });
    assert.deepEqual(await page.evaluate(() => caches.keys()), ['websd-shell-aaaa']);

    build = 'bbbb';
    // What a reload does when the browser checks for an update; awaited here so the test knows when.
    await page.evaluate(async () => {
      const registration = await navigator.serviceWorker.getRegistration();
      const activated = new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
      await registration.update();
      await activated;
    });
    await page.waitForFunction(async () => {
      const keys = await caches.keys();
      return keys.length === 1 && keys[0] === 'websd-shell-bbbb';
    }, null, { timeout: 30_000 });
    const cached = await page.evaluate(async () => (await (await caches.open('websd-shell-bbbb')).keys()).map((r) => new URL(r.url).pathname));
    for (const p of ['/index.html', '/www/app.js', '/www/pkg/websd_bg.wasm']) assert.ok(cached.includes(p), `${p} is not in the new cache`);
  } finally {
    await browser.close();
    site.close();
  }
});

/** The service worker's SHELL list, as site paths ('./' is the page itself). */
function shellList() {
  const source = fs.readFileSync(path.join(ROOT, 'sw.js'), 'utf8');
  const list = source.match(/const SHELL = \[([^\]]*)\]/)?.[1];
  assert.ok(list, 'sw.js has no SHELL list');
  return [...list.matchAll(/'([^']+)'/g)].map(([, p]) => (p === './' ? '/' : `/${p}`));
}

test("the service worker's shell list holds every file the page and bench.html load, and only files that exist", async () => {
  const shell = shellList();
  for (const p of shell.filter((p) => p !== '/')) assert.ok(fs.existsSync(path.join(ROOT, p)), `sw.js caches ${p}, which does not exist`);
  // Every script, style and icon of the site (www/*.*): a new module must be cached to work offline.
  for (const f of fs.readdirSync(path.join(ROOT, 'www')).filter((f) => /\.(js|css|svg|json)$/.test(f))) {
    assert.ok(shell.includes(`/www/${f}`), `www/${f} is not in sw.js's SHELL list`);
  }

  // What the pages really load, with no service worker in the way (its own fetches are not the page's).
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext({ serviceWorkers: 'block' });
    const page = await context.newPage();
    await page.goto(site.url);
    await page.waitForSelector('body[data-probe="done"]', { timeout: 60_000 });
    await page.goto(new URL('bench.html', site.url).href);
    await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
    const loaded = [...new Set(site.requests)].filter((p) => p === '/' || fs.existsSync(path.join(ROOT, p)));
    // Model files are the store's (IndexedDB) or bench.html's real-weights check, fetched on demand.
    const needed = loaded.filter((p) => !p.startsWith('/www/models/'));
    for (const p of ['/', '/www/app.js', '/www/worker.js', '/www/bench.js', '/www/pkg/websd_bg.wasm']) assert.ok(needed.includes(p), `${p} was not loaded: ${needed.join(', ')}`);
    const uncached = needed.filter((p) => !shell.includes(p) && p !== '/www/pkg/build.js');
    assert.deepEqual(uncached, [], 'files the pages load that sw.js does not cache (they would be missing offline)');
  } finally {
    await browser.close();
    site.close();
  }
});
