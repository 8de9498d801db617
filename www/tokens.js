// The token counter under each prompt: "12/75 tokens", and a notice when a prompt is longer than
// CLIP's 75 tokens and will be encoded in chunks. The worker tokenizes (the tokenizer is in wasm).

const $ = (id) => document.getElementById(id);
const FIELDS = { prompt: 'prompt-tokens', 'negative-prompt': 'negative-tokens' };

export function setUpTokenCounter(client) {
  const timers = {};
  const ask = (field) => client.post({ type: 'prompt-length', field, text: $(field).value });
  client.on('prompt-length', ({ field, text, tokens, chunks, notice }) => {
    const out = $(FIELDS[field]);
    if (!out || text !== $(field).value) return; // an older answer: the text has changed since
    out.textContent = notice ? `${notice[0].toUpperCase()}${notice.slice(1)}.` : `${tokens}/75 tokens`;
    out.classList.toggle('chunked', chunks > 1);
  });
  for (const field of Object.keys(FIELDS)) {
    // 'change' also fires when settings are restored from the gallery.
    for (const event of ['input', 'change']) {
      $(field).addEventListener(event, () => {
        clearTimeout(timers[field]);
        timers[field] = setTimeout(() => ask(field), 150);
      });
    }
    ask(field);
  }
}
