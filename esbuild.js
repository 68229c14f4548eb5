// Bundles the extension, the engine process, the CLI and the webviews into dist/.
// `node esbuild.js --watch` rebuilds on change; `--production` minifies. The one build
// configuration: tests that bundle the engine themselves take engineBuild() and copyWasm() from
// here.
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');
const root = __dirname;
const dist = path.join(root, 'dist');

/** Native or optional packages are resolved at run time from node_modules, never bundled. */
const nodeExternals = ['vscode', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'];
// Model files are transpiled by sucrase (pure JavaScript, bundled into dist/engine.js), so no
// native esbuild binary ships: .ts models load on every platform from one package.

const common = {
  absWorkingDir: root,
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

/** uPlot's stylesheet: the webviews link it from dist/webview (the CSP allows only our files). */
function copyChartCss() {
  const to = path.join(dist, 'webview');
  fs.mkdirSync(to, { recursive: true });
  fs.copyFileSync(
    path.join(root, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'),
    path.join(to, 'uPlot.min.css'),
  );
}

async function main() {
  fs.mkdirSync(dist, { recursive: true });
  copyWasm();
  copyChartCss();
  const active = builds.filter(
    (b) => Object.keys(b.entryPoints).length > 0 || b.entryPoints.length > 0,
  );
  if (watch) {
    for (const b of active) await (await esbuild.context(b)).watch();
    return;
  }
  await Promise.all(active.map((b) => esbuild.build(b)));
}

/** The engine process's bundles alone (dist/engine.js and its pipe worker), as the full build makes them. */
function engineBuild() {
  const { engine, enginePipe } = builds[0].entryPoints;
  return { ...builds[0], entryPoints: { engine, enginePipe } };
}

module.exports = { engineBuild, copyWasm };

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
