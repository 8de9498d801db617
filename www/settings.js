// The generation settings form: reading it into the worker's `generate` params, filling it back
// (reuse settings, last session), seeds, size presets and the img2img start image.

import { maskPixels, resetMask, setUpMask } from './mask.js';
import { showError } from './progress.js';

const $ = (id) => document.getElementById(id);
const SAVED = 'websd-settings';
// The sampler list is Rust's (wasm `samplers()`, posted by the worker once its module loads),
// after index.html's "Model default" ('default': the model's own sampler, decided in Rust).
const samplers = () => [...$('scheduler').options].map((o) => o.value);
// A saved or reused sampler that is not listed yet: chosen as soon as the list arrives.
let wantedScheduler = null;
// The numbers' defaults and ranges are Rust's too (wasm `setting_fields()`: {name, default, min,
// max, step}, by Settings field name), posted with the samplers; index.html has none of them.
// Until they arrive no number is read, filled or saved (see `formReady`).
let fields = null;
const INPUT_OF = { steps: 'steps', guidance_scale: 'guidance', width: 'width', height: 'height', batch_count: 'batch', strength: 'strength' };
let markReady;
const formReady = new Promise((resolve) => { markReady = resolve; });
// The seed is the page's own: drawn as 32 random bits, and JS numbers hold no u64.
const MAX_SEED = 2 ** 32 - 1;

let initImage = null; // Blob of the img2img start image, or null
let initImageUrl = null;

export function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** `v` on the field's grid (a whole step when the step is whole: sizes by 8) and in its range. */
function fit(field, v) {
  if (Number.isInteger(field.step)) v = Math.round(v / field.step) * field.step;
  return Math.min(field.max, Math.max(field.min, v));
}

/** The form's value for Settings field `name`: blank or not a number → Rust's default. */
function number(name) {
  const field = fields[name];
  const input = $(INPUT_OF[name]);
  const v = input.value === '' || !Number.isFinite(Number(input.value)) ? field.default : fit(field, Number(input.value));
  input.value = v;
  return v;
}

function seedValue() {
  const v = Math.round(Number($('seed').value));
  $('seed').value = Number.isFinite(v) ? Math.min(MAX_SEED, Math.max(0, v)) : 0;
  return Number($('seed').value);
}

function syncPreset() {
  const key = `${$('width').value}x${$('height').value}`;
  const preset = $('size-preset');
  preset.value = [...preset.options].some((o) => o.value === key) ? key : '';
}

/** The settings as plain data (what the gallery keeps for "reuse settings"). */
function formValues() {
  return {
    prompt: $('prompt').value,
    negative_prompt: $('negative-prompt').value,
    steps: number('steps'),
    guidance_scale: number('guidance_scale'),
    seed: seedValue(),
    width: number('width'),
    height: number('height'),
    scheduler: wantedScheduler ?? (samplers().includes($('scheduler').value) ? $('scheduler').value : 'default'),
    batch_count: number('batch_count'),
    strength: number('strength'),
    preview: $('preview').checked,
  };
}

/**
 * Reads the form for a new generation: draws a new seed unless it is kept, and decodes the
 * img2img start image to RGBA at the chosen size. Returns {params, settings}.
 */
export async function readForGenerate() {
  await formReady;
  if (!$('seed-lock').checked) $('seed').value = randomSeed();
  const settings = formValues();
  $('width').value = settings.width;
  $('height').value = settings.height;
  syncPreset();
  save();
  const params = { ...settings };
  if (initImage) {
    params.init_image = await imagePixels(initImage, settings.width, settings.height);
    // Painted: inpainting (white is repainted); unpainted: the whole image, as plain img2img.
    const mask = maskPixels(settings.width, settings.height);
    if (mask) params.mask = mask;
  } else delete params.strength;
  return { params, settings: { ...settings, img2img: Boolean(initImage), inpaint: Boolean(params.mask) } };
}

/**
 * Fills the form from saved settings (a gallery image's, or the last session's). The text, seed
 * and checkboxes at once; the numbers once Rust's ranges are in (the form holds none before).
 */
export function applySettings(s, { lockSeed = true } = {}) {
  if (!s) return;
  const set = (id, v) => { if (v !== undefined && v !== null) $(id).value = v; };
  set('prompt', s.prompt);
  set('negative-prompt', s.negative_prompt);
  // Setting .value fires no event: tell the token counter.
  for (const id of ['prompt', 'negative-prompt']) $(id).dispatchEvent(new Event('change'));
  set('seed', s.seed);
  if (samplers().includes(s.scheduler)) { $('scheduler').value = s.scheduler; wantedScheduler = null; }
  else if (typeof s.scheduler === 'string' && s.scheduler) wantedScheduler = s.scheduler;
  if (typeof s.preview === 'boolean') $('preview').checked = s.preview;
  if (lockSeed) $('seed-lock').checked = true;
  const numbers = () => {
    for (const [name, id] of Object.entries(INPUT_OF)) set(id, s[name]);
    $('strength-value').textContent = Number($('strength').value).toFixed(2);
    syncPreset();
    save();
  };
  if (fields) numbers();
  else formReady.then(numbers);
}

/**
 * Sets up the form from Rust's lists (the worker's `form` message): the samplers ([{name, label}],
 * after "Model default") and each number's default and range. Settings applied before it
 * (the last session's, a suggestion) then fill their numbers in, in the order they came.
 */
