// The inpainting mask painter: a canvas over the img2img start image, painted white where the
// image is to be repainted (as A1111 and diffusers read a mask). Pointer events, so a mouse, a pen
// and touch all paint. The mask is kept at the start image's own size and scaled with it (the same
// cover-and-centre-crop as the image) when a generation asks for it.

const $ = (id) => document.getElementById(id);
const MAX_SIDE = 1024; // the mask's resolution cap: finer than any brush needs

let canvas = null; // the painted mask (white strokes on transparent), at the start image's size
let painting = false;
let last = null;

/** Starts a new, empty mask for a start image of width×height, or removes it (null). */
export function resetMask(size) {
  canvas = $('mask-canvas');
  $('mask-tools').hidden = !size;
  if (!size) { canvas.width = canvas.height = 0; updateState(); return; }
  const scale = Math.min(1, MAX_SIDE / Math.max(size.width, size.height));
  canvas.width = Math.round(size.width * scale);
  canvas.height = Math.round(size.height * scale);
  updateState();
}

function painted() {
  if (!canvas?.width) return false;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i]) return true;
  return false;
}

function updateState() {
  const on = painted();
  document.body.dataset.mask = on ? 'painted' : 'empty';
  $('mask-status').textContent = on
    ? 'Only the painted part is repainted (inpainting).'
    : 'Paint over the image to repaint only that part; leave it unpainted to repaint the whole image.';
}

/** The point of a pointer event on the mask, in mask pixels. */
function point(e) {
  const box = canvas.getBoundingClientRect();
  return { x: ((e.clientX - box.left) / box.width) * canvas.width, y: ((e.clientY - box.top) / box.height) * canvas.height };
}

function stroke(from, to) {
  const ctx = canvas.getContext('2d');
  const box = canvas.getBoundingClientRect();
  // The brush size is in screen pixels: what the user sees is what is painted.
  ctx.lineWidth = (Number($('mask-brush').value) * canvas.width) / Math.max(1, box.width);
  ctx.lineCap = ctx.lineJoin = 'round';
  ctx.strokeStyle = ctx.fillStyle = '#fff';
  ctx.globalCompositeOperation = $('mask-erase').checked ? 'destination-out' : 'source-over';
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x + 0.01, to.y);
  ctx.stroke();
}

function invert() {
  const ctx = canvas.getContext('2d');
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {
    const a = 255 - d[i + 3];
    d[i] = d[i + 1] = d[i + 2] = 255;
    d[i + 3] = a;
  }
  ctx.putImageData(image, 0, 0);
  updateState();
}

/**
 * The mask as a generation takes it: RGBA at width×height, white where painted and black
 * elsewhere, scaled and cropped as the start image is. Null when nothing is painted (plain img2img).
 */
export function maskPixels(width, height) {
  if (!painted()) return null;
  const out = new OffscreenCanvas(width, height);
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, width, height);
  const scale = Math.max(width / canvas.width, height / canvas.height);
  const w = canvas.width * scale, h = canvas.height * scale;
  ctx.drawImage(canvas, (width - w) / 2, (height - h) / 2, w, h);
  const data = ctx.getImageData(0, 0, width, height).data;
  return { width, height, pixels: new Uint8Array(data.buffer) };
}

/** A PNG of the mask at width×height (what `websd generate --mask` takes). */
async function maskPng(width, height) {
  const mask = maskPixels(width, height);
  if (!mask) return null;
  const out = new OffscreenCanvas(width, height);
  out.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(mask.pixels.buffer), width, height), 0, 0);
  return out.convertToBlob({ type: 'image/png' });
}

/** Wires the painter; `size()` gives the generation's width and height (for the mask download). */
export function setUpMask(size) {
  canvas = $('mask-canvas');
  canvas.addEventListener('pointerdown', (e) => {
    if (!canvas.width) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    painting = true;
    last = point(e);
    stroke(last, last);
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!painting) return;
    const p = point(e);
    stroke(last, p);
    last = p;
  });
  const end = () => { if (painting) { painting = false; updateState(); } };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  $('mask-clear').addEventListener('click', () => { canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height); updateState(); });
  $('mask-invert').addEventListener('click', invert);
  $('mask-brush').addEventListener('input', () => { $('mask-brush-value').textContent = $('mask-brush').value; });
  $('mask-download').addEventListener('click', async () => {
    const { width, height } = size();
    const blob = await maskPng(width, height);
    if (!blob) { $('mask-status').textContent = 'Nothing is painted yet: there is no mask to save.'; return; }
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `websd-mask-${width}x${height}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  });
  resetMask(null);
}
