// After one visit the service worker has the app shell (page, scripts, the wasm module, the
// catalog): with the network off and the server gone, a reload still opens WebGPU and runs the
// self-test. Shards are not in the service worker's cache (they live in IndexedDB).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSite, launchBrowser } from './harness.mjs';

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
    const cached = await page.evaluate(async () => (await (await caches.open('websd-shell-v1')).keys()).map((r) => new URL(r.url).pathname));
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
