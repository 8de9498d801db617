// The model store in the real page and worker: downloads of synthetic models (random shards with
// real sha256s) from the test server, with faults the server really produces (a connection cut
// mid-file, a page closed mid-download, corrupted bytes); IndexedDB is read back and re-hashed.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startSite, launchBrowser, screenshot } from './harness.mjs';
import {
  MOUNT, makeSyntheticModels, sendSlowly, recordMessages, waitForMessage, messages, downloadByUrl, readStore,
} from './synthetic.mjs';

let site, browser, synth;
const faults = new Map(); // URL path → (req, res) => true when it answered
const pending = [];       // responses held open, ended after each test

before(async () => {
  synth = makeSyntheticModels();
  site = await startSite({
    mounts: { [MOUNT]: synth.dir },
    intercept: (req, res, pathname) => faults.get(pathname)?.(req, res) ?? false,
  });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  site?.close();
  synth?.cleanup();
});
beforeEach(() => {
  faults.clear();
  site.requests.length = 0;
  pending.splice(0).forEach((res) => res.destroy());
});

const url = (key) => new URL(synth.manifest(key), site.url).href;
const sum = (labels) => labels.reduce((n, l) => n + synth.shards[l].size, 0);
/** How often each path under /synthetic/ was requested since the last reset. */
const fetched = () => {
  const counts = {};
  for (const p of site.requests.filter((r) => r.startsWith(MOUNT))) counts[p] = (counts[p] ?? 0) + 1;
  return counts;
};
const expectCounts = (labelsOrPaths) => Object.fromEntries(labelsOrPaths.map(([p, n]) => [p, n]));

async function newPage(context) {
  const page = await context.newPage();
  await page.goto(site.url);
  await page.waitForSelector('#model-select');
  return page;
}

async function freshContext() {
  const context = await browser.newContext();
  await recordMessages(context);
  return context;
}

/** Only the manifest at `manifestPath` was fetched, and nothing was stored or recorded. */
async function assertRefusedBeforeFetching(page, manifestPath) {
  assert.deepEqual(Object.keys(fetched()), [manifestPath], 'only the manifest was fetched');
  const store = await readStore(page);
  assert.deepEqual(store.models, [], 'the refused model was recorded');
  assert.deepEqual(store.shards, []);
}

function assertShardsVerified(store, labels) {
  const want = labels.map((l) => synth.shards[l].sha256).sort();
  assert.deepEqual(store.shards.map((s) => s.key).sort(), want, 'stored shard keys');
  for (const s of store.shards) {
    assert.equal(s.sha256, s.key, `shard ${s.key} holds bytes of another hash`);
  }
}

test('downloads a model with progress, verifies every shard and marks it complete', async () => {
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const a1 = synth.shards.a1;
    faults.set(a1.path, (req, res) => { sendSlowly(res, a1.bytes); return true; });
    await downloadByUrl(page, url('a'));

    // While it runs, the one progress bar says how far, how fast and how long. (The shards come
    // after the worker's wasm module has checked the manifest: its first load can take a while.)
    await page.waitForFunction(() =>
      /^Downloading Synthetic A: [\d.]+\/2\.8 MB · [\d.]+ (k|M)?B\/s · \d+ s left$/.test(document.getElementById('phase').textContent), null, { timeout: 90_000 });
    const fraction = await page.evaluate(() => document.getElementById('progress').value);
    assert.ok(fraction > 0 && fraction < 1, `progress bar at ${fraction}`);
    await screenshot(page, 'downloading');
    await waitForMessage(page, 'downloaded', url('a'));

    const progress = await messages(page, 'download-progress');
    const total = sum(['shared', 'a1', 'a2']);
    assert.ok(progress.length >= 4, `only ${progress.length} progress events`);
    progress.forEach((p, i) => {
      assert.equal(p.total, total);
      if (i > 0) assert.ok(p.done >= progress[i - 1].done, `progress went back at event ${i}`);
    });
    assert.equal(progress.at(-1).done, total);
    assert.ok(progress.some((p) => p.bytesPerSec > 0 && p.etaSec > 0 && p.shard === a1.file), 'no rate/ETA while a1 downloaded');

    const store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1', 'a2']);
    assert.deepEqual(store.models, [{ id: url('a'), name: 'Synthetic A', complete: true, totalBytes: total }]);
    assert.deepEqual(fetched(), expectCounts([[synth.manifest('a'), 1], ...['shared', 'a1', 'a2'].map((l) => [synth.shards[l].path, 1])]));

    // The page learns that it is stored from the model list the worker sends after 'downloaded'.
    await page.waitForSelector('body[data-model="stored"]', { timeout: 10_000 });
    assert.match(await page.textContent('#phase'), /Synthetic A is downloaded/);
    await page.waitForFunction(() => /Synthetic A.*2\.8 MB.*ready/.test(document.getElementById('storage-models').textContent), null, { timeout: 10_000 });
  } finally {
    await context.close();
  }
});

