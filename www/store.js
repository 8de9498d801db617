// The model store, used inside the worker: downloads a model (manifest + shards), verifies every
// shard's sha256, keeps shards in IndexedDB once however many models use them, resumes cut
// downloads, stores models imported (converted) in the page, deletes what no other model uses,
// and hands shards to the loader.
// JS rather than Rust: fetch, streams, IndexedDB, Web Locks and crypto.subtle are promise-based
// browser APIs, and this is glue around them.
import { transact, done } from './db.js';
import { formatBytes } from './format.js';

/** Every write or delete of the store runs under this lock, so that two tabs cannot interleave. */
const LOCK = 'websd-store';
/** At most this many progress messages a second. */
const PROGRESS_INTERVAL_MS = 100;

/** A failure the user can act on; `phase` is the protocol's error phase. */
export class StoreError extends Error {
  constructor(message) { super(message); this.name = 'StoreError'; }
}

function withLock(fn) {
  if (!navigator.locks) {
    throw new StoreError('this browser has no Web Locks (navigator.locks), which websd needs to keep its model store consistent between tabs');
  }
  return navigator.locks.request(LOCK, fn);
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The shards of a manifest, checked, without duplicates (the same sha256 is one shard). */
function manifestShards(manifest, manifestUrl) {
  if (!manifest || !Array.isArray(manifest.shards) || manifest.shards.length === 0) {
    throw new StoreError(`${manifestUrl} is not a websd manifest: it has no "shards" list`);
  }
  const seen = new Map();
  manifest.shards.forEach((s, i) => {
    const where = `shard ${i}${typeof s?.file === 'string' ? ` (${s.file})` : ''} in ${manifestUrl}`;
    if (typeof s?.file !== 'string' || s.file === '') throw new StoreError(`${where} has no "file"`);
    if (!Number.isSafeInteger(s.size) || s.size < 0) throw new StoreError(`${where} has an invalid "size": ${s.size}`);
    if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) {
      throw new StoreError(`${where} has an invalid "sha256" (64 lowercase hex digits expected): ${s.sha256}`);
    }
    if (!seen.has(s.sha256)) seen.set(s.sha256, { file: s.file, size: s.size, sha256: s.sha256 });
  });
  return [...seen.values()];
}

// ---- reading -------------------------------------------------------------------------------------

export function getModel(id) {
  return transact(['models'], 'readonly', (models) => done(models.get(id)));
}

async function allModels() {
  return transact(['models'], 'readonly', (models) => done(models.getAll()));
}

async function storedShardKeys() {
  return new Set(await transact(['shards'], 'readonly', (shards) => done(shards.getAllKeys())));
}

async function hasShard(sha256) {
  return (await transact(['shards'], 'readonly', (shards) => done(shards.count(sha256)))) > 0;
}

/** A shard's bytes, for the loader. */
export async function getShard(sha256) {
  const bytes = await transact(['shards'], 'readonly', (shards) => done(shards.get(sha256)));
  if (!bytes) throw new StoreError(`shard ${sha256} is not in the store: download the model again`);
  return bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
}

/** Summaries of the stored models (no manifests): what the UI lists. */
export async function listModels() {
  const [models, stored] = await Promise.all([allModels(), storedShardKeys()]);
  return models
    .map((m) => {
      const shards = m.manifest.shards ?? [];
      const unique = new Map(shards.map((s) => [s.sha256, s.size]));
      let storedBytes = 0, sharedBytes = 0;
      for (const [sha, size] of unique) {
        if (stored.has(sha)) storedBytes += size;
        if (models.some((o) => o.id !== m.id && o.manifest.shards?.some((s) => s.sha256 === sha))) sharedBytes += size;
      }
      return {
        id: m.id, name: m.name, manifestUrl: m.manifestUrl, imported: Boolean(m.imported), totalBytes: m.totalBytes, storedBytes,
        sharedBytes, complete: m.complete, addedAt: m.addedAt, shards: unique.size,
      };
    })
    .sort((a, b) => a.addedAt - b.addedAt);
}

/** Usage and quota of this origin's storage, with the stored models. */
export async function storageInfo() {
  const { usage = 0, quota = 0 } = (await navigator.storage?.estimate?.()) ?? {};
  const persisted = (await navigator.storage?.persisted?.()) ?? false;
  return { usage, quota, persisted, models: await listModels() };
}

