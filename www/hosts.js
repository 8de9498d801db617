// The hosts the worker may connect to. The worker downloads the models, so its
// Content-Security-Policy lists the hosts of the models this page knows of: the catalog's, the
// stored models', and any the user types in. sw.js writes that policy on the worker script's
// response from the `connect` parameter of its URL; the page itself may connect only to its own
// origin (the meta tag in index.html). A script injected into the page could then send nothing
// typed here to a host the user did not choose.
import { transact, done } from './db.js';

// Hosts that answer a file request with a redirect to a CDN of theirs: the CDN must be allowed too.
const REDIRECTS = { 'https://huggingface.co': ['https://*.huggingface.co', 'https://*.hf.co'] };

/** The origins of `urls` other than the page's own. */
export function foreignOrigins(urls) {
  const origins = new Set();
  for (const url of urls) {
    try {
      const { origin } = new URL(url, location.href);
      if (origin !== location.origin && /^https?:/.test(origin)) origins.add(origin);
    } catch { /* not a URL: nothing to allow */ }
  }
  return origins;
}

/** The manifest URLs of the models stored on this device (imported ones have none). */
export async function storedModelUrls() {
  const models = await transact(['models'], 'readonly', (s) => done(s.getAll()));
  return models.map((m) => m.manifestUrl).filter(Boolean);
}

/** The worker script's URL, naming the origins (and their CDNs) its policy allows. */
export function workerUrl(origins) {
  const url = new URL('./worker.js', import.meta.url);
  const allowed = [...origins].flatMap((o) => [o, ...(REDIRECTS[o] ?? [])]);
  if (allowed.length) url.searchParams.set('connect', allowed.join(' '));
  return url;
}
