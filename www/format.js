// Numbers in words for the UI and the store's messages.

/** 1234567 → "1.2 MB" (decimal units, as disks and browsers' storage settings show them). */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '?';
  if (n >= 1e12) return `${(n / 1e12).toFixed(2)} TB`;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

/** Seconds → "25 s", "3 min 5 s", "1 h 2 min". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Bytes per second → "14 MB/s". */
export function formatRate(bytesPerSec) {
  return `${formatBytes(bytesPerSec)}/s`;
}