async function quotaMessage(id, name, neededBytes, { usage = 0, quota = 0 }) {
  const models = (await listModels().catch(() => [])).filter((m) => m.id !== id);
  const free = Math.max(0, quota - usage);
  const deletable = models.length
    ? `Delete a stored model to make room (${models.map((m) => `${m.name}: ${formatBytes(m.totalBytes - m.sharedBytes)}`).join(', ')}), or free disk space.`
    : 'Free disk space (the browser gives each site a share of the free disk).';
  return `Not enough storage for ${name}: it needs ${formatBytes(neededBytes)} more, but only ${formatBytes(free)} ` +
    `of this site's ${formatBytes(quota)} quota is free (${formatBytes(usage)} used). ${deletable}`;
}

// ---- downloading ----------------------------------------------------------------------------------

/** Throughput since the download (re)started and the time left at that rate. */
class Meter {
  constructor(total, done) { this.total = total; this.done = done; this.start = performance.now(); this.fetched = 0; }
  add(n) { this.done += n; this.fetched += n; }
  snapshot() {
    const seconds = (performance.now() - this.start) / 1000;
    const bytesPerSec = seconds > 0.05 ? this.fetched / seconds : 0;
    const etaSec = bytesPerSec > 0 ? (this.total - this.done) / bytesPerSec : null;
    return { done: this.done, total: this.total, bytesPerSec, etaSec };
  }
}

/** Fetches one shard into memory, reporting each chunk; checks its size (not its hash). */
async function fetchShard(url, shard, onBytes, signal) {
  let response;
  try {
    response = await fetch(url, { signal, cache: 'no-store' });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new StoreError(`could not fetch shard ${shard.file} (${e.message})`);
  }
  if (!response.ok) throw new StoreError(`the server answered HTTP ${response.status} for shard ${shard.file}`);
  const bytes = new Uint8Array(shard.size);
  let offset = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      if (offset + value.length > bytes.length) {
        throw new StoreError(`shard ${shard.file} is larger than the ${shard.size} bytes the manifest says`);
      }
      bytes.set(value, offset);
      offset += value.length;
      onBytes(value.length);
    }
  } catch (e) {
    if (signal?.aborted || e instanceof StoreError) throw e;
    throw new StoreError(`the download of shard ${shard.file} was cut off after ${formatBytes(offset)} (${e.message})`);
  }
  return { bytes, received: offset };
}

/**
 * Downloads model `id` from `manifestUrl`: every shard not yet stored, each verified against its
 * sha256 (a corrupted one is fetched once more, then reported by name). Resumable: a cut download
 * leaves its verified shards stored and the model incomplete; calling this again fetches only the
 * missing ones. `onProgress({done, total, bytesPerSec, etaSec, name, shard})` covers the whole model.
 * `onRecorded()` is awaited once the (incomplete) model is recorded, before any shard is fetched.
 * `check(manifest)` is awaited before anything is stored and may throw to refuse the model (the
 * worker has Rust parse it as loading would: a manifest it refuses costs no download).
 * Resolves with the model's summary once every shard is stored and the model is marked complete.
 */
