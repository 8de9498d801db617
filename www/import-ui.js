// "Import from this computer": a checkpoint file or a diffusers folder, converted by Rust in the
// worker (a range of the file at a time) and stored like a downloaded model. The page only picks
// the files and shows what the worker says; what the files are, and whether they can be used,
// is Rust's to decide.
import { formatBytes } from './format.js';
import { showProgress, showIdle, showError, clearError } from './progress.js';

const $ = (id) => document.getElementById(id);

/** The import's state for the page and the tests: '' | running | done | failed | cancelled. */
function setState(state) { document.body.dataset.import = state; }

function status(text) { $('import-status').textContent = text; }

function running(on) {
  $('import-start').disabled = on;
  $('import-cancel').hidden = !on;
}

export function setUpImport(client, { onImported }) {
  setState('');
  // One source at a time: picking a file clears the folder, and the other way round.
  $('import-file').addEventListener('change', () => { if ($('import-file').files.length) $('import-folder').value = ''; });
  $('import-folder').addEventListener('change', () => { if ($('import-folder').files.length) $('import-file').value = ''; });

  $('import-start').addEventListener('click', () => {
    const files = [...$('import-file').files, ...$('import-folder').files];
    if (!files.length) { status('Choose a checkpoint file or a diffusers folder first.'); return; }
    clearError();
    // persist() exists only on the page (not in workers): ask before the worker fills the disk.
    // Not awaited: the import is posted in this same task, so that a Stop right after it is
    // heard after it.
    navigator.storage?.persist?.().catch(() => { /* storage stays best-effort */ });
    const total = files.reduce((n, f) => n + f.size, 0);
    status(`Reading ${files.length === 1 ? files[0].name : `${files.length} files`} (${formatBytes(total)})…`);
    setState('running');
    running(true);
    client.post({
      type: 'import',
      files,
      configs: [...$('import-configs').files],
      options: { quant: $('import-quant').value, name: $('import-name').value.trim() || undefined },
    });
  });
  $('import-cancel').addEventListener('click', () => client.post({ type: 'cancel-import' }));

  client.on('import-started', ({ name }) => showProgress(`Importing ${name}: converting…`, 0));
  client.on('import-progress', ({ name, done, total }) => {
    const text = `Importing ${name}: ${formatBytes(done)} of ${formatBytes(total)} converted`;
    showProgress(text, total > 0 ? done / total : null);
    status(text);
  });
  client.on('imported', ({ id, name, notes }) => {
    setState('done');
    running(false);
    status(`${name} is imported and stored on this device.${notes.length ? ` ${notes.join('. ')}.` : ''}`);
    showIdle(`${name} is imported and stored on this device.`);
    for (const input of ['import-file', 'import-folder', 'import-configs', 'import-name']) $(input).value = '';
    onImported(id);
  });
  client.on('cancelled', ({ phase }) => {
    if (phase !== 'import') return;
    setState('cancelled');
    running(false);
    status('Import stopped: nothing of it was kept.');
    showIdle('Import stopped.');
  });
  client.on('error', ({ phase, message }) => {
    if (phase !== 'import') return;
    setState('failed');
    running(false);
    status(`Not imported: ${message}`);
    showIdle('Import failed.');
    showError(`Import failed: ${message}`);
  });
}
