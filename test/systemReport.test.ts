// collectSystemReport with the real systeminformation on this machine, checked against what the
// OS tools (getconf, lscpu, uname) say, and GPUs with no nvidia-smi on PATH or a fake one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectCpuInfo, collectSystemReport, systemReportJson } from '../src/system/systemReport';

const FAKE_DGX = path.join(__dirname, 'fixtures', 'nvidia-smi', 'bin', 'dgx', 'nvidia-smi');

function tool(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' });
  } catch {
    return null;
  }
}

test(
  'CPU facts agree with the OS tools',
  { skip: process.platform !== 'linux' && 'uses Linux tools' },
  async () => {
    const cpu = await collectCpuInfo();
    const online = Number(tool('getconf', ['_NPROCESSORS_ONLN']));
    assert.equal(cpu.logicalCores, online);
    assert.equal(cpu.logicalCores, os.cpus().length);
    assert.ok(cpu.physicalCores >= 1 && cpu.physicalCores <= cpu.logicalCores);
    assert.equal(cpu.logicalCores % cpu.physicalCores, 0, 'threads per core is a whole number');
    const lscpu = tool('lscpu', []);
    if (lscpu) {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(lscpu)?.[1].trim();
      const coresPerSocket = Number(field('Core\\(s\\) per socket'));
      const sockets = Number(field('Socket\\(s\\)'));
      if (coresPerSocket && sockets) assert.equal(cpu.physicalCores, coresPerSocket * sockets);
      const vendor = field('Vendor ID');
      if (vendor === 'AuthenticAMD') assert.match(cpu.model, /AMD/);
      if (vendor === 'GenuineIntel') assert.match(cpu.model, /Intel/);
    }
    const machine = tool('uname', ['-m'])?.trim();
    const expectedArch = { x86_64: 'x64', aarch64: 'arm64', arm64: 'arm64' }[machine ?? ''];
    if (expectedArch) assert.equal(cpu.arch, expectedArch);
    // The clock: unknown (null) or a plausible MHz figure, never 0.
    for (const v of [cpu.speedMHz, cpu.speedMaxMHz])
      assert.ok(v === null || (v > 100 && v < 10_000), `speed ${v}`);
    const procMHz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
    if (procMHz && cpu.speedMHz !== null)
      assert.ok(Math.abs(cpu.speedMHz - Number(procMHz)) < 0.5 * Number(procMHz));
  },
);

test('no nvidia-smi on PATH: gpus [] and the reason', async () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-nopath-'));
  try {
    const report = await collectSystemReport({ env: { ...process.env, PATH: empty } });
    assert.deepEqual(report.gpus, []);
    assert.match(report.gpuError ?? '', /not on PATH/);
    assert.ok(report.cpu.logicalCores >= 1);
    const json = systemReportJson(report);
    assert.deepEqual(Object.keys(json.cpu).sort(), [
      'arch',
      'logicalCores',
      'model',
      'physicalCores',
      'speedMHz',
      'speedMaxMHz',
    ]);
    assert.deepEqual(json.gpus, []);
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

test('this machine as it is', async () => {
  const report = await collectSystemReport();
  const hasSmi = tool('sh', ['-c', 'command -v nvidia-smi']) !== null;
  if (!hasSmi) assert.deepEqual(report.gpus, []);
  else assert.ok(report.gpus.length > 0 || report.gpuError);
});

test('GPUs from nvidia-smi, in the CLI JSON shape', async () => {
  const report = await collectSystemReport({ nvidiaSmiPath: FAKE_DGX });
  assert.equal(report.gpuError, undefined);
  const json = systemReportJson(report);
  assert.equal(json.gpus.length, 8);
  assert.deepEqual(Object.keys(json.gpus[0]).sort(), [
    'computeCapability',
    'driverVersion',
    'index',
    'memoryTotalMiB',
    'memoryUsedMiB',
    'name',
    'temperatureC',
    'utilizationPct',
  ]);
  assert.deepEqual(json.gpus[6], {
    index: 6,
    name: 'NVIDIA A100-SXM4-80GB',
    memoryTotalMiB: 81920,
    memoryUsedMiB: 78211,
    utilizationPct: 100,
    temperatureC: 45,
    computeCapability: '8.0',
    driverVersion: '535.161.08',
  });
  assert.equal(report.gpus[0].cudaVersion, '12.4');
  // It must serialise as the CLI prints it.
  assert.deepEqual(JSON.parse(JSON.stringify(json)), json);
});