export async function downloadModel(id, manifestUrl, { onProgress = () => {}, onRecorded = () => {}, check = () => {}, signal, maxManifestBytes = Infinity } = {}) {
  let manifest;
  try {
    const response = await fetch(manifestUrl, { signal, cache: 'no-cache' });
    if (!response.ok) throw new StoreError(`the server answered HTTP ${response.status} for the manifest ${manifestUrl}`);
    // A manifest larger than Rust reads is refused before it is read whole (a million tensors).
    const tooLarge = (bytes) => new StoreError(`the manifest ${manifestUrl} is ${formatBytes(bytes)}, more than the ${formatBytes(maxManifestBytes)} a manifest may be (a real model's is under 1 MB)`);
    const declared = Number(response.headers.get('content-length'));
    if (declared > maxManifestBytes) throw tooLarge(declared);
    const text = await response.text();
    if (text.length > maxManifestBytes) throw tooLarge(text.length);
    try { manifest = JSON.parse(text); } catch (e) { throw new StoreError(`${manifestUrl} is not valid JSON (${e.message})`); }
  } catch (e) {
    if (e instanceof StoreError || signal?.aborted) throw e;
    const crossOrigin = new URL(manifestUrl).origin !== self.location.origin;
    throw new StoreError(`could not fetch the manifest ${manifestUrl} (${e.message})` +
      (crossOrigin ? '. A model on another site must be served with CORS (Access-Control-Allow-Origin).' : ''));
  }
  const shards = manifestShards(manifest, manifestUrl);
  const name = typeof manifest.name === 'string' && manifest.name ? manifest.name : id;
  const totalBytes = shards.reduce((n, s) => n + s.size, 0);
  const stored0 = await storedShardKeys();

  // Enough room? (Checked before anything is written, so a refused model leaves no record.)
  const missingBytesNow = shards.filter((s) => !stored0.has(s.sha256)).reduce((n, s) => n + s.size, 0);
  if (missingBytesNow > 0 && navigator.storage?.estimate) {
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    if (quota > 0 && usage + missingBytesNow > quota) throw new StoreError(await quotaMessage(id, name, missingBytesNow, { usage, quota }));
  }

  try {
    await check(manifest);
  } catch (e) {
    throw new StoreError(`${manifestUrl} is not a model this version of websd can load: ${e.message}`);
  }

  // Record the model (incomplete): from now on a delete in another tab keeps its shards.
  await withLock(() => transact(['models'], 'readwrite', async (models) => {
    const old = await done(models.get(id));
    const same = old && JSON.stringify(old.manifest?.shards) === JSON.stringify(manifest.shards);
    models.put({
      id, name, manifestUrl, manifest, totalBytes, complete: Boolean(same && old.complete), addedAt: old?.addedAt ?? Date.now(),
    });
  }));
  await onRecorded();

  const stored = await storedShardKeys();
  const missing = shards.filter((s) => !stored.has(s.sha256));
  const missingBytes = missing.reduce((n, s) => n + s.size, 0);

  const meter = new Meter(totalBytes, totalBytes - missingBytes);
  let lastReport = 0;
  const report = (shard, force = false) => {
    const now = performance.now();
    if (!force && now - lastReport < PROGRESS_INTERVAL_MS) return;
    lastReport = now;
    onProgress({ ...meter.snapshot(), name, shard: shard?.file ?? null });
  };
  report(null, true);

  for (const shard of missing) {
    // Another tab may have stored it meanwhile.
    if (await hasShard(shard.sha256)) { meter.done += shard.size; report(shard, true); continue; }
    const url = new URL(shard.file, manifestUrl).href;
    let bytes = null, lastHash = null;
    for (let attempt = 1; attempt <= 2 && !bytes; attempt++) {
      const before = meter.done;
      const got = await fetchShard(url, shard, (n) => { meter.add(n); report(shard); }, signal);
      lastHash = got.received === shard.size ? await sha256Hex(got.bytes) : null;
      if (lastHash === shard.sha256) bytes = got.bytes;
      else meter.done = before; // those bytes do not count: fetch again
    }
    if (!bytes) {
      throw new StoreError(lastHash
        ? `shard ${shard.file} is corrupted: its sha256 is ${lastHash}, the manifest says ${shard.sha256} (fetched twice)`
        : `shard ${shard.file} is truncated: the server sent fewer than its ${shard.size} bytes (fetched twice)`);
    }
    await withLock(async () => {
      try {
        await transact(['models', 'shards'], 'readwrite', async (models, shardStore) => {
          if (!(await done(models.get(id)))) throw new StoreError(`${name} was deleted (in another tab?) while it was downloading`);
          shardStore.put(bytes, shard.sha256);
        });
      } catch (e) {
        if (e?.name === 'QuotaExceededError') {
          const estimate = (await navigator.storage?.estimate?.()) ?? {};
          throw new StoreError(await quotaMessage(id, name, meter.total - meter.done + shard.size, estimate));
        }
        throw e;
      }
    });
    report(shard, true);
  }

  // Complete only when every shard is really there.
  await withLock(() => transact(['models', 'shards'], 'readwrite', async (models, shardStore) => {
    const model = await done(models.get(id));
    if (!model) throw new StoreError(`${name} was deleted (in another tab?) while it was downloading`);
    const keys = new Set(await done(shardStore.getAllKeys()));
    const absent = shards.filter((s) => !keys.has(s.sha256));
    if (absent.length) throw new StoreError(`${name} is still missing ${absent.length} shard(s) (${absent.map((s) => s.file).join(', ')}): download it again`);
    model.complete = true;
    models.put(model);
  }));
  report(null, true);
  return (await listModels()).find((m) => m.id === id);
}

/** Deletes model `id` and every shard that no other model uses. Returns the bytes freed. */
export async function deleteModel(id) {
  return withLock(() => transact(['models', 'shards'], 'readwrite', async (models, shardStore) => {
    const model = await done(models.get(id));
    if (!model) throw new StoreError(`no stored model has the id ${id}`);
    const others = (await done(models.getAll())).filter((m) => m.id !== id);
    const used = new Set(others.flatMap((m) => (m.manifest.shards ?? []).map((s) => s.sha256)));
    let freed = 0;
    const keys = new Set(await done(shardStore.getAllKeys()));
    for (const s of new Map((model.manifest.shards ?? []).map((x) => [x.sha256, x])).values()) {
      if (!used.has(s.sha256) && keys.has(s.sha256)) { shardStore.delete(s.sha256); freed += s.size; }
    }
    models.delete(id);
    return freed;
  }));
}

