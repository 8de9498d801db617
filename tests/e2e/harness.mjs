// Shared set-up for the browser tests: the site served on a random 127.0.0.1 port and Debian's
// Chromium driven by playwright-core, each launch with a fresh profile.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { serve } from '../../scripts/serve.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const BASE_ARGS = [
  '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

/**
 * Starts the site server; returns { url, close, requests }. `requests` logs every request's path;
 * `options` go to serve() (mounts, intercept).
 */
export async function startSite(options = {}) {
  const requests = [];
  const intercept = (req, res, pathname) => {
    requests.push(pathname);
    return options.intercept?.(req, res, pathname) ?? false;
  };
  const server = await serve(ROOT, 0, { ...options, intercept });
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    requests,
    close: () => { server.closeAllConnections(); server.close(); },
  };
}

/** Launches headless Chromium, with WebGPU unless `webgpu` is false. */
export async function launchBrowser({ webgpu = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: webgpu ? [...BASE_ARGS, '--enable-unsafe-webgpu'] : BASE_ARGS,
  });
}

/** Opens `url` in a new page, collecting console errors for failure messages. */
export async function openPage(browser, url) {
  const page = await browser.newPage();
  const log = [];
  page.on('console', (m) => log.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  await page.goto(url);
  return { page, log };
}

/** Runs the native CLI (built by `./build.sh test` before the browser tests). */
export function websd(...args) {
  const bin = path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'release', 'websd');
  return execFileSync(bin, args, { encoding: 'utf8' });
}

/** Where the browser tests leave screenshots of the page's main states, for a person to look at. */
export const SCREENSHOTS = path.join(process.env.WEBSD_TEST_OUTPUT ?? path.join(ROOT, 'test-output'), 'screenshots');

/** Saves a full-page screenshot as test-output/screenshots/NAME.png. */
export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  // From the top: the progress panel is sticky, and a scrolled full-page shot draws it mid-page.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Decodes two PNGs in the page; returns {length: same size?, max, off, total} of their RGBA values. */
export function pixelDiff(page, pngA, pngB) {
  return page.evaluate(async ([a, b]) => {
    const pixels = async (b64) => {
      // Not fetch(data:): the page's Content-Security-Policy allows connections to its origin only.
      const bitmap = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      return ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
    };
    const [x, y] = [await pixels(a), await pixels(b)];
    let max = 0, off = 0;
    for (let i = 0; i < x.length; i++) { const d = Math.abs(x[i] - y[i]); max = Math.max(max, d); if (d > 0) off++; }
    return { length: x.length === y.length, max, off, total: x.length };
  }, [pngA.toString('base64'), pngB.toString('base64')]);
}
