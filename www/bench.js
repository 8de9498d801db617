// bench.html: runs `websd bench` in the worker on this browser's GPU and shows its table. The
// worker is the app's (worker.js): {type:'bench', options} → bench-row messages, then bench-done.
import { WorkerClient } from './worker-client.js';
import { webgpuProblem } from './gpu.js';

const $ = (id) => document.getElementById(id);
let client;
let running = false;

const fixed = (v, digits) => (v === null || v === undefined ? '—' : v.toFixed(digits));

function addRow(row) {
  const tr = document.createElement('tr');
  for (const text of [row.component, row.dtype, fixed(row.median_ms, 1), fixed(row.tflop, 4), fixed(row.tflops, 4), row.finite ? 'yes' : 'NO']) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  $('bench-results').tBodies[0].append(tr);
  $('bench-results').hidden = false;
}

function setRunning(value) {
  running = value;
  $('bench-run').disabled = value;
  $('bench-stop').disabled = !value;
}

async function options() {
  const model = $('bench-model').value;
  const parts = [...document.querySelectorAll('input[name=part]:checked')].map((c) => c.value);
  if (parts.length === 0) throw new Error('Choose at least one part to measure.');
  const opts = {
    model: model === 'tiny' ? await (await fetch('www/models/tiny-sd1/manifest.json')).text() : model,
    dtype: $('bench-dtype').value,
    size: Number($('bench-size').value),
    runs: Number($('bench-runs').value),
    warmup: Number($('bench-warmup').value),
    parts: parts.join(','),
  };
  if ($('bench-steps').value) opts.steps = Number($('bench-steps').value);
  // bench.html?match=TEXT: only the ops rows whose name has TEXT (websd bench --ops --match).
  const match = new URLSearchParams(location.search).get('match');
  if (match) opts.match = match;
  if (!(opts.size > 0 && opts.size % 8 === 0)) throw new Error('The image size must be a positive multiple of 8.');
  return opts;
}

async function run() {
  if (running) return;
  $('error').hidden = true;
  $('bench-results').tBodies[0].replaceChildren();
  $('bench-text').textContent = '';
  setRunning(true);
  const started = performance.now();
  try {
    const opts = await options();
    $('bench-status').textContent = 'Building the networks and measuring… (the first run of each part compiles its shaders)';
    const done = await client.request({ type: 'bench', options: opts }, ['bench-done'], 'bench');
    $('bench-text').textContent = done.table;
    const peak = done.peak_bytes ? ` · peak GPU memory held ${(done.peak_bytes / 2 ** 20).toFixed(0)} MiB` : '';
    $('bench-status').textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s${peak}.`;
    document.body.dataset.bench = 'done';
  } catch (e) {
    $('bench-status').textContent = 'Stopped.';
    $('error').textContent = e.message;
    $('error').hidden = false;
  } finally {
    setRunning(false);
  }
}

// The GPU check with real weights: the worker round-trips a photo through TAEF2 (models/taef2);
// the bound it must reach at each size is Rust's (roundtrip::taef2_passing_psnr_db).
async function runCheck() {
  if (running) return;
  setRunning(true);
  $('check-run').disabled = true;
  $('error').hidden = true;
  const size = Number($('check-size').value);
  $('check-status').textContent = `Downloading TAEF2 and running it at ${size}×${size}…`;
  const started = performance.now();
  try {
    const { result } = await client.request({ type: 'roundtrip', size }, ['roundtrip'], 'roundtrip');
    const show = (id, image) => { $(id).src = URL.createObjectURL(new Blob([image.png], { type: 'image/png' })); };
    show('check-input', result.input);
    show('check-round-trip', result.round_trip);
    show('check-random', result.random);
    $('check-round-trip-caption').textContent = `Round trip: ${result.psnr_db.toFixed(2)} dB`;
    $('check-random-caption').textContent = `Random latents: ${result.random_psnr_db.toFixed(2)} dB`;
    $('check-images').hidden = false;
    const PASS_DB = result.pass_db;
    const passed = result.psnr_db >= PASS_DB;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $('check-status').textContent = passed
      ? `Passed: the round trip reached ${result.psnr_db.toFixed(2)} dB PSNR (≥ ${PASS_DB} dB) in ${seconds} s.`
      : `FAILED: the round trip reached only ${result.psnr_db.toFixed(2)} dB PSNR (expected ≥ ${PASS_DB} dB): this GPU or its driver computes wrong results.`;
    document.body.dataset.check = passed ? 'passed' : 'failed';
  } catch (e) {
    $('check-status').textContent = 'The check could not run.';
    $('error').textContent = e.message;
    $('error').hidden = false;
    document.body.dataset.check = 'error';
  } finally {
    setRunning(false);
    $('check-run').disabled = false;
  }
}

async function main() {
  const problem = await webgpuProblem();
  if (problem) {
    $('unsupported').textContent = problem;
    $('unsupported').hidden = false;
    $('bench-run').disabled = true;
    $('check-run').disabled = true;
    $('bench-gpu').textContent = 'No WebGPU.';
    return;
  }
  client = new WorkerClient(new URL('./worker.js', import.meta.url));
  client.on('bench-row', ({ row }) => addRow(row));
  client.on('crashed', ({ message }) => client.restart(`The GPU stopped working: ${message}`));
  const { info } = await client.request({ type: 'init' }, ['gpu'], 'gpu');
  $('bench-gpu').textContent = `GPU: ${info.adapter || '(unnamed)'} · ${info.backend} · shader-f16 ${info.shader_f16 ? 'yes' : 'no'}`;
  if (!info.shader_f16) $('bench-dtype').querySelector('option[value=f16]').disabled = true;
  $('bench-form').addEventListener('submit', (e) => { e.preventDefault(); run(); });
  $('bench-stop').addEventListener('click', () => {
    client.restart('Stopped: the benchmark was ended.');
    client.post({ type: 'init' });
  });
  $('check-run').addEventListener('click', runCheck);
  $('bench-copy').addEventListener('click', () => navigator.clipboard?.writeText($('bench-text').textContent));
  document.body.dataset.gpu = 'ready';
}

main().catch((e) => {
  $('unsupported').textContent = `Unexpected error: ${e.message}`;
  $('unsupported').hidden = false;
});
