// The IndexedDB database `websd`, shared by the worker (model store) and the page (gallery).
//   shards   key: sha256 hex        value: Uint8Array (a shard's bytes; shared between models)
//   models   keyPath 'id'           {id, name, manifestUrl, manifest, totalBytes, complete, addedAt, imported?}
//                                   (imported: converted in the page, manifestUrl null; its manifest lists
//                                   the shards stored so far until the import completes)
//   gallery  keyPath 'id' (auto)    {id, createdAt, png: Blob, width, height, seed, parameters, settings, ...}
//   loras    keyPath 'name'         {name, bytes: Uint8Array, size, unet, text_encoder, addedAt} (since version 2)

export const DB_NAME = 'websd';
const DB_VERSION = 2;

let opening = null;

/** Opens (and on first use creates) the database; one connection per JS context. */
export function openDb() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains('shards')) db.createObjectStore('shards');
      if (!db.objectStoreNames.contains('models')) db.createObjectStore('models', { keyPath: 'id' });
      if (!db.objectStoreNames.contains('gallery')) db.createObjectStore('gallery', { keyPath: 'id', autoIncrement: true });
      if (!db.objectStoreNames.contains('loras')) db.createObjectStore('loras', { keyPath: 'name' });
    };
    request.onsuccess = () => {
      const db = request.result;
      // A newer version of the page (another tab) wants to upgrade: let it, reopen on next use.
      db.onversionchange = () => { db.close(); opening = null; };
      // The browser closed it (the site's data was cleared or evicted): the next use opens it again.
      db.onclose = () => { opening = null; };
      resolve(db);
    };
    request.onerror = () => { opening = null; reject(request.error); };
    request.onblocked = () => console.warn('websd: the database upgrade waits for another tab to close');
  });
  return opening;
}

/** Resolves with an IDBRequest's result (awaiting it keeps its transaction active). */
export function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * Runs `fn(...objectStores)` inside one transaction and resolves with its result once the
 * transaction has committed. `fn` may only await IDB requests (anything else ends the transaction).
 * A failure of fn or of the transaction (e.g. QuotaExceededError) rejects and nothing is written.
 */
export async function transact(storeNames, mode, fn) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(storeNames, mode);
    let result, failed = false;
    tx.oncomplete = () => resolve(result);
    tx.onabort = () => { if (!failed) reject(tx.error ?? new DOMException('transaction aborted', 'AbortError')); };
    let work;
    try { work = Promise.resolve(fn(...storeNames.map((name) => tx.objectStore(name)))); } catch (e) { work = Promise.reject(e); }
    work.then((r) => { result = r; }, (e) => {
      failed = true;
      try { tx.abort(); } catch { /* already finished */ }
      reject(e);
    });
  });
}
