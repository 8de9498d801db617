// The page opens WebGPU in its worker, runs burn's probe computation there, and shows values equal
// to what the native build computes; without WebGPU it explains why instead of showing nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSite, launchBrowser, openPage, websd, screenshot } from './harness.mjs';

let site;
before(async () => { site = await startSite(); });
after(() => site.close());

test('worker reports a WebGPU adapter and the probe matches the native result', async () => {
  const browser = await launchBrowser();
  try {
    const { page, log } = await openPage(browser, site.url);
    await page.waitForSelector('body[data-probe="done"]', { timeout: 120_000 }).catch((e) => {
      throw new Error(`probe did not finish: ${e.message}\n${log.join('\n')}`);
    });
    assert.match(await page.textContent('#gpu-status'), /WebGPU is ready/);
    const info = await page.textContent('#gpu-info');
    assert.match(info, /Backend\s*BrowserWebGpu|Backend\s*WebGpu/i, `unexpected backend in: ${info}`);
    const browserValues = JSON.parse(await page.textContent('#probe-result'));
    const nativeValues = JSON.parse(websd('probe', '--device', 'flex'));
    assert.equal(browserValues.length, 12);
    assert.equal(browserValues.length, nativeValues.length);
    browserValues.forEach((v, i) =>
      assert.ok(Math.abs(v - nativeValues[i]) < 1e-5, `value ${i}: browser ${v} vs native ${nativeValues[i]}`));
  } finally {
    await browser.close();
  }
});

test('our GPU kernels equal the exact results through the browser\'s WGSL compiler (WebGPU)', { timeout: 300_000 }, async () => {
  const browser = await launchBrowser();
  try {
    const { page } = await openPage(browser, `${site.url}tests/e2e/module-host.html`);
    await page.evaluate(async () => {
      window.websd = await import('/www/pkg/websd.js');
      await window.websd.default();
      window.gpuInfo = await window.websd.init_gpu();
    });
    const f16 = await page.evaluate(() => window.gpuInfo.shader_f16);
    // The cases of src/kernels/check.rs, one call each (a failure names its case), in f32, and in
    // f16 where the GPU has it.
    const kernels = ['conv3x3', 'group_norm', 'matmul', 'attention'];
    const counts = await page.evaluate((names) => names.map((k) => window.websd.kernel_check_cases(k)), kernels);
    assert.deepEqual(counts, [8, 6, 7, 7]);
    for (const dtype of f16 ? ['f32', 'f16'] : ['f32']) {
      for (const [kernel, count] of kernels.map((k, i) => [k, counts[i]])) {
        for (let index = 0; index < count; index++) {
          const c = await page.evaluate(([k, i, d]) => window.websd.check_kernel(k, i, d), [kernel, index, dtype]);
          console.log(`${c.dtype} ${c.case}: relative error ${c.relative_error.toExponential(2)}`);
          assert.ok(c.relative_error < c.tolerance, `${c.dtype} ${c.case}: relative error ${c.relative_error} over ${c.tolerance}`);
        }
      }
    }
  } finally {
    await browser.close();
  }
});

test('without WebGPU the page says what is missing and which browsers work', async () => {
  const browser = await launchBrowser({ webgpu: false });
  try {
    const { page } = await openPage(browser, site.url);
    const box = page.locator('#unsupported');
    await box.waitFor({ state: 'visible', timeout: 30_000 });
    const text = await box.textContent();
    assert.match(text, /cannot run in this browser/);
    assert.match(text, /WebGPU/);
    assert.match(text, /Chrome/);
    await screenshot(page, 'no-webgpu');
  } finally {
    await browser.close();
  }
});