test('a download cut mid-file resumes with only the missing shards', async () => {
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const a1 = synth.shards.a1;
    let cuts = 0;
    faults.set(a1.path, (req, res) => {
      if (cuts++ > 0) return false; // the second request is served normally
      sendSlowly(res, a1.bytes, { stopAfter: 300_000 });
      return true;
    });
    await downloadByUrl(page, url('a'));
    const error = await waitForMessage(page, 'error', url('a'));
    assert.equal(error.phase, 'download');
    assert.ok(error.message.includes(a1.file), `the error does not name the shard: ${error.message}`);
    assert.match(await page.textContent('#error'), new RegExp(`Download failed: .*${a1.file}`));

    let store = await readStore(page);
    assertShardsVerified(store, ['shared']);
    assert.equal(store.models[0].complete, false);
    assert.equal(await page.getAttribute('body', 'data-model'), 'partial');
    assert.equal(await page.textContent('#download'), 'Resume download');

    site.requests.length = 0;
    await page.click('#download');
    await waitForMessage(page, 'downloaded', url('a'));
    assert.deepEqual(fetched(), expectCounts([[synth.manifest('a'), 1], [a1.path, 1], [synth.shards.a2.path, 1]]),
      'the resumed download fetched a stored shard again');
    store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1', 'a2']);
    assert.equal(store.models[0].complete, true);
  } finally {
    await context.close();
  }
});

test('a page closed mid-download resumes in a new page with only the missing shards', async () => {
  const context = await freshContext();
  try {
    let page = await newPage(context);
    const a2 = synth.shards.a2;
    faults.set(a2.path, (req, res) => { pending.push(res); return true; }); // never answers
    await downloadByUrl(page, url('a'));
    await page.waitForFunction(() => window.__msgs.some((m) => m.type === 'download-progress' && m.shard && m.done >= 2_100_000));
    while (!site.requests.includes(a2.path)) await new Promise((r) => setTimeout(r, 20));
    await page.close();
    faults.clear();

    page = await newPage(context);
    await page.waitForSelector('body[data-model="partial"]');
    let store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1']);
    assert.equal(store.models[0].complete, false);

    site.requests.length = 0;
    await page.click('#download');
    await waitForMessage(page, 'downloaded', url('a'));
    assert.deepEqual(fetched(), expectCounts([[synth.manifest('a'), 1], [a2.path, 1]]));
    store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1', 'a2']);
    assert.equal(store.models[0].complete, true);
  } finally {
    await context.close();
  }
});

test('Stop download keeps the verified shards; Resume fetches the rest', async () => {
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const a1 = synth.shards.a1;
    faults.set(a1.path, (req, res) => { pending.push(res); return true; }); // never answers
    await downloadByUrl(page, url('a'));
    while (!site.requests.includes(a1.path)) await new Promise((r) => setTimeout(r, 20));
    await page.click('#cancel-download');
    const cancelled = await waitForMessage(page, 'cancelled', url('a'));
    assert.equal(cancelled.phase, 'download');
    assert.match(await page.textContent('#phase'), /Download of Synthetic A stopped/);
    assert.equal(await page.textContent('#download'), 'Resume download');
    assertShardsVerified(await readStore(page), ['shared']);

    faults.clear();
    site.requests.length = 0;
    await page.click('#download');
    await waitForMessage(page, 'downloaded', url('a'));
    assert.deepEqual(fetched(), expectCounts([[synth.manifest('a'), 1], [a1.path, 1], [synth.shards.a2.path, 1]]));
  } finally {
    await context.close();
  }
});

