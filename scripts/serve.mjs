// Static file server for the site (./build.sh serve and the browser tests). Serves the repository
// root on 127.0.0.1 with the MIME types the page needs (application/wasm for the module), and
// ETags so that revalidating an unchanged file (the service worker does, on every load) costs a 304.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png',
  '.svg': 'image/svg+xml', '.webmanifest': 'application/manifest+json', '.txt': 'text/plain',
  '.gz': 'application/gzip',
};

/**
 * Starts serving `root` on `port` (0: a free port); resolves to the server.
 * Options (used by the browser tests): `mounts` maps a URL prefix ('/synthetic/') to another
 * folder; `intercept(req, res, pathname)` may answer a request itself and return true.
 */
export function serve(root, port = 0, { mounts = {}, intercept } = {}) {
  const base = path.resolve(root);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const pathname = decodeURIComponent(url.pathname);
    if (intercept?.(req, res, pathname)) return;
    let dir = base, rest = pathname;
    for (const [prefix, folder] of Object.entries(mounts)) {
      if (pathname.startsWith(prefix)) { dir = path.resolve(folder); rest = pathname.slice(prefix.length - 1); break; }
    }
    let file = path.join(dir, rest);
    if (!file.startsWith(dir)) { res.writeHead(403).end(); return; }
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    fs.stat(file, (err, stat) => {
      if (err || !stat.isFile()) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
      const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
      const headers = { etag, 'cache-control': 'no-cache' };
      if (req.headers['if-none-match'] === etag) { res.writeHead(304, headers).end(); return; }
      res.writeHead(200, {
        ...headers,
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-length': stat.size,
      });
      if (req.method === 'HEAD') { res.end(); return; }
      fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] ?? 8080);
  const server = await serve(path.join(path.dirname(process.argv[1]), '..'), port);
  console.log(`websd is served at http://127.0.0.1:${server.address().port}/`);
}
