// bench.html's GPU check with real weights, in the browser on WebGPU (SwiftShader here): TAEF2
// round-trips the astronaut photo at 128² (the page's "quicker" size; 256² took 200-250 s on
// SwiftShader, and tests/integration/taesd.rs runs 256² natively) to the bound Rust sets for that
// size (roundtrip::taef2_passing_psnr_db: 25.5 dB), random latents stay far below, and the figure
// agrees with `websd roundtrip` natively on the same weights and photo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, openPage, websd, screenshot } from './harness.mjs';

test('TAEF2 round-trips a photo on WebGPU at 128² as it does natively', { timeout: 900_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { page, log } = await openPage(browser, new URL('bench.html', site.url).href);
    await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
    await page.selectOption('#check-size', '128');
    const started = Date.now();
    await page.click('#check-run');
    await page.waitForSelector('body[data-check]', { timeout: 840_000 });
    const status = await page.textContent('#check-status');
    assert.equal(await page.getAttribute('body', 'data-check'), 'passed', `${status}\n${await page.textContent('#error')}\n${log.join('\n')}`);
    const db = (id) => Number(/([\d.]+) dB/.exec(id)[1]);
    const browserDb = db(await page.textContent('#check-round-trip-caption'));
    const randomDb = db(await page.textContent('#check-random-caption'));
    console.log(`browser: round trip ${browserDb} dB, random ${randomDb} dB, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    assert.ok(browserDb >= 25.5, `round trip ${browserDb} dB`);
    assert.match(status, /^Passed: the round trip reached [\d.]+ dB PSNR \(≥ 25\.5 dB\)/);
    assert.ok(randomDb < 15, `random latents ${randomDb} dB`);
    for (const id of ['#check-input', '#check-round-trip', '#check-random']) {
      const size = await page.$eval(id, (img) => [img.naturalWidth, img.naturalHeight]);
      assert.deepEqual(size, [128, 128], `${id} size`);
    }
    await screenshot(page, 'roundtrip');

    // The same network natively (flex): the two figures agree to rounding.
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-roundtrip-'));
    const native = websd('roundtrip', path.join(ROOT, 'www/models/taef2'), '--image', path.join(ROOT, 'www/models/taef2/astronaut.png'),
      '--size', '128', '--device', 'flex', '--out', out);
    const nativeDb = Number(/round trip ([\d.]+) dB/.exec(native)[1]);
    assert.ok(Math.abs(nativeDb - browserDb) < 0.1, `native ${nativeDb} dB vs browser ${browserDb} dB`);
  } finally {
    await browser.close();
    site.close();
  }
});
