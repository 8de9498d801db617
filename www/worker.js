// The worker owns the GPU and the model store: it loads the wasm module, opens WebGPU through burn,
// downloads and stores models, and runs the pipeline. The page only posts messages (protocol below);
// every failure comes back as {type:'error', phase, message}, never only to the console.
//
// Page → worker: {type:'init'} · {type:'probe'} · {type:'list-models'} · {type:'download', id, manifestUrl}
//   · {type:'cancel-download', id} · {type:'delete-model', id} · {type:'storage'}
//   · {type:'generate', id, params}: loads model `id` first unless it is the loaded one (the worker
//     alone knows which is) · {type:'cancel'}: the run stops after its current step (or its load)
//   · {type:'prompt-length', field, text} · {type:'form'}
//   · {type:'list-loras'} · {type:'add-lora', name, bytes} (checked by Rust, kept in IndexedDB) · {type:'delete-lora', name}
//     (a prompt's <lora:name:weight> tags pick the LoRAs a generation loads the model with)
//   · {type:'import', files: [File], configs: [File], options: {quant, text_encoder_quant, vae, name}}: converts a
//     checkpoint or diffusers folder from this computer (in Rust, a range at a time) into a stored model
//     · {type:'cancel-import'}
//   · {type:'destroy-gpu'} (destroys the GPU device, as a driver reset would: tests recovery)
//   · {type:'memory'} → {type:'memory', wasm_bytes, gpu: {reserved, in_use, allocations} | null}
//   · {type:'bench', options} (bench.html: see run_bench in src/web/bench.rs)
//   · {type:'roundtrip', size} (bench.html's GPU check with real weights: TAEF2 round-trips a photo)
// Worker → page: {type:'gpu', info} · {type:'probe', values}
//   · {type:'models', models /* summaries, each with suggested: {scheduler, steps, guidance_scale, width, height} | null */}
//   · {type:'download-progress', id, name, done, total, bytesPerSec, etaSec, shard} · {type:'downloaded', id}
//   · {type:'storage', usage, quota, persisted, models} · {type:'deleted', id, freedBytes}
//   · {type:'load-progress', done, total} · {type:'loaded', id, info, loras}
//   · {type:'loras', loras: [{name, size, unet, text_encoder, addedAt}]}
//   · {type:'import-started', id, name} · {type:'import-progress', id, name, done, total /* source bytes */}
//   · {type:'imported', id, name, notes, table}
//   · {type:'step', step, total, preview?:{width,height,pixels}}
//   · {type:'images', images:[{width,height,pixels,png,seed,parameters}]}
//   · {type:'cancelled', phase:'generate'|'download'|'import', id?} · {type:'error', phase, message, code, id?}
//   · {type:'prompt-length', field, text, tokens, chunks, notice /* null unless split in chunks */}
//   · {type:'form', samplers: [{name, label}], fields: [{name, default, min, max, step}]} (Rust's
//     lists: the page's form has no numbers of its own)
//   · {type:'bench-row', row} · {type:'bench-done', table, rows, peak_bytes, device}
//   · {type:'roundtrip', result: {psnr_db, random_psnr_db, pass_db, latent_shape, latent_mean, latent_std,
//     input, round_trip, random /* {width, height, png} */}}
//   · {type:'crashed', message}: the wasm instance panicked or the GPU device is lost; this worker
//     is unusable and the page starts a new one (the model reloads from IndexedDB).
//
// generate params (snake_case, as the wasm side reads them): {prompt, negative_prompt, steps,
//   guidance_scale, seed, width, height, scheduler /* a name, or 'default': the model's own */, batch_count, preview, strength?,
//   init_image?: {width, height, pixels /* RGBA Uint8Array, already width×height */}}
import init, * as websd from './pkg/websd.js';
import * as store from './store.js';
import * as loraStore from './lora-store.js';

// The wasm module is fetched and compiled on first need, so that the store works without it.
let wasmReady = null;
function wasm() {
  wasmReady ??= init().catch((e) => {
    wasmReady = null;
    throw new Error(`could not load the websd module: ${e.message}`);
  });
  return wasmReady;
}

// `code` is the error's name: for errors from Rust, the kind of failure (src/error.rs
// `Error::code`: InvalidRequest, InvalidInput, BadWeights, GpuLost, …).
function fail(phase, e, extra = {}) {
  postMessage({ type: 'error', phase, message: e?.message ?? String(e), code: e?.name ?? 'Error', ...extra });
}

const downloads = new Map(); // id → AbortController
let loaded = null; // {id, loras, key}: the loaded model and the LoRAs merged into it (`loadKey`)
let generating = false;
let cancelRequested = false;

// Each model's summary carries `suggested`: the settings Rust decides for it from its manifest
// (src/suggested.rs), so the page can fill its form before the model is loaded; null when the
// wasm module or the manifest cannot give one (the page then leaves the form as it is).
async function suggestion(id) {
  try {
    await wasm();
    return websd.suggested_settings(JSON.stringify((await store.getModel(id)).manifest));
  } catch {
    return null;
  }
}