test('a corrupted shard is fetched once more, then reported by name', async () => {
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const corrupt = (shard) => { const b = Buffer.from(shard.bytes); b[b.length >> 1] ^= 0xff; return b; };
    // a2 is always corrupted: two tries, then an error naming it.
    const a2 = synth.shards.a2;
    faults.set(a2.path, (req, res) => { sendSlowly(res, corrupt(a2), { delayMs: 0 }); return true; });
    // c1 is corrupted once: the second try succeeds.
    const c1 = synth.shards.c1;
    let c1Tries = 0;
    faults.set(c1.path, (req, res) => {
      if (c1Tries++ > 0) return false;
      sendSlowly(res, corrupt(c1), { delayMs: 0 });
      return true;
    });

    await downloadByUrl(page, url('a'));
    const error = await waitForMessage(page, 'error', url('a'));
    assert.match(error.message, new RegExp(`shard ${a2.file} is corrupted: its sha256 is [0-9a-f]{64}, the manifest says ${a2.sha256} \\(fetched twice\\)`));
    assert.equal(fetched()[a2.path], 2);
    let store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1']);
    assert.equal(store.models[0].complete, false);

    site.requests.length = 0;
    await page.fill('#custom-url', url('c'));
    await page.click('#custom-download');
    await waitForMessage(page, 'downloaded', url('c'));
    assert.equal(fetched()[c1.path], 2);
    store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1', 'c1', 'c2']);
    assert.equal(store.models.find((m) => m.id === url('c')).complete, true);
  } finally {
    await context.close();
  }
});

test('shared shards are stored once; deleting a model keeps the shards another model uses', async () => {
  const context = await freshContext();
  try {
    const page = await newPage(context);
    page.on('dialog', (d) => d.accept());
    await downloadByUrl(page, url('a'));
    await waitForMessage(page, 'downloaded', url('a'));
    await page.fill('#custom-url', url('b'));
    await page.click('#custom-download');
    await waitForMessage(page, 'downloaded', url('b'));
    assert.equal(fetched()[synth.shards.shared.path], 1, 'the shared shard was fetched twice');
    let store = await readStore(page);
    assertShardsVerified(store, ['shared', 'a1', 'a2', 'b1']);
    assert.equal(store.models.length, 2);
    await page.waitForFunction(() => /Synthetic B.*1\.2 MB shared/.test(document.getElementById('storage-models').textContent));

    await page.click(`#storage-models tr[data-id="${url('a')}"] button`);
    const deleted = await waitForMessage(page, 'deleted', url('a'));
    assert.equal(deleted.id, url('a'));
    store = await readStore(page);
    assertShardsVerified(store, ['shared', 'b1']);
    assert.deepEqual(store.models.map((m) => [m.id, m.complete]), [[url('b'), true]]);
    await page.waitForFunction(() => document.querySelectorAll('#storage-models tbody tr').length === 1);

    await page.click(`#storage-models tr[data-id="${url('b')}"] button`);
    await waitForMessage(page, 'deleted', url('b'));
    store = await readStore(page);
    assert.deepEqual(store, { shards: [], models: [] });
  } finally {
    await context.close();
  }
});

test('two tabs downloading at once leave a consistent store', async () => {
  const context = await freshContext();
  try {
    for (const label of ['shared', 'a1', 'a2', 'b1']) {
      const s = synth.shards[label];
      faults.set(s.path, (req, res) => { sendSlowly(res, s.bytes, { delayMs: 5 }); return true; });
    }
    const [one, two] = [await newPage(context), await newPage(context)];
    await Promise.all([downloadByUrl(one, url('a')), downloadByUrl(two, url('b'))]);
    await Promise.all([waitForMessage(one, 'downloaded', url('a')), waitForMessage(two, 'downloaded', url('b'))]);
    const store = await readStore(one);
    assertShardsVerified(store, ['shared', 'a1', 'a2', 'b1']);
    assert.deepEqual(store.models.map((m) => [m.name, m.complete]).sort(), [['Synthetic A', true], ['Synthetic B', true]]);
    assert.deepEqual(await messages(one, 'error'), []);
    assert.deepEqual(await messages(two, 'error'), []);
  } finally {
    await context.close();
  }
});

test('not enough storage: the message gives the numbers and what to delete', async () => {
  const context = await freshContext();
  try {
    const page = await newPage(context);
    // A real, smaller quota for this origin (Chromium's DevTools protocol): 1.5 MB above what is
    // used, room for model C (1.1 MB) but not then for A (2.8 MB): IndexedDB refuses A's first
    // shard with a QuotaExceededError. (Chromium's navigator.storage.estimate() does not report
    // the override, so the check made before the download passes and the write itself refuses.)
    // The service worker's shell cache (the wasm module, ~21 MB) counts towards the quota: let it
    // finish first, or it fills the 1.5 MB of room this test leaves (seen as a flaky failure).
    await page.waitForSelector('body[data-offline="ready"]', { timeout: 60_000 });
    await page.waitForFunction(async () => (await caches.keys()).length > 0 && (await (await caches.open((await caches.keys())[0])).keys()).length >= 20, null, { timeout: 60_000 });
    const { usage } = await page.evaluate(() => navigator.storage.estimate());
    const cdp = await context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(site.url).origin, quotaSize: usage + 1_500_000 });
    await downloadByUrl(page, url('c'));
    await waitForMessage(page, 'downloaded', url('c'));

    await page.fill('#custom-url', url('a'));
    await page.click('#custom-download');
    const error = await waitForMessage(page, 'error', url('a'));
    assert.match(error.message, /^Not enough storage for Synthetic A: it needs 2\.8 MB more, but only [\d.]+ [kMG]?B of this site's [\d.]+ [kMG]?B quota is free \([\d.]+ [kMG]?B used\)\. Delete a stored model to make room \(Synthetic C: 1\.1 MB\), or free disk space\.$/);
    assert.match(await page.textContent('#error'), /Not enough storage/);
    await screenshot(page, 'storage-full');
    const store = await readStore(page);
    assertShardsVerified(store, ['c1', 'c2']);
    assert.deepEqual(store.models.map((m) => [m.name, m.complete]).sort(), [['Synthetic A', false], ['Synthetic C', true]]);
  } finally {
    await context.close();
  }
});

