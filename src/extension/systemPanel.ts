// Model Lens: System — CPU and GPU facts, a live chart of GPU memory and utilization, and the
// PyTorch memory breakdown. The extension keeps the history (GpuHistory) and sends the webview one
// full state when it loads, then only what changed.
import * as os from 'node:os';
import * as vscode from 'vscode';
import type { CpuInfo, MemoryInfo } from '../protocol/types';
import type { Disposable } from '../system/gpuSampler';
import type { GpuProcess } from '../system/nvidiaSmiParse';
import type { EngineManager } from './engineManager';
import { activeEngineProcess } from './gpuStatusBar';
import { collectCpuFacts } from './cpuFacts';
import { protocol } from './lazyModules';
import type { PanelHost } from './panels';
import { SYSTEM_HISTORY_SAMPLES, cpuLoadPct, gpuRows, memorySection } from './systemModel';
import type {
  MemorySection,
  SystemPanelPatch,
  SystemPanelState,
} from '../protocol/webviewMessages';
import type { CpuTimes, GpuHistory } from './systemModel';

/** How often the PyTorch engine is asked for torch.cuda memory figures while the panel is visible. */
export const TORCH_MEMORY_POLL_MS = 2_000;
/**
 * A poll may queue behind a long user call in the engine: it gives up after this long without
 * stopping the engine (timeout policy `reject`), and the next poll tries again.
 */
const TORCH_MEMORY_TIMEOUT_MS = 10_000;
/** CPU load refresh, independent of the GPU stream (which a machine without a GPU lacks). */
export const CPU_LOAD_INTERVAL_MS = 2_000;
/** The first load figure comes sooner, so the panel does not open on "Load —". */
const CPU_LOAD_FIRST_MS = 300;

export class SystemPanel implements vscode.Disposable {
  private watching = false;
  private readonly subs: Disposable[] = [];
  private readonly hostSubs: vscode.Disposable[];
  private cpu: CpuInfo | null = null;
  private cpuError: string | undefined;
  private cpuLoading: Promise<void> | undefined;
  private lastCpuTimes: CpuTimes | undefined;
  private lastCpuLoad: number | null = null;
  private processes: GpuProcess[] | undefined;
  private torch: MemoryInfo | undefined;
  private torchPid: number | undefined;
  private torchInFlight = false;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly panels: PanelHost,
    private readonly history: GpuHistory,
    private readonly engines: EngineManager,
    private readonly output: vscode.OutputChannel,
  ) {
    // A page that (re)loads gets the whole current state; after that, only patches.
    panels.provide('system', () => this.state());
    this.hostSubs = [
      panels.onDidChangeVisibility(
        ({ kind, visible }) => kind === 'system' && visible && void this.pollTorch(),
      ),
      panels.onDidClose((kind) => kind === 'system' && this.stopWatching()),
    ];
  }

  get isOpen(): boolean {
    return this.panels.isOpen('system');
  }

  show(): void {
    this.panels.show('system', this.state());
    if (this.watching) return;
    this.watching = true;
    this.startWatching();
    void this.loadCpu();
  }

  dispose(): void {
    this.stopWatching();
    for (const d of this.hostSubs) d.dispose();
  }

  private startWatching(): void {
    const sampler = this.history.sampler;
    this.subs.push(
      // Keeps the sampler running while the panel is open, even with the status bar item hidden.
      this.history.subscribe((sample) =>
        this.post({
          samples: [sample],
          gpus: gpuRows(sampler.latest?.gpus ?? []),
          memory: this.memory(),
        }),
      ),
      sampler.onStatus((s) =>
        this.post({ gpuStatus: { state: s.state, reason: s.reason }, memory: this.memory() }),
      ),
      sampler.onProcesses((p) => {
        this.processes = p;
      }),
      this.engines.onDidStop(() => {
        this.torch = undefined;
        this.torchPid = undefined;
        this.post({ memory: this.memory() });
      }),
      this.engines.onDidStart(() => this.post({ memory: this.memory() })),
    );
    this.lastCpuTimes = os.cpus();
    this.timers.push(
      setInterval(() => this.refreshCpuLoad(), CPU_LOAD_INTERVAL_MS),
      setInterval(() => void this.pollTorch(), TORCH_MEMORY_POLL_MS),
      setTimeout(() => this.refreshCpuLoad(), CPU_LOAD_FIRST_MS),
    );
    void this.pollTorch();
  }

  private stopWatching(): void {
    this.watching = false;
    for (const s of this.subs.splice(0)) s.dispose();
    for (const t of this.timers.splice(0)) clearInterval(t);
    this.processes = undefined;
  }

  private async loadCpu(): Promise<void> {
    this.cpuLoading ??= (async () => {
      try {
        this.cpu = await collectCpuFacts();
        this.cpuError = undefined;
      } catch (err) {
        this.cpuError = err instanceof Error ? err.message : String(err);
        this.cpuLoading = undefined;
      }
      if (this.cpu && this.lastCpuLoad !== null)
        this.cpu = { ...this.cpu, loadPct: this.lastCpuLoad };
      this.post({ cpu: this.cpu, cpuError: this.cpuError });
    })();
    return this.cpuLoading;
  }

  private refreshCpuLoad(): void {
    const now = os.cpus();
    const load = this.lastCpuTimes ? cpuLoadPct(this.lastCpuTimes, now) : null;
    this.lastCpuTimes = now;
    if (load !== null) this.lastCpuLoad = Math.round(load);
    if (this.cpu && load !== null) {
      this.cpu = { ...this.cpu, loadPct: Math.round(load) };
      this.post({ cpu: this.cpu });
    }
  }

  /** torch.cuda figures from the PyTorch engine: only while the panel is visible and one runs. */
  private async pollTorch(): Promise<void> {
    if (!this.panels.isVisible('system') || this.torchInFlight) return;
    const client = this.engines.running('pytorch');
    if (!client) return;
    this.torchInFlight = true;
    try {
      const info = await client.request(protocol().systemInfoRequest, undefined, {
        timeoutMs: TORCH_MEMORY_TIMEOUT_MS,
        onTimeout: 'reject',
      });
      this.torch = info.memory;
      this.torchPid = client.pid;
      this.post({ memory: this.memory() });
    } catch (err) {
      this.output.appendLine(
        `[system] system/info failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    } finally {
      this.torchInFlight = false;
    }
  }

  private memory(): MemorySection {
    const engine = activeEngineProcess(this.engines);
    const sampler = this.history.sampler;
    const torch =
      engine && engine.kind === 'pytorch' && engine.pid === this.torchPid ? this.torch : undefined;
    return memorySection({
      engine,
      torch,
      gpus: sampler.status.available ? (sampler.latest?.gpus ?? []) : [],
      processes: this.processes,
      gpuReason: sampler.status.available ? undefined : sampler.status.reason,
    });
  }

  private state(): SystemPanelState {
    const sampler = this.history.sampler;
    return {
      cpu: this.cpu,
      cpuError: this.cpuError,
      gpuStatus: { state: sampler.status.state, reason: sampler.status.reason },
      gpus: gpuRows(sampler.latest?.gpus ?? []),
      samples: this.history.samples.toArray(),
      historyCapacity: SYSTEM_HISTORY_SAMPLES,
      memory: this.memory(),
    };
  }

  /** Deltas go only to a visible page; a hidden one reloads and asks for the full state. */
  private post(patch: SystemPanelPatch): void {
    this.panels.patch('system', patch);
  }
}
