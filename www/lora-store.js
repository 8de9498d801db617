// LoRA files kept in IndexedDB (store `loras`, beside the models), for the worker: a file is
// checked by Rust (wasm lora_info) before it is kept, named by its file name without
// .safetensors (the name a prompt's <lora:name:weight> uses), and read back when a model loads.

import { transact, done } from './db.js';
import { formatBytes } from './format.js';

/** Keeps a LoRA file; `info` is Rust's {unet, text_encoder} module counts of it. */
export async function addLora(name, bytes, info) {
  const { usage = 0, quota = 0 } = (await navigator.storage?.estimate?.()) ?? {};
  if (quota && quota - usage < bytes.length) {
    throw new Error(`Not enough storage for LoRA ${name}: it needs ${formatBytes(bytes.length)}, ` +
      `but only ${formatBytes(Math.max(0, quota - usage))} of this site's quota is free. Delete a model or a LoRA to make room.`);
  }
  const record = { name, bytes, size: bytes.length, unet: info.unet, text_encoder: info.text_encoder, addedAt: Date.now() };
  await transact(['loras'], 'readwrite', (loras) => done(loras.put(record)));
}

/** The kept LoRAs, without their bytes: [{name, size, unet, text_encoder, addedAt}]. */
export async function listLoras() {
  const all = await transact(['loras'], 'readonly', (loras) => done(loras.getAll()));
  return all.map(({ bytes, ...rest }) => rest).sort((a, b) => a.name.localeCompare(b.name));
}

/** The bytes of LoRA `name`, or null. */
export async function getLora(name) {
  const record = await transact(['loras'], 'readonly', (loras) => done(loras.get(name)));
  return record?.bytes ?? null;
}

export async function deleteLora(name) {
  await transact(['loras'], 'readwrite', (loras) => done(loras.delete(name)));
}
