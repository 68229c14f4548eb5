import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient } from '../client/engineClient';
import type { ModelLoadResult, TensorTarget } from '../protocol/messages';
import type { EngineKind, HookKind, ModuleNode } from '../protocol/types';
import type { SummaryPanelState, WebviewMessage } from '../protocol/webviewMessages';
import { formatSummary } from '../client/textFormat';
import { formatCount } from '../shared/format';
import type { ModelTarget } from './codeLens';
import type { EngineManager } from './engineManager';
import { ErrorReporter, firstLine, openLocation } from './errorReporter';
import { engineErrorKind, extensionError, isEngineError } from './errors';
import { parseInputShapes } from './format';
import type { HookStore } from './hookStore';
import { HooksController, type HookHost } from './hooksController';
import { engineModules, protocol } from './lazyModules';
import { ModelState } from './modelState';
import {
  isAlias,
  type ModelSource,
  type ModuleElement,
  type ModulesProvider,
  type TensorsProvider,
} from './moduleTree';
import type { PanelHost } from './panels';
import { ProfileController, type ProfileHost } from './profileController';

/** Saves in quick succession (format-on-save, save-all) cause one re-inspect. */
export const REINSPECT_DEBOUNCE_MS = 500;
const TENSOR_HISTOGRAM_BINS = 32;

export interface SessionViews {
  modules: ModulesProvider;
  tensors: TensorsProvider;
  modulesView: vscode.TreeView<ModuleElement>;
  tensorsView: vscode.TreeView<unknown>;
}

/**
 * The model the editor is looking at: inspect (tree, then summary), re-inspect on save, the
 * Summary and Tensor panels, navigation and the status bar item. Hooks, profiling and error
 * reporting are their own controllers (hooksController.ts, profileController.ts,
 * errorReporter.ts). One model at a time; loading another replaces it, as the engines do.
 */
export class ModelSession implements ModelSource, HookHost, ProfileHost, vscode.Disposable {
  model: ModelState | undefined;
  readonly errors: ErrorReporter;
  readonly hooksController: HooksController;
  readonly profiler: ProfileController;
  private views: SessionViews | undefined;
  /** The engine the current model lives in; when it dies, the model must be loaded again. */
  modelClient: EngineClient | undefined;
  private target: ModelTarget | undefined;
  private inFlight: vscode.CancellationTokenSource | undefined;
  private saveTimer: NodeJS.Timeout | undefined;
  private loading: Promise<ModelState | undefined> | undefined;
  private readonly subscriptions: vscode.Disposable[] = [];
  /** The model a training run is training, while it runs: hooks on it are attached without modelId. */
  trainingModelId: string | undefined;

  constructor(
    private readonly engines: EngineManager,
    private readonly panels: PanelHost,
    private readonly output: vscode.OutputChannel,
    diagnostics: vscode.DiagnosticCollection,
    private readonly status: vscode.StatusBarItem,
  ) {
    this.errors = new ErrorReporter(engines, output, diagnostics, (m) => this.setMessage(m));
    this.hooksController = new HooksController(this, panels, this.errors, output);
    this.profiler = new ProfileController(this, panels, this.errors, output);
    panels.handle('summary', (m) => this.handlePanelMessage(m));
    this.subscriptions.push(
      this.hooksController,
      engines.onDidStart(({ client }) => this.hooksController.watch(client)),
      engines.onDidStop(({ kind, exit }) => {
        if (this.model?.kind !== kind) return;
        this.hooksController.detachAllLocally();
        this.views?.modules.refresh();
        if (exit.reason === 'crashed') {
          this.panels.setEngineState(
            true,
            `The ${kind} engine stopped unexpectedly; the model and its hooks are gone.`,
          );
          this.setMessage(
            `The ${kind} engine stopped. Run "Model Lens: Restart Engine" or inspect again.`,
          );
        }
      }),
    );
  }

  /** The hooks, for the trees' icons and tooltips. */
  get hooks(): HookStore {
    return this.hooksController.store;
  }

  attachViews(views: SessionViews): void {
    this.views = views;
    this.subscriptions.push(
      views.modulesView.onDidExpandElement(
        (e) => !isAlias(e.element) && views.modules.expanded.add(e.element.path),
      ),
      views.modulesView.onDidCollapseElement(
        (e) => !isAlias(e.element) && views.modules.expanded.delete(e.element.path),
      ),
    );
  }

  dispose(): void {
    this.inFlight?.cancel();
    clearTimeout(this.saveTimer);
    for (const s of this.subscriptions) s.dispose();
  }

  // ---- inspect ---------------------------------------------------------------------------------

  /** Model/load + tree + summary for a file; `quiet` for saves (no prompts, no repeated popups). */
  inspect(target: ModelTarget, quiet = false): Promise<ModelState | undefined> {
    const run = this.runInspect(target, quiet);
    this.loading = run;
    void run.finally(() => {
      if (this.loading === run) this.loading = undefined;
    });
    return run;
  }

