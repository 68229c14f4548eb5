import * as vscode from 'vscode';
import { validateWebviewMessage, type PanelKind } from './webviewMessages';
import type { HostMessage, WebviewMessage } from '../protocol/webviewMessages';
import { webviewHtml } from './webviewHtml';

const TITLES: Record<PanelKind, string> = {
  summary: 'Model Lens: Summary',
  tensor: 'Model Lens: Tensor',
  ops: 'Model Lens: Ops',
  hooks: 'Model Lens: Hooks',
};


export type PanelMessageHandler = (kind: PanelKind, message: WebviewMessage) => void;

/**
 * One webview panel per kind. The extension keeps each panel's data and replays it when the
 * webview (re)loads, so panels need no retained context while hidden.
 */
export class Panels implements vscode.Disposable {
  private readonly open = new Map<PanelKind, vscode.WebviewPanel>();
  private readonly states = new Map<PanelKind, unknown>();
  private engineBanner: { crashed: boolean; message?: string } = { crashed: false };

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly output: vscode.OutputChannel,
    private readonly onMessage: PanelMessageHandler,
  ) {}

  isOpen(kind: PanelKind): boolean {
    return this.open.has(kind);
  }

  /** Shows (or reveals) a panel with new data. */
  show(kind: PanelKind, state: unknown, preserveFocus = false): void {
    this.states.set(kind, state);
    const existing = this.open.get(kind);
    if (existing) {
      existing.reveal(undefined, preserveFocus);
      void existing.webview.postMessage({ type: 'state', state } satisfies HostMessage);
      return;
    }
    this.create(kind, preserveFocus);
  }

  /** Replaces a panel's data if it is open, without revealing it. */
  update(kind: PanelKind, state: unknown): void {
    this.states.set(kind, state);
    void this.open.get(kind)?.webview.postMessage({ type: 'state', state } satisfies HostMessage);
  }

  /** Sends part of a panel's data (the hooks that changed); `state` must already include it. */
  patch(kind: PanelKind, state: unknown, patch: unknown): void {
    this.states.set(kind, state);
    const panel = this.open.get(kind);
    if (panel?.visible) void panel.webview.postMessage({ type: 'patch', state: patch } satisfies HostMessage);
  }

  setEngineState(crashed: boolean, message?: string): void {
    this.engineBanner = { crashed, message };
    for (const panel of this.open.values()) {
      void panel.webview.postMessage({ type: 'engine', ...this.engineBanner } satisfies HostMessage);
    }
  }

  dispose(): void {
    for (const panel of this.open.values()) panel.dispose();
    this.open.clear();
  }

  private create(kind: PanelKind, preserveFocus: boolean): void {
    const media = vscode.Uri.joinPath(this.extensionUri, 'media');
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    const panel = vscode.window.createWebviewPanel(
      `modelLens.${kind}`,
      TITLES[kind],
      // All Model Lens panels share one editor group beside the code, instead of one group each.
      { viewColumn: [...this.open.values()].find((p) => p.viewColumn)?.viewColumn ?? vscode.ViewColumn.Beside, preserveFocus },
      { enableScripts: true, localResourceRoots: [media, dist], enableFindWidget: true },
    );
    panel.iconPath = vscode.Uri.joinPath(media, 'modelLens.svg');
    panel.webview.html = this.html(panel.webview, kind);
    panel.webview.onDidReceiveMessage((raw: unknown) => {
      const v = validateWebviewMessage(kind, raw);
      if (!v.ok) {
        this.output.appendLine(`[webview ${kind}] ignored a message: ${v.reason}`);
        return;
      }
      if (v.message.type === 'ready') {
        void panel.webview.postMessage({ type: 'engine', ...this.engineBanner } satisfies HostMessage);
        void panel.webview.postMessage({ type: 'state', state: this.states.get(kind) ?? null } satisfies HostMessage);
        return;
      }
      this.onMessage(kind, v.message);
    });
    panel.onDidDispose(() => {
      if (this.open.get(kind) === panel) this.open.delete(kind);
    });
    this.open.set(kind, panel);
  }

  private html(webview: vscode.Webview, kind: PanelKind): string {
    return webviewHtml(webview, this.extensionUri, kind, TITLES[kind]);
  }
}
