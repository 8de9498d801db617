// bench.html: the benchmark in the browser, on WebGPU (SwiftShader here), with the test model's
// tiny architecture: every part is measured and shown, and the rows are the native bench's rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, websd, screenshot } from './harness.mjs';

test('bench.html measures every part on WebGPU and shows the same rows as websd bench', { timeout: 300_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const log = [];
    page.on('pageerror', (e) => log.push(e.message));
    await page.goto(new URL('bench.html', site.url).href);
    await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
    assert.match(await page.textContent('#bench-gpu'), /^GPU: .+ · shader-f16 (yes|no)$/);
    await page.selectOption('#bench-model', 'tiny');
    await page.fill('#bench-size', '32');
    await page.fill('#bench-runs', '2');
    await page.fill('#bench-warmup', '1');
    await page.check('input[name=part][value=image]');
    await page.fill('#bench-steps', '1');
    await page.click('#bench-run');
    await page.waitForSelector('body[data-bench="done"]', { timeout: 240_000 }).catch(async (e) => {
      throw new Error(`${e.message}\nstatus: ${await page.textContent('#bench-status')}\nerror: ${await page.textContent('#error')}\n${log.join('\n')}`);
    });
    const rows = await page.$$eval('#bench-results tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
    const names = rows.map((r) => r[0]);
    for (const row of rows) {
      assert.ok(Number(row[2]) > 0, `${row[0]}: median ${row[2]} ms`);
      assert.equal(row[5], 'yes', `${row[0]}: output not finite`);
    }
    const text = await page.textContent('#bench-text');
    assert.match(text, /^websd bench: model tiny-sd1 at 32×32, dtype f32, device .+, median of 2 runs after 1 warm-up\n/);
    assert.match(await page.textContent('#bench-status'), /^Done in [\d.]+ s/);
    await screenshot(page, 'bench');

    // The native benchmark of the same architecture lists the same parts in the same order.
    const native = websd('bench', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--device', 'flex', '--size', '32',
      '--runs', '1', '--warmup', '0', '--only', 'text,unet,vae,taesd,image', '--steps', '1');
    const nativeNames = native.split('\n').slice(2).filter((l) => l && !l.startsWith('peak')).map((l) => l.slice(0, 34).trim());
    assert.deepEqual(names, nativeNames);
    assert.deepEqual(names, ['text encoder', 'UNet step, batch 2 (CFG)', 'UNet step, batch 1', 'VAE decode', 'TAESD decode', 'txt2img image, 1 Euler steps, CFG']);
  } finally {
    await browser.close();
    site.close();
  }
});
