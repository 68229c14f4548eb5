// Status bar text and tooltip for the GPU monitor. Pure functions over a snapshot, so the editor
// wiring stays a few lines and the wording is tested here.
import type { GpuInfo } from '../protocol/types';
import type { GpuProcess } from './nvidiaSmiParse';

const MIB_PER_GIB = 1024;

/** `12.3` GiB from MiB, one decimal as the status bar shows it; `?` when unknown. */
export function gibFromMiB(mib: number | null | undefined): string {
  return mib === null || mib === undefined ? '?' : (mib / MIB_PER_GIB).toFixed(1);
}

// Transitional: src/extension/systemModel.ts imports it from here; new code imports
// src/shared/format.ts directly.
export { formatBytes } from '../shared/format';

/** Which GPU the user's run is on, as far as the caller knows it. */
export interface RunGpuHint {
  /** Most reliable: survives CUDA_VISIBLE_DEVICES renumbering. */
  uuid?: string;
  /** The run's process; matched against nvidia-smi's compute-apps list. */
  pid?: number;
  /** nvidia-smi index (not torch's cuda:N when CUDA_VISIBLE_DEVICES reorders). */
  index?: number;
}

function memoryFraction(g: GpuInfo): number {
  return g.memoryUsedMiB !== null && g.memoryTotalMiB ? g.memoryUsedMiB / g.memoryTotalMiB : -1;
}

/** True when `a` is busier than `b`. Utilization decides when both have one (MIG GPUs do not). */
function busier(a: GpuInfo, b: GpuInfo): boolean {
  if (
    a.utilizationPct !== null &&
    b.utilizationPct !== null &&
    a.utilizationPct !== b.utilizationPct
  ) {
    return a.utilizationPct > b.utilizationPct;
  }
  const ma = memoryFraction(a);
  const mb = memoryFraction(b);
  if (ma !== mb) return ma > mb;
  return a.index < b.index;
}

/** The busiest GPU: highest utilization, then highest memory fraction, then lowest index. */
export function busiestGpu(gpus: readonly GpuInfo[]): GpuInfo | undefined {
  let best: GpuInfo | undefined;
  for (const g of gpus) if (!best || busier(g, best)) best = g;
  return best;
}

/** The run's GPU when the hint finds one, else the busiest. */
export function pickGpu(
  gpus: readonly GpuInfo[],
  run?: RunGpuHint,
  processes?: readonly GpuProcess[],
): GpuInfo | undefined {
  if (run?.uuid) {
    const g = gpus.find((x) => x.uuid === run.uuid);
    if (g) return g;
  }
  if (run?.pid !== undefined && processes) {
    // A run on several GPUs: show the one where it holds the most memory.
    const mine = processes
      .filter((p) => p.pid === run.pid)
      .sort((a, b) => (b.usedMemoryMiB ?? 0) - (a.usedMemoryMiB ?? 0));
    for (const p of mine) {
      const g = gpus.find((x) => x.uuid === p.gpuUuid);
      if (g) return g;
    }
  }
  if (run?.index !== undefined) {
    const g = gpus.find((x) => x.index === run.index);
    if (g) return g;
  }
  return busiestGpu(gpus);
}

/**
 * `GPU 12.3/80.0 GiB · 87%` for one GPU; with several, the index follows `GPU` (`GPU3 ...`).
 * MIG-enabled GPUs have no whole-GPU utilization, so they read `· MIG`.
 */
export function formatGpuText(gpu: GpuInfo, gpuCount: number): string {
  const label = gpuCount > 1 ? `GPU${gpu.index}` : 'GPU';
  const mem = `${gibFromMiB(gpu.memoryUsedMiB)}/${gibFromMiB(gpu.memoryTotalMiB)} GiB`;
  const util =
    gpu.utilizationPct !== null ? ` · ${Math.round(gpu.utilizationPct)}%` : gpu.mig ? ' · MIG' : '';
  return `${label} ${mem}${util}`;
}

/** Markdown-escapes text from nvidia-smi (product names, error messages) for a tooltip. */
export function escapeMarkdown(text: string): string {
  // Only what can change meaning inside a table cell or a paragraph.
  return text.replace(/[\\`*_[\]<>|~]/g, (c) => `\\${c}`);
}

function unknownOr(value: number | null | undefined, fmt: (v: number) => string): string {
  return value === null || value === undefined ? '—' : fmt(value);
}

export interface GpuStatusInput {
  available: boolean;
  /** Why not, when unavailable. */
  reason?: string;
  /** True while nvidia-smi has not answered yet. */
  starting?: boolean;
  gpus?: readonly GpuInfo[];
  processes?: readonly GpuProcess[];
}

export interface GpuStatusView {
  text: string;
  /** Markdown for a VS Code MarkdownString. */
  tooltip: string;
  /** The GPU the text describes. */
  gpuIndex?: number;
}

/** Tooltip listing every GPU; the one in the status bar is marked. */
export function formatGpuTooltip(gpus: readonly GpuInfo[], shownIndex?: number): string {
  const first = gpus[0];
  const facts = [
    first?.driverVersion ? `driver ${escapeMarkdown(first.driverVersion)}` : undefined,
    first?.cudaVersion ? `CUDA ${escapeMarkdown(first.cudaVersion)}` : undefined,
  ].filter((x) => x !== undefined);
  const lines = [
    `**NVIDIA GPUs**${facts.length ? ` · ${facts.join(' · ')}` : ''}`,
    '',
    '| GPU | Name | Memory used / total | Util | Temp | Power |',
    '|---:|---|---:|---:|---:|---:|',
  ];
  for (const g of gpus) {
    const marker = g.index === shownIndex && gpus.length > 1 ? ' ◀' : '';
    const mem = `${gibFromMiB(g.memoryUsedMiB)} / ${gibFromMiB(g.memoryTotalMiB)} GiB`;
    const util =
      g.utilizationPct !== null ? `${Math.round(g.utilizationPct)}%` : g.mig ? 'MIG' : '—';
    const temp = unknownOr(g.temperatureC, (t) => `${t} °C`);
    const draw = unknownOr(g.powerW, (w) => `${Math.round(w)}`);
    const power =
      g.powerLimitW !== null && g.powerLimitW !== undefined
        ? `${draw} / ${Math.round(g.powerLimitW)} W`
        : draw === '—'
          ? '—'
          : `${draw} W`;
    lines.push(
      `| ${g.index}${marker} | ${escapeMarkdown(g.name)} | ${mem} | ${util} | ${temp} | ${power} |`,
    );
  }
  return lines.join('\n');
}

/** Status bar text and tooltip for the current sampler state. */
export function formatGpuStatus(input: GpuStatusInput, run?: RunGpuHint): GpuStatusView {
  const gpus = input.gpus ?? [];
  if (input.available && gpus.length > 0) {
    const gpu = pickGpu(gpus, run, input.processes)!;
    return {
      text: formatGpuText(gpu, gpus.length),
      tooltip: formatGpuTooltip(gpus, gpu.index),
      gpuIndex: gpu.index,
    };
  }
  if (input.starting) {
    return { text: 'GPU …', tooltip: '**GPU**\n\nWaiting for nvidia-smi.' };
  }
  const reason =
    input.reason ?? (input.available ? 'nvidia-smi reported no GPU' : 'no NVIDIA GPU found');
  return { text: 'No GPU', tooltip: `**No GPU**\n\n${escapeMarkdown(reason)}` };
}
