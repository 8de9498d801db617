// The page: a thin UI. All GPU work happens in the worker (www/worker.js), so the page never
// freezes; the page only sends requests and shows what comes back.

const $ = (id) => document.getElementById(id);

/** Shows a plain-language reason websd cannot run here, instead of a blank page. */
function showUnsupported(reason) {
  const box = $('unsupported');
  box.hidden = false;
  box.innerHTML = '';
  const title = document.createElement('strong');
  title.textContent = 'websd cannot run in this browser. ';
  const text = document.createElement('span');
  text.textContent = reason + ' websd needs WebGPU: use a current Chrome or Edge (version 113 or later) on ' +
    'Windows, macOS, ChromeOS or Android, Safari 26 or later, or Firefox 141 or later on Windows. On Linux, ' +
    'Chrome needs WebGPU enabled (chrome://flags/#enable-unsafe-webgpu).';
  box.append(title, text);
  $('gpu-status').textContent = 'No usable WebGPU adapter.';
  $('probe-status').textContent = 'Not run: no GPU.';
}

/** Why WebGPU is unusable here, or null when an adapter is available. */
async function webgpuProblem() {
  if (!('gpu' in navigator)) {
    return window.isSecureContext
      ? 'This browser has no WebGPU (navigator.gpu is missing).'
      : 'WebGPU only works on secure pages (https:// or localhost).';
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return 'WebGPU is present but offered no GPU adapter (it may be disabled or blocklisted).';
  } catch (e) {
    return `WebGPU failed to start: ${e.message}`;
  }
  return null;
}

function showGpu(info) {
  $('gpu-status').textContent = 'WebGPU is ready.';
  const list = $('gpu-info');
  list.innerHTML = '';
  const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  for (const [label, value] of [
    ['Adapter', info.adapter || '(unnamed)'], ['Backend', info.backend], ['Type', info.device_type],
    ['shader-f16', info.shader_f16 ? 'yes (f16 compute)' : 'no (f32 compute)'],
    ['Max binding size', mib(info.max_storage_buffer_binding_size)], ['Max buffer size', mib(info.max_buffer_size)],
  ]) {
    const dt = document.createElement('dt'); dt.textContent = label;
    const dd = document.createElement('dd'); dd.textContent = value;
    list.append(dt, dd);
  }
  list.hidden = false;
}

async function main() {
  const problem = await webgpuProblem();
  if (problem) { showUnsupported(problem); return; }

  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onerror = (e) => showUnsupported(`The worker failed to start: ${e.message ?? 'unknown error'}.`);
  worker.onmessage = ({ data }) => {
    switch (data.type) {
      case 'gpu': showGpu(data.info); worker.postMessage({ type: 'probe' }); break;
      case 'probe':
        $('probe-status').textContent = 'The GPU computed the self-test (conv2d → matmul → softmax):';
        $('probe-result').textContent = JSON.stringify(data.values);
        document.body.dataset.probe = 'done';
        break;
      case 'error':
        if (data.phase === 'gpu') showUnsupported(data.message);
        else $('probe-status').textContent = `Self-test failed: ${data.message}`;
        break;
    }
  };
  $('probe-status').textContent = 'Loading websd…';
  worker.postMessage({ type: 'init' });
}

main().catch((e) => showUnsupported(`Unexpected error: ${e.message}`));
