// SDXL in the page: the tiny SDXL-layout test model (www/models/tiny-sdxl, random weights, made by
// scripts/make_tiny_sdxl.py with websd convert: two text encoders whose penultimate layers are
// joined, the second's pooled projection and the size/crop time ids as the UNet's added
// conditioning, SDXL's VAE scaling) is downloaded from the catalog, fills the form with its own
// size and sampler (Rust's suggestion: its UNet's sample_size × 8, its Euler config), generates one
// step with guidance and a negative prompt (both prompts through both tokenizers), and gives the
// picture `websd generate` gives natively for the same settings and seed (natively that pipeline
// is checked against diffusers' StableDiffusionXLPipeline, tests/integration/sdxl.rs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, websd, screenshot, pixelDiff } from './harness.mjs';
import { openGpuPage, waitForMessage, messages } from './synthetic.mjs';

const MODEL = path.join(ROOT, 'www/models/tiny-sdxl');

function missing() {
  if (!fs.existsSync(path.join(MODEL, 'manifest.json'))) return 'www/models/tiny-sdxl/manifest.json is not made yet (scripts/make_tiny_sdxl.py)';
  const glue = fs.readFileSync(path.join(ROOT, 'www/pkg/websd.js'), 'utf8');
  return /export (async )?function generate\b/.test(glue) ? null : 'the wasm module has no generate yet';
}

/** Decodes a PNG in the page: {distinct: RGB triples seen, spread: max − min of all RGB values}. */
function pixelStats(page, png) {
  return page.evaluate(async (b64) => {
    const bitmap = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]));
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    const data = canvas.getContext('2d').getImageData(0, 0, bitmap.width, bitmap.height).data;
    const seen = new Set();
    let lo = 255, hi = 0;
    for (let i = 0; i < data.length; i += 4) {
      seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      for (let c = 0; c < 3; c++) { lo = Math.min(lo, data[i + c]); hi = Math.max(hi, data[i + c]); }
    }
    return { distinct: seen.size, spread: hi - lo };
  }, png.toString('base64'));
}

test('the page downloads the tiny SDXL model and generates what websd generate makes', { timeout: 240_000 }, async (t) => {
  const reason = missing();
  if (reason) { t.skip(reason); return; }
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { page } = await openGpuPage(browser, site.url);
    await page.selectOption('#model-select', 'tiny-sdxl');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sdxl', 60_000);

    // Its suggestion fills the form: the UNet's sample_size 8 × 8 = 64 px, its Euler config.
    await page.waitForFunction(() => /64×64, sampler Euler\.$/.test(document.querySelector('#model-suggested').textContent), null, { timeout: 10_000 })
      .catch(() => {}); // the assertions below say what the page shows instead
    assert.equal(await page.textContent('#model-suggested'), 'Made for 20 steps, guidance 7.5, 64×64, sampler Euler.');
    assert.deepEqual([await page.inputValue('#width'), await page.inputValue('#height')], ['64', '64']);

    await page.fill('#steps', '1');
    await page.fill('#guidance', '5');
    await page.fill('#prompt', 'a lighthouse at dusk');
    await page.fill('#negative-prompt', 'blurry');
    await page.fill('#seed', '7');
    await page.check('#seed-lock');
    await page.click('#generate');
    const outcome = await page.waitForFunction(() => window.__msgs.find((m) => m.type === 'images' || (m.type === 'error' && m.phase === 'generate')), null, { timeout: 180_000 });
    const done = await outcome.jsonValue();
    assert.equal(done.type, 'images', `generation failed: ${done.message}`);
    assert.deepEqual((await messages(page, 'loaded')).map((m) => m.id), ['tiny-sdxl']);
    assert.equal(await page.textContent('#compute'), 'tiny-sdxl runs in f32 on this GPU (it has no shader-f16: slower, twice the memory).');

    await page.waitForSelector('body[data-gallery="1"]');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const png = fs.readFileSync(await download.path());
    const text = png.toString('latin1');
    assert.match(text, /a lighthouse at dusk\nNegative prompt: blurry\nSteps: 1, Sampler: euler, CFG scale: 5, Seed: 7, Size: 64x64, Model: tiny-sdxl, Generator: websd/);
    await screenshot(page, 'sdxl-generated');

    // A picture, not a flat colour: random weights give coloured noise over the whole range.
    const stats = await pixelStats(page, png);
    assert.ok(stats.distinct >= 256 && stats.spread >= 64, `the image is nearly flat: ${stats.distinct} colours, values spread over ${stats.spread}`);

    // Natively (burn's CPU backend), the same model, settings and seed: the same picture, up to
    // f32 rounding between SwiftShader and the CPU (the tolerance of generate.test.mjs).
    const nativePath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'websd-sdxl-')), 'native.png');
    websd('generate', '--model', MODEL, '--prompt', 'a lighthouse at dusk', '--negative', 'blurry', '--steps', '1', '--scheduler', 'euler',
      '--guidance', '5', '--seed', '7', '--width', '64', '--height', '64', '--cpu', '--out', nativePath);
    const native = fs.readFileSync(nativePath);
    const line = /Steps: .*?, Model: tiny-sdxl/;
    assert.equal(native.toString('latin1').match(line)?.[0], text.match(line)?.[0], 'the native PNG records the same settings');
    const diff = await pixelDiff(page, png, native);
    assert.ok(diff.length, 'same size');
    assert.ok(diff.max <= 2 && diff.off <= diff.total / 20, `browser vs native pixels: max difference ${diff.max}, ${diff.off} of ${diff.total} values differ`);
  } finally {
    await browser.close();
    site.close();
  }
});
