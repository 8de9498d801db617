// The whole path in the page: download the test model (tiny SD 1.x, random weights) from the
// catalog, load it, generate a 64×64 image with previews, keep it in the gallery as a PNG with its
// parameters, compare it with the native CLI's image, cancel a second run, then generate again
// offline with the same seed. Runs once the test model and the wasm's load_model/generate
// exist (the lead adds both); until then it is skipped with the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { ROOT, startSite, launchBrowser, websd, screenshot, pixelDiff } from './harness.mjs';
import { openGpuPage, waitForMessage, messages } from './synthetic.mjs';

function missing() {
  if (!fs.existsSync(path.join(ROOT, 'www/models/tiny-sd1/manifest.json'))) return 'www/models/tiny-sd1/manifest.json is not made yet';
  const glue = fs.readFileSync(path.join(ROOT, 'www/pkg/websd.js'), 'utf8');
  for (const fn of ['load_model', 'generate']) {
    if (!new RegExp(`export (async )?function ${fn}\\b`).test(glue)) return `the wasm module has no ${fn} yet`;
  }
  return null;
}

test('downloads the test model, generates an image into the gallery, and cancels', { timeout: 300_000 }, async (t) => {
  const reason = missing();
  if (reason) { t.skip(reason); return; }
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { context, page, requests } = await openGpuPage(browser, site.url);

    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);

    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '2');
    await page.fill('#prompt', 'a lighthouse');
    await page.fill('#seed', '42');
    await page.check('#seed-lock');
    await page.check('#preview');
    await page.click('#generate');
    await waitForMessage(page, 'images', undefined, 240_000);
    assert.ok((await messages(page, 'loaded')).length === 1);
    const steps = await messages(page, 'step');
    assert.ok(steps.length >= 2, `${steps.length} step messages`);
    await page.waitForSelector('body[data-gallery="1"]');
    const item = page.locator('.gallery-item');
    assert.match(await item.locator('.caption').textContent(), /^64×64 · seed 42/);
    assert.match(await item.locator('img').getAttribute('title'), /Seed: 42/);
    const [download] = await Promise.all([page.waitForEvent('download'), item.locator('a').click()]);
    const png = fs.readFileSync(await download.path());
    assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    assert.ok(png.includes('parameters'), 'the PNG has no parameters chunk');
    assert.match(await page.textContent('#elapsed'), /1 image in .* per image/);
    assert.equal(await page.textContent('#compute'), 'tiny-sd1 runs in f32 on this GPU (it has no shader-f16: slower, twice the memory).');
    await screenshot(page, 'generated');

    // The same model, settings and seed natively (burn's CPU backend) give the same picture: the
    // browser ran WebGPU (SwiftShader) in f32, so allow a level of rounding here and there.
    const text = png.toString('latin1');
    const settings = text.match(/Steps: (\d+), Sampler: (\w+), CFG scale: ([\d.]+), Seed: (\d+), Size: (\d+)x(\d+)/);
    assert.ok(settings, 'the PNG states its settings');
    const [, nSteps, sampler, cfg, seed, width, height] = settings;
    const nativePath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'websd-')), 'native.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a lighthouse', '--steps', nSteps,
      '--scheduler', sampler, '--guidance', cfg, '--seed', seed, '--width', width, '--height', height, '--cpu', '--out', nativePath);
    const native = fs.readFileSync(nativePath);
    assert.ok(native.toString('latin1').includes(settings[0]), 'the native PNG records the same settings');
    const diff = await pixelDiff(page, png, native);
    assert.ok(diff.length, 'same size');
    assert.ok(diff.max <= 2 && diff.off <= diff.total / 20, `browser vs native pixels: max difference ${diff.max}, ${diff.off} of ${diff.total} values differ`);

    // A second, longer run is cancelled after its first step.
    await page.fill('#steps', '50');
    await page.click('#generate');
    await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'step').length > n, steps.length, { timeout: 120_000 });
    await page.click('#cancel');
    const cancelled = await waitForMessage(page, 'cancelled', undefined, 120_000);
    assert.equal(cancelled.phase, 'generate');
    assert.match(await page.textContent('#phase'), /Cancelled/);
    assert.equal(await page.getAttribute('body', 'data-gallery'), '1');

    // Offline, with the server gone: the page, the stored model and generation still work, and
    // the same seed and settings give the same image, byte for byte.
    await page.waitForSelector('body[data-offline="ready"]', { timeout: 60_000 });
    site.close();
    await context.setOffline(true);
    await page.reload();
    await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '2');
    await page.fill('#prompt', 'a lighthouse');
    await page.fill('#seed', '42');
    await page.check('#seed-lock');
    await page.click('#generate');
    await waitForMessage(page, 'images', undefined, 240_000);
    await page.waitForSelector('body[data-gallery="2"]');
    const pngs = [];
    for (const i of [0, 1]) {
      const [d] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(i).locator('a').click()]);
      pngs.push(fs.readFileSync(await d.path()));
    }
    assert.ok(pngs[0].equals(pngs[1]), 'the offline run with the same seed made a different image');
    assert.ok(pngs[0].equals(png), 'the offline image differs from the first run');

    // Privacy: through the whole session (load, download, generate, gallery, cancel, reload
    // offline) every request went to the page's own origin (the test model is served from it),
    // or stayed in the browser (blob:, data:). The model's shards are among them, so requests
    // from the worker are seen too.
    const origin = new URL(site.url).origin;
    const elsewhere = requests.filter((u) => !u.startsWith(`${origin}/`) && !/^(blob|data):/.test(u));
    assert.deepEqual(elsewhere, [], 'requests to another host');
    assert.ok(requests.some((u) => /\/www\/models\/tiny-sd1\/[0-9a-f]{64}\.bin/.test(u)), `no shard request seen among ${requests.length}`);
  } finally {
    await browser.close();
    site.close();
  }
});

