// Model Lens: System — CPU and GPU facts, a live chart of GPU memory and utilization, and the
// PyTorch memory breakdown. The extension keeps the history (GpuHistory) and sends the webview one
// full state when it loads, then only what changed.
import * as os from 'node:os';
import * as vscode from 'vscode';
import type { CpuInfo, MemoryInfo } from '../protocol/types';
import type { HostMessage } from '../protocol/webviewMessages';
import type { Disposable } from '../system/gpuSampler';
import type { GpuProcess } from '../system/nvidiaSmiParse';
import type { EngineManager } from './engineManager';
import { activeEngineProcess } from './gpuStatusBar';
import { engineModules } from './lazyModules';
import { SYSTEM_HISTORY_SAMPLES, cpuLoadPct, gpuRows, memorySection } from './systemModel';
import type { MemorySection, SystemPanelPatch, SystemPanelState } from '../protocol/webviewMessages';
import type { CpuTimes, GpuHistory } from './systemModel';
import { webviewHtml } from './webviewHtml';

const TITLE = 'Model Lens: System';
/** How often the PyTorch engine is asked for torch.cuda memory figures while the panel is visible. */
export const TORCH_MEMORY_POLL_MS = 2_000;
/**
 * A poll may queue behind a long user call in the engine: it gives up after this long without
 * stopping the engine (timeout policy `reject`), and the next poll tries again.
 */
const TORCH_MEMORY_TIMEOUT_MS = 10_000;
/** CPU load refresh, independent of the GPU stream (which a machine without a GPU lacks). */
export const CPU_LOAD_INTERVAL_MS = 2_000;


export class SystemPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private readonly subs: Disposable[] = [];
  private cpu: CpuInfo | null = null;
  private cpuError: string | undefined;
  private cpuLoading: Promise<void> | undefined;
  private lastCpuTimes: CpuTimes | undefined;
  private processes: GpuProcess[] | undefined;
  private torch: MemoryInfo | undefined;
  private torchPid: number | undefined;
  private torchInFlight = false;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly history: GpuHistory,
    private readonly engines: EngineManager,
    private readonly output: vscode.OutputChannel,
  ) {}

  get isOpen(): boolean {
    return this.panel !== undefined;
  }

  show(): void {
    if (this.panel) {
      this.panel.reveal();
      return;
    }
    const media = vscode.Uri.joinPath(this.extensionUri, 'media');
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    const panel = vscode.window.createWebviewPanel('modelLens.system', TITLE, vscode.ViewColumn.Active, {
      enableScripts: true,
      localResourceRoots: [media, dist],
      enableFindWidget: true,
    });
    this.panel = panel;
    panel.iconPath = vscode.Uri.joinPath(media, 'modelLens.svg');
    panel.webview.html = this.html(panel.webview);
    panel.webview.onDidReceiveMessage((raw: unknown) => {
      // The page only ever says `ready`; anything else is ignored, never acted on.
      if (typeof raw === 'object' && raw !== null && (raw as { type?: unknown }).type === 'ready') void this.postFull();
      else this.output.appendLine('[webview system] ignored a message');
    });
    panel.onDidChangeViewState(() => this.onVisibility());
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
      this.stopWatching();
    });
    this.startWatching();
    void this.loadCpu();
  }

  dispose(): void {
    this.stopWatching();
    this.panel?.dispose();
    this.panel = undefined;
  }

  private startWatching(): void {
    const sampler = this.history.sampler;
    this.subs.push(
      // Keeps the sampler running while the panel is open, even with the status bar item hidden.
      this.history.subscribe((sample) => this.post({ samples: [sample], gpus: gpuRows(sampler.latest?.gpus ?? []), memory: this.memory() })),
      sampler.onStatus((s) => this.post({ gpuStatus: { state: s.state, reason: s.reason }, memory: this.memory() })),
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
    );
    void this.pollTorch();
  }

  private stopWatching(): void {
    for (const s of this.subs.splice(0)) s.dispose();
    for (const t of this.timers.splice(0)) clearInterval(t);
    this.processes = undefined;
  }

  private onVisibility(): void {
    if (this.panel?.visible) {
      void this.pollTorch();
    }
  }

  private async loadCpu(): Promise<void> {
    this.cpuLoading ??= (async () => {
      try {
        // systeminformation is loaded on first use: activate() stays cheap.
        const report = require('../system/systemReport') as typeof import('../system/systemReport');
        this.cpu = await report.collectCpuInfo();
        this.cpuError = undefined;
      } catch (err) {
        this.cpuError = err instanceof Error ? err.message : String(err);
        this.cpuLoading = undefined;
      }
      this.post({ cpu: this.cpu, cpuError: this.cpuError });
    })();
    return this.cpuLoading;
  }

  private refreshCpuLoad(): void {
    const now = os.cpus();
    const load = this.lastCpuTimes ? cpuLoadPct(this.lastCpuTimes, now) : null;
    this.lastCpuTimes = now;
    if (this.cpu && load !== null) {
      this.cpu = { ...this.cpu, loadPct: Math.round(load) };
      this.post({ cpu: this.cpu });
    }
  }

  /** torch.cuda figures from the PyTorch engine: only while the panel is visible and one runs. */
  private async pollTorch(): Promise<void> {
    if (!this.panel?.visible || this.torchInFlight) return;
    const client = this.engines.running('pytorch');
    if (!client) return;
    this.torchInFlight = true;
    try {
      const { messages } = await engineModules();
      const info = await client.request(messages.systemInfoRequest, undefined, {
        timeoutMs: TORCH_MEMORY_TIMEOUT_MS,
        onTimeout: 'reject',
      });
      this.torch = info.memory;
      this.torchPid = client.pid;
      this.post({ memory: this.memory() });
    } catch (err) {
      this.output.appendLine(`[system] system/info failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.torchInFlight = false;
    }
  }

  private memory(): MemorySection {
    const engine = activeEngineProcess(this.engines);
    const sampler = this.history.sampler;
    const torch = engine && engine.kind === 'pytorch' && engine.pid === this.torchPid ? this.torch : undefined;
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

  private async postFull(): Promise<void> {
    await this.panel?.webview.postMessage({ type: 'state', state: this.state() } satisfies HostMessage);
  }

  /** Deltas go only to a visible page; a hidden one reloads and asks for the full state. */
  private post(patch: SystemPanelPatch): void {
    if (!this.panel?.visible) return;
    void this.panel.webview.postMessage({ type: 'patch', state: patch } satisfies HostMessage);
  }

  private html(webview: vscode.Webview): string {
    return webviewHtml(webview, this.extensionUri, 'system', TITLE);
  }
}
