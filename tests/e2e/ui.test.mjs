// The page's UI around generation: the gallery (IndexedDB, across reloads, PNG download, reuse
// settings), keyboard shortcut and errors in words, img2img image choice, labels, phone layout,
// the mask painted by touch.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, screenshot } from './harness.mjs';
import { MOUNT, makeSyntheticModels, openGpuPage, waitForMessage, downloadByUrl } from './synthetic.mjs';

let site, browser, synth;
before(async () => {
  synth = makeSyntheticModels();
  site = await startSite({ mounts: { [MOUNT]: synth.dir } });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  site?.close();
  synth?.cleanup();
});

const open = () => openGpuPage(browser, site.url);

test('gallery images survive a reload, download as the same PNG and restore their settings', async () => {
  const { context, page } = await open();
  try {
    // An image as the worker hands it over (PNG bytes), stored through the page's gallery module.
    const png = await page.evaluate(async () => {
      const canvas = new OffscreenCanvas(72, 64);
      const ctx = canvas.getContext('2d');
      ctx.fillStyle = '#c03020';
      ctx.fillRect(0, 0, 72, 64);
      const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
      const { addImages } = await import('/www/gallery.js');
      await addImages([{ width: 72, height: 64, png: bytes, seed: 1234, parameters: 'a red fox\nSteps: 7, Seed: 1234' }], {
        settings: {
          prompt: 'a red fox', negative_prompt: 'blurry', steps: 7, guidance_scale: 5.5, seed: 1, width: 72, height: 64,
          scheduler: 'dpmpp_2m', batch_count: 1, strength: 0.75, preview: false,
        },
        modelId: 'x', modelName: 'Synthetic', elapsedMs: 1500,
      });
      return Array.from(bytes);
    });

    await page.reload();
    await page.waitForSelector('body[data-gallery="1"]');
    await page.waitForSelector('body[data-form="ready"]');
    const item = page.locator('.gallery-item');
    assert.match(await item.locator('.caption').textContent(), /^72×64 · seed 1234 · 2 s · Synthetic · /);
    assert.equal(await item.locator('img').evaluate((img) => img.complete && img.naturalWidth), 72);

    const [download] = await Promise.all([page.waitForEvent('download'), item.locator('a', { hasText: 'Download PNG' }).click()]);
    assert.match(download.suggestedFilename(), /^websd-1234-\d+\.png$/);
    assert.deepEqual([...fs.readFileSync(await download.path())], png);

    await item.locator('button.reuse').click();
    assert.equal(await page.inputValue('#prompt'), 'a red fox');
    assert.equal(await page.inputValue('#negative-prompt'), 'blurry');
    assert.equal(await page.inputValue('#seed'), '1234');
    assert.equal(await page.inputValue('#steps'), '7');
    assert.equal(await page.inputValue('#guidance'), '5.5');
    assert.equal(await page.inputValue('#scheduler'), 'dpmpp_2m');
    assert.equal(await page.inputValue('#size-preset'), '', '72×64 is no preset: Custom');
    assert.equal(await page.inputValue('#width'), '72');
    assert.equal(await page.inputValue('#height'), '64');
    assert.equal(await page.isChecked('#seed-lock'), true);
    assert.equal(await page.isChecked('#preview'), false);

    // The settings are remembered across a reload too; deleting the image empties the gallery.
    await page.reload();
    await page.waitForSelector('body[data-gallery="1"]');
    assert.equal(await page.inputValue('#prompt'), 'a red fox');
    await page.click('.gallery-item button.delete');
    await page.waitForSelector('body[data-gallery="0"]');
    assert.equal(await page.isVisible('#gallery-empty'), true);
  } finally {
    await context.close();
  }
});

test('Ctrl+Enter generates; what stops it is said in words', async () => {
  const { context, page } = await open();
  try {
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.fill('#prompt', 'a lighthouse');
    await page.press('#prompt', 'Control+Enter');
    assert.equal(await page.textContent('#error'), 'Download a model first.');

    // A stored model: the worker tries to load it, but the synthetic model has no weights: an
    // error in words, no crash.
    await downloadByUrl(page, new URL(synth.manifest('c'), site.url).href);
    await waitForMessage(page, 'downloaded', new URL(synth.manifest('c'), site.url).href);
    await page.press('#prompt', 'Control+Enter');
    const error = await waitForMessage(page, 'error');
    assert.equal(error.phase, 'generate');
    assert.equal(error.message, "missing tensor `embeddings.token_embedding.weight` in the weights");
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.textContent('#error'), error.message);
    assert.equal(await page.isEnabled('#generate'), true, 'Generate stayed disabled after the error');
  } finally {
    await context.close();
  }
});