  /** Lets a request wait for the inspect in flight, so it never asks about a model being replaced. */
  private async settled(): Promise<void> {
    while (this.loading) await this.loading.catch(() => undefined);
  }

  private async runInspect(target: ModelTarget, quiet: boolean): Promise<ModelState | undefined> {
    this.inFlight?.cancel();
    const cts = new vscode.CancellationTokenSource();
    this.inFlight = cts;
    this.target = target;
    const token = cts.token;
    const previousSelection =
      this.views?.modulesView.selection.flatMap((n) => (isAlias(n) ? [] : [n.path])) ?? [];
    const label = path.basename(target.file);
    this.setStatus(`$(sync~spin) Model Lens: loading ${label}`, target.file);
    try {
      return await vscode.window.withProgress(
        { location: { viewId: 'modelLens.modules' } },
        async () => {
          const { client: clientModule, messages } = engineModules();
          const kind = clientModule.engineKindForFile(target.file);
          const client = await this.engines.get(kind, vscode.Uri.file(target.file));
          if (token.isCancellationRequested) return undefined;
          const inputShapes = parseInputShapes(
            vscode.workspace
              .getConfiguration('modelLens', vscode.Uri.file(target.file))
              .get<string>('defaultInputShape'),
          );
          const oldHooks = this.model?.file === target.file ? this.hooks.attached() : [];
          const load = await client.request(
            messages.modelLoadRequest,
            { file: target.file, model: target.model, inputShapes },
            { token },
          );
          const tree = await client.request(
            messages.modelTreeRequest,
            { modelId: load.modelId },
            { token },
          );
          if (token.isCancellationRequested) return undefined;
          const model = new ModelState(target.file, kind, load, tree);
          this.model = model;
          this.modelClient = client;
          this.errors.clearDiagnostics();
          this.panels.setEngineState(false);
          await vscode.commands.executeCommand('setContext', 'modelLens.modelLoaded', true);
          this.setMessage(load.warnings.length ? load.warnings.join(' ') : undefined, true);
          for (const w of load.warnings) this.output.appendLine(`[${kind}] ${load.name}: ${w}`);
          this.views?.modules.refresh();
          this.views?.tensors.refresh();
          this.describeViews();
          this.restoreSelection(previousSelection);
          await this.hooksController.reattach(client, model, oldHooks);
          this.setStatus(
            `$(symbol-class) ${load.name} · ${formatCount(tree.modules[0]?.totalParams ?? 0)} params`,
            target.file,
            kind,
          );

          // The summary runs a forward pass: slower, and a failure there should not hide the tree.
          const summary = await client.request(
            messages.modelSummaryRequest,
            { modelId: load.modelId, inputShapes },
            { token },
          );
          if (token.isCancellationRequested || this.model !== model) return model;
          model.setSummary(summary);
          for (const w of summary.warnings) this.output.appendLine(`[${kind}] summary: ${w}`);
          this.views?.modules.refresh();
          if (this.panels.isOpen('summary')) this.panels.update('summary', summaryState(model));
          return model;
        },
      );
    } catch (err) {
      if (token.isCancellationRequested || engineErrorKind(err) === 'cancelled') return undefined;
      if (
        !quiet &&
        engineErrorKind(err) === 'ambiguousModel' &&
        isEngineError(err) &&
        err.data.candidates?.length
      ) {
        const pick = await vscode.window.showQuickPick(err.data.candidates, {
          title: `${label} defines several models: which one?`,
          placeHolder: 'Model to inspect',
        });
        if (pick) return this.inspect({ file: target.file, model: pick });
      }
      this.errors.report(err, target.file, quiet);
      const kind = engineErrorKind(err);
      if (this.model?.file === target.file && kind !== 'untrusted' && kind !== 'runtimeMissing') {
        this.setMessage(
          `${firstLine(err instanceof Error ? err.message : String(err))} (showing the last successful load)`,
          true,
        );
      }
      if (this.model?.file === target.file)
        this.setStatus(`$(warning) ${this.model.load.name}`, target.file, this.model.kind);
      else if (kind === 'untrusted') {
        // Short: in Restricted Mode the status bar is already crowded; the tooltip says the rest.
        this.setStatus('$(shield) Model Lens', target.file);
        this.status.tooltip = `Trust the workspace to inspect ${label}: Model Lens runs model code.`;
      } else this.setStatus(`$(warning) Model Lens: ${label} failed`, target.file);
      return undefined;
    } finally {
      if (this.inFlight === cts) this.inFlight = undefined;
      cts.dispose();
    }
  }

