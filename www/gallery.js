// The gallery: every image made is kept in IndexedDB (store `gallery`) with the settings that made
// it, so it survives reloads, can be saved as a PNG (the worker embeds the A1111 `parameters` text
// chunk), and its settings can be reused.
import { transact, done } from './db.js';
import { formatDuration } from './format.js';

const $ = (id) => document.getElementById(id);

/**
 * Stores images from the worker ({width, height, png, seed, parameters}) with the settings that
 * made them; returns the stored records.
 */
export async function addImages(images, { settings, modelId, modelName, elapsedMs }) {
  const createdAt = Date.now();
  const records = images.map((img) => ({
    createdAt,
    png: new Blob([img.png], { type: 'image/png' }),
    width: img.width,
    height: img.height,
    seed: img.seed,
    parameters: img.parameters ?? '',
    settings: { ...settings, seed: img.seed },
    modelId,
    modelName,
    elapsedMs,
  }));
  return transact(['gallery'], 'readwrite', async (gallery) => {
    for (const r of records) r.id = await done(gallery.add(r));
    return records;
  });
}

/** All images, newest first. */
export async function listImages() {
  const all = await transact(['gallery'], 'readonly', (gallery) => done(gallery.getAll()));
  return all.reverse();
}

export function deleteImage(id) {
  return transact(['gallery'], 'readwrite', (gallery) => done(gallery.delete(id)));
}

let objectUrls = [];

/** Draws the gallery; `onReuse(settings)` fills the form from an image's settings. */
export async function renderGallery({ onReuse }) {
  const images = await listImages();
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls = [];
  const list = $('gallery-list');
  list.innerHTML = '';
  $('gallery-empty').hidden = images.length > 0;
  for (const img of images) {
    const url = URL.createObjectURL(img.png);
    objectUrls.push(url);
    const item = document.createElement('li');
    item.className = 'gallery-item';
    item.dataset.id = img.id;

    const picture = document.createElement('img');
    picture.src = url;
    picture.width = img.width;
    picture.height = img.height;
    picture.alt = img.settings?.prompt ? `Image of “${img.settings.prompt}”` : 'Generated image';
    picture.title = img.parameters;

    const caption = document.createElement('p');
    caption.className = 'caption';
    const when = new Date(img.createdAt).toLocaleString();
    caption.textContent = `${img.width}×${img.height} · seed ${img.seed}` +
      (img.elapsedMs ? ` · ${formatDuration(img.elapsedMs / 1000)}` : '') + (img.modelName ? ` · ${img.modelName}` : '') + ` · ${when}`;

    const save = document.createElement('a');
    save.href = url;
    save.download = `websd-${img.seed}-${img.id}.png`;
    save.textContent = 'Download PNG';
    save.className = 'button';

    const reuse = document.createElement('button');
    reuse.type = 'button';
    reuse.textContent = 'Reuse settings';
    reuse.className = 'reuse';
    reuse.addEventListener('click', () => onReuse(img.settings));

    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Delete';
    remove.className = 'delete';
    remove.setAttribute('aria-label', `Delete image with seed ${img.seed}`);
    remove.addEventListener('click', async () => {
      await deleteImage(img.id);
      await renderGallery({ onReuse });
    });

    const actions = document.createElement('div');
    actions.className = 'row';
    actions.append(save, reuse, remove);
    item.append(picture, caption, actions);
    list.append(item);
  }
  document.body.dataset.gallery = String(images.length);
}
