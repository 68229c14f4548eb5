// `GPU 12.3/80.0 GiB · 87%` in the status bar. The nvidia-smi stream runs only while the item is
// shown, starts a moment after activation (activate() spawns nothing), and a machine without an
// NVIDIA driver gets a quiet `No GPU`, never a notification.
import * as vscode from 'vscode';
import type { EngineManager } from './engineManager';
import type { Disposable, GpuSamplerStatus } from '../system/gpuSampler';
import type { GpuProcess } from '../system/nvidiaSmiParse';
import { statusBarView } from './systemModel';
import type { GpuHistory } from './systemModel';
import type { EngineProcess } from '../protocol/webviewMessages';

/** Delay between activation and the first nvidia-smi spawn, so start-up is not slowed. */
export const GPU_STATUS_START_DELAY_MS = 2_000;
const SETTING = 'modelLens.gpuStatusBar';

/**
 * The engine whose GPU memory is worth pointing out: PyTorch (whatever its default device, a model
 * may move itself to CUDA), else TF.js only on its CUDA backend (tfjs-node-gpu).
 */
export function activeEngineProcess(engines: EngineManager): EngineProcess | undefined {
  for (const kind of ['pytorch', 'tfjs'] as const) {
    const c = engines.running(kind);
    const pid = c?.pid ?? c?.info.pid;
    if (!c || pid === undefined) continue;
    if (kind === 'tfjs' && c.info.backend !== 'tensorflow-gpu') continue;
    return { kind, pid, device: c.info.device };
  }
  return undefined;
}

export class GpuStatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly disposables: vscode.Disposable[] = [];
  private snapshotSub: Disposable | undefined;
  private statusSub: Disposable | undefined;
  private processSub: Disposable | undefined;
  private processes: GpuProcess[] | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private started = false;
  private disposed = false;

  constructor(
    private readonly history: GpuHistory,
    private readonly engines: EngineManager,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.item = vscode.window.createStatusBarItem(
      'modelLens.gpu',
      vscode.StatusBarAlignment.Right,
      100,
    );
    this.item.name = 'Model Lens GPU';
    this.item.command = 'modelLens.showSystem';
    this.disposables.push(
      this.item,
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration(SETTING) && this.started) this.apply();
      }),
      engines.onDidStart(() => this.onEnginesChanged()),
      engines.onDidStop(() => this.onEnginesChanged()),
    );
    this.startTimer = setTimeout(() => {
      this.started = true;
      this.apply();
    }, GPU_STATUS_START_DELAY_MS);
  }

  /** Whether the item is meant to be visible (setting `show` and started). */
  get shown(): boolean {
    return this.snapshotSub !== undefined;
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.startTimer);
    this.hide();
    for (const d of this.disposables) d.dispose();
  }

  private wanted(): boolean {
    return vscode.workspace.getConfiguration().get<string>(SETTING, 'show') !== 'hide';
  }

  private apply(): void {
    if (this.disposed) return;
    const wanted = this.wanted();
    if (wanted === this.shown) return;
    this.log(
      `status bar item ${wanted ? 'shown' : 'hidden'} (${SETTING}: ${wanted ? 'show' : 'hide'})`,
    );
    if (wanted) this.show();
    else this.hide();
  }

  private show(): void {
    if (this.snapshotSub) return;
    const sampler = this.history.sampler;
    this.statusSub = sampler.onStatus(() => this.render());
    this.snapshotSub = this.history.subscribe(() => this.render());
    this.onEnginesChanged();
    this.render();
    this.item.show();
  }

  private hide(): void {
    this.item.hide();
    for (const d of [this.snapshotSub, this.statusSub, this.processSub]) d?.dispose();
    this.snapshotSub = this.statusSub = this.processSub = undefined;
    this.processes = undefined;
  }

  /** The per-process stream costs another child: it runs only while an engine could be on the GPU. */
  private onEnginesChanged(): void {
    if (!this.snapshotSub) return;
    const engine = activeEngineProcess(this.engines);
    if (engine && !this.processSub) {
      this.processSub = this.history.sampler.onProcesses((p) => {
        this.processes = p;
        this.render();
      });
    } else if (!engine && this.processSub) {
      this.processSub.dispose();
      this.processSub = undefined;
      this.processes = undefined;
    }
    this.render();
  }

  private render(): void {
    if (!this.snapshotSub) return;
    const sampler = this.history.sampler;
    const status: GpuSamplerStatus = sampler.status;
    const view = statusBarView({
      status,
      snapshot: sampler.latest,
      processes: this.processes,
      engine: activeEngineProcess(this.engines),
    });
    this.item.text = view.text;
    const md = new vscode.MarkdownString(view.tooltip);
    md.supportThemeIcons = false;
    this.item.tooltip = md;
    this.item.accessibilityInformation = {
      label: `${view.text.replace('·', ',')}. ${view.live ? '' : 'GPU figures unavailable. '}Opens the System panel.`,
    };
  }
}
