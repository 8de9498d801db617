// Importing a model in the page ("Import from this computer"): the tiny single-file SD 1.x
// checkpoint, with the tiny diffusers folder as its configs, is converted by Rust inside the worker
// and stored. Its shards are byte for byte the ones `websd convert` writes from the same file, and
// the image it makes equals `websd generate` on that native conversion. Bad files get Rust's
// reason and leave nothing stored: a .ckpt, a cut file, an SDXL checkpoint without its second text encoder, a file that is no SD
// checkpoint, a file with a NaN tensor past the shards already stored, and an import stopped at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startSite, launchBrowser, websd, pixelDiff, screenshot } from './harness.mjs';
import { openGpuPage, waitForMessage, readStore } from './synthetic.mjs';

const SINGLE = path.join(ROOT, 'tests/fixtures/single_file/sd1.safetensors');
const CONFIGS = path.join(ROOT, 'tests/fixtures/sd1');

/** The fixture with its header rewritten by `edit(header)` and its data by `editData(data, header)`. */
function variant(dir, name, { edit = () => {}, editData = () => {} } = {}) {
  const bytes = fs.readFileSync(SINGLE);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const data = Buffer.from(bytes.subarray(8 + n));
  const edited = edit(header) ?? header;
  editData(data, header);
  const json = Buffer.from(JSON.stringify(edited));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([length, json, data]));
  return file;
}

