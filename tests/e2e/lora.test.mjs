// LoRA in the page: add a kohya-named .safetensors file from this computer (checked by Rust in the
// worker, kept in IndexedDB), put its tag into the prompt with "Use", weigh it in the prompt, and
// generate: the PNG equals `websd generate --lora-dir` natively with the same prompt, and differs
// from the image without the LoRA. A file that is no LoRA is refused with Rust's reason, and a
// prompt naming a LoRA that is not kept says what to add. The LoRA survives a reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, websd, pixelDiff } from './harness.mjs';
import { openGpuPage, waitForMessage } from './synthetic.mjs';

const MODEL = path.join(ROOT, 'www/models/tiny-sd1');
const LORAS = path.join(ROOT, 'tests/fixtures/lora');

test('a LoRA added in the page changes the image as websd generate --lora does', { timeout: 300_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-lora-'));
  try {
    const { page } = await openGpuPage(browser, site.url);
    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);
    await page.click('#loras summary');

    // Not a LoRA: a UNet's weights.
    await page.setInputFiles('#lora-file', path.join(ROOT, 'tests/fixtures/sd1_inpaint_unet/diffusion_pytorch_model.safetensors'));
    await page.waitForFunction(() => /was not added/.test(document.getElementById('lora-status').textContent));
    assert.match(await page.textContent('#lora-status'), /diffusion_pytorch_model\.safetensors was not added: LoRA diffusion_pytorch_model: `.*` is not a LoRA tensor websd reads/);

    await page.setInputFiles('#lora-file', path.join(LORAS, 'kohya.safetensors'));
    await page.waitForSelector('#lora-list li[data-lora="kohya"]');
    assert.match(await page.textContent('#lora-list'), /kohya · .* · 110 UNet and 12 text encoder layers/);
    await page.reload();
    await page.waitForSelector('body[data-form="ready"]');
    await page.click('#loras summary');
    await page.waitForSelector('#lora-list li[data-lora="kohya"]');

    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '2');
    await page.fill('#seed', '8');
    await page.check('#seed-lock');
    await page.selectOption('#scheduler', 'euler');
    await page.fill('#prompt', 'a fox');
    await page.click('#lora-list li[data-lora="kohya"] button:has-text("Use")');
    assert.equal(await page.inputValue('#prompt'), 'a fox <lora:kohya:1>');
    await page.fill('#prompt', 'a fox <lora:kohya:0.7>');
    await page.click('#generate');
    const loaded = await waitForMessage(page, 'loaded', 'tiny-sd1', 240_000);
    assert.deepEqual(loaded.loras, [{ name: 'kohya', weight: 0.7 }]);
    await waitForMessage(page, 'images', undefined, 240_000);
    await page.waitForSelector('body[data-gallery="1"]');
    const [d] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const png = fs.readFileSync(await d.path());
    assert.match(png.toString('latin1'), /a fox <lora:kohya:0\.7>\nSteps: 2, Sampler: euler/);

    const native = path.join(dir, 'native.png');
    websd('generate', '--model', MODEL, '--prompt', 'a fox <lora:kohya:0.7>', '--lora-dir', LORAS, '--steps', '2', '--scheduler', 'euler',
      '--seed', '8', '--width', '64', '--height', '64', '--cpu', '--out', native);
    const diff = await pixelDiff(page, png, fs.readFileSync(native));
    assert.ok(diff.length && diff.max <= 2 && diff.off <= diff.total / 20, `browser vs native LoRA pixels: max ${diff.max}, ${diff.off} of ${diff.total} differ`);
    const plain = path.join(dir, 'plain.png');
    websd('generate', '--model', MODEL, '--prompt', 'a fox', '--steps', '2', '--scheduler', 'euler',
      '--seed', '8', '--width', '64', '--height', '64', '--cpu', '--out', plain);
    assert.ok((await pixelDiff(page, png, fs.readFileSync(plain))).max > 10, 'the LoRA changes the image');

    // A LoRA that is not kept: the generation is refused with what to do.
    await page.fill('#prompt', 'a fox <lora:missing:1>');
    await page.click('#generate');
    const error = await waitForMessage(page, 'error', undefined, 60_000);
    assert.equal(error.message, 'The prompt asks for <lora:missing> but no LoRA named missing is kept here: add its .safetensors file under LoRA.');
    await page.click('#lora-list li[data-lora="kohya"] button:has-text("Delete")');
    await page.waitForSelector('body[data-loras="0"]');
  } finally {
    await browser.close();
    site.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