test('img2img start image: choose a file, see it, remove it', async () => {
  const { context, page } = await open();
  try {
    const onePixelPng = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
    await page.setInputFiles('#init-image-file', { name: 'start.png', mimeType: 'image/png', buffer: onePixelPng });
    await page.waitForSelector('#init-image-shown:not([hidden])');
    assert.equal(await page.locator('#init-image-preview').evaluate((img) => img.decode().then(() => img.naturalWidth)), 1);
    await page.click('#init-image-clear');
    assert.equal(await page.isHidden('#init-image-shown'), true);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'init-image-file');

    // A cut file is refused when chosen, in words, and nothing is kept as the start image.
    await page.setInputFiles('#init-image-file', { name: 'cut.png', mimeType: 'image/png', buffer: onePixelPng.subarray(0, 40) });
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.textContent('#error'), 'cut.png could not be read as an image (cut short, or not an image): choose a PNG, JPEG or WebP file.');
    assert.equal(await page.isHidden('#init-image-shown'), true);
  } finally {
    await context.close();
  }
});

test('every control has a label, and a phone gets one column', async () => {
  const { context, page } = await open();
  try {
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label')).map((el) => el.id || el.outerHTML));
    assert.deepEqual(unlabelled, []);
    const columns = () => page.evaluate(() => getComputedStyle(document.querySelector('main')).gridTemplateColumns.split(' ').length);
    assert.equal(await columns(), 2);
    await page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await columns(), 1);
    await screenshot(page, 'phone-layout');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'the page scrolls sideways on a phone');
  } finally {
    await context.close();
  }
});

test('the token counter under each prompt, and the notice when a prompt is split into chunks', async () => {
  const { context, page } = await open();
  try {
    const counter = (id) => page.textContent(id);
    await page.fill('#prompt', 'a (red:1.2) fox, [blurry]');
    await page.waitForFunction(() => document.getElementById('prompt-tokens').textContent === '5/75 tokens');
    assert.equal(await page.getAttribute('#prompt-tokens', 'class'), 'tokens');

    await page.fill('#negative-prompt', 'cat '.repeat(80));
    await page.waitForFunction(() => /80 tokens/.test(document.getElementById('negative-tokens').textContent));
    assert.equal(await counter('#negative-tokens'),
      "The negative prompt has 80 tokens, more than CLIP's 75: it is encoded as 2 chunks of up to 75 tokens and the chunks are joined (as A1111 does).");
    assert.match(await page.getAttribute('#negative-tokens', 'class'), /chunked/);
    await screenshot(page, 'prompt-split-notice');

    await page.fill('#negative-prompt', '');
    await page.waitForFunction(() => document.getElementById('negative-tokens').textContent === '0/75 tokens');
    assert.doesNotMatch(await page.getAttribute('#negative-tokens', 'class'), /chunked/);
    assert.equal(await counter('#prompt-tokens'), '5/75 tokens');
  } finally {
    await context.close();
  }
});

test('the inpainting mask paints with a finger on a touch screen, and the stroke does not scroll the page', async () => {
  const context = await browser.newContext({ hasTouch: true, isMobile: true, viewport: { width: 390, height: 844 } });
  try {
    const page = await context.newPage();
    await page.goto(site.url);
    await page.setInputFiles('#init-image-file', path.join(ROOT, 'www/models/taef2/astronaut.png'));
    await page.waitForSelector('#mask-tools:not([hidden])');
    assert.equal(await page.getAttribute('body', 'data-mask'), 'empty');
    // The GPU status lines above the mask change height when the worker reports; wait for them, and
    // turn off scroll anchoring, so that scrollY moves only if the page really scrolls.
    await page.waitForSelector('body[data-gpu="ready"][data-probe="done"]');
    // (Through the CSSOM: the page's Content-Security-Policy refuses inline <style>.)
    await page.evaluate(() => { for (const e of [document.documentElement, document.body]) e.style.overflowAnchor = 'none'; });
    await page.locator('#mask-canvas').scrollIntoViewIfNeeded();
    const box = await page.locator('#mask-canvas').boundingBox();
    const scrollBefore = await page.evaluate(() => window.scrollY);
    // A real touch drag (Chromium's DevTools protocol): touchstart, moves, touchend, top to bottom.
    const cdp = await context.newCDPSession(page);
    const touch = (type, fy) => cdp.send('Input.dispatchTouchEvent', {
      type, touchPoints: type === 'touchEnd' ? [] : [{ x: box.x + box.width / 2, y: box.y + fy * box.height }],
    });
    await touch('touchStart', 0.2);
    for (let fy = 0.25; fy <= 0.8; fy += 0.05) await touch('touchMove', fy);
    await touch('touchEnd');
    await page.waitForSelector('body[data-mask="painted"]');
    assert.equal(await page.evaluate(() => window.scrollY), scrollBefore, 'the drag scrolled the page instead of painting');
    // Painted along the stroke (the middle column), not beside it.
    const painted = await page.$eval('#mask-canvas', (c) => {
      const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
      const alpha = (x, y) => data[(Math.floor(y) * c.width + Math.floor(x)) * 4 + 3];
      return { middle: alpha(c.width / 2, c.height / 2), corner: alpha(2, 2) };
    });
    assert.ok(painted.middle > 0 && painted.corner === 0, `mask alpha: ${JSON.stringify(painted)}`);
  } finally {
    await context.close();
  }
});
