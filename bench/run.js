#!/usr/bin/env node
// Runs every benchmark in turn (`npm run bench`, or `npm run bench -- tfjs torch`).
// Benchmarks report ratios measured side by side in one run; they are not tests and assert nothing.
const { spawnSync, execFileSync } = require('node:child_process');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const env = { ...process.env, OMP_NUM_THREADS: '1' };

function torchPython() {
  for (const p of [process.env.MODEL_LENS_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean)) {
    try {
      execFileSync(p, ['-c', 'import torch'], { stdio: 'ignore' });
      return p;
    } catch {
      // next
    }
  }
  return null;
}

const BENCHES = {
  tfjs: () => [process.execPath, ['--import', 'tsx', 'bench/tfjsOverhead.ts']],
  tfjsModels: () => [process.execPath, ['--import', 'tsx', 'bench/tfjsModelsOverhead.ts']],
  torch: () => [torchPython() ?? 'python3', ['bench/torchOverhead.py']],
  gpu: () => [process.execPath, ['--import', 'tsx', 'bench/gpuSampler.ts']],
  editor: () => [process.execPath, ['--import', 'tsx', 'bench/e2eEditor.ts']],
  train: () => [torchPython() ?? 'python3', ['bench/trainOverhead.py']],
};

const wanted = process.argv.slice(2);
let failed = 0;
for (const [name, make] of Object.entries(BENCHES)) {
  if (wanted.length && !wanted.includes(name)) continue;
  const [cmd, args] = make();
  console.log(`\n=== bench ${name}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: ROOT, env, stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
