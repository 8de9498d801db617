// Model picker (catalog www/models.json + any manifest URL), downloads with progress, and the
// storage panel (usage/quota, stored models, delete).
import { formatBytes, formatDuration, formatRate } from './format.js';
import { showProgress, showIdle, showError, clearError } from './progress.js';
import { applySuggested, samplerLabel } from './settings.js';

const $ = (id) => document.getElementById(id);
const SELECTED = 'websd-model';
const SUGGESTED = 'websd-suggested-applied'; // ids whose suggested settings were filled in once

let client;
let beforeDownload = () => {}; // (manifestUrl, {downloading}) => void: lets the worker reach its host, or throws
let catalog = [];            // entries of models.json, manifest resolved to an absolute URL
let stored = new Map();      // id → summary from the worker ({name, totalBytes, storedBytes, complete, ...})
const downloading = new Set();
const names = new Map();     // id → the name its manifest gave, once a download has started

/** Chooses model `id` as soon as the picker lists it (an imported model, once the worker lists it). */
export function chooseModel(id) {
  localStorage.setItem(SELECTED, id);
  if ([...$('model-select').options].some((o) => o.value === id)) {
    $('model-select').value = id;
    renderSelected({ chosen: true });
  }
}

/** The id of the chosen model. */
export function selectedId() { return $('model-select').value || null; }

/** What is known of a model: its catalog entry and/or its stored summary. */
export function modelInfo(id) {
  const entry = catalog.find((m) => m.id === id);
  const summary = stored.get(id);
  return { id, entry, summary, name: summary?.name ?? names.get(id) ?? entry?.name ?? id };
}

/** The catalog's manifest URLs (once loadCatalog has run). */
export function catalogUrls() { return catalog.map((m) => m.manifestUrl); }

/** Reads www/models.json; without it the picker lists only stored models (and says so). */
export async function loadCatalog() {
  const url = new URL('models.json', import.meta.url);
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const { models } = await response.json();
    catalog = models.map((m) => ({ ...m, manifestUrl: new URL(m.manifest, url).href }));
  } catch (e) {
    catalog = [];
    showError(`The model catalog (${url.pathname}) could not be read: ${e.message}. A model can still be added by its manifest URL.`);
  }
}

function describe(id) {
  const { entry, summary } = modelInfo(id);
  const parts = [];
  if (entry?.description) parts.push(entry.description);
  if (summary?.complete) parts.push(`Stored on this device (${formatBytes(summary.totalBytes)}).`);
  else if (summary?.imported) parts.push('Its import did not finish: delete it under Storage and import it again.');
  else if (summary) parts.push(`Partly downloaded: ${formatBytes(summary.storedBytes)} of ${formatBytes(summary.totalBytes)}.`);
  else if (entry?.size) parts.push(`Download: ${formatBytes(entry.size)}.`);
  if (entry?.license) parts.push(`License: ${entry.license}`);
  if (!entry && summary) parts.push(summary.imported ? 'Imported from this computer.' : `From ${summary.manifestUrl}`);
  return parts.join(' ');
}

function describeSuggested(s) {
  const steps = `${s.steps} step${s.steps === 1 ? '' : 's'}`;
  return `Made for ${steps}, guidance ${s.guidance_scale}, ${s.width}×${s.height}, sampler ${samplerLabel(s.scheduler)}.`;
}

function appliedIds() {
  try { return new Set(JSON.parse(localStorage.getItem(SUGGESTED) ?? '[]')); } catch { return new Set(); }
}

/**
 * A model's suggested settings (from Rust, through the worker) fill the form when the user picks
 * that model (`always`), and otherwise once: as soon as its manifest is known (its download
 * starts) or, for a model stored before suggestions existed, the first time the page lists it.
 * A reload keeps what the user set since. Generate calls this too, so a model is never run
 * before its suggestion had its chance.
 */
export function offerSuggestion(id = selectedId(), { always = false } = {}) {
  const suggested = (id && stored.get(id)?.suggested) || null;
  const applied = appliedIds();
  const fill = Boolean(suggested) && (always || !applied.has(id));
  applySuggested(suggested, { fill });
  if (fill) {
    applied.add(id);
    try { localStorage.setItem(SUGGESTED, JSON.stringify([...applied])); } catch { /* the form still works */ }
    showIdle(`Settings for ${modelInfo(id).name}: ${describeSuggested(suggested)}`);
  }
  $('model-suggested').hidden = !suggested;
  $('model-suggested').textContent = suggested ? describeSuggested(suggested) : '';
  $('use-suggested').hidden = !suggested;
}

function renderPicker() {
  const select = $('model-select');
  // The choice saved in localStorage wins as soon as that model is listed (one added by URL
  // appears only once the worker has recorded it).
  const saved = localStorage.getItem(SELECTED);
  const listed = (id) => catalog.some((m) => m.id === id) || stored.has(id);
  const previous = saved && listed(saved) ? saved : select.value;
  select.innerHTML = '';
  const add = (id, label) => {
    const option = document.createElement('option');
    option.value = id;
    option.textContent = label;
    select.append(option);
  };
  for (const m of catalog) add(m.id, m.name + (stored.get(m.id)?.complete ? ' ✓' : ''));
  for (const [id, s] of stored) {
    if (!catalog.some((m) => m.id === id)) add(id, `${s.name} (${s.imported ? 'imported' : 'added by URL'})${s.complete ? ' ✓' : ''}`);
  }
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  renderSelected();
}

