// nvidia-smi parsers against every recorded output in test/fixtures/nvidia-smi/recorded. Expected
// values are read off the fixture text by hand, not produced by the parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  GPU_QUERY_FIELDS,
  parseComputeAppsCsv,
  parseCudaVersion,
  parseGpuQueryCsv,
} from '../src/system/nvidiaSmiParse';
import type { GpuQueryOutcome, GpuQuerySuccess } from '../src/system/nvidiaSmiParse';
import { withoutRejectedField } from '../src/system/nvidiaSmi';

const RECORDED = path.join(__dirname, 'fixtures', 'nvidia-smi', 'recorded');
const used = new Set<string>();
function fixture(name: string): string {
  used.add(name);
  return fs.readFileSync(path.join(RECORDED, name), 'utf8');
}

function ok(outcome: GpuQueryOutcome): GpuQuerySuccess {
  assert.equal(outcome.ok, true, `expected GPU rows, got ${JSON.stringify(outcome)}`);
  return outcome as GpuQuerySuccess;
}

test('a real H200 (nvidia-smi 580.159.04, captured on the device machine): every field', () => {
  // Values read off the file by hand: idle, no MIG.
  const r = ok(parseGpuQueryCsv(fixture('h200-real.csv')));
  assert.deepEqual(r.gpus, [
    {
      index: 0,
      name: 'NVIDIA H200',
      uuid: 'GPU-8a50aeb2-82d8-fb3a-110f-c5790e9577c1',
      memoryTotalMiB: 143771,
      memoryUsedMiB: 0,
      utilizationPct: 0,
      temperatureC: 37,
      powerW: 78.08,
      powerLimitW: 700,
      computeCapability: '9.0',
      driverVersion: '580.159.04',
      mig: false,
    },
  ]);
  assert.deepEqual(r.warnings, []);
});

test('one H100: every field with its unit conventions', () => {
  const r = ok(parseGpuQueryCsv(fixture('h100.csv')));
  assert.equal(r.gpus.length, 1);
  assert.deepEqual(r.gpus[0], {
    index: 0,
    name: 'NVIDIA H100 80GB HBM3',
    uuid: 'GPU-4a8c2e6f-9b1d-3c57-e0a2-7f6b8d9c1e34',
    memoryTotalMiB: 81559,
    memoryUsedMiB: 1234,
    utilizationPct: 87,
    temperatureC: 45,
    powerW: 312.45,
    powerLimitW: 700,
    computeCapability: '9.0',
    driverVersion: '550.54.15',
    mig: false,
  });
  assert.deepEqual(r.unavailable, []);
  assert.deepEqual(r.warnings, []);
});

test('eight A100s (DGX): all rows, in index order', () => {
  const r = ok(parseGpuQueryCsv(fixture('dgx-a100.csv')));
  assert.deepEqual(
    r.gpus.map((g) => g.index),
    [0, 1, 2, 3, 4, 5, 6, 7],
  );
  assert.ok(
    r.gpus.every(
      (g) =>
        g.memoryTotalMiB === 81920 &&
        g.name === 'NVIDIA A100-SXM4-80GB' &&
        g.computeCapability === '8.0',
    ),
  );
  // 34447+34639+34639+34447+4+4+78211+4, summed by hand.
  assert.equal(
    r.gpus.reduce((s, g) => s + (g.memoryUsedMiB ?? 0), 0),
    216395,
  );
  assert.equal(r.gpus[6].utilizationPct, 100);
  assert.equal(r.gpus[6].powerW, 353.48);
  assert.equal(new Set(r.gpus.map((g) => g.uuid)).size, 8);
});

test('MIG enabled: no whole-GPU utilization, memory still reported', () => {
  const r = ok(parseGpuQueryCsv(fixture('mig.csv')));
  assert.equal(r.gpus[0].mig, true);
  assert.equal(r.gpus[0].utilizationPct, null);
  assert.equal(r.gpus[0].memoryUsedMiB, 36537);
  assert.equal(r.gpus[1].mig, false);
  assert.equal(r.gpus[1].utilizationPct, 0);
  assert.deepEqual(r.unavailable, [{ index: 0, field: 'utilization.gpu', value: '[N/A]' }]);
});

