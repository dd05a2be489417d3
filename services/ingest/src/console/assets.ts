import { createReadStream, existsSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PublicRoute } from '../public-http.js';

/** The repository's console/dist, from services/ingest/dist (or src, under the tests). */
export const DEFAULT_CONSOLE_ASSETS = fileURLToPath(new URL('../../../../console/dist/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
};

/**
 * The console's pages from its build: files by path (hashed names cached for a year), any other
 * path the single page's index.html. Only files inside the folder; no listing. The page may load
 * only its own scripts, styles and images, and call only this origin.
 */
export function serveAssets(dir: string): PublicRoute {
  const root = normalize(dir.endsWith(sep) ? dir : `${dir}${sep}`);
  return async (req, res, url) => {
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      return false;
    }
    if (path.includes('\0')) return false;
    const wanted = normalize(join(root, path));
    const file = wanted.startsWith(root) && isFile(wanted) ? wanted : join(root, 'index.html');
    if (!isFile(file)) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('The console is not built: run npm run build (console/dist is missing).\n');
      return true;
    }
    const hashed = file.includes(`${sep}assets${sep}`);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-store',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'content-security-policy':
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
    return true;
  };
}

function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}
