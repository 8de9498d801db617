// WebGPU availability and the "GPU details" panel (adapter info and the self-test).
const $ = (id) => document.getElementById(id);

/** Why WebGPU is unusable here, or null when an adapter is available. */
export async function webgpuProblem() {
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

/** Shows a plain-language reason websd cannot run here, instead of a blank page. */
export function showUnsupported(reason) {
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
  $('gpu-details').open = true;
  document.body.dataset.gpu = 'none';
}

export function showGpu(info) {
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
  document.body.dataset.gpu = 'ready';
}

export function showProbe(values) {
  $('probe-status').textContent = 'The GPU computed the self-test (conv2d → matmul → softmax):';
  $('probe-result').textContent = JSON.stringify(values);
  document.body.dataset.probe = 'done';
}

export function showProbeError(message) {
  $('probe-status').textContent = `Self-test failed: ${message}`;
}