function renderSelected({ chosen = false } = {}) {
  const id = selectedId();
  $('model-about').textContent = id ? describe(id) : 'No model yet: add one by its manifest URL.';
  const summary = id && stored.get(id);
  const button = $('download');
  button.hidden = !id || Boolean(summary?.complete) || Boolean(summary?.imported);
  button.disabled = downloading.has(id);
  button.textContent = summary ? 'Resume download' : 'Download';
  $('cancel-download').hidden = !downloading.has(id);
  document.body.dataset.model = summary?.complete ? 'stored' : summary ? 'partial' : 'absent';
  offerSuggestion(id, { always: chosen });
}

function renderStorage({ usage, quota, persisted, models }) {
  $('storage-usage').textContent = `${formatBytes(usage)} used of the ${formatBytes(quota)} this browser allows this site` +
    (persisted ? ' (kept: the browser will not evict it).' : ' (the browser may evict it when the disk fills up).');
  const table = $('storage-models');
  const body = table.querySelector('tbody');
  body.innerHTML = '';
  table.hidden = models.length === 0;
  for (const m of models) {
    const row = document.createElement('tr');
    row.dataset.id = m.id;
    const cell = (text) => { const td = document.createElement('td'); td.textContent = text; row.append(td); return td; };
    cell(m.name);
    cell(formatBytes(m.totalBytes) + (m.sharedBytes ? ` (${formatBytes(m.sharedBytes)} shared with other models)` : ''));
    cell(m.complete ? 'ready' : `partial: ${formatBytes(m.storedBytes)}`);
    const actions = cell('');
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Delete';
    remove.setAttribute('aria-label', `Delete ${m.name}`);
    remove.addEventListener('click', () => {
      // eslint-disable-next-line no-alert
      if (!confirm(`Delete ${m.name} from this device? Downloading it again costs ${formatBytes(m.totalBytes - m.sharedBytes)}.`)) return;
      client.post({ type: 'delete-model', id: m.id });
    });
    actions.append(remove);
    body.append(row);
  }
}

async function startDownload(id, manifestUrl) {
  clearError();
  try {
    beforeDownload(manifestUrl, { downloading: downloading.size > 0 });
  } catch (e) {
    showError(e.message);
    return;
  }
  downloading.add(id);
  renderSelected();
  // persist() exists only on the page (not in workers): ask before the worker fills the disk.
  try { await navigator.storage?.persist?.(); } catch { /* the browser said no: storage stays best-effort */ }
  showProgress(`Downloading ${modelInfo(id).name}: fetching the manifest…`, null);
  client.post({ type: 'download', id, manifestUrl });
}

function onProgress({ id, name, done, total, bytesPerSec, etaSec }) {
  if (name) names.set(id, name);
  const mb = (n) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0);
  let text = `Downloading ${modelInfo(id).name}: ${mb(done)}/${mb(total)} MB`;
  if (bytesPerSec > 0) text += ` · ${formatRate(bytesPerSec)}`;
  if (etaSec !== null && etaSec !== undefined && done < total) text += ` · ${formatDuration(etaSec)} left`;
  showProgress(text, total > 0 ? done / total : null);
}

export async function setUpModels(workerClient, options = {}) {
  client = workerClient;
  beforeDownload = options.beforeDownload ?? beforeDownload;
  renderPicker();
  $('model-select').addEventListener('change', () => {
    localStorage.setItem(SELECTED, selectedId());
    renderSelected({ chosen: true });
  });
  $('download').addEventListener('click', () => {
    const id = selectedId();
    if (!id) return;
    const url = stored.get(id)?.manifestUrl ?? modelInfo(id).entry?.manifestUrl;
    startDownload(id, url);
  });
  $('cancel-download').addEventListener('click', () => client.post({ type: 'cancel-download', id: selectedId() }));
  $('use-suggested').addEventListener('click', () => offerSuggestion(selectedId(), { always: true }));
  $('custom-download').addEventListener('click', () => {
    const input = $('custom-url');
    let url;
    try { url = new URL(input.value.trim(), location.href).href; } catch { url = null; }
    if (!url || !input.value.trim()) { showError('Enter the URL of a model’s manifest.json.'); input.focus(); return; }
    localStorage.setItem(SELECTED, url);
    startDownload(url, url);
  });

  client.on('models', ({ models }) => {
    stored = new Map(models.map((m) => [m.id, m]));
    renderPicker();
    client.post({ type: 'storage' });
  });
  client.on('storage', renderStorage);
  client.on('download-progress', onProgress);
  client.on('downloaded', ({ id }) => {
    downloading.delete(id);
    showIdle(`${modelInfo(id).name} is downloaded and stored on this device.`);
    if (selectedId() !== id) { $('model-select').value = id; localStorage.setItem(SELECTED, id); }
  });
  client.on('cancelled', ({ phase, id }) => {
    if (phase !== 'download') return;
    downloading.delete(id);
    renderSelected();
    showIdle(`Download of ${modelInfo(id).name} stopped: what was fetched is kept, Resume continues.`);
  });
  client.on('deleted', ({ id, freedBytes }) => showIdle(`${modelInfo(id).name} deleted: ${formatBytes(freedBytes)} freed.`));
  client.on('error', ({ phase, id, message }) => {
    if (phase === 'download') {
      downloading.delete(id);
      renderSelected();
      showIdle(`Download of ${modelInfo(id).name} failed.`);
      showError(`Download failed: ${message}`);
    } else if (['models', 'storage', 'delete'].includes(phase)) {
      showError(`Storage: ${message}`);
    }
  });
  client.post({ type: 'list-models' });
  // The browser may clear the site's data while the tab is in the background (eviction): coming
  // back, list what is really stored, so a model gone is offered for download again.
  document.addEventListener('visibilitychange', () => { if (!document.hidden) client.post({ type: 'list-models' }); });
}