  /** Called on every save: re-inspects the model file shortly after, cancelling a run in flight. */
  onDidSave(doc: vscode.TextDocument): void {
    const target = this.target;
    if (
      !target ||
      doc.uri.scheme !== 'file' ||
      path.resolve(doc.uri.fsPath) !== path.resolve(target.file)
    )
      return;
    if (!vscode.workspace.isTrusted) return;
    clearTimeout(this.saveTimer);
    this.inFlight?.cancel();
    this.saveTimer = setTimeout(() => void this.inspect(target, true), REINSPECT_DEBOUNCE_MS);
  }

  /** The model of `target` (or the active editor's file), loaded in a live engine. */
  async ensureModel(target?: ModelTarget): Promise<ModelState | undefined> {
    await this.settled();
    const wanted = target ?? this.activeTarget();
    if (!wanted) {
      if (this.model && this.modelClient?.alive) return this.model;
      if (this.target) return this.inspect(this.target);
      void vscode.window.showInformationMessage(
        'Model Lens: open a model file (.py, .js, .ts or model.json) first.',
      );
      return undefined;
    }
    const same =
      this.model &&
      path.resolve(this.model.file) === path.resolve(wanted.file) &&
      (!wanted.model || wanted.model === this.model.load.name);
    if (same && this.modelClient?.alive) return this.model;
    return this.inspect(same ? { file: wanted.file, model: this.model?.load.name } : wanted);
  }

  activeTarget(): ModelTarget | undefined {
    const doc = vscode.window.activeTextEditor?.document;
    if (!doc || doc.uri.scheme !== 'file' || !/\.(py|[cm]?[jt]sx?|json)$/i.test(doc.fileName))
      return undefined;
    return { file: doc.uri.fsPath };
  }

  /** Shows the model a training run trains (its train/progress named it) in the Modules view. */
  async showTrainingModel(
    client: EngineClient,
    file: string,
    kind: EngineKind,
    modelId: string,
  ): Promise<void> {
    await this.settled();
    const tree = await client.request(protocol().modelTreeRequest, { modelId });
    const root = tree.modules.find((m) => m.path === '');
    const type = root?.type ?? 'model';
    const load: ModelLoadResult = {
      modelId,
      file,
      name: `${type} (training)`,
      type,
      candidates: [],
      inputs: [],
      warnings: [],
    };
    this.model = new ModelState(file, kind, load, tree);
    this.modelClient = client;
    this.trainingModelId = modelId;
    await vscode.commands.executeCommand('setContext', 'modelLens.modelLoaded', true);
    this.setMessage(undefined);
    this.views?.modules.refresh();
    this.views?.tensors.refresh();
    this.describeViews();
  }

  /**
   * The views' title says which file they show, and says so louder when the active editor is
   * another model file (inspecting runs its code, so switching is the user's call, not a focus's).
   */
  describeViews(): void {
    if (!this.views) return;
    const model = this.model;
    let text: string | undefined;
    if (model) {
      text = path.basename(model.file);
      const active = this.activeTarget();
      if (active && path.resolve(active.file) !== path.resolve(model.file))
        text += ` — not ${path.basename(active.file)}`;
    }
    this.views.modulesView.description = text;
    this.views.tensorsView.description = text;
  }

  /** The run is over: later hooks name the model again. */
  endTraining(modelId: string | undefined): void {
    if (modelId !== undefined && this.trainingModelId === modelId) this.trainingModelId = undefined;
  }

  // ---- summary, profile, tensors ---------------------------------------------------------------

  async showSummary(): Promise<void> {
    await this.settled();
    const model =
      this.model?.summary && this.modelClient?.alive
        ? this.model
        : await this.ensureModel(this.model ? undefined : this.activeTarget());
    if (!model) return;
    if (!model.summary) {
      try {
        model.setSummary(
          await this.client().request(protocol().modelSummaryRequest, { modelId: model.modelId }),
        );
        this.views?.modules.refresh();
      } catch (err) {
        this.errors.report(err, model.file);
        return;
      }
    }
    this.panels.show('summary', summaryState(model));
  }

  profile(target?: ModelTarget): Promise<unknown> {
    return this.profiler.profile(target);
  }

  exportTrace(): Promise<void> {
    return this.profiler.exportTrace();
  }

  /** The model of the active file (or the current one), loaded in a live engine. */
  ensureLoaded(): Promise<ModelState | undefined> {
    return this.ensureModel(this.model ? undefined : this.activeTarget());
  }

  setBusy(text: string | undefined, model: ModelState): void {
    this.setStatus(
      text ??
        `$(symbol-class) ${model.load.name} · ${formatCount(model.root?.totalParams ?? 0)} params`,
      model.file,
      model.kind,
    );
  }

  refreshTree(): void {
    this.views?.modules.refresh();
  }

