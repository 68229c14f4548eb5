// `model-lens system`'s torch view: what the real torch in each test interpreter says about CUDA,
// next to what a fake nvidia-smi (test/fixtures/nvidia-smi/bin/dgx: 8 A100s, CUDA 12.4) says.
// Every test torch is a CPU build, which on a GPU machine is the most common reason "my GPU is not
// used": the CLI must say so in plain words.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import type { GpuInfo, TorchInfo } from '../src/protocol/types';
import { queryGpusOnce } from '../src/system/nvidiaSmi';
import { formatTorchLines, torchGpuWarnings } from '../src/system/torchView';
import { cli } from './cliProcess';

const FAKE_DGX_DIR = path.join(__dirname, 'fixtures', 'nvidia-smi', 'bin', 'dgx');
const TEST_PYTHONS = (process.env.MODEL_LENS_TEST_PYTHONS ?? '')
  .split(path.delimiter)
  .filter(Boolean);
const PYTHONS = TEST_PYTHONS.length ? TEST_PYTHONS : ['/usr/bin/python3'];

/** What torch itself answers in that interpreter: the reference, asked without our engine. */
function torchOwnView(python: string): {
  version: string;
  cuda: string | null;
  available: boolean;
} {
  const out = execFileSync(
    python,
    [
      '-c',
      'import json, torch; ' +
        'print(json.dumps([torch.__version__, torch.version.cuda, torch.cuda.is_available()]))',
    ],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  const [version, cuda, available] = JSON.parse(out) as [string, string | null, boolean];
  return { version, cuda, available };
}

async function dgxGpus(): Promise<GpuInfo[]> {
  const r = await queryGpusOnce({ nvidiaSmiPath: path.join(FAKE_DGX_DIR, 'nvidia-smi') });
  assert.ok(r.ok);
  return r.gpus;
}

for (const python of PYTHONS) {
  test(`system --json with ${python}: torch's own view and the CPU-build warning`, async () => {
    const own = torchOwnView(python);
    assert.equal(own.available, false, 'the test interpreters are CPU builds');
    const r = await cli(['system', '--json', '--python', python], {
      PATH: `${FAKE_DGX_DIR}${path.delimiter}${process.env.PATH}`,
    });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.gpus.length, 8);
    assert.equal(doc.torch.version, own.version);
    assert.equal(doc.torch.cudaBuild, own.cuda);
    assert.equal(doc.torch.cudaAvailable, false);
    assert.equal(doc.torch.deviceCount, 0);
    assert.deepEqual(doc.torch.devices, []);
    assert.match(doc.torch.cudaUnavailableReason, /CPU-only build/);
    assert.equal(doc.python, python);
    assert.equal(doc.warnings.length, 1, doc.warnings.join('\n'));
    assert.match(
      doc.warnings[0],
      /^nvidia-smi sees 8 GPUs \(NVIDIA A100-SXM4-80GB\), but the installed torch/,
    );
    assert.ok(
      doc.warnings[0].includes(`torch ${own.version} is a CPU-only build`),
      doc.warnings[0],
    );
    assert.match(doc.warnings[0], /driver supports CUDA up to 12\.4/);
  });
}

