import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient } from '../client/engineClient';
import type { EngineErrorData } from '../protocol/errors';
import type { HookEvent, ModelLoadResult, ProfileResult, TensorTarget } from '../protocol/messages';
import type { EngineKind, HookKind, ModuleNode, SourceLocation } from '../protocol/types';
import type { ModelTarget } from './codeLens';
import type { EngineManager } from './engineManager';
import { engineErrorKind, extensionError, isEngineError } from './errors';
import { privateTempFile } from '../client/privateTemp';
import { formatSummary } from '../client/textFormat';
import { formatCount } from '../shared/format';
import { parseInputShapes } from './format';
import type { HookView } from '../protocol/webviewMessages';
import { HookStore } from './hookStore';
import { engineModules } from './lazyModules';
import { ModelState } from './modelState';
import type { ModelSource, ModulesProvider, TensorsProvider } from './moduleTree';
import type { Panels } from './panels';
import type { WebviewMessage } from '../protocol/webviewMessages';
import type { PanelKind } from './webviewMessages';

/** Saves in quick succession (format-on-save, save-all) cause one re-inspect. */
export const REINSPECT_DEBOUNCE_MS = 500;
/** Hook events are folded per hook and sent to the Hooks panel at most this often. */
const HOOK_PANEL_FLUSH_MS = 100;
const TENSOR_HISTOGRAM_BINS = 32;
const HOOK_HISTOGRAM_BINS = 24;
/** User errors the engine places in a file: worth a squiggle, not just a notification. */
const USER_ERROR_KINDS = new Set(['syntaxError', 'importError', 'noModel', 'ambiguousModel', 'constructorArgs', 'shapeMismatch', 'deviceMismatch', 'userCodeError', 'userExit']);

export interface SessionViews {
  modules: ModulesProvider;
  tensors: TensorsProvider;
  modulesView: vscode.TreeView<ModuleNode>;
  tensorsView: vscode.TreeView<unknown>;
}

/**
 * The model the editor is looking at and everything done to it: inspect, summary, profile,
 * hooks, tensors. One model at a time; loading another replaces it, as the engines do.
 */
export class ModelSession implements ModelSource, vscode.Disposable {
  model: ModelState | undefined;
  readonly hooks = new HookStore();
  private views: SessionViews | undefined;
  /** The engine the current model lives in; when it dies, the model must be loaded again. */
  private modelClient: EngineClient | undefined;
  private target: ModelTarget | undefined;
  private inFlight: vscode.CancellationTokenSource | undefined;
  private saveTimer: NodeJS.Timeout | undefined;
  private lastProfile: ProfileResult | undefined;
  private loading: Promise<ModelState | undefined> | undefined;
  private lastEnvironmentMessage: string | undefined;
  private hookFlush: NodeJS.Timeout | undefined;
  private readonly changedHooks = new Map<string, HookView>();
  private readonly subscriptions: vscode.Disposable[] = [];
  /** The model a training run is training, while it runs: hooks on it are attached without modelId. */
  private trainingModelId: string | undefined;

  constructor(
    private readonly engines: EngineManager,
    private readonly panels: Panels,
    private readonly output: vscode.OutputChannel,
    private readonly diagnostics: vscode.DiagnosticCollection,
    private readonly status: vscode.StatusBarItem,
  ) {
    this.subscriptions.push(
      engines.onDidStart(({ client }) => this.onEngineStarted(client)),
      engines.onDidStop(({ kind, exit }) => {
        if (this.model?.kind !== kind) return;
        this.hooks.detach(this.hooks.attached().map((h) => h.hookId));
        this.postHooks();
        this.views?.modules.refresh();
        if (exit.reason === 'crashed') {
          this.panels.setEngineState(true, `The ${kind} engine stopped unexpectedly; the model and its hooks are gone.`);
          this.setMessage(`The ${kind} engine stopped. Run "Model Lens: Restart Engine" or inspect again.`);
        }
      }),
    );
  }

  attachViews(views: SessionViews): void {
    this.views = views;
    this.subscriptions.push(
      views.modulesView.onDidExpandElement((e) => views.modules.expanded.add(e.element.path)),
      views.modulesView.onDidCollapseElement((e) => views.modules.expanded.delete(e.element.path)),
    );
  }