test('[N/A] and [Unknown Error] become null and are listed with their token', () => {
  const r = ok(parseGpuQueryCsv(fixture('na-fields.csv')));
  const [gtx, rtx] = r.gpus;
  assert.equal(gtx.name, 'NVIDIA GeForce GTX 1050 Ti');
  assert.equal(gtx.powerW, null);
  assert.equal(gtx.powerLimitW, 75);
  assert.equal(gtx.mig, undefined, 'a GeForce has no MIG mode at all');
  assert.equal(rtx.temperatureC, null);
  assert.equal(rtx.powerW, 24.61);
  assert.deepEqual(
    r.unavailable.filter((u) => u.field !== 'mig.mode.current'),
    [
      { index: 0, field: 'power.draw', value: '[N/A]' },
      { index: 1, field: 'temperature.gpu', value: '[Unknown Error]' },
    ],
  );
});

test('[Not Supported] (vGPU) and [Insufficient Permissions] (container)', () => {
  const v = ok(parseGpuQueryCsv(fixture('vgpu-not-supported.csv'))).gpus[0];
  assert.equal(v.name, 'GRID T4-16Q');
  assert.deepEqual([v.temperatureC, v.powerW, v.powerLimitW], [null, null, null]);
  assert.equal(v.memoryUsedMiB, 1283);
  const p = ok(parseGpuQueryCsv(fixture('permissions.csv')));
  assert.equal(p.gpus[0].powerLimitW, null);
  assert.equal(p.gpus[0].powerW, 15.74);
  assert.deepEqual(p.unavailable, [
    { index: 0, field: 'power.limit', value: '[Insufficient Permissions]' },
  ]);
});

test('an old driver rejects compute_cap; the query without it parses', () => {
  const rejected = parseGpuQueryCsv(fixture('unsupported-field.txt'));
  assert.equal(rejected.ok, false);
  assert.equal(!rejected.ok && rejected.kind, 'invalidField');
  assert.equal(!rejected.ok && rejected.field, 'compute_cap');
  const fields = withoutRejectedField(GPU_QUERY_FIELDS, 'compute_cap');
  assert.ok(fields);
  assert.equal(fields.length, GPU_QUERY_FIELDS.length - 1);
  assert.ok(!fields.includes('compute_cap'));
  const r = ok(parseGpuQueryCsv(fixture('old-driver-no-compute-cap.csv'), fields));
  assert.equal(r.gpus[0].name, 'Tesla V100-SXM2-32GB');
  assert.equal(r.gpus[0].computeCapability, null);
  assert.equal(r.gpus[0].driverVersion, '470.182.03');
  assert.equal(r.gpus[0].memoryTotalMiB, 32510);
  // A field we cannot do without is not silently dropped.
  assert.equal(withoutRejectedField(GPU_QUERY_FIELDS, 'memory.used'), null);
  // Parsing the old-driver row with the full field list must not misread it.
  assert.equal(parseGpuQueryCsv(fixture('old-driver-no-compute-cap.csv')).ok, false);
});

test('driver failure banner, NVML mismatch and no devices are named failures', () => {
  const driver = parseGpuQueryCsv(fixture('driver-failure.txt'));
  assert.equal(!driver.ok && driver.kind, 'driver');
  assert.match(!driver.ok ? driver.reason : '', /couldn't communicate with the NVIDIA driver/);
  const nvml = parseGpuQueryCsv(fixture('nvml-mismatch.txt'));
  assert.equal(!nvml.ok && nvml.kind, 'nvml');
  assert.match(!nvml.ok ? nvml.reason : '', /Driver\/library version mismatch.*535\.161/);
  const none = parseGpuQueryCsv(fixture('no-devices.txt'));
  assert.equal(!none.ok && none.kind, 'noDevices');
});

test('garbage and empty output are failures that quote what was printed', () => {
  const g = parseGpuQueryCsv(fixture('garbage.txt'));
  assert.equal(!g.ok && g.kind, 'unknownFormat');
  assert.match(!g.ok ? g.reason : '', /GPU 0: NVIDIA H100 80GB HBM3 \(UUID/);
  const e = parseGpuQueryCsv(fixture('empty.txt'));
  assert.equal(!e.ok && e.kind, 'empty');
  const blank = parseGpuQueryCsv('\n\n   \n');
  assert.equal(!blank.ok && blank.kind, 'empty');
});

test('a GPU nvidia-smi cannot open is a warning; the others still parse', () => {
  const r = ok(parseGpuQueryCsv(fixture('device-handle-error.csv')));
  assert.deepEqual(
    r.gpus.map((g) => g.index),
    [0, 2],
  );
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0], /0000:3B:00\.0.*Unknown Error/);
});