async function postModels() {
  const models = await store.listModels();
  for (const m of models) m.suggested = await suggestion(m.id);
  postMessage({ type: 'models', models });
}

async function download({ id, manifestUrl }) {
  if (downloads.has(id)) { fail('download', new Error(`${id} is already downloading`), { id }); return; }
  const controller = new AbortController();
  downloads.set(id, controller);
  try {
    await wasm();
    await store.downloadModel(id, manifestUrl, {
      signal: controller.signal,
      maxManifestBytes: websd.max_manifest_bytes(),
      onRecorded: postModels, // the page lists the model (as partial) while it downloads
      check: async (manifest) => { await wasm(); websd.suggested_settings(JSON.stringify(manifest)); },
      onProgress: (p) => postMessage({ type: 'download-progress', id, ...p }),
    });
    postMessage({ type: 'downloaded', id });
  } catch (e) {
    if (controller.signal.aborted) postMessage({ type: 'cancelled', phase: 'download', id });
    else fail('download', e, { id });
  } finally {
    downloads.delete(id);
    await postModels().catch((e) => fail('models', e));
  }
}

/** What a model loaded with `loras` ([{name, weight}], a prompt's tags) is known by. */
const loadKey = (id, loras) => JSON.stringify([id, [...loras].sort((a, b) => a.name.localeCompare(b.name))]);

async function load(id, loras) {
  const model = await store.getModel(id);
  if (!model) {
    // The page listed it as stored: the browser has cleared this site's data since. Say so, and
    // send the page the list as it is now, so that it offers the download again.
    await postModels().catch(() => {});
    throw new Error(GONE);
  }
  if (!model.complete) throw new Error(`${model.name} is only partly downloaded: finish its download first`);
  const files = [];
  for (const { name, weight } of loras) {
    const bytes = await loraStore.getLora(name);
    if (!bytes) throw Object.assign(new Error(`The prompt asks for <lora:${name}> but no LoRA named ${name} is kept here: add its .safetensors file under LoRA.`), { name: 'InvalidRequest' });
    files.push({ name, bytes, weight });
  }
  loaded = null;
  const info = await websd.load_model(
    JSON.stringify(model.manifest),
    (sha256) => store.getShard(sha256).catch(async (e) => {
      if (!(await store.getModel(id).catch(() => null))) { await postModels().catch(() => {}); throw new Error(GONE); }
      throw e;
    }),
    (done, total) => postMessage({ type: 'load-progress', done, total }),
    files,
  );
  loaded = { id, loras, key: loadKey(id, loras) };
  postMessage({ type: 'loaded', id, info, loras });
}

const GONE = 'This model is no longer stored on this device: the browser has removed this site’s data (browsers may, when the disk runs low, unless the site’s storage is persistent). Download it again.';

let importing = null; // {cancelled}: the import running in this worker

async function importFiles({ files = [], configs = [], options = {} }) {
  if (importing) throw new Error('an import is already running: wait for it or cancel it');
  const run = { cancelled: false };
  importing = run; // before any await: a cancel-import right after this message finds it
  let id = null, name = null, lastReport = 0;
  try {
    await wasm();
    const picked = [...files.map((file) => ({ file, role: 'model' })), ...configs.map((file) => ({ file, role: 'configs' }))];
    const list = picked.map(({ file, role }) => ({ path: file.webkitRelativePath || file.name, size: file.size, role }));
    let result;
    await store.importModel(async (sink) => {
      result = await websd.import_model(list, options, {
        read: async (index, start, end) => new Uint8Array(await picked[index].file.slice(start, end).arrayBuffer()),
        begin: sink.begin,
        putShard: sink.putShard,
        progress: (done, total) => {
          const now = performance.now();
          if (id && (now - lastReport >= 100 || done === total)) {
            lastReport = now;
            postMessage({ type: 'import-progress', id, name, done, total });
          }
          return !run.cancelled;
        },
      });
      return result.manifest;
    }, {
      onBegin: async (newId, newName) => {
        id = newId; name = newName;
        postMessage({ type: 'import-started', id, name });
        await postModels();
      },
    });
    postMessage({ type: 'imported', id, name, notes: Array.from(result.notes), table: result.table });
  } catch (e) {
    if (e?.name === 'Cancelled' || run.cancelled) postMessage({ type: 'cancelled', phase: 'import', id });
    else fail('import', e, id ? { id } : {});
  } finally {
    importing = null;
    await postModels().catch((e) => fail('models', e));
  }
}

async function postLoras() {
  postMessage({ type: 'loras', loras: await loraStore.listLoras() });
}

async function generate({ id, params }) {
  await wasm();
  if (generating) throw new Error('a generation is already running');
  generating = true;
  cancelRequested = false;
  try {
    // The prompt's <lora:name:weight> tags say which LoRAs the model must carry (Rust parses them).
    const loras = Array.from(websd.prompt_loras(params.prompt ?? ''));
    if (loaded?.key !== loadKey(id, loras)) await load(id, loras);
    if (cancelRequested) { postMessage({ type: 'cancelled', phase: 'generate' }); return; }
    // Answering false is the one way to stop a run: awaiting this answer lets "cancel" in.
    const images = await websd.generate(params, async (step, total, preview) => {
      postMessage({ type: 'step', step, total, ...(preview ? { preview } : {}) });
      return !cancelRequested;
    });
    if (cancelRequested) postMessage({ type: 'cancelled', phase: 'generate' });
    else postMessage({ type: 'images', images: Array.from(images) });
  } catch (e) {
    if (cancelRequested) postMessage({ type: 'cancelled', phase: 'generate' });
    else throw e;
  } finally {
    generating = false;
  }
}

