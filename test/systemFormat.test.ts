// Status bar text, tooltip and the memory-three-ways explanation. Expected strings are computed by
// hand in the comments (MiB / 1024, rounded to one decimal).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GpuInfo } from '../src/protocol/types';
import {
  busiestGpu,
  escapeMarkdown,
  formatBytes,
  formatGpuStatus,
  formatGpuText,
  pickGpu,
} from '../src/system/gpuFormat';
import { memoryThreeWays } from '../src/system/gpuMemory';
import { parseComputeAppsCsv, parseGpuQueryCsv } from '../src/system/nvidiaSmiParse';

const RECORDED = path.join(__dirname, 'fixtures', 'nvidia-smi', 'recorded');
function gpusOf(name: string): GpuInfo[] {
  const r = parseGpuQueryCsv(fs.readFileSync(path.join(RECORDED, name), 'utf8'));
  assert.ok(r.ok);
  return r.gpus;
}

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

test("one GPU: the brief's example text", () => {
  const gpu: GpuInfo = {
    index: 0,
    name: 'NVIDIA A100-SXM4-80GB',
    memoryTotalMiB: 81920,
    memoryUsedMiB: 12595,
    utilizationPct: 87,
    temperatureC: 50,
    computeCapability: '8.0',
    driverVersion: '535.161.08',
  };
  // 12595/1024 = 12.2998 -> 12.3; 81920/1024 = 80.0
  assert.equal(formatGpuText(gpu, 1), 'GPU 12.3/80.0 GiB · 87%');
  // H100 fixture: 1234/1024 = 1.205 -> 1.2; 81559/1024 = 79.647 -> 79.6
  const view = formatGpuStatus({ available: true, gpus: gpusOf('h100.csv') });
  assert.equal(view.text, 'GPU 1.2/79.6 GiB · 87%');
  assert.equal(view.gpuIndex, 0);
});

test("several GPUs: the busiest unless the run's GPU is known", () => {
  const gpus = gpusOf('dgx-a100.csv');
  // GPU 6 is at 100%: 78211/1024 = 76.378 -> 76.4
  assert.equal(formatGpuStatus({ available: true, gpus }).text, 'GPU6 76.4/80.0 GiB · 100%');
  // By UUID: GPU 1, 34639/1024 = 33.827 -> 33.8, 68%
  assert.equal(
    formatGpuStatus({ available: true, gpus }, { uuid: 'GPU-1c7e5b3a-02d4-6f81-9a3e-5d0b7c2f4e19' })
      .text,
    'GPU1 33.8/80.0 GiB · 68%',
  );
  // By pid through compute-apps: pid 48214 runs on GPU-1c7e5b3a... = GPU 1.
  const apps = parseComputeAppsCsv(fs.readFileSync(path.join(RECORDED, 'apps-dgx.csv'), 'utf8'));
  assert.ok(apps.ok);
  assert.equal(
    formatGpuStatus({ available: true, gpus, processes: apps.processes }, { pid: 48214 }).gpuIndex,
    1,
  );
  // pid 51002 holds 0 MiB on GPU 6 only.
  assert.equal(pickGpu(gpus, { pid: 51002 }, apps.processes)?.index, 6);
  // By nvidia-smi index; an unknown index falls back to the busiest.
  assert.equal(pickGpu(gpus, { index: 3 })?.index, 3);
  assert.equal(pickGpu(gpus, { index: 42 })?.index, 6);
});

test('busiest: utilization, then memory fraction, then lowest index; MIG compares memory', () => {
  const base = {
    name: 'x',
    temperatureC: null,
    computeCapability: null,
    driverVersion: null,
    memoryTotalMiB: 1000,
  };
  const a: GpuInfo = { ...base, index: 0, memoryUsedMiB: 100, utilizationPct: 5 };
  const b: GpuInfo = { ...base, index: 1, memoryUsedMiB: 900, utilizationPct: 5 };
  const c: GpuInfo = { ...base, index: 2, memoryUsedMiB: 900, utilizationPct: 5 };
  assert.equal(busiestGpu([a, b, c])?.index, 1);
  assert.equal(busiestGpu([c, b, a])?.index, 1);
  // mig.csv: GPU 0 has no utilization (MIG) but 36537 MiB used; GPU 1 is idle: GPU 0 is busier.
  const mig = gpusOf('mig.csv');
  // 36537/1024 = 35.68 -> 35.7
  assert.equal(formatGpuStatus({ available: true, gpus: mig }).text, 'GPU0 35.7/80.0 GiB · MIG');
  assert.equal(busiestGpu([]), undefined);
});