// ---- importing ------------------------------------------------------------------------------------

/** The id an imported model is stored under. */
export const importedId = (name) => `imported:${name}`;

/** The Web Lock a tab holds while it imports model `id`: the import is alive while it is held. */
const importLock = (id) => `websd-import:${id}`;

/**
 * Removes imports cut off by a closed tab or a crash (recorded, incomplete, and no tab holds their
 * lock) with the shards no other model uses: an import cannot resume, and nothing should stay
 * half-stored. Returns the ids removed.
 */
export async function removeInterruptedImports() {
  if (!navigator.locks?.query) return [];
  const held = new Set(((await navigator.locks.query()).held ?? []).map((l) => l.name));
  const stale = (await allModels()).filter((m) => m.imported && !m.complete && !held.has(importLock(m.id)));
  for (const m of stale) await deleteModel(m.id).catch(() => { /* another tab removed it first */ });
  return stale.map((m) => m.id);
}

/**
 * Stores a model converted in this worker. `convert(sink)` runs the converter (Rust, which reads
 * the user's files), calling `await sink.begin(bytes, name)` once every input is checked,
 * `await sink.putShard(shard, bytes)` for each shard, and resolving with the manifest (JSON text).
 * `begin` checks the room and records the model, incomplete; each shard is stored together with
 * its entry in that record (so a delete in another tab keeps it, and a failed import knows what
 * to remove); the end stores the manifest and marks the model complete. A failure or a cancel
 * deletes what was stored (shards other models use stay): nothing is left half-stored.
 * `onBegin(id, name)` is awaited once the model is recorded. Resolves with the model's summary.
 */
export async function importModel(convert, { onBegin = () => {} } = {}) {
  let id = null, name = null, planned = 0, stored = 0, releaseLock = null;
  const sink = {
    begin: async (bytes, modelName) => {
      name = modelName;
      planned = bytes;
      const newId = importedId(name);
      if (navigator.storage?.estimate) {
        const { usage = 0, quota = 0 } = await navigator.storage.estimate();
        if (quota > 0 && usage + bytes > quota) throw new StoreError(await quotaMessage(newId, name, bytes, { usage, quota }));
      }
      // Held until the import ends, so that other tabs (removeInterruptedImports) leave it be.
      if (navigator.locks) {
        await new Promise((locked, failed) => {
          navigator.locks.request(importLock(newId), () => { locked(); return new Promise((release) => { releaseLock = release; }); }).catch(failed);
        });
      }
      await withLock(() => transact(['models'], 'readwrite', async (models) => {
        if (await done(models.get(newId))) {
          throw new StoreError(`a model named ${name} is already stored: delete it first to import it again, or give the import another name`);
        }
        models.put({
          id: newId, name, manifestUrl: null, imported: true, manifest: { name, shards: [] }, totalBytes: bytes,
          complete: false, addedAt: Date.now(),
        });
      }));
      id = newId;
      await onBegin(id, name);
    },
    putShard: (shard, bytes) => withLock(async () => {
      try {
        await transact(['models', 'shards'], 'readwrite', async (models, shards) => {
          const model = await done(models.get(id));
          if (!model) throw new StoreError(`${name} was deleted (in another tab?) while it was being imported`);
          shards.put(bytes, shard.sha256);
          model.manifest.shards.push({ file: shard.file, size: shard.size, sha256: shard.sha256 });
          models.put(model);
        });
        stored += shard.size;
      } catch (e) {
        if (e?.name === 'QuotaExceededError') {
          throw new StoreError(await quotaMessage(id, name, planned - stored, (await navigator.storage?.estimate?.()) ?? {}));
        }
        throw e;
      }
    }),
  };
  try {
    const manifest = JSON.parse(await convert(sink));
    await withLock(() => transact(['models'], 'readwrite', async (models) => {
      const model = await done(models.get(id));
      if (!model) throw new StoreError(`${name} was deleted (in another tab?) while it was being imported`);
      const totalBytes = manifest.shards.reduce((n, s) => n + s.size, 0);
      models.put({ ...model, manifest, totalBytes, complete: true });
    }));
  } catch (e) {
    if (id) await deleteModel(id).catch(() => { /* already gone */ });
    throw e;
  } finally {
    releaseLock?.();
  }
  return (await listModels()).find((m) => m.id === id);
}
