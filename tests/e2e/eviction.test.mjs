// The browser may clear a site's data when the disk runs low (eviction). Chromium's own "clear this
// origin's IndexedDB" (DevTools protocol Storage.clearDataForOrigin, what eviction does) under a
// page that holds a downloaded model: Generate then says in words that the model is gone and the
// page offers the download again, which works; coming back to the tab shows it as well.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSite, launchBrowser } from './harness.mjs';
import { openGpuPage, waitForMessage } from './synthetic.mjs';

test('a model the browser evicted is reported as gone and offered for download again', { timeout: 240_000 }, async () => {
  const site = await startSite();
  const browser = await launchBrowser();
  try {
    const { context, page } = await openGpuPage(browser, site.url);
    const cdp = await context.newCDPSession(page);
    const evict = () => cdp.send('Storage.clearDataForOrigin', { origin: new URL(site.url).origin, storageTypes: 'indexeddb' });

    await page.selectOption('#model-select', 'tiny-sd1');
    await page.click('#download');
    await waitForMessage(page, 'downloaded', 'tiny-sd1', 60_000);
    await page.waitForSelector('body[data-model="stored"]');

    // Evicted while the page still lists the model as stored: Generate says what happened.
    await evict();
    await page.fill('#prompt', 'a lighthouse');
    await page.click('#generate');
    await page.waitForFunction(() => /no longer stored on this device/.test(document.querySelector('#error')?.textContent ?? ''), null, { timeout: 60_000 });
    assert.match(await page.textContent('#error'), /the browser has removed this site’s data.*Download it again\./);
    await page.waitForSelector('body[data-model="absent"]');
    assert.equal(await page.isVisible('#download'), true, 'the download is not offered again');
    assert.equal(await page.textContent('#download'), 'Download');

    // The download again works and the model is stored once more.
    const before = (await page.evaluate(() => window.__msgs.filter((m) => m.type === 'downloaded').length));
    await page.click('#download');
    await page.waitForFunction((n) => window.__msgs.filter((m) => m.type === 'downloaded').length > n, before, { timeout: 60_000 });
    await page.waitForSelector('body[data-model="stored"]');

    // Evicted while the tab was in the background: coming back (the visibilitychange event the
    // browser fires; headless tabs are never hidden, so the test fires it) lists it as gone.
    await evict();
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await page.waitForSelector('body[data-model="absent"]', { timeout: 30_000 });
    assert.match(await page.textContent('#model-about'), /^A tiny Stable Diffusion.*Download: /);
  } finally {
    await browser.close();
    site.close();
  }
});