test('seeded noise is bit-identical in the browser (wasm) and natively', async () => {
  const browser = await launchBrowser();
  try {
    const { page } = await openPage(browser, `${site.url}tests/e2e/module-host.html`);
    const cases = [[42, 0], [7, 101], [2 ** 40 + 3, 1]];
    for (const [seed, stream] of cases) {
      const inBrowser = await page.evaluate(async ([seed, stream]) => {
        const m = await import('/www/pkg/websd.js');
        await m.default();
        return Array.from(m.gaussian_noise(seed, stream, 1000));
      }, [seed, stream]);
      const native = JSON.parse(websd('noise', '--seed', String(seed), '--stream', String(stream), '--count', '1000'));
      assert.equal(inBrowser.length, 1000);
      // The native JSON holds each f32's shortest decimal: rounding it to f32 gives the exact bits.
      native.forEach((v, i) => assert.equal(inBrowser[i], Math.fround(v), `seed ${seed} stream ${stream} value ${i}`));
    }
  } finally {
    await browser.close();
  }
});

test('errors from the wasm module carry their kind as their name; the form\'s samplers, defaults and ranges are Rust\'s', async () => {
  const browser = await launchBrowser();
  try {
    const { page } = await openPage(browser, site.url);
    await page.waitForSelector('body[data-form="ready"]', { timeout: 60_000 });
    const form = await page.evaluate(() => ({
      listed: [...document.querySelectorAll('#scheduler option')].map((o) => [o.value, o.textContent]),
      inputs: Object.fromEntries(['steps', 'guidance', 'width', 'height', 'batch', 'strength'].map((id) => {
        const e = document.getElementById(id);
        return [id, [e.min, e.max, e.step, e.value].map(Number)];
      })),
    }));
    // The module itself, in a page of no policy (the app's page runs WebAssembly only in its worker).
    const host = await browser.newPage();
    await host.goto(`${site.url}tests/e2e/module-host.html`);
    const got = await host.evaluate(async () => {
      const m = await import('/www/pkg/websd.js');
      await m.default();
      const failure = async (f) => { try { await f(); return 'no error'; } catch (e) { return `${e.name}: ${e.message}`; } };
      const manifest = await (await fetch('/www/models/tiny-sd1/manifest.json')).text();
      const lying = { ...JSON.parse(manifest), suggested: { steps: 0 } };
      return {
        suggested: m.suggested_settings(manifest),
        notJson: await failure(() => m.suggested_settings('{')),
        badHint: await failure(() => m.suggested_settings(JSON.stringify(lying))),
        noModel: await failure(() => m.generate({}, () => true)),
        samplers: Array.from(m.samplers(), ({ name, label }) => [name, label]),
        fields: m.setting_fields(),
        html: await (await fetch('/index.html')).text(),
      };
    });
    Object.assign(got, form);
    // Each number's default and range is Rust's (pipeline::generate::Field), and index.html
    // holds no copy of them: this page has no saved settings, so every input shows the default.
    const byName = Object.fromEntries(got.fields.map((f) => [f.name, f]));
    assert.deepEqual(byName.steps, { name: 'steps', default: 20, min: 1, max: 150, step: 1 });
    assert.deepEqual(byName.strength, { name: 'strength', default: 0.75, min: 0, max: 1, step: 0.01 });
    const inputOf = { steps: 'steps', guidance_scale: 'guidance', width: 'width', height: 'height', batch_count: 'batch', strength: 'strength' };
    assert.deepEqual(Object.keys(byName).sort(), Object.keys(inputOf).sort());
    for (const f of got.fields) assert.deepEqual(got.inputs[inputOf[f.name]], [f.min, f.max, f.step, f.default], f.name);
    for (const id of Object.values(inputOf)) {
      const tag = got.html.match(new RegExp(`<input id="${id}"[^>]*>`))[0];
      assert.doesNotMatch(tag, /\b(min|max|step|value)=/, tag);
    }
    // The page's sampler list is Rust's, after "Model default".
    assert.deepEqual(got.listed, [['default', 'Model default'], ...got.samplers]);
    assert.equal(got.samplers.length, 8);
    // The tiny model's own settings (PNDMScheduler; its UNet's sample_size 8 × the VAE's 8).
    assert.deepEqual(got.suggested, { scheduler: 'pndm', steps: 20, guidance_scale: 7.5, width: 64, height: 64 });
    assert.match(got.notJson, /^BadWeights: manifest\.json is not a valid manifest/);
    assert.match(got.badHint, /^BadWeights: .*suggested steps 0/);
    assert.match(got.noModel, /^InvalidRequest: no model is loaded/);
  } finally {
    await browser.close();
  }
});
