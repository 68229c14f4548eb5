// Runs test/vscode/suite.ts inside a real VS Code downloaded by @vscode/test-electron.
// Needs internet access to download VS Code, so it is not part of `npm test`; run it with
//   node --import tsx test/vscode/runTests.ts
// (the code-server suite in test/e2e covers the same ground on machines without a download).
import path from 'node:path';
import { build } from 'esbuild';
import { runTests } from '@vscode/test-electron';

const ROOT = path.resolve(__dirname, '..', '..');
const OUT = path.join(ROOT, 'out', 'vscode-test');

async function main(): Promise<void> {
  // The extension host loads plain JavaScript: bundle the suite, leaving `vscode` to the host.
  await build({
    entryPoints: [path.join(__dirname, 'suite.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['vscode'],
    outfile: path.join(OUT, 'suite.js'),
    logLevel: 'warning',
  });
  await runTests({
    extensionDevelopmentPath: ROOT,
    extensionTestsPath: path.join(OUT, 'suite.js'),
    launchArgs: [path.join(ROOT, 'examples'), '--disable-extensions', '--disable-workspace-trust'],
    extensionTestsEnv: { OMP_NUM_THREADS: '1' },
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