test('the page answers within 100 ms while the worker generates; a lost GPU device is reported, the worker restarts and Generate works again', { timeout: 400_000 }, async (t) => {
  const reason = missing();
  if (reason) { t.skip(reason); return; }
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { page } = await openGpuPage(browser, site.url);
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);
    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '2');
    await page.fill('#prompt', 'a lighthouse');
    await page.fill('#seed', '7');
    await page.check('#seed-lock');

    // Responsiveness: while the worker runs the UNet and the VAE, the main thread is probed every
    // 50 ms with a zero-delay task; each probe's wait is how long the page would take to react.
    await page.click('#generate');
    await page.waitForFunction(() => window.__msgs.some((m) => m.type === 'loaded'), null, { timeout: 120_000 });
    const waits = await page.evaluate(async () => {
      const waits = [];
      while (!window.__msgs.some((m) => m.type === 'images' || m.type === 'error')) {
        const start = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 0));
        waits.push(performance.now() - start);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return waits;
    });
    await waitForMessage(page, 'images', undefined, 240_000);
    waits.sort((a, b) => a - b);
    const quick = waits.filter((w) => w <= 100).length;
    t.diagnostic(`main thread during generation: ${waits.length} probes, median ${waits[waits.length >> 1].toFixed(1)} ms, slowest ${waits.at(-1).toFixed(1)} ms`);
    assert.ok(waits.length >= 20, `only ${waits.length} probes: the generation was too short to judge`);
    // The machine has 2 cores and SwiftShader keeps them busy, so the OS may delay a probe now and
    // then; a page blocked by the work would miss every probe for seconds.
    assert.ok(quick >= 0.95 * waits.length, `${waits.length - quick} of ${waits.length} probes waited over 100 ms (slowest ${waits.at(-1).toFixed(0)} ms)`);
    assert.ok(waits.at(-1) < 1000, `the page froze for ${waits.at(-1).toFixed(0)} ms`);
    const [first] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const firstPng = fs.readFileSync(await first.path());

    // The GPU device is destroyed during the next generation (as a driver reset would): the page
    // says so in words, starts a new worker that opens the GPU again, and the retry works.
    const gpuMessages = (await messages(page, 'gpu')).length;
    await page.fill('#steps', '3');
    await page.check('#preview'); // each step's preview is read back: the loss shows within a step
    await page.click('#generate');
    await page.waitForFunction(() => window.__msgs.filter((m) => m.type === 'step').length >= 3, null, { timeout: 120_000 });
    await page.evaluate(() => window.websdDestroyGpu());
    const crash = await waitForMessage(page, 'crashed', undefined, 120_000);
    t.diagnostic(`after the device was destroyed the worker reported: ${crash.message}`);
    await page.waitForSelector('#error:not([hidden])');
    assert.match(await page.textContent('#error'), /^The GPU stopped working: GPU device lost: .+\. websd has reconnected to it: press Generate to try again/);
    await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'gpu').length > n, gpuMessages, { timeout: 60_000 });
    assert.equal(await page.isEnabled('#generate'), true);
    await screenshot(page, 'gpu-lost-recovered');

    await page.fill('#steps', '2');
    const imagesBefore = (await messages(page, 'images')).length;
    await page.click('#generate');
    await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'images').length > n, imagesBefore, { timeout: 240_000 });
    assert.equal((await messages(page, 'loaded')).length, 2, 'the model was loaded again (from IndexedDB)');
    await page.waitForSelector('body[data-gallery="2"]');
    const [again] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const againPng = fs.readFileSync(await again.path());
    assert.ok(againPng.equals(firstPng), 'after recovery, the same settings and seed gave a different image');
    assert.equal(await page.isHidden('#error'), true, 'the error stayed after a successful run');
  } finally {
    await browser.close();
    site.close();
  }
});