// Failures that leave this worker unusable: a wasm trap (a Rust panic) or a lost GPU device
// (Rust names it GpuLost when a read from the GPU fails).
function isFatal(e) {
  return e instanceof WebAssembly.RuntimeError || e?.name === 'GpuLost';
}
function crashed(e) {
  postMessage({ type: 'crashed', message: e?.message ?? String(e) });
}
// A panic inside a wasm callback surfaces here rather than in an awaited call.
self.addEventListener('unhandledrejection', (event) => { if (isFatal(event.reason)) crashed(event.reason); });
self.addEventListener('error', (event) => { if (isFatal(event.error)) crashed(event.error); });

const handlers = {
  init: async () => { await wasm(); postMessage({ type: 'gpu', info: await websd.init_gpu() }); },
  probe: async () => { await wasm(); postMessage({ type: 'probe', values: Array.from(await websd.run_probe()) }); },
  // The page asks once it starts: the moment to remove imports that a closed tab cut off.
  'list-models': async () => { await store.removeInterruptedImports(); await postModels(); },
  form: async () => { await wasm(); postMessage({ type: 'form', samplers: Array.from(websd.samplers()), fields: websd.setting_fields() }); },
  storage: async () => postMessage({ type: 'storage', ...(await store.storageInfo()) }),
  download,
  'cancel-download': async ({ id }) => downloads.get(id)?.abort(),
  'delete-model': async ({ id }) => {
    downloads.get(id)?.abort();
    const freedBytes = await store.deleteModel(id);
    if (loaded?.id === id) loaded = null;
    postMessage({ type: 'deleted', id, freedBytes });
    await postModels();
  },
  generate,
  'list-loras': postLoras,
  import: importFiles,
  'cancel-import': async () => { if (importing) importing.cancelled = true; },
  'add-lora': async ({ name, bytes }) => {
    await wasm();
    const info = websd.lora_info(name, bytes); // refuses a file that is no LoRA, naming why
    await loraStore.addLora(name, bytes, info);
    await postLoras();
  },
  'delete-lora': async ({ name }) => {
    await loraStore.deleteLora(name);
    if (loaded?.loras.some((l) => l.name === name)) loaded = null;
    await postLoras();
  },
  'prompt-length': async ({ field, text }) => {
    await wasm();
    const { tokens, chunks, notice } = websd.prompt_length(text, field === 'prompt' ? 'prompt' : 'negative prompt');
    postMessage({ type: 'prompt-length', field, text, tokens, chunks, notice });
  },
  bench: async ({ options }) => {
    await wasm();
    const done = await websd.run_bench(options, (row) => postMessage({ type: 'bench-row', row }));
    postMessage({ type: 'bench-done', ...done });
  },
  roundtrip: async ({ size }) => {
    await wasm();
    const fetchFile = async (name) => {
      const response = await fetch(new URL(`models/taef2/${name}`, import.meta.url));
      if (!response.ok) throw new Error(`models/taef2/${name}: HTTP ${response.status}`);
      return response;
    };
    const [config, weights, photo] = await Promise.all([
      fetchFile('config.json').then((r) => r.text()),
      fetchFile('diffusion_pytorch_model.safetensors').then((r) => r.arrayBuffer()),
      fetchFile('astronaut.png').then((r) => r.arrayBuffer()),
    ]);
    const result = await websd.taesd_round_trip(config, new Uint8Array(weights), new Uint8Array(photo), size, 0);
    postMessage({ type: 'roundtrip', result });
  },
  'destroy-gpu': async () => { await wasm(); websd.destroy_gpu_device(); },
  // For the soak test (and anyone curious): the wasm heap's size and the GPU memory burn holds.
  memory: async () => { const exports = await wasm(); postMessage({ type: 'memory', wasm_bytes: exports.memory.buffer.byteLength, gpu: websd.gpu_memory() }); },
  cancel: async () => { cancelRequested = true; },
};
// The phase an error is reported under, when it is not the message type itself.
const PHASES = { init: 'gpu', 'list-models': 'models', 'delete-model': 'delete', 'cancel-download': 'download', 'add-lora': 'lora', 'delete-lora': 'lora', 'list-loras': 'lora' };

self.onmessage = async ({ data }) => {
  const handler = handlers[data?.type];
  if (!handler) { fail('protocol', new Error(`unknown message type ${data?.type}`)); return; }
  try {
    await handler(data);
  } catch (e) {
    if (isFatal(e)) crashed(e);
    else fail(PHASES[data.type] ?? data.type, e, data.id !== undefined ? { id: data.id } : {});
  }
};