test('tooltip lists every GPU with memory, utilization, temperature and power', () => {
  const gpus = gpusOf('dgx-a100.csv').map((g) => ({ ...g, cudaVersion: '12.2' }));
  const { tooltip } = formatGpuStatus({ available: true, gpus });
  const lines = tooltip.split('\n');
  assert.equal(lines[0], '**NVIDIA GPUs** · driver 535.161.08 · CUDA 12.2');
  const rows = lines.filter((l) => /^\| \d/.test(l));
  assert.equal(rows.length, 8);
  // GPU 6: 76.4 / 80.0 GiB, 100%, 61 °C, 353.48 W of 400 W -> 353 / 400 W; marked as shown.
  assert.equal(
    rows[6],
    '| 6 ◀ | NVIDIA A100-SXM4-80GB | 76.4 / 80.0 GiB | 100% | 61 °C | 353 / 400 W |',
  );
  // GPU 4: 4 MiB -> 0.0 GiB
  assert.equal(rows[4], '| 4 | NVIDIA A100-SXM4-80GB | 0.0 / 80.0 GiB | 0% | 30 °C | 61 / 400 W |');
  // Unknown values are dashes, not zeros (GTX 1050 Ti power draw [N/A]; RTX 3090 temperature error).
  const na = formatGpuStatus({ available: true, gpus: gpusOf('na-fields.csv') })
    .tooltip.split('\n')
    .filter((l) => /^\| \d/.test(l));
  assert.match(na[0], /\| — \/ 75 W \|$/);
  assert.match(na[1], /\| 0% \| — \| 25 \/ 350 W \|$/);
});

test('No GPU with the reason in the tooltip; names and reasons are escaped', () => {
  const v = formatGpuStatus({
    available: false,
    reason: 'nvidia-smi is not on PATH (no NVIDIA driver installed?)',
  });
  assert.equal(v.text, 'No GPU');
  assert.equal(v.tooltip, '**No GPU**\n\nnvidia-smi is not on PATH (no NVIDIA driver installed?)');
  assert.equal(v.gpuIndex, undefined);
  assert.equal(formatGpuStatus({ available: false, starting: true }).text, 'GPU …');
  assert.equal(escapeMarkdown('a | b *c* [d]'), 'a \\| b \\*c\\* \\[d\\]');
  const evil: GpuInfo = {
    index: 0,
    name: 'Card | <b>x</b>',
    memoryTotalMiB: 1024,
    memoryUsedMiB: 512,
    utilizationPct: 1,
    temperatureC: 30,
    computeCapability: null,
    driverVersion: null,
  };
  const tip = formatGpuStatus({ available: true, gpus: [evil] }).tooltip;
  assert.ok(tip.includes('Card \\| \\<b\\>x\\</b\\>'));
  // Available but no rows (should not happen) still says No GPU rather than crashing.
  assert.equal(formatGpuStatus({ available: true, gpus: [] }).text, 'No GPU');
});

test('bytes: MiB under a GiB, two decimals above', () => {
  assert.equal(formatBytes(512 * MIB), '512 MiB');
  assert.equal(formatBytes(7.5 * GIB), '7.50 GiB');
  assert.equal(formatBytes(null), '?');
});

test('memory three ways: tensors < reserved pool < device, each gap explained', () => {
  // nvidia-smi: 20480 MiB used on the GPU, 12800 MiB of it by this pid; torch: 12 GiB reserved, 8 GiB allocated.
  const m = memoryThreeWays({
    deviceUsedMiB: 20480,
    processUsedMiB: 12800,
    torchReservedBytes: 12 * GIB,
    torchAllocatedBytes: 8 * GIB,
  });
  assert.deepEqual(
    m.figures.map((f) => f.key),
    ['allocated', 'reserved', 'device'],
  );
  assert.deepEqual(
    m.figures.map((f) => f.bytes),
    [8 * GIB, 12 * GIB, 20480 * MIB],
  );
  assert.equal(m.cachedBytes, 4 * GIB); // 12 - 8
  assert.equal(m.overheadBytes, 512 * MIB); // 12800 - 12288 MiB
  assert.equal(m.otherProcessesBytes, 7680 * MIB); // 20480 - 12800 MiB = 7.5 GiB
  assert.match(m.figures[0].explanation, /memory_allocated/);
  assert.match(
    m.figures[1].explanation,
    /4\.00 GiB above live tensors are cached free blocks.*fragmentation/,
  );
  assert.match(
    m.figures[2].explanation,
    /this process 12\.5 GiB; 512 MiB of it beyond PyTorch's pool \(CUDA context.*other processes 7\.50 GiB/,
  );
  for (const f of m.figures) assert.ok(!f.explanation.includes('\n'), 'one line each');
});

test('memory three ways: unknown per-process use and measurement skew', () => {
  const mig = memoryThreeWays({
    deviceUsedMiB: 36537,
    processUsedMiB: null,
    torchReservedBytes: 2 * GIB,
    torchAllocatedBytes: GIB,
  });
  assert.equal(mig.otherProcessesBytes, null);
  assert.equal(mig.overheadBytes, null);
  assert.match(mig.figures[2].explanation, /per-process use unavailable/);
  // nvidia-smi rounds to MiB and samples at another moment: a tiny negative gap reads as 0.
  const skew = memoryThreeWays({
    deviceUsedMiB: 999,
    processUsedMiB: 999,
    torchReservedBytes: 1000 * MIB,
    torchAllocatedBytes: 1000 * MIB,
  });
  assert.equal(skew.overheadBytes, 0);
  assert.equal(skew.cachedBytes, 0);
  const cpu = memoryThreeWays({
    deviceUsedMiB: null,
    processUsedMiB: null,
    torchReservedBytes: null,
    torchAllocatedBytes: null,
  });
  assert.deepEqual(
    cpu.figures.map((f) => f.bytes),
    [null, null, null],
  );
  assert.match(cpu.figures[0].explanation, /no allocator figures/);
});