test('a model larger than the free storage is refused before anything is fetched or recorded', async () => {
  // The check before a download uses the browser's real navigator.storage.estimate(): a manifest
  // listing a 100 TB shard is more than any test machine's quota.
  const fs = await import('node:fs');
  const path = await import('node:path');
  const huge = { format: 'websd-weights', version: 1, name: 'Synthetic Huge', shards: [{ file: `${'f'.repeat(64)}.bin`, size: 1e14, sha256: 'f'.repeat(64) }] };
  fs.writeFileSync(path.join(synth.dir, 'huge.json'), JSON.stringify(huge));
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const hugeUrl = new URL(`${MOUNT}huge.json`, site.url).href;
    await downloadByUrl(page, hugeUrl);
    const error = await waitForMessage(page, 'error', hugeUrl);
    assert.match(error.message, /^Not enough storage for Synthetic Huge: it needs 100\.00 TB more, but only [\d.]+ [kMGT]?B of this site's [\d.]+ [kMGT]?B quota is free/);
    assert.match(await page.textContent('#error'), /Not enough storage for Synthetic Huge/);
    await assertRefusedBeforeFetching(page, `${MOUNT}huge.json`);
  } finally {
    await context.close();
  }
});

test('a manifest Rust would refuse at load is refused before any shard is fetched or recorded', async () => {
  // Model A's manifest with a suggestion no generation could use: the JS store sees nothing
  // wrong with its shards, Rust's manifest parser (the one loading uses) refuses it.
  const fs = await import('node:fs');
  const path = await import('node:path');
  const lying = { ...JSON.parse(fs.readFileSync(path.join(synth.dir, 'a.json'), 'utf8')), name: 'Synthetic Lying', suggested: { steps: 0 } };
  fs.writeFileSync(path.join(synth.dir, 'lying.json'), JSON.stringify(lying));
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const url = new URL(`${MOUNT}lying.json`, site.url).href;
    await downloadByUrl(page, url);
    const error = await waitForMessage(page, 'error', url, 60_000);
    assert.equal(error.message, `${url} is not a model this version of websd can load: manifest.json is not a valid manifest: suggested steps 0: must be 1 to 150`);
    assert.match(await page.textContent('#error'), /is not a model this version of websd can load/);
    await assertRefusedBeforeFetching(page, `${MOUNT}lying.json`);
  } finally {
    await context.close();
  }
});

test('a manifest of a million tensors is refused before it is read whole', async () => {
  // 1,000,000 entries (about 110 MB): over Rust's 32 MiB limit (MAX_MANIFEST_BYTES), refused by
  // its Content-Length, nothing stored.
  const entry = (i) => `{"component":"unet","name":"t${i}","shape":[1],"dtype":"f32","shard":0,"offset":${4 * i},"length":4}`;
  const body = Buffer.from(`{"format":"websd-weights","version":1,"name":"Million","components":{},"shards":[],"tensors":[${Array.from({ length: 1_000_000 }, (_, i) => entry(i)).join(',')}]}`);
  faults.set(`${MOUNT}million.json`, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
    return true;
  });
  const context = await freshContext();
  try {
    const page = await newPage(context);
    const url = new URL(`${MOUNT}million.json`, site.url).href;
    await downloadByUrl(page, url);
    const error = await waitForMessage(page, 'error', url, 60_000);
    assert.equal(error.message, `the manifest ${url} is ${(body.length / 1e6).toFixed(1)} MB, more than the 33.6 MB a manifest may be (a real model's is under 1 MB)`);
    await assertRefusedBeforeFetching(page, `${MOUNT}million.json`);
  } finally {
    await context.close();
  }
});
