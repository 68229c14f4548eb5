// The one host of all six Model Lens webview panels (Summary, Tensor, Ops, Hooks, Training,
// System): creates each panel, keeps its typed state and replays it when the page (re)loads,
// validates every message a page sends with one validator, and routes the valid ones.
import * as vscode from 'vscode';
import type {
  HostMessage,
  PanelKind,
  PanelPatches,
  PanelStates,
  WebviewMessage,
} from '../protocol/webviewMessages';
import { validateWebviewMessage } from './webviewMessages';
import { webviewHtml } from './webviewHtml';

interface PanelSpec {
  title: string;
  /** Model panels share one group beside the code; System opens where the user is. */
  column: 'beside' | 'active';
}

const SPECS: Record<PanelKind, PanelSpec> = {
  summary: { title: 'Model Lens: Summary', column: 'beside' },
  tensor: { title: 'Model Lens: Tensor', column: 'beside' },
  ops: { title: 'Model Lens: Ops', column: 'beside' },
  hooks: { title: 'Model Lens: Hooks', column: 'beside' },
  training: { title: 'Model Lens: Training', column: 'beside' },
  system: { title: 'Model Lens: System', column: 'active' },
};

export type PanelMessageHandler = (message: WebviewMessage) => void;

/**
 * One webview panel per kind. Panels keep no context while hidden: a page that becomes visible
 * again loads afresh, says `ready`, and gets the latest state (or its provider's answer).
 */
export class PanelHost implements vscode.Disposable {
  private readonly open = new Map<PanelKind, vscode.WebviewPanel>();
  private readonly states = new Map<PanelKind, unknown>();
  private readonly providers = new Map<PanelKind, () => unknown>();
  private readonly handlers = new Map<PanelKind, PanelMessageHandler>();
  private readonly visibility = new vscode.EventEmitter<{ kind: PanelKind; visible: boolean }>();
  private readonly closed = new vscode.EventEmitter<PanelKind>();
  private engineBanner: { crashed: boolean; message?: string } = { crashed: false };
  /** A panel became visible or hidden. */
  readonly onDidChangeVisibility = this.visibility.event;
  /** The user closed a panel. */
  readonly onDidClose = this.closed.event;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly output: vscode.OutputChannel,
  ) {}

  /** Where a panel's valid messages go (`ready`, `showLog` and `restartEngine` are answered here). */
  handle(kind: PanelKind, handler: PanelMessageHandler): void {
    this.handlers.set(kind, handler);
  }

  /** Computes the state a reloading page gets, for panels whose state changes by patches. */
  provide<K extends PanelKind>(kind: K, provider: () => PanelStates[K]): void {
    this.providers.set(kind, provider);
  }

  isOpen(kind: PanelKind): boolean {
    return this.open.has(kind);
  }

  isVisible(kind: PanelKind): boolean {
    return this.open.get(kind)?.visible ?? false;
  }

  /** Shows (or reveals) a panel with new data. */
  show<K extends PanelKind>(kind: K, state: PanelStates[K] | null, preserveFocus = false): void {
    this.states.set(kind, state);
    const existing = this.open.get(kind);
    if (existing) {
      existing.reveal(undefined, preserveFocus);
      this.post(existing, { type: 'state', state });
      return;
    }
    this.create(kind, preserveFocus);
  }

  /** Replaces a panel's data; a visible page redraws, a hidden one gets it when it reloads. */
  update<K extends PanelKind>(kind: K, state: PanelStates[K] | null): void {
    this.states.set(kind, state);
    const panel = this.open.get(kind);
    if (panel?.visible) this.post(panel, { type: 'state', state });
  }

  /** Sends part of a panel's data; `state` (when given) already includes it. */
  patch<K extends keyof PanelPatches>(
    kind: K,
    patch: PanelPatches[K],
    state?: PanelStates[K],
  ): void {
    if (state !== undefined) this.states.set(kind, state);
    const panel = this.open.get(kind);
    if (panel?.visible) this.post(panel, { type: 'patch', state: patch });
  }

  setEngineState(crashed: boolean, message?: string): void {
    this.engineBanner = { crashed, message };
    for (const panel of this.open.values())
      this.post(panel, { type: 'engine', ...this.engineBanner });
  }

  dispose(): void {
    for (const panel of [...this.open.values()]) panel.dispose();
    this.open.clear();
    this.visibility.dispose();
    this.closed.dispose();
  }

  private post(panel: vscode.WebviewPanel, message: HostMessage): void {
    void panel.webview.postMessage(message);
  }

  private create(kind: PanelKind, preserveFocus: boolean): void {
    const spec = SPECS[kind];
    const media = vscode.Uri.joinPath(this.extensionUri, 'media');
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    const besideGroup = [...this.open.entries()].find(
      ([k, p]) => SPECS[k].column === 'beside' && p.viewColumn,
    )?.[1].viewColumn;
    const viewColumn =
      spec.column === 'active'
        ? vscode.ViewColumn.Active
        : (besideGroup ?? vscode.ViewColumn.Beside);
    const panel = vscode.window.createWebviewPanel(
      `modelLens.${kind}`,
      spec.title,
      { viewColumn, preserveFocus },
      {
        enableScripts: true,
        localResourceRoots: [media, dist],
        enableFindWidget: true,
      },
    );
    panel.iconPath = vscode.Uri.joinPath(media, 'modelLens.svg');
    panel.webview.html = webviewHtml(panel.webview, this.extensionUri, kind, spec.title);
    panel.webview.onDidReceiveMessage((raw: unknown) => {
      const v = validateWebviewMessage(kind, raw);
      if (!v.ok) {
        this.output.appendLine(`[webview ${kind}] ignored a message: ${v.reason}`);
        return;
      }
      switch (v.message.type) {
        case 'ready': {
          this.post(panel, { type: 'engine', ...this.engineBanner });
          const provider = this.providers.get(kind);
          this.post(panel, {
            type: 'state',
            state: provider ? provider() : (this.states.get(kind) ?? null),
          });
          return;
        }
        case 'showLog':
          this.output.show(true);
          return;
        case 'restartEngine':
          void vscode.commands.executeCommand('modelLens.restartEngine');
          return;
        default:
          this.handlers.get(kind)?.(v.message);
      }
    });
    panel.onDidChangeViewState((e) =>
      this.visibility.fire({ kind, visible: e.webviewPanel.visible }),
    );
    panel.onDidDispose(() => {
      if (this.open.get(kind) !== panel) return;
      this.open.delete(kind);
      this.closed.fire(kind);
    });
    this.open.set(kind, panel);
  }
}
