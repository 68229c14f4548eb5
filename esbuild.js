// Bundles the extension, the engine process, the CLI and the webviews into dist/.
// `node esbuild.js --watch` rebuilds on change; `--production` minifies.
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');
const root = __dirname;
const dist = path.join(root, 'dist');

/** Native or optional packages are resolved at run time from node_modules, never bundled. */
const nodeExternals = [
  'vscode',
  '@tensorflow/tfjs-node',
  '@tensorflow/tfjs-node-gpu',
  // esbuild is a native binary: the engine uses it at run time to transpile TypeScript model files.
  'esbuild',
];

const common = {
  bundle: true,
  sourcemap: production ? false : 'linked',
  minify: production,
  logLevel: 'warning',
  legalComments: 'none',
};

const builds = [
  {
    ...common,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: nodeExternals,
    entryPoints: {
      extension: 'src/extension/extension.ts',
      engine: 'src/engine/main.ts',
      // The engine's protocol worker thread (src/engine/protocolPipe.ts loads it by this name).
      enginePipe: 'src/engine/pipeWorker.ts',
      cli: 'src/cli/main.ts',
    },
    outdir: dist,
  },
  {
    ...common,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    entryPoints: fs.existsSync(path.join(root, 'webview'))
      ? fs
          .readdirSync(path.join(root, 'webview'))
          .filter((f) => /^[a-z][A-Za-z]*Panel\.ts$/.test(f))
          .map((f) => path.join('webview', f))
      : [],
    outdir: path.join(dist, 'webview'),
  },
];

/** The wasm backend loads its .wasm binaries from disk at run time; ship them next to the bundle. */
function copyWasm() {
  const from = path.join(root, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
  const to = path.join(dist, 'wasm');
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(from)) {
    if (f.endsWith('.wasm')) fs.copyFileSync(path.join(from, f), path.join(to, f));
  }
}

async function main() {
  fs.mkdirSync(dist, { recursive: true });
  copyWasm();
  const active = builds.filter((b) => Object.keys(b.entryPoints).length > 0 || b.entryPoints.length > 0);
  if (watch) {
    for (const b of active) await (await esbuild.context(b)).watch();
    return;
  }
  await Promise.all(active.map((b) => esbuild.build(b)));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
