// The page: a thin UI. All GPU work and the model store live in the worker (www/worker.js), so the
// page never freezes; the page only sends requests and shows what comes back.
import { WorkerClient } from './worker-client.js';
import { webgpuProblem, showUnsupported, showGpu, showProbe, showProbeError } from './gpu.js';
import { setUpModels, loadCatalog, catalogUrls, selectedId, modelInfo, offerSuggestion, chooseModel } from './models-ui.js';
import { foreignOrigins, storedModelUrls, workerUrl } from './hosts.js';
import { setUpImport } from './import-ui.js';
import { setUpSettings, readForGenerate, applySettings, setUpForm } from './settings.js';
import { setUpLoras } from './loras-ui.js';
import { addImages, renderGallery } from './gallery.js';
import { setUpTokenCounter } from './tokens.js';
import { showProgress, showIdle, showError, clearError, startTimer, formatDuration } from './progress.js';

const $ = (id) => document.getElementById(id);

let client;
let gpuReady = false;
let busy = false;
let webgpuMissing = false;
let allowedOrigins = new Set(); // the hosts the worker may download from (www/hosts.js)

function drawPixels({ width, height, pixels }) {
  const canvas = $('preview-canvas');
  canvas.width = width;
  canvas.height = height;
  const data = pixels instanceof Uint8ClampedArray ? pixels : new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  canvas.getContext('2d').putImageData(new ImageData(data, width, height), 0, 0);
  canvas.hidden = false;
}

function setBusy(value) {
  busy = value;
  $('generate').disabled = value;
  $('cancel').disabled = !value;
}

const reuse = (settings) => {
  applySettings(settings);
  showIdle('Settings restored from the gallery (seed kept). The start image of img2img is not kept.');
  $('prompt').focus();
};

async function generate() {
  if (busy) return;
  clearError();
  if (!gpuReady) { showError('The GPU is not ready: see “GPU details”.'); return; }
  const id = selectedId();
  const { name, summary } = id ? modelInfo(id) : {};
  if (!summary?.complete) {
    showError(summary ? `${name} is only partly downloaded: resume its download first.` : 'Download a model first.');
    return;
  }
  setBusy(true);
  let timer = null;
  try {
    offerSuggestion(id); // a model's first run uses what it was made for
    const { params, settings } = await readForGenerate();
    const count = params.batch_count;
    const startClock = () => { timer?.stop(); timer = startTimer((s) => `${formatDuration(s)} elapsed · ${count} image${count > 1 ? 's' : ''}`); };
    startClock();
    showProgress('Starting…', 0);
    // The worker loads the model first when it is not the one it holds (load-progress, loaded):
    // the images' time starts once it is loaded.
    const offLoaded = client.on('loaded', startClock);
    const reply = await client.request({ type: 'generate', id, params }, ['images', 'cancelled'], 'generate').finally(offLoaded);
    const seconds = timer.seconds();
    if (reply.type === 'cancelled') {
      timer.stop(`Cancelled after ${formatDuration(seconds)}.`);
      showIdle('Cancelled.');
      return;
    }
    const { images } = reply;
    const each = seconds / Math.max(1, images.length);
    timer.stop(`${images.length} image${images.length > 1 ? 's' : ''} in ${formatDuration(seconds)} (${formatDuration(each)} per image).`);
    if (images[0]) drawPixels(images[0]);
    await addImages(images, { settings, modelId: id, modelName: name, elapsedMs: each * 1000 });
    await renderGallery({ onReuse: reuse });
    showIdle('Done.');
  } catch (e) {
    timer?.stop();
    showIdle('Stopped by an error.');
    showError(e.message);
  } finally {
    setBusy(false);
  }
}

function onStep({ step, total, preview }) {
  showProgress(step >= total ? 'Decoding…' : `Step ${step}/${total}`, total ? step / total : null);
  if (preview && $('preview').checked) drawPixels(preview);
}

/**
 * The worker crashed or lost its GPU device: start a fresh worker (which opens the GPU again) and
 * say so. The model is loaded again from IndexedDB on the next Generate; nothing is downloaded.
 */
