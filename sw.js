// websd's service worker: keeps the app shell (page, scripts, styles, the wasm module, the model
// catalog) in Cache Storage so that the page opens offline after one visit. Model shards are not
// here: they live in IndexedDB (www/store.js), and their requests pass straight to the network.
// It lives at the site root (not in www/) because a service worker controls only the pages under
// its own folder, and index.html is at the root.
//
// Strategy: network first, cache as the fallback. Online, every load gets the current files (the
// server answers an unchanged file with a 304, so the cache is rewritten only when a file changed);
// offline, the cached copy.
//
// Versions: the cache is named after the build (www/pkg/build.js, written by build.sh). A new build
// changes that imported file, so the browser installs this worker again: it fills a new cache and,
// once active, deletes the caches of older builds.
try {
  importScripts('www/pkg/build.js');
} catch (e) {
  // No build id (a tree served without ./build.sh): one fixed name.
}
const CACHE = `websd-shell-${self.WEBSD_BUILD ?? 'dev'}`;
const SHELL = [
  './', 'index.html', 'bench.html', 'manifest.webmanifest',
  'www/app.js', 'www/worker.js', 'www/worker-client.js', 'www/store.js', 'www/db.js', 'www/format.js',
  'www/gpu.js', 'www/hosts.js', 'www/models-ui.js', 'www/settings.js', 'www/mask.js', 'www/loras-ui.js', 'www/lora-store.js', 'www/import-ui.js', 'www/gallery.js', 'www/progress.js', 'www/tokens.js', 'www/bench.js',
  'www/style.css', 'www/icon.svg', 'www/models.json',
  'www/pkg/websd.js', 'www/pkg/websd_bg.wasm',
].map((p) => new URL(p, self.location).href);
const SHELL_SET = new Set(SHELL);

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL.map((url) => new Request(url, { cache: 'no-cache' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key.startsWith('websd-shell-') && key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

/** The cache key of a shell request (navigations to the site root are the page), or null. */
function shellKey(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  url.search = '';
  url.hash = '';
  if (request.mode === 'navigate' && url.href === new URL('./', self.location).href) return new URL('index.html', self.location).href;
  return SHELL_SET.has(url.href) ? url.href : null;
}

// The worker's Content-Security-Policy. A dedicated worker takes its policy from its script's
// response, not from the page's meta tag, and the worker is what downloads models: it may connect
// to the page's origin and to the hosts the page names in the `connect` parameter of the worker's
// URL (www/hosts.js: the catalog's, the stored models' and those the user typed in).
const WORKER = new URL('www/worker.js', self.location).href;
const HOST_SOURCE = /^https?:\/\/(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:\d{1,5})?$/i;

function workerPolicy(requestUrl) {
  const hosts = (new URL(requestUrl).searchParams.get('connect') ?? '').split(' ').filter((h) => HOST_SOURCE.test(h));
  return ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", `connect-src ${["'self'", ...hosts].join(' ')}`,
    "object-src 'none'", "base-uri 'none'"].join('; ');
}

function withPolicy(response, policy) {
  const headers = new Headers(response.headers);
  headers.set('content-security-policy', policy);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener('fetch', (event) => {
  const key = shellKey(event.request);
  if (!key) return; // shards, manifests and everything else: the network, untouched
  event.respondWith((async () => {
    const response = await networkOrCache(event, key);
    return key === WORKER ? withPolicy(response, workerPolicy(event.request.url)) : response;
  })());
});

async function networkOrCache(event, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(event.request, { cache: 'no-cache' });
    if (response.ok) {
      const cached = await cache.match(key);
      const etag = response.headers.get('etag');
      if (!cached || !etag || cached.headers.get('etag') !== etag) event.waitUntil(cache.put(key, response.clone()));
    }
    return response;
  } catch (e) {
    const cached = await cache.match(key);
    if (cached) return cached;
    throw e;
  }
}
