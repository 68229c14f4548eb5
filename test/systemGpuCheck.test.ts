// scripts/gpu-check.py runs the GPU sampler's nvidia-smi command line on a GPU machine without
// Node, reading the fields and interval from the TypeScript source: they must be these exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { GPU_SAMPLE_INTERVAL_MS } from '../src/system/gpuSampler';
import { CSV_FORMAT_ARG, GPU_QUERY_FIELDS } from '../src/system/nvidiaSmiParse';

const ROOT = path.resolve(__dirname, '..');

test("gpu-check's copy of the sampler's arguments is the sampler's", () => {
  const code =
    'import json, sys; sys.path.insert(0, "scripts"); from gpucheck.truth import sampler_args; ' +
    'print(json.dumps(sampler_args(".")))';
  const [fields, format, intervalMs] = JSON.parse(
    execFileSync('python3', ['-c', code], { cwd: ROOT, encoding: 'utf8' }),
  );
  assert.deepEqual(fields, [...GPU_QUERY_FIELDS]);
  assert.equal(format, CSV_FORMAT_ARG);
  assert.equal(intervalMs, GPU_SAMPLE_INTERVAL_MS);
});
