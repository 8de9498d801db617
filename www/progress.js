// The page's one progress bar: what is happening (phase text), how far, and how long it has taken.
import { formatDuration } from './format.js';

const $ = (id) => document.getElementById(id);

/** Shows `text`; `fraction` in [0, 1], or null for "working, amount unknown". */
export function showProgress(text, fraction = null) {
  const bar = $('progress');
  if (fraction === null) bar.removeAttribute('value');
  else bar.value = Math.min(1, Math.max(0, fraction));
  $('phase').textContent = text;
}

export function showIdle(text = 'Idle.') {
  $('progress').value = 0;
  $('phase').textContent = text;
}

export function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

export function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/** Ticks the elapsed time of a generation under the bar until `stop()`; returns the timer. */
export function startTimer(describe) {
  const start = performance.now();
  const el = $('elapsed');
  const tick = () => { el.textContent = describe((performance.now() - start) / 1000); };
  tick();
  const handle = setInterval(tick, 250);
  return {
    seconds: () => (performance.now() - start) / 1000,
    stop(finalText) { clearInterval(handle); el.textContent = finalText ?? ''; },
  };
}

export { formatDuration };