  dispose(): void {
    this.inFlight?.cancel();
    clearTimeout(this.saveTimer);
    clearTimeout(this.hookFlush);
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
    const previousSelection = this.views?.modulesView.selection.map((n) => n.path) ?? [];
    const label = path.basename(target.file);
    this.setStatus(`$(sync~spin) Model Lens: loading ${label}`, target.file);
    try {
      return await vscode.window.withProgress({ location: { viewId: 'modelLens.modules' } }, async () => {
        const { client: clientModule, messages } = await engineModules();
        const kind = clientModule.engineKindForFile(target.file);
        const client = await this.engines.get(kind, vscode.Uri.file(target.file));
        if (token.isCancellationRequested) return undefined;
        const inputShapes = parseInputShapes(
          vscode.workspace.getConfiguration('modelLens', vscode.Uri.file(target.file)).get<string>('defaultInputShape'),
        );
        const oldHooks = this.model?.file === target.file ? this.hooks.attached() : [];
        const load = await client.request(messages.modelLoadRequest, { file: target.file, model: target.model, inputShapes }, { token });
        const tree = await client.request(messages.modelTreeRequest, { modelId: load.modelId }, { token });
        if (token.isCancellationRequested) return undefined;
        const model = new ModelState(target.file, kind, load, tree);
        this.model = model;
        this.modelClient = client;
        this.diagnostics.clear();
        this.panels.setEngineState(false);
        await vscode.commands.executeCommand('setContext', 'modelLens.modelLoaded', true);
        this.setMessage(load.warnings.length ? load.warnings.join(' ') : undefined, true);
        for (const w of load.warnings) this.output.appendLine(`[${kind}] ${load.name}: ${w}`);
        this.views?.modules.refresh();
        this.views?.tensors.refresh();
        this.restoreSelection(previousSelection);
        await this.reattachHooks(client, model, oldHooks);
        this.setStatus(`$(symbol-class) ${load.name} · ${formatCount(tree.modules[0]?.totalParams ?? 0)} params`, target.file, kind);

        // The summary runs a forward pass: slower, and a failure there should not hide the tree.
        const summary = await client.request(messages.modelSummaryRequest, { modelId: load.modelId, inputShapes }, { token });
        if (token.isCancellationRequested || this.model !== model) return model;
        model.setSummary(summary);
        for (const w of summary.warnings) this.output.appendLine(`[${kind}] summary: ${w}`);
        this.views?.modules.refresh();
        if (this.panels.isOpen('summary')) this.panels.update('summary', this.summaryState(model));
        return model;
      });
    } catch (err) {
      if (token.isCancellationRequested || engineErrorKind(err) === 'cancelled') return undefined;
      if (!quiet && engineErrorKind(err) === 'ambiguousModel' && isEngineError(err) && err.data.candidates?.length) {
        const pick = await vscode.window.showQuickPick(err.data.candidates, {
          title: `${label} defines several models: which one?`,
          placeHolder: 'Model to inspect',
        });
        if (pick) return this.inspect({ file: target.file, model: pick });
      }
      this.reportError(err, target.file, quiet);
      const kind = engineErrorKind(err);
      if (this.model?.file === target.file && kind !== 'untrusted' && kind !== 'runtimeMissing') {
        this.setMessage(`${firstLine(err instanceof Error ? err.message : String(err))} (showing the last successful load)`, true);
      }
      if (this.model?.file === target.file) this.setStatus(`$(warning) ${this.model.load.name}`, target.file, this.model.kind);
      else if (kind === 'untrusted') this.setStatus(`$(shield) Model Lens: trust the workspace to inspect ${label}`, target.file);
      else this.setStatus(`$(warning) Model Lens: ${label} failed`, target.file);
      return undefined;
    } finally {
      if (this.inFlight === cts) this.inFlight = undefined;
      cts.dispose();
    }
  }

