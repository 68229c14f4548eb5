// Static facts about the machine: the CPU from systeminformation, the GPUs from nvidia-smi.
// systeminformation's graphics() is not used: it runs lspci and nvidia-smi itself, and on GPU
// hosts it takes seconds, where one `--query-gpu` run answers what we need.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as si from 'systeminformation';
import type { CpuInfo, GpuInfo, TorchInfo } from '../protocol/types';
import { queryGpusOnce } from './nvidiaSmi';
import type { NvidiaSmiOptions } from './nvidiaSmi';
import { torchGpuWarnings, type TorchView } from './torchView';

export interface SystemReport {
  cpu: CpuInfo;
  gpus: GpuInfo[];
  /** Why `gpus` is empty (no nvidia-smi, driver failure...), when it is. */
  gpuError?: string;
}

const MHZ_PER_GHZ = 1000;

function mhz(ghz: number | undefined): number | null {
  return ghz && ghz > 0 ? Math.round(ghz * MHZ_PER_GHZ) : null;
}

/** `AMD EPYC`, `Intel Xeon Platinum 8480+`: vendor and brand without saying the vendor twice. */
function modelName(manufacturer: string, brand: string): string {
  const m = manufacturer.trim();
  const b = brand.trim();
  if (!m) return b;
  if (!b) return m;
  return b.toLowerCase().startsWith(m.toLowerCase()) ? b : `${m} ${b}`;
}

/**
 * Virtual machines often have no cpufreq in /sys, where systeminformation and node look, so both
 * say 0; the kernel still states the clock in /proc/cpuinfo.
 */
async function procCpuinfoMHz(): Promise<number | null> {
  if (process.platform !== 'linux') return null;
  try {
    const text = await fs.promises.readFile('/proc/cpuinfo', 'utf8');
    const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(text);
    const v = m ? Number(m[1]) : NaN;
    return Number.isFinite(v) && v > 0 ? Math.round(v) : null;
  } catch {
    return null;
  }
}

/** CPU facts; falls back to node's own view when systeminformation fails. */
export async function collectCpuInfo(): Promise<CpuInfo> {
  const cpus = os.cpus();
  const nodeSpeed = cpus[0]?.speed && cpus[0].speed > 0 ? cpus[0].speed : null;
  try {
    const [cpu, osInfo, procMHz] = await Promise.all([si.cpu(), si.osInfo(), procCpuinfoMHz()]);
    return {
      model: modelName(cpu.manufacturer, cpu.brand) || cpus[0]?.model?.trim() || 'unknown',
      arch: osInfo.arch || os.arch(),
      physicalCores: cpu.physicalCores || cpu.cores || cpus.length,
      logicalCores: cpu.cores || cpus.length,
      // 0 from systeminformation means it could not tell: unknown, not zero.
      speedMHz: mhz(cpu.speed) ?? nodeSpeed ?? procMHz,
      speedMaxMHz: mhz(cpu.speedMax),
    };
  } catch {
    return {
      model: cpus[0]?.model?.trim() || 'unknown',
      arch: os.arch(),
      physicalCores: cpus.length,
      logicalCores: cpus.length,
      speedMHz: nodeSpeed ?? (await procCpuinfoMHz()),
      speedMaxMHz: null,
    };
  }
}

/** CPU and GPUs, never throwing: a machine without an NVIDIA driver has `gpus: []` and says why. */
export async function collectSystemReport(options: NvidiaSmiOptions = {}): Promise<SystemReport> {
  const [cpu, gpuOutcome] = await Promise.all([collectCpuInfo(), queryGpusOnce(options)]);
  if (gpuOutcome.ok) return { cpu, gpus: gpuOutcome.gpus };
  return { cpu, gpus: [], gpuError: gpuOutcome.reason };
}

/** The shape `model-lens system --json` prints. */
export interface SystemReportJson {
  cpu: Pick<
    CpuInfo,
    'model' | 'arch' | 'physicalCores' | 'logicalCores' | 'speedMHz' | 'speedMaxMHz'
  >;
  gpus: Array<
    Pick<
      GpuInfo,
      | 'index'
      | 'name'
      | 'memoryTotalMiB'
      | 'memoryUsedMiB'
      | 'utilizationPct'
      | 'temperatureC'
      | 'computeCapability'
      | 'driverVersion'
    >
  >;
  gpuError?: string;
  /** torch's own view (a PyTorch engine's `system/info`), null when none answered. */
  torch?: TorchInfo | null;
  /** Why `torch` is null. */
  torchError?: string;
  /** The interpreter whose torch this is. */
  python?: string;
  /** Where torch and nvidia-smi disagree, with the fix (a CPU-only torch on a GPU machine...). */
  warnings?: string[];
}

export function systemReportJson(report: SystemReport, torchView?: TorchView): SystemReportJson {
  const { model, arch, physicalCores, logicalCores, speedMHz, speedMaxMHz } = report.cpu;
  const out: SystemReportJson = {
    cpu: { model, arch, physicalCores, logicalCores, speedMHz, speedMaxMHz },
    gpus: report.gpus.map((g) => ({
      index: g.index,
      name: g.name,
      memoryTotalMiB: g.memoryTotalMiB,
      memoryUsedMiB: g.memoryUsedMiB,
      utilizationPct: g.utilizationPct,
      temperatureC: g.temperatureC,
      computeCapability: g.computeCapability,
      driverVersion: g.driverVersion,
    })),
  };
  if (report.gpuError !== undefined) out.gpuError = report.gpuError;
  if (torchView) {
    out.torch = torchView.torch;
    if (torchView.error !== undefined) out.torchError = torchView.error;
    if (torchView.python !== undefined) out.python = torchView.python;
    out.warnings = torchGpuWarnings(torchView.torch, report.gpus);
  }
  return out;
}