test('rows mixed with stray lines, a header, units and a comma in the name', () => {
  const text = [
    'index, name, uuid, memory.total [MiB], memory.used [MiB]',
    'WARNING: infoROM is corrupted at gpu 0000:02:00.0',
    '0, NVIDIA H100 80GB HBM3, GPU-4a8c2e6f-9b1d-3c57-e0a2-7f6b8d9c1e34, 81559 MiB, 1234 MiB, 87 %, 45, 312.45 W, 700.00 W, 9.0, 550.54.15, Disabled',
    '1, Weird, Inc. Card, GPU-0000, 1024, 10, 5, 30, 20.00, 50.00, 7.5, 550.54.15, [N/A]',
  ].join('\r\n');
  const r = ok(parseGpuQueryCsv(text));
  assert.equal(r.gpus.length, 2);
  assert.equal(r.gpus[0].memoryTotalMiB, 81559);
  assert.equal(r.gpus[0].utilizationPct, 87);
  assert.equal(r.gpus[1].name, 'Weird, Inc. Card');
  assert.equal(r.gpus[1].uuid, 'GPU-0000');
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0], /infoROM/);
});

test('a row with a non-numeric memory value is not a GPU', () => {
  const bad =
    '0, NVIDIA H100 80GB HBM3, GPU-x, lots, 1234, 87, 45, 312.45, 700.00, 9.0, 550.54.15, Disabled';
  assert.equal(parseGpuQueryCsv(bad).ok, false);
});

test('compute apps: pids and MiB, [N/A] under MIG, nothing running, failures', () => {
  const dgx = parseComputeAppsCsv(fixture('apps-dgx.csv'));
  assert.ok(dgx.ok);
  assert.equal(dgx.processes.length, 4);
  assert.deepEqual(dgx.processes[0], {
    gpuUuid: 'GPU-89fdc1e1-18b2-f499-c12b-82bcb9bfb3fa',
    pid: 48213,
    usedMemoryMiB: 34442,
  });
  assert.equal(dgx.processes[3].usedMemoryMiB, 0);
  const mig = parseComputeAppsCsv(fixture('apps-mig.csv'));
  assert.ok(mig.ok);
  assert.deepEqual(mig.processes, [
    { gpuUuid: 'GPU-2d9b4e70-6c1f-8a35-f7e2-b04a9d6c3e18', pid: 61234, usedMemoryMiB: null },
  ]);
  const empty = parseComputeAppsCsv(fixture('empty.txt'));
  assert.ok(empty.ok);
  assert.deepEqual(empty.processes, []);
  const driver = parseComputeAppsCsv(fixture('driver-failure.txt'));
  assert.equal(!driver.ok && driver.kind, 'driver');
  const garbage = parseComputeAppsCsv(fixture('garbage.txt'));
  assert.equal(!garbage.ok && garbage.kind, 'unknownFormat');
});

test('CUDA version from the plain nvidia-smi header', () => {
  assert.equal(parseCudaVersion(fixture('nvidia-smi-h100.txt')), '12.4');
  assert.equal(parseCudaVersion(fixture('nvidia-smi-cuda-na.txt')), null);
  assert.equal(
    parseCudaVersion(
      '| NVIDIA-SMI 580.119.02   Driver Version: 580.119.02   CUDA Version: 13.0     |',
    ),
    '13.0',
  );
});

test('every recorded fixture is exercised by a test above', () => {
  const all = fs.readdirSync(RECORDED).sort();
  const missing = all.filter((f) => !used.has(f));
  assert.deepEqual(missing, []);
});