test('img2img in the page equals websd generate --init natively', { timeout: 300_000 }, async (t) => {
  const reason = missing();
  if (reason) { t.skip(reason); return; }
  const site = await startSite();
  const browser = await launchBrowser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-img2img-'));
  try {
    // The start image: a 64×64 PNG made natively (any picture will do).
    const init = path.join(dir, 'init.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a start image', '--steps', '2',
      '--width', '64', '--height', '64', '--seed', '3', '--cpu', '--out', init);

    const { page } = await openGpuPage(browser, site.url);
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);
    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '4');
    await page.fill('#prompt', 'a lighthouse, repainted');
    await page.fill('#seed', '11');
    await page.check('#seed-lock');
    await page.selectOption('#scheduler', 'euler');
    await page.setInputFiles('#init-image-file', init);
    await page.waitForSelector('#init-image-shown:not([hidden])');
    await page.$eval('#strength', (el) => { el.value = '0.5'; el.dispatchEvent(new Event('input')); });
    await page.click('#generate');
    await waitForMessage(page, 'images', undefined, 240_000);
    assert.equal((await messages(page, 'step')).length, 2, 'strength 0.5 of 4 steps runs the last 2');
    await page.waitForSelector('body[data-gallery="1"]');
    const [d] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const png = fs.readFileSync(await d.path());
    assert.match(png.toString('latin1'), /Steps: 4, Sampler: euler, CFG scale: 7\.5, Seed: 11, Size: 64x64, Model: tiny-sd1, Denoising strength: 0\.5, Generator: websd/);

    const nativePath = path.join(dir, 'native.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a lighthouse, repainted', '--steps', '4',
      '--scheduler', 'euler', '--seed', '11', '--width', '64', '--height', '64', '--init', init, '--strength', '0.5', '--cpu', '--out', nativePath);
    const native = fs.readFileSync(nativePath);
    const diff = await pixelDiff(page, png, native);
    assert.ok(diff.length, 'same size');
    assert.ok(diff.max <= 2 && diff.off <= diff.total / 20, `browser vs native img2img pixels: max difference ${diff.max}, ${diff.off} of ${diff.total} values differ`);
  } finally {
    await browser.close();
    site.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('inpainting in the page: paint a mask over the start image, and the image equals websd generate --mask natively', { timeout: 300_000 }, async (t) => {
  const reason = missing();
  if (reason) { t.skip(reason); return; }
  const site = await startSite();
  const browser = await launchBrowser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-inpaint-'));
  try {
    const init = path.join(dir, 'init.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a start image', '--steps', '2',
      '--width', '64', '--height', '64', '--seed', '3', '--cpu', '--out', init);

    const { page } = await openGpuPage(browser, site.url);
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);
    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '3');
    await page.fill('#prompt', 'a lighthouse, inpainted');
    await page.fill('#seed', '21');
    await page.check('#seed-lock');
    await page.selectOption('#scheduler', 'euler');
    await page.setInputFiles('#init-image-file', init);
    await page.waitForSelector('#mask-tools:not([hidden])');
    assert.equal(await page.getAttribute('body', 'data-mask'), 'empty');
    await page.$eval('#strength', (el) => { el.value = '1'; el.dispatchEvent(new Event('input')); });

    // Paint a stroke with the pointer, erase part of it, invert twice (a no-op), as a user might.
    await page.locator('#mask-canvas').scrollIntoViewIfNeeded(); // the mouse only reaches what is in view
    const box = await page.locator('#mask-canvas').boundingBox();
    const at = (fx, fy) => [box.x + fx * box.width, box.y + fy * box.height];
    await page.mouse.move(...at(0.6, 0.15));
    await page.mouse.down();
    for (const [fx, fy] of [[0.7, 0.4], [0.8, 0.6], [0.85, 0.85]]) await page.mouse.move(...at(fx, fy), { steps: 4 });
    await page.mouse.up();
    await page.waitForSelector('body[data-mask="painted"]');
    await page.check('#mask-erase');
    await page.mouse.click(...at(0.85, 0.85));
    await page.uncheck('#mask-erase');
    await page.click('#mask-invert');
    await page.click('#mask-invert');
    assert.equal(await page.getAttribute('body', 'data-mask'), 'painted');

    const [maskDownload] = await Promise.all([page.waitForEvent('download'), page.click('#mask-download')]);
    assert.equal(maskDownload.suggestedFilename(), 'websd-mask-64x64.png');
    const mask = path.join(dir, 'mask.png');
    fs.copyFileSync(await maskDownload.path(), mask);
    // The saved mask is white where painted and black elsewhere, both present.
    const shades = await page.evaluate(async (bytes) => {
      const bitmap = await createImageBitmap(new Blob([new Uint8Array(bytes)], { type: 'image/png' }));
      const c = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = c.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      const d = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
      let white = 0, black = 0;
      for (let i = 0; i < d.length; i += 4) { if (d[i] >= 128) white++; else black++; }
      return { white, black };
    }, [...fs.readFileSync(mask)]);
    assert.ok(shades.white > 64 && shades.black > 64, `mask: ${shades.white} white, ${shades.black} black pixels`);

    await page.click('#generate');
    await waitForMessage(page, 'images', undefined, 240_000);
    assert.equal((await messages(page, 'step')).length, 3);
    await page.waitForSelector('body[data-gallery="1"]');
    const [d] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const png = fs.readFileSync(await d.path());

    const nativePath = path.join(dir, 'native.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a lighthouse, inpainted', '--steps', '3',
      '--scheduler', 'euler', '--seed', '21', '--width', '64', '--height', '64', '--init', init, '--mask', mask, '--strength', '1',
      '--cpu', '--out', nativePath);
    const native = fs.readFileSync(nativePath);
    const diff = await pixelDiff(page, png, native);
    assert.ok(diff.length, 'same size');
    assert.ok(diff.max <= 2 && diff.off <= diff.total / 20, `browser vs native inpainting pixels: max difference ${diff.max}, ${diff.off} of ${diff.total} values differ`);
    // Without the mask the same settings give another image: the mask was used.
    const plainPath = path.join(dir, 'plain.png');
    websd('generate', '--model', path.join(ROOT, 'www/models/tiny-sd1'), '--prompt', 'a lighthouse, inpainted', '--steps', '3',
      '--scheduler', 'euler', '--seed', '21', '--width', '64', '--height', '64', '--init', init, '--strength', '1', '--cpu', '--out', plainPath);
    const unmasked = await pixelDiff(page, png, fs.readFileSync(plainPath));
    assert.ok(unmasked.max > 10, `inpainting differs from plain img2img (max difference ${unmasked.max})`);
  } finally {
    await browser.close();
    site.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
