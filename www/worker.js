// The worker owns the GPU: it loads the wasm module, opens WebGPU through burn, and runs the work
// the page asks for. Every failure is reported back as a message, never only to the console.
import init, * as websd from './pkg/websd.js';

const ready = init();

function fail(phase, e) {
  postMessage({ type: 'error', phase, message: e?.message ?? String(e) });
}

self.onmessage = async ({ data }) => {
  try {
    await ready;
  } catch (e) {
    fail('gpu', new Error(`could not load the websd module: ${e.message}`));
    return;
  }
  switch (data.type) {
    case 'init':
      try {
        postMessage({ type: 'gpu', info: await websd.init_gpu() });
      } catch (e) { fail('gpu', e); }
      break;
    case 'probe':
      try {
        postMessage({ type: 'probe', values: Array.from(await websd.run_probe()) });
      } catch (e) { fail('probe', e); }
      break;
  }
};
