// "Model default" in the page: a model's own sampler, steps, guidance and size (decided in Rust,
// src/suggested.rs) fill the form when it is downloaded or chosen, and the page then makes the
// image that `websd generate` makes when those flags are left out. Two variants of the tiny SD 1.x
// fixture, converted here: a Turbo-style one (Euler, trailing spacing; its manifest suggests one
// step without guidance) and an LCM-style one (LCMScheduler: 4 steps; its UNet has no embedded
// guidance, so no CFG).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, websd, pixelDiff } from './harness.mjs';
import { openGpuPage, waitForMessage, messages } from './synthetic.mjs';

const BETAS = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000 };
const VARIANTS = {
  turbo: {
    name: 'Tiny Turbo',
    scheduler: { _class_name: 'EulerDiscreteScheduler', ...BETAS, timestep_spacing: 'trailing', prediction_type: 'epsilon' },
    flags: ['--suggest-steps', '1', '--suggest-guidance', '0'],
    form: { steps: '1', guidance: '0', scheduler: 'default', width: '64', height: '64' },
    label: 'Model default (Euler)',
    parameters: /Steps: 1, Sampler: euler, CFG scale: 0, /,
  },
  lcm: {
    name: 'Tiny LCM',
    scheduler: { _class_name: 'LCMScheduler', ...BETAS, original_inference_steps: 50, set_alpha_to_one: true, steps_offset: 1, clip_sample: false },
    flags: [],
    form: { steps: '4', guidance: '1', scheduler: 'default', width: '64', height: '64' },
    label: 'Model default (LCM)',
    parameters: /Steps: 4, Sampler: lcm, CFG scale: 1, /,
  },
};

function missing() {
  const glue = fs.readFileSync(path.join(ROOT, 'www/pkg/websd.js'), 'utf8');
  return /export function suggested_settings\b/.test(glue) ? null : 'the wasm module has no suggested_settings yet';
}

/** Copies the tiny diffusers fixture with another scheduler config and converts it into `out`. */
function convertVariant(work, key, { name, scheduler, flags }) {
  const src = path.join(work, `${key}-diffusers`);
  fs.cpSync(path.join(ROOT, 'tests/fixtures/sd1'), src, { recursive: true });
  fs.writeFileSync(path.join(src, 'scheduler/scheduler_config.json'), JSON.stringify(scheduler, null, 2));
  const out = path.join(work, key);
  websd('convert', src, '--out', out, '--name', name, ...flags);
  return out;
}

async function formValues(page) {
  const values = {};
  for (const id of ['steps', 'guidance', 'scheduler', 'width', 'height']) values[id] = await page.inputValue(`#${id}`);
  return values;
}

test('a model runs with its own sampler, steps, guidance and size in the page, as the CLI runs it', { timeout: 480_000 }, async (t) => {
  const reason = missing();
  if (reason) { t.skip(reason); return; }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-suggested-'));
  const dirs = Object.fromEntries(Object.entries(VARIANTS).map(([key, v]) => [key, convertVariant(work, key, v)]));
  const site = await startSite({ mounts: { '/variants/': work } });
  const browser = await launchBrowser();
  try {
    const { page } = await openGpuPage(browser, site.url);
    // The user's own choices before any model: they give way to each model's suggestion.
    await page.fill('#steps', '30');
    await page.selectOption('#scheduler', 'dpmpp_2m');

    const urls = {};
    let generated = 0;
    for (const [key, v] of Object.entries(VARIANTS)) {
      const url = urls[key] = new URL(`variants/${key}/manifest.json`, site.url).href;
      await page.$eval('#custom-model', (d) => { d.open = true; });
      await page.fill('#custom-url', url);
      await page.click('#custom-download');
      await waitForMessage(page, 'downloaded', url, 60_000);
      await page.waitForFunction((steps) => document.querySelector('#steps').value === steps, v.form.steps, { timeout: 10_000 })
        .catch(() => {}); // the assertion below says what the form holds instead
      assert.deepEqual(await formValues(page), v.form, `${key}: the form after its download`);
      assert.equal(await page.textContent('#scheduler option[value="default"]'), v.label);
      assert.match(await page.textContent('#model-suggested'), /^Made for /);

      await page.fill('#prompt', 'a lighthouse');
      await page.fill('#seed', '5');
      await page.check('#seed-lock');
      const stepsBefore = (await messages(page, 'step')).length;
      await page.click('#generate');
      generated += 1;
      await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'images').length === n, generated, { timeout: 240_000 });
      const steps = (await messages(page, 'step')).slice(stepsBefore);
      assert.equal(steps.at(-1).total, Number(v.form.steps), `${key}: steps run`);
      await page.waitForSelector(`body[data-gallery="${generated}"]`);
      const [d] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
      const png = fs.readFileSync(await d.path());
      const text = png.toString('latin1');
      assert.match(text, v.parameters, `${key}: the PNG's settings`);

      // Natively, the same model with only prompt and seed given: the same settings and picture.
      const nativePath = path.join(work, `${key}.png`);
      websd('generate', '--model', dirs[key], '--prompt', 'a lighthouse', '--seed', '5', '--cpu', '--out', nativePath);
      const native = fs.readFileSync(nativePath);
      const line = /Steps: .*?, Size: \d+x\d+/;
      assert.equal(native.toString('latin1').match(line)?.[0], text.match(line)?.[0], `${key}: the CLI's defaults and the page's`);
      const diff = await pixelDiff(page, png, native);
      assert.ok(diff.length && diff.max <= 2 && diff.off <= diff.total / 20, `${key}: browser vs native pixels: max difference ${diff.max}, ${diff.off} of ${diff.total} values differ`);
    }

    // Choosing a model again puts its suggestion back; a reload keeps what the user set since.
    await page.selectOption('#model-select', urls.turbo);
    assert.deepEqual(await formValues(page), VARIANTS.turbo.form, 'turbo chosen again');
    await page.fill('#steps', '3');
    await page.dispatchEvent('#steps', 'change');
    await page.reload();
    await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
    await page.waitForFunction(() => !document.querySelector('#model-suggested').hidden, null, { timeout: 10_000 });
    assert.equal(await page.inputValue('#model-select'), urls.turbo);
    assert.deepEqual(await formValues(page), { ...VARIANTS.turbo.form, steps: '3' }, 'after a reload');
  } finally {
    await browser.close();
    site.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
});
