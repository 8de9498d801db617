// The LoRA panel: add a local .safetensors file (checked by Rust in the worker and kept in
// IndexedDB), list what is kept, put a LoRA's <lora:name:1> tag into the prompt, delete one.
// Which LoRAs a generation uses is the prompt's business: the worker reads its tags.

import { formatBytes } from './format.js';

const $ = (id) => document.getElementById(id);

/** A file's LoRA name: its file name without .safetensors (what A1111's tags use). */
const loraName = (file) => file.name.replace(/\.safetensors$/i, '');

function useInPrompt(name) {
  const prompt = $('prompt');
  const tag = `<lora:${name}:1>`;
  if (!prompt.value.includes(`<lora:${name}:`) && !prompt.value.includes(`<lora:${name}>`)) {
    prompt.value = prompt.value.trimEnd() + (prompt.value.trim() ? ' ' : '') + tag;
    // Setting .value fires no event: tell the token counter and the saved settings.
    prompt.dispatchEvent(new Event('change', { bubbles: true }));
  }
  prompt.focus();
}

function show(loras, client) {
  const list = $('lora-list');
  list.replaceChildren(...loras.map((l) => {
    const item = document.createElement('li');
    const text = document.createElement('span');
    text.textContent = `${l.name} · ${formatBytes(l.size)} · ${l.unet} UNet and ${l.text_encoder} text encoder layers`;
    const use = document.createElement('button');
    use.type = 'button';
    use.textContent = 'Use';
    use.setAttribute('aria-label', `Use ${l.name} in the prompt`);
    use.addEventListener('click', () => useInPrompt(l.name));
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Delete';
    remove.setAttribute('aria-label', `Delete ${l.name}`);
    remove.addEventListener('click', () => client.post({ type: 'delete-lora', name: l.name }));
    item.append(text, ' ', use, ' ', remove);
    item.dataset.lora = l.name;
    return item;
  }));
  document.body.dataset.loras = String(loras.length);
}

export function setUpLoras(client) {
  client.on('loras', ({ loras }) => show(loras, client));
  client.on('error', ({ phase, message }) => { if (phase === 'lora') $('lora-status').textContent = message; });
  $('lora-file').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    $('lora-status').textContent = `Checking ${file.name}…`;
    const bytes = new Uint8Array(await file.arrayBuffer());
    const name = loraName(file);
    e.target.value = '';
    try {
      await client.request({ type: 'add-lora', name, bytes }, ['loras'], 'lora');
      $('lora-status').textContent = `Kept ${name}. Press "Use" to put it in the prompt.`;
    } catch (error) {
      $('lora-status').textContent = `${file.name} was not added: ${error.message}`;
    }
  });
  client.post({ type: 'list-loras' });
}