  async inspectTensor(target: TensorTarget): Promise<void> {
    const model = await this.ensureModel(this.model ? undefined : this.activeTarget());
    if (!model) return;
    try {
      const result = await this.client().request(protocol().tensorInspectRequest, {
        modelId: model.modelId,
        target,
        stats: true,
        histogramBins: TENSOR_HISTOGRAM_BINS,
      });
      this.panels.show('tensor', { modelName: model.load.name, ...result });
    } catch (err) {
      this.reportError(err, model.file);
    }
  }

  async runForward(): Promise<void> {
    const model = await this.ensureModel(this.model ? undefined : this.activeTarget());
    if (!model) return;
    try {
      const backward = this.hooks.attached().some((h) => h.kind === 'backward');
      const result = await this.client().request(protocol().modelForwardRequest, {
        modelId: model.modelId,
        backward,
      });
      vscode.window.setStatusBarMessage(
        `Model Lens: forward pass done (${result.steps} step${result.steps === 1 ? '' : 's'}${backward ? ' with backward' : ''}, ${result.stepMs.toFixed(1)} ms/step)`,
        5_000,
      );
    } catch (err) {
      this.reportError(err, model.file);
    }
  }

  // ---- hooks (hooksController.ts) -------------------------------------------------------------

  attachHook(modulePath: string, kind: HookKind): Promise<void> {
    return this.hooksController.attach(modulePath, kind);
  }

  detachHooks(modulePath?: string): Promise<void> {
    return this.hooksController.detach(modulePath);
  }

  showHooks(): void {
    this.hooksController.show();
  }

  // ---- navigation ------------------------------------------------------------------------------

  async goToDefinition(node: ModuleNode | undefined): Promise<void> {
    const loc =
      node?.source?.definition ??
      node?.source?.creation ??
      (node?.path === '' ? this.model?.load.location : undefined);
    if (!loc) {
      void vscode.window.showInformationMessage(
        `Model Lens: no source location is known for ${node?.path || 'this module'}.`,
      );
      return;
    }
    await openLocation(loc);
  }

  async revealModule(modulePath: string): Promise<void> {
    const node = this.model?.modules.get(modulePath);
    if (!node || !this.views) return;
    await this.views.modulesView.reveal(node, { select: true, focus: true, expand: false });
  }

  /** The Summary panel's messages (the host answers ready, showLog and restartEngine). */
  private handlePanelMessage(message: WebviewMessage): void {
    if (message.type === 'copySummary' && this.model?.summary) {
      void vscode.env.clipboard.writeText(
        formatSummary(this.model.load.name, this.model.tree, this.model.summary) + '\n',
      );
      vscode.window.setStatusBarMessage('Model Lens: summary copied', 3_000);
    } else if (message.type === 'revealModule') {
      if (this.model?.modules.has(message.path)) void this.revealModule(message.path);
      else this.output.appendLine('[webview summary] ignored revealModule for an unknown path');
    }
  }

  /** After the engine restarts: load the same model again. */
  async reload(): Promise<void> {
    this.hooksController.detachAllLocally();
    this.modelClient = undefined;
    this.panels.setEngineState(false);
    if (this.target) await this.inspect(this.target);
  }

  /** Workspace Trust or settings changed: say so in the views. */
  setMessage(message: string | undefined, modulesOnly = false): void {
    if (this.views) {
      this.views.modulesView.message = message;
      this.views.tensorsView.message = modulesOnly ? undefined : message;
    }
  }

  /** Kept for callers outside the session (training). */
  reportError(err: unknown, file: string | undefined, quiet = false): void {
    this.errors.report(err, file, quiet, this.model?.kind);
  }

  // ---- helpers ---------------------------------------------------------------------------------

  client(): EngineClient {
    if (!this.modelClient?.alive)
      throw extensionError('The engine that held this model stopped; inspect the file again.', {
        kind: 'engineCrashed',
      });
    return this.modelClient;
  }

  private restoreSelection(paths: string[]): void {
    const views = this.views;
    const model = this.model;
    if (!views || !model) return;
    for (const p of paths) {
      const node = model.modules.get(p);
      if (node)
        void Promise.resolve(
          views.modulesView.reveal(node, { select: true, focus: false, expand: false }),
        ).catch(() => undefined);
    }
  }

  private setStatus(text: string, file: string, kind?: EngineKind): void {
    this.status.text = text;
    const engine = kind ? this.engines.running(kind)?.info : undefined;
    this.status.tooltip = `${file}${engine ? `\n${engine.kind} engine · ${engine.backend} · ${engine.device}` : ''}\nClick for the summary`;
    this.status.show();
  }
}

function summaryState(model: ModelState): SummaryPanelState {
  return {
    modelName: model.load.name,
    file: model.file,
    kind: model.kind,
    inputs: model.summary?.inputs ?? model.load.inputs,
    summary: model.summary,
  };
}