/** The stored models' manifests, by id. */
const storedManifests = (page) => page.evaluate(async () => {
  const db = await new Promise((resolve, reject) => {
    const r = indexedDB.open('websd');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const models = await new Promise((resolve, reject) => {
    const r = db.transaction('models').objectStore('models').getAll();
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  db.close();
  return Object.fromEntries(models.map((m) => [m.id, m.manifest]));
});

/** Picks `file` (and the configs folder) and imports; resolves with the page's end state. */
async function importFile(page, file) {
  await page.setInputFiles('#import-file', file);
  await page.setInputFiles('#import-configs', CONFIGS);
  await page.selectOption('#import-quant', 'q8');
  await page.click('#import-start');
  await page.waitForSelector('body:not([data-import="running"])', { timeout: 120_000 });
  return { state: await page.getAttribute('body', 'data-import'), status: await page.textContent('#import-status') };
}

test('a checkpoint imported in the page equals websd convert, generates as natively, and bad files leave nothing', { timeout: 300_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'websd-import-'));
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const native = path.join(dir, 'native');
    websd('convert', SINGLE, '--configs', CONFIGS, '--quant', 'q8', '--out', native);
    const nativeManifest = JSON.parse(fs.readFileSync(path.join(native, 'manifest.json'), 'utf8'));

    const ckpt = path.join(dir, 'model.ckpt');
    fs.writeFileSync(ckpt, Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(2000, 7)]));
    const cut = path.join(dir, 'cut.safetensors');
    fs.writeFileSync(cut, fs.readFileSync(SINGLE).subarray(0, 2_000_000));
    const sdxl = variant(dir, 'sdxl.safetensors', {
      edit: (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.replace('cond_stage_model.transformer.', 'conditioner.embedders.0.transformer.'), v])),
    });
    // A NaN in the UNet's last conv: the text encoder and VAE (read first, by name) are already stored.
    const nan = variant(dir, 'nan.safetensors', {
      editData: (data, h) => {
        const t = h['model.diffusion_model.out.2.weight'];
        assert.equal(t.dtype, 'F16');
        data.writeUInt16LE(0x7e00, t.data_offsets[0]); // an f16 NaN
      },
    });

    const { page } = await openGpuPage(browser, site.url);
    await page.click('#import summary');

    const refused = [
      [ckpt, /model\.ckpt: pickled PyTorch checkpoints \(\.ckpt, \.pt, \.bin\) are refused/],
      [cut, /cut\.safetensors: its tensors need \d+ bytes but the file has 2000000: the file is cut short/],
      // SD 1.5's CLIP renamed as SDXL's first embedder, without the second (bigG).
      [sdxl, /an SDXL checkpoint needs both text encoders/],
      // A .safetensors file that is no SD checkpoint at all (a LoRA).
      [path.join(ROOT, 'tests/fixtures/lora/kohya.safetensors'), /not an SD 1\.x\/2\.x single-file checkpoint: no UNet cross-attention/],
      [nan, /unet\/conv_out\.weight holds NaN or infinite values/],
    ];
    for (const [file, reason] of refused) {
      const { state, status } = await importFile(page, file);
      assert.equal(state, 'failed', `${path.basename(file)}: ${status}`);
      assert.match(status, reason);
      const { shards, models } = await readStore(page);
      assert.deepEqual({ shards, models }, { shards: [], models: [] }, `${path.basename(file)} left nothing stored`);
    }
    const nanProgress = await page.evaluate(() => window.__msgs.filter((m) => m.type === 'import-progress' && m.name === 'nan').length);
    assert.ok(nanProgress > 0, 'the NaN file was converted part way before it failed');

    // Stopped at once: the Stop is posted right after the import, in the same task.
    await page.setInputFiles('#import-file', SINGLE);
    await page.setInputFiles('#import-configs', CONFIGS);
    await page.evaluate(() => { document.getElementById('import-start').click(); document.getElementById('import-cancel').click(); });
    await page.waitForSelector('body[data-import="cancelled"]', { timeout: 60_000 });
    assert.deepEqual(await readStore(page).then(({ shards, models }) => ({ shards, models })), { shards: [], models: [] }, 'a stopped import leaves nothing');

    // The real import.
    const { state, status } = await importFile(page, SINGLE);
    assert.equal(state, 'done', status);
    assert.match(status, /^sd1 is imported and stored on this device\. single-file checkpoint: SD 1\.x \(configs from sd1\)/);
    const manifest = (await storedManifests(page))['imported:sd1'];
    assert.ok(manifest, 'the model is stored as imported:sd1');
    assert.deepEqual(manifest.tensors, nativeManifest.tensors, 'the same tensors at the same places');
    assert.deepEqual(manifest.shards, nativeManifest.shards, 'the same shards (names, sizes, sha256)');
    assert.deepEqual(manifest.components, nativeManifest.components);
    const { shards } = await readStore(page);
    assert.deepEqual(shards.map((s) => s.sha256).sort(), nativeManifest.shards.map((s) => s.sha256).sort(), 'the stored bytes hash as the native shards');
    // Chosen in the picker, and listed as complete (the last list, which also fills its settings once).
    await page.waitForFunction(() => {
      const select = document.getElementById('model-select');
      return select.value === 'imported:sd1' && select.selectedOptions[0].textContent === 'sd1 (imported) ✓';
    });
    assert.match(await page.textContent('#model-about'), /Imported from this computer\./);
    await screenshot(page, 'imported');

    // A second import of the same name is refused without touching the first.
    const again = await importFile(page, SINGLE);
    assert.equal(again.state, 'failed');
    assert.match(again.status, /a model named sd1 is already stored/);
    assert.equal((await readStore(page)).models.length, 1);

    // A diffusers folder (the folder picker), under a name of its own: the shards `websd convert` writes from it.
    const nativeFolder = path.join(dir, 'native-folder');
    websd('convert', CONFIGS, '--quant', 'q8', '--out', nativeFolder);
    const folderManifest = JSON.parse(fs.readFileSync(path.join(nativeFolder, 'manifest.json'), 'utf8'));
    await page.evaluate(() => { for (const id of ['import-file', 'import-configs']) document.getElementById(id).value = ''; });
    await page.setInputFiles('#import-folder', CONFIGS);
    await page.fill('#import-name', 'sd1 folder');
    await page.click('#import-start');
    await page.waitForSelector('body:not([data-import="running"])', { timeout: 120_000 });
    assert.equal(await page.getAttribute('body', 'data-import'), 'done', await page.textContent('#import-status'));
    const fromFolder = (await storedManifests(page))['imported:sd1 folder'];
    assert.equal(fromFolder.name, 'sd1 folder');
    assert.deepEqual(fromFolder.tensors, folderManifest.tensors);
    assert.deepEqual(fromFolder.shards, folderManifest.shards);
    assert.deepEqual(fromFolder.tokenizer, folderManifest.tokenizer);
    await page.selectOption('#model-select', 'imported:sd1');

    await page.selectOption('#size-preset', '64x64');
    await page.fill('#steps', '2');
    await page.fill('#seed', '5');
    await page.check('#seed-lock');
    await page.selectOption('#scheduler', 'euler');
    await page.fill('#prompt', 'a harbour');
    await page.click('#generate');
    await waitForMessage(page, 'images', undefined, 240_000);
    await page.waitForSelector('body[data-gallery="1"]');
    const [d] = await Promise.all([page.waitForEvent('download'), page.locator('.gallery-item').nth(0).locator('a').click()]);
    const png = fs.readFileSync(await d.path());
    const out = path.join(dir, 'native.png');
    websd('generate', '--model', native, '--prompt', 'a harbour', '--steps', '2', '--scheduler', 'euler',
      '--seed', '5', '--width', '64', '--height', '64', '--cpu', '--out', out);
    const diff = await pixelDiff(page, png, fs.readFileSync(out));
    assert.ok(diff.length && diff.max <= 2 && diff.off <= diff.total / 20, `imported in the page vs converted natively: max ${diff.max}, ${diff.off} of ${diff.total} differ`);
  } finally {
    await browser.close();
    site.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an import that runs out of storage part way says so and leaves nothing', { timeout: 120_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { context, page } = await openGpuPage(browser, site.url);
    // A real, smaller quota (Chromium's DevTools protocol), as in store.test.mjs: estimate() does not
    // report it, so the check at begin passes and IndexedDB refuses a shard part way. The service
    // worker's shell cache counts towards the quota: let it finish first.
    await page.waitForSelector('body[data-offline="ready"]', { timeout: 60_000 });
    await page.waitForFunction(async () => (await caches.keys()).length > 0 && (await (await caches.open((await caches.keys())[0])).keys()).length >= 20, null, { timeout: 60_000 });
    const { usage } = await page.evaluate(() => navigator.storage.estimate());
    const cdp = await context.newCDPSession(page);
    // Room for the first shards (text encoder 0.9 MB, VAE 0.16 MB at q8) but not for the UNet's 1.0 MB.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(site.url).origin, quotaSize: usage + 1_400_000 });
    await page.click('#import summary');
    const { state, status } = await importFile(page, SINGLE);
    assert.equal(state, 'failed', status);
    assert.match(status, /^Not imported: Not enough storage for sd1: it needs [\d.]+ [kM]?B more, but only [\d.]+ [kMG]?B of this site's [\d.]+ [kMG]?B quota is free/);
    // What is still needed is less than the whole 2.07 MB: the first shards were stored before the refusal…
    const needed = Number(status.match(/it needs ([\d.]+) MB more/)?.[1]);
    assert.ok(needed > 0.5 && needed < 2, `needs ${needed} MB more`);
    // …and they are removed with the model's record.
    const { shards, models } = await readStore(page);
    assert.deepEqual({ shards, models }, { shards: [], models: [] }, 'what was stored before the refusal is removed');
  } finally {
    await browser.close();
    site.close();
  }
});

test('an import that a closed tab cut off is removed with its shards when the page next starts', { timeout: 120_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { page } = await openGpuPage(browser, site.url);
    // What a tab closed mid-import leaves: the record, incomplete, listing the one shard it stored.
    await page.evaluate(async () => {
      const db = await new Promise((resolve, reject) => {
        const r = indexedDB.open('websd');
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
      const bytes = new Uint8Array(1000).fill(7);
      const sha256 = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
      await new Promise((resolve, reject) => {
        const tx = db.transaction(['models', 'shards'], 'readwrite');
        tx.objectStore('shards').put(bytes, sha256);
        tx.objectStore('models').put({
          id: 'imported:cut', name: 'cut', manifestUrl: null, imported: true, complete: false, totalBytes: 5000, addedAt: Date.now(),
          manifest: { name: 'cut', shards: [{ file: `${sha256}.bin`, size: 1000, sha256 }] },
        });
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
      db.close();
    });
    assert.equal((await readStore(page)).models.length, 1);
    await page.reload();
    await waitForMessage(page, 'models', undefined, 60_000);
    const { shards, models } = await readStore(page);
    assert.deepEqual({ shards, models }, { shards: [], models: [] });
  } finally {
    await browser.close();
    site.close();
  }
});