function recover(reason) {
  const message = `The GPU stopped working: ${reason.replace(/\.$/, '')}. websd has reconnected to it: press Generate to try again; the model reloads from this device's storage.`;
  restartWorker(message); // a generation waiting for its images fails with this message
  showIdle('GPU reconnecting…');
  showError(message);
}

function restartWorker(reason) {
  gpuReady = false;
  client.restart(reason);
  setBusy(false);
  if (!webgpuMissing) client.post({ type: 'init' });
}

/**
 * Lets the worker download from `url`'s host (the user chose it): a host not yet in the worker's
 * Content-Security-Policy needs a new worker, whose script's URL names it (www/hosts.js).
 */
function allowDownloadsFrom(url, { downloading }) {
  const added = [...foreignOrigins([url])].filter((o) => !allowedOrigins.has(o));
  if (!added.length) return;
  if (busy || downloading) throw new Error(`Wait for the ${busy ? 'image' : 'current download'} to finish, then download from ${added.join(', ')}: websd starts its worker again to allow a new host.`);
  for (const o of added) allowedOrigins.add(o);
  client.url = workerUrl(allowedOrigins);
  restartWorker(`websd restarted its worker to allow downloads from ${added.join(', ')}`);
}

function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register(new URL('../sw.js', import.meta.url)).catch((e) => console.warn('websd: no offline support:', e.message));
  navigator.serviceWorker.ready.then(() => { document.body.dataset.offline = 'ready'; });
}

async function main() {
  registerServiceWorker();
  setUpSettings();
  $('generate').addEventListener('click', generate);
  // The button is the form's submit button: the click above is the action, never a navigation.
  $('settings').addEventListener('submit', (e) => e.preventDefault());
  $('cancel').addEventListener('click', () => {
    client?.post({ type: 'cancel' });
    showProgress('Cancelling…', null);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
  });
  renderGallery({ onReuse: reuse }).catch((e) => showError(`The gallery could not be read: ${e.message}`));

  // The store works without WebGPU (models can still be listed and deleted), so the worker starts
  // either way; only the GPU is asked for when there is one.
  const problem = await webgpuProblem();
  webgpuMissing = Boolean(problem);
  await loadCatalog();
  allowedOrigins = foreignOrigins([...catalogUrls(), ...await storedModelUrls().catch(() => [])]);
  client = new WorkerClient(workerUrl(allowedOrigins));
  client.onfailure = (message) => showUnsupported(`The worker failed to start: ${message}.`);
  client.on('crashed', ({ message }) => recover(message));
  // For tests of recovery (and anyone curious): destroys the GPU device as a driver reset would.
  window.websdDestroyGpu = () => client.post({ type: 'destroy-gpu' });
  // For the soak test: {wasm_bytes, gpu: {reserved, in_use, allocations}} of the worker.
  window.websdMemory = () => client.request({ type: 'memory' }, ['memory'], 'memory');
  client.on('gpu', ({ info }) => { gpuReady = true; showGpu(info); client.post({ type: 'probe' }); });
  client.on('probe', ({ values }) => showProbe(values));
  client.on('form', setUpForm);
  client.on('step', onStep);
  client.on('load-progress', ({ done, total }) => showProgress(`Loading ${modelInfo(selectedId()).name}: ${Math.round((100 * done) / total)}%`, done / total));
  client.on('loaded', ({ id, info }) => {
    const { name } = modelInfo(id);
    $('compute').textContent = info.dtype === 'f16'
      ? `${name} runs in f16 on this GPU (shader-f16).`
      : `${name} runs in f32 on this GPU (it has no shader-f16: slower, twice the memory).`;
  });
  client.on('error', ({ phase, message }) => {
    if (phase === 'gpu') showUnsupported(message);
    else if (phase === 'probe') showProbeError(message);
    else if (phase === 'protocol') showError(message);
  });
  client.post({ type: 'form' });
  await setUpModels(client, { beforeDownload: allowDownloadsFrom });
  setUpImport(client, { onImported: chooseModel });
  setUpLoras(client);
  setUpTokenCounter(client);
  if (problem) { showUnsupported(problem); $('generate').disabled = true; return; }
  $('probe-status').textContent = 'Loading websd…';
  client.post({ type: 'init' });
}

main().catch((e) => showUnsupported(`Unexpected error: ${e.message}`));