export function setUpForm({ samplers: list, fields: numbers }) {
  fields = Object.fromEntries(numbers.map((f) => [f.name, f]));
  for (const f of numbers) {
    const input = $(INPUT_OF[f.name]);
    Object.assign(input, { min: f.min, max: f.max, step: f.step, value: f.default });
  }
  $('strength-value').textContent = fields.strength.default.toFixed(2);
  setSamplers(list);
  syncPreset();
  markReady();
  document.body.dataset.form = 'ready';
}

function setSamplers(list) {
  const select = $('scheduler');
  for (const { name, label } of list) {
    if (samplers().includes(name)) continue;
    const option = document.createElement('option');
    option.value = name;
    option.textContent = label;
    select.append(option);
  }
  if (wantedScheduler && samplers().includes(wantedScheduler)) select.value = wantedScheduler;
  wantedScheduler = null;
}

/** The label the scheduler list gives a sampler's name ('euler_a' → 'Euler a'). */
export function samplerLabel(name) {
  return [...$('scheduler').options].find((o) => o.value === name)?.textContent ?? name;
}

/**
 * Fills steps, guidance and size with a model's suggestion (src/suggested.rs: {scheduler, steps,
 * guidance_scale, width, height}) and picks "Model default" as the sampler, which then names the
 * model's own. With `suggested` null the "Model default" option only loses its name.
 */
export function applySuggested(suggested, { fill = true } = {}) {
  if (!fields) { formReady.then(() => applySuggested(suggested, { fill })); return; }
  const option = $('scheduler').querySelector('option[value="default"]');
  option.textContent = suggested ? `Model default (${samplerLabel(suggested.scheduler)})` : 'Model default';
  if (!suggested || !fill) return;
  $('steps').value = suggested.steps;
  $('guidance').value = suggested.guidance_scale;
  $('width').value = suggested.width;
  $('height').value = suggested.height;
  $('scheduler').value = 'default';
  wantedScheduler = null;
  syncPreset();
  save();
}

function save() {
  if (!fields) return;
  try {
    localStorage.setItem(SAVED, JSON.stringify({ ...formValues(), seedLocked: $('seed-lock').checked }));
  } catch { /* storage full or disabled: the form still works, only without memory */ }
}

function restore() {
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(SAVED) ?? 'null'); } catch { saved = null; }
  if (saved) {
    applySettings(saved, { lockSeed: false });
    $('seed-lock').checked = Boolean(saved.seedLocked);
  } else {
    $('seed').value = randomSeed();
  }
}

// ---- img2img start image ----------------------------------------------------------------------

function setInitImage(blob) {
  if (initImageUrl) URL.revokeObjectURL(initImageUrl);
  initImage = blob;
  initImageUrl = blob ? URL.createObjectURL(blob) : null;
  $('init-image-preview').src = initImageUrl ?? '';
  $('init-image-shown').hidden = !blob;
  resetMask(null);
  // A file the browser cannot decode (cut, or not an image) is refused now, in words, not at
  // Generate.
  if (blob) {
    createImageBitmap(blob).then((b) => { if (initImage === blob) resetMask({ width: b.width, height: b.height }); b.close(); }, () => {
      if (initImage !== blob) return;
      setInitImage(null);
      showError(`${blob.name ?? 'The pasted image'} could not be read as an image (cut short, or not an image): choose a PNG, JPEG or WebP file.`);
    });
  }
  $('init-image-none').hidden = Boolean(blob);
  if (!blob) $('init-image-file').value = '';
}

/** RGBA pixels of `blob`, scaled to cover width×height and centre-cropped. */
async function imagePixels(blob, width, height) {
  const bitmap = await createImageBitmap(blob);
  const scale = Math.max(width / bitmap.width, height / bitmap.height);
  const w = bitmap.width * scale, h = bitmap.height * scale;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
  bitmap.close();
  const data = ctx.getImageData(0, 0, width, height).data;
  return { width, height, pixels: new Uint8Array(data.buffer) };
}

function firstImage(items) {
  for (const item of items ?? []) {
    const file = item.kind === 'file' ? item.getAsFile() : item;
    if (file?.type?.startsWith('image/')) return file;
  }
  return null;
}

function setUpInitImage() {
  const zone = $('drop-zone');
  $('init-image-file').addEventListener('change', (e) => setInitImage(e.target.files[0] ?? null));
  setUpMask(() => ({ width: Number($('width').value), height: Number($('height').value) }));
  $('init-image-clear').addEventListener('click', () => { setInitImage(null); $('init-image-file').focus(); });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = firstImage(e.dataTransfer.files);
    if (file) setInitImage(file);
  });
  // Pasting an image anywhere (outside text fields' own paste of text) sets the start image.
  document.addEventListener('paste', (e) => {
    const file = firstImage(e.clipboardData?.items);
    if (file) { e.preventDefault(); setInitImage(file); }
  });
}

export function setUpSettings() {
  restore();
  $('random-seed').addEventListener('click', () => { $('seed').value = randomSeed(); save(); });
  $('size-preset').addEventListener('change', () => {
    const [w, h] = $('size-preset').value.split('x');
    if (w && h) { $('width').value = w; $('height').value = h; }
    save();
  });
  for (const id of ['width', 'height']) {
    $(id).addEventListener('change', () => { if (fields) number(id); syncPreset(); save(); });
  }
  $('strength').addEventListener('input', () => { $('strength-value').textContent = Number($('strength').value).toFixed(2); });
  $('scheduler').addEventListener('change', () => { wantedScheduler = null; });
  $('settings').addEventListener('change', save);
  setUpInitImage();
}
