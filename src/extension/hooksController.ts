// Hooks on the model's modules: attach and detach through the engine, fold the engine's
// throttled `hook/event` stream into HookStore, and keep the Hooks panel and the Modules tree
// (hook icons) current. Hooks survive a re-inspect on save when their module path still exists.
import * as vscode from 'vscode';
import type { EngineClient } from '../client/engineClient';
import type { HookEvent } from '../protocol/messages';
import type { HookKind } from '../protocol/types';
import type { HooksPanelState, HookView } from '../protocol/webviewMessages';
import type { ErrorReporter } from './errorReporter';
import { HookStore } from './hookStore';
import { protocol } from './lazyModules';
import type { ModelState } from './modelState';
import type { PanelHost } from './panels';

/** Hook events are folded per hook and sent to the Hooks panel at most this often. */
const HOOK_PANEL_FLUSH_MS = 100;
const HOOK_HISTOGRAM_BINS = 24;
const DEFAULT_HOOK_INTERVAL_MS = 250;

/** What the controller needs of the session that owns the model. */
export interface HookHost {
  readonly model: ModelState | undefined;
  /** The live engine holding the model; throws when it stopped. */
  client(): EngineClient;
  /** The engine holding the model, alive or not. */
  readonly modelClient: EngineClient | undefined;
  /** The model loaded in a live engine (inspecting the active file if needed). */
  ensureLoaded(): Promise<ModelState | undefined>;
  /** Set while a training run trains the model: hooks then name no modelId. */
  readonly trainingModelId: string | undefined;
  refreshTree(): void;
  revealModule(path: string): Promise<void>;
}

export class HooksController implements vscode.Disposable {
  readonly store = new HookStore();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly changed = new Map<string, HookView>();

  constructor(
    private readonly host: HookHost,
    private readonly panels: PanelHost,
    private readonly errors: ErrorReporter,
    private readonly output: vscode.OutputChannel,
  ) {
    panels.handle('hooks', (m) => {
      if (m.type === 'detachHook') void this.detachById(m.hookId);
      else if (m.type === 'revealModule') void host.revealModule(m.path);
    });
  }

  dispose(): void {
    clearTimeout(this.flushTimer);
  }

  async attach(modulePath: string, kind: HookKind): Promise<void> {
    const model = await this.host.ensureLoaded();
    if (!model) return;
    const client = this.host.client();
    const supported = client.info.capabilities?.hooks ?? [];
    if (!supported.includes(kind)) {
      void vscode.window.showWarningMessage(
        `Model Lens: the ${model.kind} engine has no ${kind} hooks (it supports: ${supported.join(', ') || 'none'}).`,
      );
      return;
    }
    if (modulePath === '' && client.info.capabilities?.rootHooks === false) {
      // capabilities.rootHooks: a TF.js model's predict() never calls the root's own call().
      void vscode.window.showWarningMessage(
        `Model Lens: the ${model.kind} engine cannot hook the whole model; attach the hook to one of its layers (its output layer sees the model's output).`,
      );
      return;
    }
    try {
      await this.attachOne(client, model, modulePath, kind);
      this.host.refreshTree();
      this.panels.show('hooks', this.state(), true);
    } catch (err) {
      this.errors.report(err, model.file);
    }
  }

  /** Detaches the hooks on one module, or all of them. */
  async detach(modulePath?: string): Promise<void> {
    const hooks =
      modulePath === undefined ? this.store.attached() : this.store.attachedOn(modulePath);
    const client = this.host.modelClient;
    try {
      if (client?.alive) {
        if (modulePath === undefined)
          await client.request(protocol().hookDetachRequest, { all: true });
        else
          for (const h of hooks)
            await client.request(protocol().hookDetachRequest, { hookId: h.hookId });
      }
    } catch (err) {
      this.errors.report(err, this.host.model?.file);
    } finally {
      this.store.detach(hooks.map((h) => h.hookId));
      this.host.refreshTree();
      this.post();
    }
  }

  /** The Hooks panel's Detach button on one hook. */
  async detachById(hookId: string): Promise<void> {
    const hook = this.store.get(hookId);
    if (!hook?.attached) return;
    try {
      if (this.host.modelClient?.alive)
        await this.host.modelClient.request(protocol().hookDetachRequest, { hookId: hook.hookId });
    } catch (err) {
      this.errors.report(err, this.host.model?.file);
    }
    this.store.detach([hook.hookId]);
    this.host.refreshTree();
    this.post();
  }

  /** The engine stopped or restarts: its hooks are gone, their cards stay, marked detached. */
  detachAllLocally(): void {
    this.store.detach(this.store.attached().map((h) => h.hookId));
    this.post();
  }

  /** After a re-inspect on save, hooks on paths that still exist keep streaming into the same cards. */
  async reattach(client: EngineClient, model: ModelState, old: HookView[]): Promise<void> {
    for (const h of old) {
      if (!model.modules.has(h.path)) {
        this.store.detach([h.hookId]);
        continue;
      }
      try {
        await this.attachOne(client, model, h.path, h.kind, h);
      } catch (err) {
        this.store.detach([h.hookId]);
        this.output.appendLine(
          `[${model.kind}] could not re-attach the ${h.kind} hook on ${h.path}: ${(err as Error).message}`,
        );
      }
    }
    if (old.length) this.post();
  }

  /** Listens to a newly started engine's hook events. */
  watch(client: EngineClient): void {
    client.onNotification(protocol().hookEventNotification, (e: HookEvent) => {
      const view = this.store.onEvent(e);
      if (!view) return;
      this.changed.set(view.hookId, view);
      this.flushTimer ??= setTimeout(() => {
        this.flushTimer = undefined;
        const hooks = [...this.changed.values()];
        this.changed.clear();
        this.panels.patch('hooks', { hooks }, this.state());
      }, HOOK_PANEL_FLUSH_MS);
    });
  }

  show(): void {
    this.panels.show('hooks', this.state());
  }

  private async attachOne(
    client: EngineClient,
    model: ModelState,
    modulePath: string,
    kind: HookKind,
    reuse?: HookView,
  ): Promise<void> {
    const intervalMs = vscode.workspace
      .getConfiguration('modelLens')
      .get<number>('hookIntervalMs', DEFAULT_HOOK_INTERVAL_MS);
    const { hookId } = await client.request(protocol().hookAttachRequest, {
      // hook/attach without modelId means the model of the active training run.
      modelId: model.modelId === this.host.trainingModelId ? undefined : model.modelId,
      path: modulePath,
      kind,
      intervalMs,
      histogramBins: HOOK_HISTOGRAM_BINS,
    });
    if (reuse) this.store.rebind(reuse.hookId, hookId);
    else this.store.add(hookId, modulePath, kind);
  }

  private post(): void {
    if (this.panels.isOpen('hooks')) this.panels.update('hooks', this.state());
  }

  private state(): HooksPanelState {
    return { modelName: this.host.model?.load.name, hooks: this.store.all() };
  }
}
