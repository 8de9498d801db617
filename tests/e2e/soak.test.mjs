// An afternoon of use in one page: WEBSD_SOAK_RUNS (50) generations in a row with the test model,
// mixed sizes, batch 1 and 2, txt2img and img2img, every fifth cancelled after its first step.
// After each, with garbage collected, it samples the page's JS heap (DevTools protocol
// Runtime.getHeapUsage), the worker's wasm memory and the GPU memory burn's allocator reserves
// (window.websdMemory). It fails if, after the first 5 runs, any of them grows past its bound:
// 10% over the largest of the first 5 samples (the heap also gets 16 kB per gallery image added
// since, as the gallery's DOM legitimately holds each image's caption and parameters).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { ROOT, startSite, launchBrowser, websd } from './harness.mjs';
import { openGpuPage, waitForMessage } from './synthetic.mjs';

const RUNS = Number(process.env.WEBSD_SOAK_RUNS ?? 50);
const WARMUP = 5;
const GROWTH = 1.10;
const HEAP_PER_IMAGE = 16 * 1024;
const SIZES = [[64, 64], [64, 80], [80, 64]];

test(`${RUNS} generations in one page keep memory bounded`, { timeout: 120_000 + RUNS * 60_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-soak-'));
  try {
    const init = path.join(dir, 'init.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a start image', '--steps', '1',
      '--width', '64', '--height', '64', '--seed', '5', '--cpu', '--out', init);
    const { context, page } = await openGpuPage(browser, site.url);
    const cdp = await context.newCDPSession(page);
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);
    await page.fill('#prompt', 'a lighthouse at dusk');
    await page.fill('#guidance', '1'); // no classifier-free guidance: half the work per step
    await page.selectOption('#scheduler', 'euler');

    const count = (type) => page.evaluate((t) => window.__msgs.filter((m) => m.type === t).length, type);
    const samples = [];
    let images = 0;
    const started = Date.now();
    for (let i = 0; i < RUNS; i++) {
      const [width, height] = SIZES[i % SIZES.length];
      const batch = i % 4 === 3 ? 2 : 1;
      const img2img = i % 2 === 1;
      const cancel = i % 5 === 4;
      await page.selectOption('#size-preset', '');
      await page.fill('#width', String(width));
      await page.fill('#height', String(height));
      await page.fill('#batch', String(batch));
      // img2img at strength 0.75 needs 2 steps to run one.
      await page.fill('#steps', cancel ? '50' : img2img ? '2' : '1');
      await page.fill('#seed', String(1000 + i));
      if (img2img) {
        await page.setInputFiles('#init-image-file', init);
        await page.waitForSelector('#init-image-shown:not([hidden])');
      } else if (await page.isVisible('#init-image-clear')) {
        await page.click('#init-image-clear');
      }
      const [steps, finished, cancelled] = [await count('step'), await count('images'), await count('cancelled')];
      const runStart = Date.now();
      await page.click('#generate');
      if (cancel) {
        await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'step').length > n, steps, { timeout: 120_000 });
        await page.click('#cancel');
        await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'cancelled').length > n, cancelled, { timeout: 120_000 });
      } else {
        await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'images').length > n, finished, { timeout: 120_000 });
        images += batch;
        await page.waitForSelector(`body[data-gallery="${images}"]`, { timeout: 30_000 });
      }
      assert.equal(await page.isVisible('#error'), false, `run ${i}: ${await page.textContent('#error')}`);

      await cdp.send('HeapProfiler.collectGarbage');
      const { usedSize } = await cdp.send('Runtime.getHeapUsage');
      const memory = await page.evaluate(() => window.websdMemory());
      assert.ok(memory.gpu, 'burn reports no GPU memory pool');
      samples.push({ run: i, seconds: (Date.now() - runStart) / 1000, images, heap: usedSize, wasm: memory.wasm_bytes, gpu: memory.gpu.reserved });
    }
    const mb = (b) => (b / 1e6).toFixed(2);
    const table = samples.map((s) => `${String(s.run).padStart(3)} ${s.seconds.toFixed(1).padStart(5)} s ${String(s.images).padStart(4)} images  heap ${mb(s.heap)} MB  wasm ${mb(s.wasm)} MB  GPU reserved ${mb(s.gpu)} MB`);
    console.log(`${RUNS} runs in ${((Date.now() - started) / 1000).toFixed(0)} s\n${table.join('\n')}`);

    const first = samples.slice(0, WARMUP);
    const bound = (key) => Math.max(...first.map((s) => s[key])) * GROWTH;
    const baseImages = first[first.length - 1].images;
    for (const s of samples.slice(WARMUP)) {
      const heapBound = bound('heap') + HEAP_PER_IMAGE * (s.images - baseImages);
      assert.ok(s.heap <= heapBound, `run ${s.run}: the page's JS heap grew to ${mb(s.heap)} MB (bound ${mb(heapBound)} MB)\n${table.join('\n')}`);
      assert.ok(s.wasm <= bound('wasm'), `run ${s.run}: the wasm memory grew to ${mb(s.wasm)} MB (bound ${mb(bound('wasm'))} MB)\n${table.join('\n')}`);
      assert.ok(s.gpu <= bound('gpu'), `run ${s.run}: burn's GPU memory grew to ${mb(s.gpu)} MB (bound ${mb(bound('gpu'))} MB)\n${table.join('\n')}`);
    }
  } finally {
    await browser.close();
    site.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