  /** Called on every save: re-inspects the model file shortly after, cancelling a run in flight. */
  onDidSave(doc: vscode.TextDocument): void {
    const target = this.target;
    if (!target || doc.uri.scheme !== 'file' || path.resolve(doc.uri.fsPath) !== path.resolve(target.file)) return;
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
      void vscode.window.showInformationMessage('Model Lens: open a model file (.py, .js, .ts or model.json) first.');
      return undefined;
    }
    const same = this.model && path.resolve(this.model.file) === path.resolve(wanted.file) && (!wanted.model || wanted.model === this.model.load.name);
    if (same && this.modelClient?.alive) return this.model;
    return this.inspect(same ? { file: wanted.file, model: this.model?.load.name } : wanted);
  }

  activeTarget(): ModelTarget | undefined {
    const doc = vscode.window.activeTextEditor?.document;
    if (!doc || doc.uri.scheme !== 'file' || !/\.(py|[cm]?[jt]sx?|json)$/i.test(doc.fileName)) return undefined;
    return { file: doc.uri.fsPath };
  }

  /** Shows the model a training run trains (its train/progress named it) in the Modules view. */
  async showTrainingModel(client: EngineClient, file: string, kind: EngineKind, modelId: string): Promise<void> {
    const { messages } = await engineModules();
    await this.settled();
    const tree = await client.request(messages.modelTreeRequest, { modelId });
    const root = tree.modules.find((m) => m.path === '');
    const type = root?.type ?? 'model';
    const load: ModelLoadResult = { modelId, file, name: `${type} (training)`, type, candidates: [], inputs: [], warnings: [] };
    this.model = new ModelState(file, kind, load, tree);
    this.modelClient = client;
    this.trainingModelId = modelId;
    await vscode.commands.executeCommand('setContext', 'modelLens.modelLoaded', true);
    this.setMessage(undefined);
    this.views?.modules.refresh();
    this.views?.tensors.refresh();
  }

  /** The run is over: later hooks name the model again. */
  endTraining(modelId: string | undefined): void {
    if (modelId !== undefined && this.trainingModelId === modelId) this.trainingModelId = undefined;
  }

  // ---- summary, profile, tensors ---------------------------------------------------------------

  async showSummary(): Promise<void> {
    await this.settled();
    const model = this.model?.summary && this.modelClient?.alive ? this.model : await this.ensureModel(this.model ? undefined : this.activeTarget());
    if (!model) return;
    if (!model.summary) {
      try {
        const { messages } = await engineModules();
        model.setSummary(await this.client().request(messages.modelSummaryRequest, { modelId: model.modelId }));
        this.views?.modules.refresh();
      } catch (err) {
        this.reportError(err, model.file);
        return;
      }
    }
    this.panels.show('summary', this.summaryState(model));
  }

  async profile(target?: ModelTarget, traceFile?: string): Promise<ProfileResult | undefined> {
    const model = await this.ensureModel(target);
    if (!model) return undefined;
    const { messages } = await engineModules();
    const client = this.client();
    const trace = traceFile ?? (client.info.capabilities?.trace ? privateTempFile(`trace-${model.kind}.json`) : undefined);
    this.setStatus(`$(sync~spin) Model Lens: profiling ${model.load.name}`, model.file, model.kind);
    try {
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Model Lens: profiling ${model.load.name}`, cancellable: true },
        (_, token) => client.request(messages.profileRunRequest, { modelId: model.modelId, traceFile: trace }, { token }),
      );
      this.lastProfile = result;
      for (const w of result.warnings) this.output.appendLine(`[${model.kind}] profile: ${w}`);
      await vscode.commands.executeCommand('setContext', 'modelLens.hasProfile', true);
      this.panels.show('ops', { modelName: model.load.name, kind: model.kind, profile: result, canExport: Boolean(result.traceFile) });
      return result;
    } catch (err) {
      this.reportError(err, model.file);
      return undefined;
    } finally {
      this.setStatus(`$(symbol-class) ${model.load.name} · ${formatCount(model.root?.totalParams ?? 0)} params`, model.file, model.kind);
    }
  }

  async exportTrace(): Promise<void> {
    const model = this.model;
    const defaultUri = vscode.Uri.file(
      path.join(vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? os.homedir(), `${model?.load.name ?? 'model'}-trace.json`),
    );
    const dest = await vscode.window.showSaveDialog({ defaultUri, filters: { 'Chrome trace': ['json'] }, title: 'Export Trace' });
    if (!dest) return;
    const existing = this.lastProfile?.traceFile;
    if (existing && fs.existsSync(existing) && this.model === model) {
      await fs.promises.copyFile(existing, dest.fsPath);
    } else {
      const result = await this.profile(undefined, dest.fsPath);
      if (!result?.traceFile) {
        if (result) void vscode.window.showWarningMessage(`Model Lens: the ${this.model?.kind} engine cannot write traces.`);
        return;
      }
    }
    const choice = await vscode.window.showInformationMessage(
      `Model Lens: trace written to ${dest.fsPath}. Open it in chrome://tracing or https://ui.perfetto.dev.`,
      'Reveal',
    );
    if (choice === 'Reveal') void vscode.commands.executeCommand('revealFileInOS', dest);
  }

  async inspectTensor(target: TensorTarget): Promise<void> {
    const model = await this.ensureModel(this.model ? undefined : this.activeTarget());
    if (!model) return;
    try {
      const { messages } = await engineModules();
      const result = await this.client().request(messages.tensorInspectRequest, {
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
      const { messages } = await engineModules();
      const backward = this.hooks.attached().some((h) => h.kind === 'backward');
      const result = await this.client().request(messages.modelForwardRequest, { modelId: model.modelId, backward });
      vscode.window.setStatusBarMessage(
        `Model Lens: forward pass done (${result.steps} step${result.steps === 1 ? '' : 's'}${backward ? ' with backward' : ''}, ${result.stepMs.toFixed(1)} ms/step)`,
        5_000,
      );
    } catch (err) {
      this.reportError(err, model.file);
    }
  }

  // ---- hooks -----------------------------------------------------------------------------------

  async attachHook(modulePath: string, kind: HookKind): Promise<void> {
    const model = await this.ensureModel(this.model ? undefined : this.activeTarget());
    if (!model) return;
    const client = this.client();
    const supported = client.info.capabilities?.hooks ?? [];
    if (!supported.includes(kind)) {
      void vscode.window.showWarningMessage(`Model Lens: the ${model.kind} engine has no ${kind} hooks (it supports: ${supported.join(', ') || 'none'}).`);
      return;
    }
    try {
      await this.attach(client, model, modulePath, kind);
      this.views?.modules.refresh();
      this.panels.show('hooks', this.hooksState(), true);
    } catch (err) {
      this.reportError(err, model.file);
    }
  }

  async detachHooks(modulePath?: string): Promise<void> {
    const hooks = modulePath === undefined ? this.hooks.attached() : this.hooks.attachedOn(modulePath);
    const client = this.modelClient;
    try {
      if (client?.alive) {
        const { messages } = await engineModules();
        if (modulePath === undefined) await client.request(messages.hookDetachRequest, { all: true });
        else for (const h of hooks) await client.request(messages.hookDetachRequest, { hookId: h.hookId });
      }
    } catch (err) {
      this.reportError(err, this.model?.file);
    } finally {
      this.hooks.detach(hooks.map((h) => h.hookId));
      this.views?.modules.refresh();
      this.postHooks();
    }
  }

  private async attach(client: EngineClient, model: ModelState, modulePath: string, kind: HookKind, reuse?: HookView): Promise<void> {
    const { messages } = await engineModules();
    const intervalMs = vscode.workspace.getConfiguration('modelLens').get<number>('hookIntervalMs', 250);
    const { hookId } = await client.request(messages.hookAttachRequest, {
      // hook/attach without modelId means the model of the active training run.
      modelId: model.modelId === this.trainingModelId ? undefined : model.modelId,
      path: modulePath,
      kind,
      intervalMs,
      histogramBins: HOOK_HISTOGRAM_BINS,
    });
    if (reuse) this.hooks.rebind(reuse.hookId, hookId);
    else this.hooks.add(hookId, modulePath, kind);
  }

  /** After a re-inspect on save, hooks on paths that still exist keep streaming into the same rows. */
  private async reattachHooks(client: EngineClient, model: ModelState, old: HookView[]): Promise<void> {
    for (const h of old) {
      if (!model.modules.has(h.path)) {
        this.hooks.detach([h.hookId]);
        continue;
      }
      try {
        await this.attach(client, model, h.path, h.kind, h);
      } catch (err) {
        this.hooks.detach([h.hookId]);
        this.output.appendLine(`[${model.kind}] could not re-attach the ${h.kind} hook on ${h.path}: ${(err as Error).message}`);
      }
    }
    if (old.length) this.postHooks();
  }

  private onEngineStarted(client: EngineClient): void {
    void engineModules().then(({ messages }) =>
      client.onNotification(messages.hookEventNotification, (e: HookEvent) => {
        const view = this.hooks.onEvent(e);
        if (!view) return;
        this.changedHooks.set(view.hookId, view);
        this.hookFlush ??= setTimeout(() => {
          this.hookFlush = undefined;
          const changed = [...this.changedHooks.values()];
          this.changedHooks.clear();
          this.panels.patch('hooks', this.hooksState(), { hooks: changed });
        }, HOOK_PANEL_FLUSH_MS);
      }),
    );
  }

  private postHooks(): void {
    if (this.panels.isOpen('hooks')) this.panels.update('hooks', this.hooksState());
  }

  private hooksState(): { modelName: string | undefined; hooks: HookView[]; replace: true } {
    return { modelName: this.model?.load.name, hooks: this.hooks.all(), replace: true };
  }

  showHooks(): void {
    this.panels.show('hooks', this.hooksState());
  }

  // ---- navigation ------------------------------------------------------------------------------

  async goToDefinition(node: ModuleNode | undefined): Promise<void> {
    const loc = node?.source?.definition ?? node?.source?.creation ?? (node?.path === '' ? this.model?.load.location : undefined);
    if (!loc) {
      void vscode.window.showInformationMessage(`Model Lens: no source location is known for ${node?.path || 'this module'}.`);
      return;
    }
    await openLocation(loc);
  }

  async revealModule(modulePath: string): Promise<void> {
    const node = this.model?.modules.get(modulePath);
    if (!node || !this.views) return;
    await this.views.modulesView.reveal(node, { select: true, focus: true, expand: false });
  }

  handlePanelMessage(kind: PanelKind, message: WebviewMessage): void {
    switch (message.type) {
      case 'restartEngine':
        void vscode.commands.executeCommand('modelLens.restartEngine');
        break;
      case 'showLog':
        this.output.show(true);
        break;
      case 'copySummary':
        if (this.model?.summary) {
          void vscode.env.clipboard.writeText(formatSummary(this.model.load.name, this.model.tree, this.model.summary) + '\n');
          vscode.window.setStatusBarMessage('Model Lens: summary copied', 3_000);
        }
        break;
      case 'revealModule':
        if (this.model?.modules.has(message.path)) void this.revealModule(message.path);
        else this.output.appendLine(`[webview ${kind}] ignored revealModule for an unknown path`);
        break;
      case 'exportTrace':
        void this.exportTrace();
        break;
      case 'openOpSource': {
        const loc = this.lastProfile?.ops[message.index]?.source;
        if (loc) void openLocation(loc);
        break;
      }
      case 'detachHook': {
        const hook = this.hooks.get(message.hookId);
        if (hook?.attached) void this.detachOne(hook);
        break;
      }
      case 'ready':
        break;
    }
  }

  private async detachOne(hook: HookView): Promise<void> {
    try {
      if (this.modelClient?.alive) {
        const { messages } = await engineModules();
        await this.modelClient.request(messages.hookDetachRequest, { hookId: hook.hookId });
      }
    } catch (err) {
      this.reportError(err, this.model?.file);
    }
    this.hooks.detach([hook.hookId]);
    this.views?.modules.refresh();
    this.postHooks();
  }

  /** After the engine restarts: load the same model again. */
  async reload(): Promise<void> {
    this.hooks.detach(this.hooks.attached().map((h) => h.hookId));
    this.postHooks();
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

  // ---- errors ----------------------------------------------------------------------------------

  /** One place that turns a failure into the right notification, diagnostic or view message. */
  reportError(err: unknown, file: string | undefined, quiet = false): void {
    const message = err instanceof Error ? err.message : String(err);
    const data: EngineErrorData = isEngineError(err) ? err.data : { kind: 'internal' };
    const engineKind: EngineKind | undefined = file ? (file.endsWith('.py') ? 'pytorch' : 'tfjs') : this.model?.kind;
    this.output.appendLine(`[error] ${data.kind}: ${message}`);
    switch (data.kind) {
      case 'cancelled':
        return;
      case 'untrusted':
        void vscode.window
          .showWarningMessage('Model Lens runs your model code, so it only works in a trusted workspace.', 'Manage Workspace Trust')
          .then((c) => c && vscode.commands.executeCommand('workbench.trust.manage'));
        return;
      case 'runtimeMissing': {
        this.setMessage(`The ${engineKind ?? ''} engine cannot start here: see the notification or "Model Lens: Show Engine Log".`);
        // One actionable message per distinct problem; saves do not repeat it.
        if (quiet && this.lastEnvironmentMessage === message) return;
        this.lastEnvironmentMessage = message;
        const actions = engineKind === 'pytorch' ? ['Open Settings', 'Show Log'] : ['Show Log'];
        void vscode.window.showErrorMessage(`Model Lens: ${message}`, ...actions).then((c) => {
          if (c === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'modelLens.pythonPath');
          if (c === 'Show Log') this.output.show(true);
        });
        return;
      }
      case 'engineCrashed':
        if (engineKind && this.engines.wasCrashAnnounced(engineKind)) return;
        break;
    }
    const loc = data.location ?? data.userStack?.[data.userStack.length - 1];
    if (loc && USER_ERROR_KINDS.has(data.kind)) this.addDiagnostic(loc, message, data);
    if (quiet && loc && USER_ERROR_KINDS.has(data.kind)) {
      // On save the squiggle is the message; a popup on every save would be noise.
      vscode.window.setStatusBarMessage(`$(error) Model Lens: ${firstLine(message)}`, 8_000);
      return;
    }
    const text = `Model Lens: ${message}${data.hint ? ` ${data.hint}` : ''}`;
    const actions = loc ? ['Go to Error', 'Show Log'] : ['Show Log'];
    void vscode.window.showErrorMessage(text, ...actions).then((c) => {
      if (c === 'Go to Error' && loc) void openLocation(loc);
      if (c === 'Show Log') this.output.show(true);
    });
  }

  private addDiagnostic(loc: SourceLocation, message: string, data: EngineErrorData): void {
    const line = Math.max(0, loc.line - 1);
    const col = Math.max(0, (loc.column ?? 1) - 1);
    const range = new vscode.Range(line, col, line, Number.MAX_SAFE_INTEGER);
    const details = [data.layer && `layer ${data.layer}`, data.expected && `expected ${data.expected}`, data.got && `got ${data.got}`, data.hint]
      .filter(Boolean)
      .join('; ');
    const diag = new vscode.Diagnostic(range, details ? `${message}\n${details}` : message, vscode.DiagnosticSeverity.Error);
    diag.source = 'Model Lens';
    diag.code = data.kind;
    diag.relatedInformation = (data.userStack ?? [])
      .filter((f) => f !== loc)
      .map((f) => new vscode.DiagnosticRelatedInformation(new vscode.Location(vscode.Uri.file(f.file), new vscode.Position(Math.max(0, f.line - 1), 0)), `called from ${f.function ?? 'here'}`));
    const uri = vscode.Uri.file(loc.file);
    this.diagnostics.set(uri, [...(this.diagnostics.get(uri) ?? []), diag]);
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private client(): EngineClient {
    if (!this.modelClient?.alive) throw extensionError('The engine that held this model stopped; inspect the file again.', { kind: 'engineCrashed' });
    return this.modelClient;
  }

  private summaryState(model: ModelState): unknown {
    return { modelName: model.load.name, file: model.file, kind: model.kind, inputs: model.summary?.inputs ?? model.load.inputs, summary: model.summary };
  }

  private restoreSelection(paths: string[]): void {
    const views = this.views;
    const model = this.model;
    if (!views || !model) return;
    for (const p of paths) {
      const node = model.modules.get(p);
      if (node) void Promise.resolve(views.modulesView.reveal(node, { select: true, focus: false, expand: false })).catch(() => undefined);
    }
  }

  private setStatus(text: string, file: string, kind?: EngineKind): void {
    this.status.text = text;
    const engine = kind ? this.engines.running(kind)?.info : undefined;
    this.status.tooltip = `${file}${engine ? `\n${engine.kind} engine · ${engine.backend} · ${engine.device}` : ''}\nClick for the summary`;
    this.status.show();
  }
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0];
}

async function openLocation(loc: SourceLocation): Promise<void> {
  const pos = new vscode.Position(Math.max(0, loc.line - 1), Math.max(0, (loc.column ?? 1) - 1));
  await vscode.window.showTextDocument(vscode.Uri.file(loc.file), { selection: new vscode.Range(pos, pos), preview: true });
}
