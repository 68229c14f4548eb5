import * as fs from 'node:fs';
import * as path from 'node:path';

let cached: string | undefined;

/**
 * The folder holding Model Lens's package.json. Bundles live in dist/ and sources in src/client/,
 * so walk up rather than assume a depth.
 */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if (JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'model-lens')
          return (cached = dir);
      } catch {
        // A broken manifest further down is not ours; keep walking.
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error(`Model Lens: cannot find the package root above ${__dirname}`);
    dir = parent;
  }
}
