// The logic behind the GPU status bar item and the System panel, kept free of `vscode` so unit
// tests run it directly: history of GPU samples, architecture names, what the tooltip says about
// the engine's process, the memory breakdown and the CPU load.
import type * as os from 'node:os';
import type { EngineKind, GpuInfo, MemoryInfo } from '../protocol/types';
import {
  escapeMarkdown,
  formatBytes,
  formatGpuStatus,
  gibFromMiB,
  pickGpu,
} from '../system/gpuFormat';
import type { RunGpuHint } from '../system/gpuFormat';
import { memoryThreeWays } from '../system/gpuMemory';
import type { Disposable, GpuSampler, GpuSamplerStatus, GpuSnapshot } from '../system/gpuSampler';
import type { GpuProcess, NvidiaSmiFailureKind } from '../system/nvidiaSmiParse';
import type {
  EngineProcess,
  GpuRow,
  GpuSample,
  MemorySection,
  SystemSample,
} from '../protocol/webviewMessages';

/** Samples kept for the System panel's chart: 5 minutes at the sampler's 1 s tick. */
export const SYSTEM_HISTORY_SAMPLES = 300;
const BYTES_PER_MIB = 1024 * 1024;

/** A fixed-capacity FIFO: pushing past capacity drops the oldest element. */
export class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`ring buffer capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    const end = (this.start + this.count) % this.capacity;
    this.items[end] = item;
    if (this.count < this.capacity) this.count += 1;
    else this.start = (this.start + 1) % this.capacity;
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.count; i++)
      out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }

  clear(): void {
    this.items.fill(undefined);
    this.start = 0;
    this.count = 0;
  }
}

export function sampleOf(snapshot: GpuSnapshot, seq: number): SystemSample {
  return {
    seq,
    time: snapshot.time,
    gpus: snapshot.gpus.map((g) => ({
      index: g.index,
      memoryUsedMiB: g.memoryUsedMiB,
      memoryTotalMiB: g.memoryTotalMiB,
      utilizationPct: g.utilizationPct,
    })),
  };
}

/**
 * The sampler's snapshots as a history. Several consumers (status bar, System panel) share one
 * sampler subscription, so the history is recorded once; the sampler runs while anyone listens.
 */
export class GpuHistory {
  readonly samples: RingBuffer<SystemSample>;
  private readonly listeners = new Set<(sample: SystemSample, snapshot: GpuSnapshot) => void>();
  private subscription: Disposable | undefined;
  private seq = 0;

  constructor(
    readonly sampler: GpuSampler,
    capacity = SYSTEM_HISTORY_SAMPLES,
  ) {
    this.samples = new RingBuffer<SystemSample>(capacity);
  }

  get listening(): boolean {
    return this.subscription !== undefined;
  }

  subscribe(listener: (sample: SystemSample, snapshot: GpuSnapshot) => void): Disposable {
    this.listeners.add(listener);
    this.subscription ??= this.sampler.onSnapshot((snapshot) => {
      const sample = sampleOf(snapshot, ++this.seq);
      this.samples.push(sample);
      for (const l of this.listeners) l(sample, snapshot);
    });
    return {
      dispose: () => {
        this.listeners.delete(listener);
        if (this.listeners.size === 0 && this.subscription) {
          this.subscription.dispose();
          this.subscription = undefined;
        }
      },
    };
  }
}

/**
 * NVIDIA's architecture for a compute capability (CUDA C Programming Guide, "Compute
 * Capabilities"); null when unknown. Jetson parts share their family's name (7.2 Xavier is Volta,
 * 8.7 Orin is Ampere, 11.0 Thor is Blackwell).
 */
export function gpuArchitecture(computeCapability: string | null | undefined): string | null {
  const m = /^\s*(\d+)\.(\d+)\s*$/.exec(computeCapability ?? '');
  if (!m) return null;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  switch (major) {
    case 3:
      return 'Kepler';
    case 5:
      return 'Maxwell';
    case 6:
      return 'Pascal';
    case 7:
      return minor >= 5 ? 'Turing' : 'Volta';
    case 8:
      return minor === 9 ? 'Ada Lovelace' : 'Ampere';
    case 9:
      return 'Hopper';
    case 10:
    case 11:
    case 12:
      return 'Blackwell';
    default:
      return null;
  }
}

/** The Model Lens engine whose GPU use the status bar and the System panel point out. */

/**
 * One tooltip line on the engine's own GPU memory, from nvidia-smi's compute-apps rows of its pid.
 * `processes` undefined: the per-process query has not answered yet.
 */
export function engineGpuMemoryLine(
  engine: EngineProcess | undefined,
  processes: readonly GpuProcess[] | undefined,
  gpus: readonly GpuInfo[],
): string | undefined {
  if (!engine) return undefined;
  const who = `Model Lens ${engine.kind} engine (pid ${engine.pid})`;
  if (!processes) return `${who}: GPU memory not known yet`;
  const mine = processes.filter((p) => p.pid === engine.pid);
  // Inside a container without the host's pid namespace nvidia-smi lists host pids, so "not
  // listed" is what can be said, not "uses no GPU memory".
  if (mine.length === 0) return `${who}: no GPU memory listed by nvidia-smi`;
  const parts = mine.map((p) => {
    const gpu = gpus.find((g) => g.uuid === p.gpuUuid);
    const where = gpu ? `GPU ${gpu.index}` : `GPU ${escapeMarkdown(p.gpuUuid)}`;
    return p.usedMemoryMiB === null
      ? `${where} (memory not reported by the driver)`
      : `${formatBytes(p.usedMemoryMiB * BYTES_PER_MIB)} on ${where}`;
  });
  return `${who}: ${parts.join(', ')}`;
}

export interface StatusBarInput {
  status: GpuSamplerStatus;
  /** The latest snapshot, if nvidia-smi ever answered. */
  snapshot?: GpuSnapshot;
  processes?: readonly GpuProcess[];
  engine?: EngineProcess;
}

export interface StatusBarView {
  text: string;
  /** Markdown. */
  tooltip: string;
  /** True when the figures are current (not a failure or a wait). */
  live: boolean;
}

const CLICK_HINT = '_Click for the System panel._';

/**
 * The GPUs for the tooltip, one block per GPU and one line per figure. A status bar hover does
 * not lay out markdown tables, so a table ran Util, Temp and Power together on one line.
 */
export function gpuTooltip(gpus: readonly GpuInfo[], shownIndex?: number): string {
  const first = gpus[0];
  const facts = [
    first?.driverVersion && `driver ${escapeMarkdown(first.driverVersion)}`,
    first?.cudaVersion && `CUDA ${escapeMarkdown(first.cudaVersion)}`,
  ].filter(Boolean);
  const blocks = gpus.map((g) => {
    const marker = g.index === shownIndex && gpus.length > 1 ? ' (in the status bar)' : '';
    const util =
      g.utilizationPct !== null
        ? `${Math.round(g.utilizationPct)}%`
        : g.mig
          ? 'not reported per MIG instance'
          : '—';
    const temp = g.temperatureC === null ? '—' : `${g.temperatureC} °C`;
    const draw = g.powerW === null || g.powerW === undefined ? null : Math.round(g.powerW);
    const limit =
      g.powerLimitW === null || g.powerLimitW === undefined ? null : Math.round(g.powerLimitW);
    const power = draw === null ? '—' : limit === null ? `${draw} W` : `${draw} / ${limit} W`;
    return [
      `**GPU ${g.index}** · ${escapeMarkdown(g.name)}${marker}`,
      `Memory: ${gibFromMiB(g.memoryUsedMiB)} / ${gibFromMiB(g.memoryTotalMiB)} GiB`,
      `Util: ${util}`,
      `Temp: ${temp}`,
      `Power: ${power}`,
    ].join('  \n');
  });
  return [...(facts.length ? [`NVIDIA ${facts.join(' · ')}`] : []), ...blocks].join('\n\n');
}
/** Failures that mean this machine has no usable NVIDIA GPU, as opposed to nvidia-smi misbehaving. */
const NO_GPU_KINDS: ReadonlySet<NvidiaSmiFailureKind> = new Set([
  'notFound',
  'notExecutable',
  'driver',
  'nvml',
  'noDevices',
]);

/**
 * What the status bar item says. Never an error: no driver reads `No GPU`; an nvidia-smi that
 * hangs or fails reads `GPU ?` with "GPU data unavailable (reason)" and the last figures, if any.
 */
export function statusBarView(input: StatusBarInput): StatusBarView {
  const { status, snapshot } = input;
  const run: RunGpuHint | undefined = input.engine ? { pid: input.engine.pid } : undefined;
  const engineLine = engineGpuMemoryLine(input.engine, input.processes, snapshot?.gpus ?? []);
  const withFooter = (body: string) =>
    [body, engineLine, CLICK_HINT].filter((x) => x !== undefined).join('\n\n');
  if (status.available && snapshot && snapshot.gpus.length > 0) {
    const v = formatGpuStatus(
      { available: true, gpus: snapshot.gpus, processes: input.processes },
      run,
    );
    return { text: v.text, tooltip: withFooter(gpuTooltip(snapshot.gpus, v.gpuIndex)), live: true };
  }
  if (status.state === 'unavailable' && snapshot && snapshot.gpus.length > 0) {
    const last = pickGpu(snapshot.gpus, run, input.processes);
    const head = `**GPU data unavailable**: ${escapeMarkdown(sentence(status.reason ?? 'nvidia-smi stopped answering'))} Retrying.`;
    const stale = `Last figures, ${new Date(snapshot.time).toLocaleTimeString()}:\n\n${gpuTooltip(snapshot.gpus, last?.index)}`;
    return { text: 'GPU ?', tooltip: withFooter(`${head}\n\n${stale}`), live: false };
  }
  if (
    status.state === 'unavailable' &&
    (status.kind === undefined || NO_GPU_KINDS.has(status.kind))
  ) {
    const v = formatGpuStatus({ available: false, reason: status.reason });
    return { text: v.text, tooltip: withFooter(v.tooltip), live: false };
  }
  if (status.state === 'unavailable') {
    // nvidia-smi exists but misbehaves (hangs, prints garbage): there may well be a GPU.
    const head = `**GPU data unavailable**: ${escapeMarkdown(sentence(status.reason ?? 'nvidia-smi is not answering'))} Retrying.`;
    return { text: 'GPU ?', tooltip: withFooter(head), live: false };
  }
  const v = formatGpuStatus({ available: false, starting: true });
  return { text: v.text, tooltip: withFooter(v.tooltip), live: false };
}

/** A reason with a final full stop (kept lower-case: reasons often start with `nvidia-smi`). */
export function sentence(text: string): string {
  const t = text.trim();
  return !t || /[.!?]$/.test(t) ? t : `${t}.`;
}

export interface MemorySectionInput {
  engine?: EngineProcess;
  /** The PyTorch engine's `system/info` memory, once polled. */
  torch?: MemoryInfo;
  gpus: readonly GpuInfo[];
  processes?: readonly GpuProcess[];
  /** Why there are no GPUs, when there are none. */
  gpuReason?: string;
}

export function memorySection(input: MemorySectionInput): MemorySection {
  const { engine, torch, gpus } = input;
  if (gpus.length === 0) {
    // The reason may carry its own parentheses ("… (no NVIDIA driver installed?)"): a sentence
    // of its own reads better than nested ones.
    const why = input.gpuReason ? `: ${sentence(input.gpuReason)}` : '.';
    return { message: `No NVIDIA GPU, so there is no CUDA memory to break down${why}`, engine };
  }
  if (!engine || engine.kind !== 'pytorch') {
    return {
      message:
        'No PyTorch engine is running. Inspect a PyTorch model on CUDA to compare what the device reports with what PyTorch reserves and allocates.',
      engine,
    };
  }
  if (!torch) return { message: 'Asking the PyTorch engine for its CUDA memory…', engine };
  if (torch.torchAllocatedBytes === undefined && torch.torchReservedBytes === undefined) {
    return {
      message: `The PyTorch engine has not used CUDA${engine.device ? ` (its device is ${engine.device})` : ''}, so torch reports no CUDA memory.`,
      engine,
    };
  }
  const gpu = pickGpu(gpus, { pid: engine.pid }, input.processes);
  let processMiB: number | null = null;
  if (gpu && input.processes) {
    const rows = input.processes.filter((p) => p.pid === engine.pid && p.gpuUuid === gpu.uuid);
    if (rows.length > 0 && rows.every((r) => r.usedMemoryMiB !== null))
      processMiB = rows.reduce((s, r) => s + (r.usedMemoryMiB ?? 0), 0);
  }
  const three = memoryThreeWays({
    deviceUsedMiB: gpu?.memoryUsedMiB ?? null,
    processUsedMiB: processMiB,
    torchReservedBytes: torch.torchReservedBytes ?? null,
    torchAllocatedBytes: torch.torchAllocatedBytes ?? null,
  });
  return {
    figures: three.figures.map((f) => ({
      key: f.key,
      label: f.label,
      bytes: f.bytes,
      explanation: f.explanation,
    })),
    processBytes: processMiB === null ? null : processMiB * BYTES_PER_MIB,
    gpuIndex: gpu?.index,
    engine,
  };
}

export type CpuTimes = Pick<os.CpuInfo, 'times'>[];

/** Busy share of all CPUs between two `os.cpus()` readings, in percent; null without a difference. */
export function cpuLoadPct(before: CpuTimes, after: CpuTimes): number | null {
  let busy = 0;
  let total = 0;
  const n = Math.min(before.length, after.length);
  for (let i = 0; i < n; i++) {
    const a = before[i].times;
    const b = after[i].times;
    const idle = b.idle - a.idle;
    const all = b.user - a.user + (b.nice - a.nice) + (b.sys - a.sys) + (b.irq - a.irq) + idle;
    busy += all - idle;
    total += all;
  }
  return total > 0 ? Math.max(0, Math.min(100, (busy / total) * 100)) : null;
}

export function gpuRows(gpus: readonly GpuInfo[]): GpuRow[] {
  return gpus.map((g) => ({ ...g, architecture: gpuArchitecture(g.computeCapability) }));
}
