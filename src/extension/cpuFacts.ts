// CPU facts for the System panel without systeminformation (733 KB of the extension bundle that
// every activation parsed): node's os.cpus() plus what the OS states plainly — /proc/cpuinfo and
// cpufreq on Linux, sysctl on macOS. The CLI's `model-lens system` keeps systeminformation.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { CpuInfo } from '../protocol/types';

const KHZ_PER_MHZ = 1_000;
const HZ_PER_MHZ = 1_000_000;
/** sysctl answers in milliseconds; a hung one must not hold the panel. */
const SYSCTL_TIMEOUT_MS = 2_000;

export interface ProcCpuinfo {
  model: string | null;
  /** Distinct (physical id, core id) pairs; null when the kernel does not list them (some VMs, arm). */
  physicalCores: number | null;
  logicalCores: number;
  mhz: number | null;
}

/** Parses /proc/cpuinfo: one block per logical CPU, `key : value` lines. */
export function parseProcCpuinfo(text: string): ProcCpuinfo {
  const blocks = text.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  const field = (block: string, key: string): string | undefined =>
    new RegExp(`^${key}\\s*:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
  const cores = new Set<string>();
  let complete = blocks.length > 0;
  for (const b of blocks) {
    const phys = field(b, 'physical id');
    const core = field(b, 'core id');
    if (phys === undefined || core === undefined) complete = false;
    else cores.add(`${phys}:${core}`);
  }
  const first = blocks[0] ?? '';
  const mhz = Number(field(first, 'cpu MHz'));
  return {
    // x86 says "model name"; arm64 kernels often name no model at all.
    model: field(first, 'model name') ?? field(first, 'Model') ?? field(first, 'Hardware') ?? null,
    physicalCores: complete ? cores.size : null,
    logicalCores: blocks.length,
    mhz: Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz) : null,
  };
}

function readText(file: string): Promise<string | null> {
  return fs.promises.readFile(file, 'utf8').catch(() => null);
}

function sysctl(key: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('sysctl', ['-n', key], { timeout: SYSCTL_TIMEOUT_MS }, (err, stdout) =>
      resolve(err ? null : stdout.trim() || null),
    );
  });
}

const positive = (v: number): number | null => (Number.isFinite(v) && v > 0 ? Math.round(v) : null);

export async function collectCpuFacts(): Promise<CpuInfo> {
  const cpus = os.cpus();
  const nodeMHz = positive(cpus[0]?.speed ?? 0);
  const base: CpuInfo = {
    model: cpus[0]?.model?.trim() || 'unknown',
    arch: os.arch(),
    physicalCores: cpus.length,
    logicalCores: cpus.length,
    speedMHz: nodeMHz,
    speedMaxMHz: null,
  };
  if (process.platform === 'linux') {
    const [info, maxKHz] = await Promise.all([
      readText('/proc/cpuinfo'),
      readText('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq'),
    ]);
    const p = info ? parseProcCpuinfo(info) : undefined;
    return {
      ...base,
      model: p?.model || base.model,
      physicalCores: p?.physicalCores ?? base.physicalCores,
      logicalCores: p?.logicalCores || base.logicalCores,
      // VMs often have no cpufreq, where node looks; the kernel still states the clock.
      speedMHz: nodeMHz ?? p?.mhz ?? null,
      speedMaxMHz: maxKHz ? positive(Number(maxKHz) / KHZ_PER_MHZ) : null,
    };
  }
  if (process.platform === 'darwin') {
    const [brand, physical, maxHz] = await Promise.all([
      sysctl('machdep.cpu.brand_string'),
      sysctl('hw.physicalcpu'),
      // Intel Macs only; Apple silicon states no clock.
      sysctl('hw.cpufrequency_max'),
    ]);
    return {
      ...base,
      model: brand || base.model,
      physicalCores: positive(Number(physical)) ?? base.physicalCores,
      speedMaxMHz: maxHz ? positive(Number(maxHz) / HZ_PER_MHZ) : null,
    };
  }
  // Windows: node's figures (physical cores are not exposed without WMI).
  return base;
}