test('system text: torch line and the warning; no warning without nvidia-smi', async () => {
  const python = PYTHONS[0];
  const own = torchOwnView(python);
  const withGpus = await cli(['system', '--python', python], {
    PATH: `${FAKE_DGX_DIR}${path.delimiter}${process.env.PATH}`,
  });
  assert.equal(withGpus.code, 0, withGpus.stderr);
  assert.ok(
    withGpus.stdout.includes(`torch ${own.version} (CPU-only build) in ${python}\n`),
    withGpus.stdout,
  );
  assert.match(withGpus.stdout, /^ {2}torch\.cuda\.is_available\(\): False \(/m);
  assert.match(withGpus.stdout, /^warning: nvidia-smi sees 8 GPUs .* CPU-only build/m);
  // Only node's own folder and the system's on PATH: no nvidia-smi, nothing to disagree with.
  const noGpus = await cli(['system', '--python', python], {
    PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
  });
  assert.equal(noGpus.code, 0, noGpus.stderr);
  assert.match(noGpus.stdout, /^GPU: none \(nvidia-smi is not on PATH/m);
  assert.ok(noGpus.stdout.includes(`torch ${own.version} (CPU-only build)`), noGpus.stdout);
  assert.doesNotMatch(noGpus.stdout, /^warning:/m);
});

test('a configured interpreter that does not exist: said on stderr, torch found', async () => {
  const r = await cli(['system', '--json', '--python', '/nonexistent/python3']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^warning: .*\/nonexistent\/python3 skipped: /m);
  const doc = JSON.parse(r.stdout);
  assert.notEqual(doc.python, '/nonexistent/python3');
  assert.equal(doc.torch.version, torchOwnView(doc.python).version);
  // No view at all (no interpreter imports torch) is said in its place, not as a crash.
  assert.deepEqual(
    formatTorchLines({ torch: null, error: 'No Python interpreter with torch found' }),
    ['torch: not available (No Python interpreter with torch found)'],
  );
});

// The disagreements a CPU machine cannot produce for real: torch views as a CUDA build of torch
// reports them (fields as python/model_lens_engine/system.py fills them), against the fake DGX.
const CUDA_TORCH: TorchInfo = {
  version: '2.11.0+cu130',
  cudaBuild: '13.0',
  cudaAvailable: true,
  deviceCount: 8,
  devices: [],
  cudaInitialized: false,
};

test('CUDA build newer than the driver, hidden GPUs, CUDA failing to initialise', async () => {
  const gpus = await dgxGpus();
  const newer = torchGpuWarnings(
    {
      ...CUDA_TORCH,
      cudaAvailable: false,
      deviceCount: 0,
      cudaUnavailableReason: 'CUDA initialization: The NVIDIA driver on your system is too old',
    },
    gpus,
  );
  assert.equal(newer.length, 2, newer.join('\n'));
  assert.match(newer[0], /built for CUDA 13\.0 but the driver supports CUDA up to 12\.4/);
  assert.match(
    newer[1],
    /is_available\(\) is False: CUDA initialization: The NVIDIA driver on your system is too old$/,
  );
  const hidden = torchGpuWarnings({ ...CUDA_TORCH, cudaBuild: '12.1', deviceCount: 2 }, gpus);
  assert.deepEqual(hidden, [
    "torch sees 2 of nvidia-smi's 8 GPUs: CUDA_VISIBLE_DEVICES limits which GPUs a process may use",
  ]);
  assert.deepEqual(torchGpuWarnings({ ...CUDA_TORCH, cudaBuild: '12.4' }, gpus), []);
  assert.deepEqual(torchGpuWarnings(CUDA_TORCH, []), [], 'no nvidia-smi view: nothing to compare');
  assert.deepEqual(torchGpuWarnings(null, gpus), []);
});

test('the torch block in text: devices with allocated and reserved memory', () => {
  const lines = formatTorchLines({
    torch: {
      ...CUDA_TORCH,
      deviceCount: 1,
      devices: [
        {
          index: 0,
          name: 'NVIDIA H200',
          totalBytes: 150_754_820_096,
          computeCapability: '9.0',
          allocatedBytes: 512 * 1024 * 1024,
          reservedBytes: 2048 * 1024 * 1024,
        },
      ],
    },
    python: '/usr/bin/python3',
  });
  assert.deepEqual(lines, [
    'torch 2.11.0+cu130 (CUDA 13.0 build) in /usr/bin/python3',
    '  torch.cuda.is_available(): True, 1 device',
    '  cuda:0: NVIDIA H200, compute capability 9.0, 143771 MiB; ' +
      'allocated 512 MiB, reserved 2048 MiB',
  ]);
});
