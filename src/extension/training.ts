// "Model Lens: Run Training": runs the active file's training in its engine with a cancellable
// progress notification, a status bar item, the script's output in the Model Lens channel, the
// trained model in the Modules view, and the Training panel (loss curve, state, diagnosis).
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient } from '../client/engineClient';
import type { TrainDiagnosis, TrainHistograms, TrainProgress } from '../protocol/messages';
import type { SourceLocation } from '../protocol/types';
import type { EngineManager } from './engineManager';
import { isEngineError } from './errors';
import { engineModules } from './lazyModules';
import { openLocation } from './errorReporter';
import type { PanelHost } from './panels';
import type { ModelSession } from './modelSession';
import { progressText } from '../client/trainingText';
import { fractionDone, statusText, TrainingRun } from './trainingModel';

/** The panel and the status bar are redrawn at most this often, however fast progress comes. */
export const TRAINING_UI_FLUSH_MS = 250;
/** train/start imports the script and builds the model: as slow as an inspect. */
const TRAIN_START_TIMEOUT_MS = 180_000;
/** train/stop answers once the run noticed; a script stuck in a long C call may take a while. */
const TRAIN_STOP_TIMEOUT_MS = 60_000;
const DIAGNOSE_TIMEOUT_MS = 15_000;
/** The final state stays in the status bar this long after the run. */
const FINAL_STATUS_MS = 15_000;
/** JSON-RPC "method not found": engines without train/diagnose (TF.js) answer with it. */
const METHOD_NOT_FOUND = -32601;

export class TrainingController implements vscode.Disposable {
  private run: TrainingRun | undefined;
  private client: EngineClient | undefined;
  private readonly runSubs: vscode.Disposable[] = [];
  private readonly status: vscode.StatusBarItem;
  private flushTimer: NodeJS.Timeout | undefined;
  private hideTimer: NodeJS.Timeout | undefined;
  private reportProgress: ((p: TrainProgress) => void) | undefined;
  private ended: (() => void) | undefined;
  private shownModelId: string | undefined;

  constructor(
    private readonly engines: EngineManager,
    private readonly session: ModelSession,
    private readonly output: vscode.OutputChannel,
    private readonly panels: PanelHost,
  ) {
    this.status = vscode.window.createStatusBarItem(
      'modelLens.training',
      vscode.StatusBarAlignment.Left,
      9,
    );
    this.status.name = 'Model Lens Training';
    this.status.command = 'modelLens.showTraining';
    // The page may only stop the run or open one of the run's own source locations, by index:
    // text from user code shown in it cannot make the editor open anything else.
    panels.handle('training', (m) => {
      if (m.type === 'stopTraining') void this.stop();
      else if (m.type === 'openOpSource') this.openSource(m.index);
    });
  }

  get active(): boolean {
    return this.run !== undefined && !this.run.finished;
  }

  dispose(): void {
    this.endRun();
    clearTimeout(this.hideTimer);
    this.status.dispose();
  }

  showPanel(): void {
    this.panels.show('training', this.run?.panelState() ?? null);
  }

  /**
   * Runs the file's training; resolves when the run has ended. `nprocPerNode`: a PyTorch script
   * on that many ranks through torch.distributed.run, every rank instrumented.
   */
  async start(file: string | undefined, nprocPerNode?: number): Promise<void> {
    if (this.active) {
      const choice = await vscode.window.showInformationMessage(
        `Model Lens: ${path.basename(this.run!.file)} is still training. Stop it first.`,
        'Stop Training',
        'Show Training',
      );
      if (choice === 'Stop Training') await this.stop();
      if (choice === 'Show Training') this.showPanel();
      return;
    }
    if (!file) {
      void vscode.window.showInformationMessage(
        'Model Lens: open a training script (.py with a __main__ block, or .ts/.js with a `train` export) first.',
      );
      return;
    }
    // The engine reads the file from disk: run what the editor shows.
    const doc = vscode.workspace.textDocuments.find(
      (d) => d.uri.scheme === 'file' && path.resolve(d.uri.fsPath) === path.resolve(file),
    );
    if (doc?.isDirty) await doc.save();

    const { client: clientModule, messages } = engineModules();
    const kind = clientModule.engineKindForFile(file);
    const run = new TrainingRun(file, kind);
    this.run = run;
    this.shownModelId = undefined;
    clearTimeout(this.hideTimer);
    this.status.text = statusText(undefined, null);
    this.status.tooltip = `Training ${file}\nClick for the Training panel`;
    this.status.show();
    void vscode.commands.executeCommand('setContext', 'modelLens.training', true);
    this.panels.show('training', run.panelState(), true);
    this.output.appendLine(`[training] starting ${file}`);
    this.output.show(true);

    let client: EngineClient;
    try {
      client = await this.engines.get(kind, vscode.Uri.file(file));
    } catch (err) {
      this.failStart(run, err);
      return;
    }
    this.client = client;
    run.histogramsSupported = client.info.capabilities?.histograms ?? true;
    const done = new Promise<void>((resolve) => (this.ended = resolve));
    this.runSubs.push(
      client.onNotification(messages.trainProgressNotification, (p) =>
        this.onProgress(run, client, p),
      ),
      client.onNotification(messages.trainDiagnosisNotification, (d) => this.onDiagnosis(run, d)),
      client.onNotification(messages.trainHistogramsNotification, (h) => this.onHistograms(run, h)),
      client.onExit((e) => {
        if (run.finished) return;
        const how = e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
        run.fail(
          e.reason === 'disposed'
            ? 'The engine was shut down during the run.'
            : `The ${kind} engine ${how} during the run.`,
        );
        void this.finish(run);
      }),
    );

    await vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: `Model Lens: training ${path.basename(file)}`,
        cancellable: true,
      },
      async (progress, token) => {
        let reported = 0;
        this.reportProgress = (p) => {
          const frac = fractionDone(p);
          const pct = frac === null ? 0 : Math.floor(frac * 100);
          progress.report({
            message: progressText(p, run.lastLoss),
            increment: pct > reported ? pct - reported : undefined,
          });
          reported = Math.max(reported, pct);
        };
        const cancel = token.onCancellationRequested(() => void this.stop());
        try {
          const distributed = nprocPerNode ? { distributed: { nprocPerNode } } : {};
          const { runId } = await client.request(
            messages.trainStartRequest,
            { file, ...distributed },
            { timeoutMs: TRAIN_START_TIMEOUT_MS },
          );
          run.runId = runId;
          this.output.appendLine(
            `[training] run ${runId} of ${file} started in the ${kind} engine (pid ${client.pid})`,
          );
          // Progress of this run may have raced ahead of the response; what was kept is ours.
          if (run.stopRequested && !run.finished) void this.stop();
          this.flushSoon();
          await done;
        } catch (err) {
          if (!run.finished) this.failStart(run, err);
        } finally {
          cancel.dispose();
          this.reportProgress = undefined;
        }
      },
    );
  }

  async stop(): Promise<void> {
    const run = this.run;
    const client = this.client;
    if (!run || run.finished || !client) return;
    run.stopRequested = true;
    // Before train/start answers there is no run id yet; start() stops the run as soon as it has one.
    if (!run.runId) return;
    this.status.text = `$(sync~spin) stopping · step ${run.last?.step ?? 0}`;
    try {
      const { messages } = engineModules();
      const r = await client.request(
        messages.trainStopRequest,
        { runId: run.runId },
        { timeoutMs: TRAIN_STOP_TIMEOUT_MS },
      );
      if (!r.stopped && !run.finished)
        this.output.appendLine(`[training] run ${run.runId} had already ended`);
    } catch (err) {
      this.session.reportError(err, run.file);
    }
  }

  private onProgress(run: TrainingRun, client: EngineClient, p: TrainProgress): void {
    if (run !== this.run) return;
    // Progress before train/start's response belongs to this run: the engine runs one at a time.
    if (!run.add(p)) return;
    if (p.modelId && p.modelId !== this.shownModelId) {
      this.shownModelId = p.modelId;
      void this.session
        .showTrainingModel(client, run.file, run.engine, p.modelId)
        .catch((err: unknown) => {
          this.output.appendLine(
            `[training] could not show the trained model: ${err instanceof Error ? err.message : String(err)}`,
          );
        });
    }
    this.reportProgress?.(p);
    if (run.finished) void this.finish(run);
    else this.flushSoon();
  }

  private onDiagnosis(run: TrainingRun, d: TrainDiagnosis): void {
    if (run !== this.run || !run.setDiagnosis(d)) return;
    this.flushSoon();
  }

  private onHistograms(run: TrainingRun, h: TrainHistograms): void {
    if (run !== this.run || !run.setHistograms(h)) return;
    this.flushSoon();
  }

  private flushSoon(): void {
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      this.redraw();
    }, TRAINING_UI_FLUSH_MS);
  }

  private redraw(): void {
    const run = this.run;
    if (!run) return;
    this.status.text = run.startError
      ? '$(error) training failed'
      : run.stopRequested && !run.finished
        ? `$(sync~spin) stopping · step ${run.last?.step ?? 0}`
        : statusText(run.last, run.lastLoss);
    this.panels.update('training', run.panelState());
  }

  private async finish(run: TrainingRun): Promise<void> {
    if (run !== this.run) return;
    const runId = run.runId ?? run.last?.runId;
    const client = this.client;
    this.endRun();
    this.session.endTraining(this.shownModelId);
    this.output.appendLine(
      `[training] run ${runId ?? '(none)'} ${run.state} after ${run.last?.step ?? 0} steps`,
    );
    this.redraw();
    if (run.state === 'failed') this.reportFailure(run);
    // The engine may send its final diagnosis with the end of the run; ask when it did not.
    if (runId && client?.alive && run.state !== 'failed') {
      try {
        const { messages } = engineModules();
        run.setDiagnosis(
          await client.request(
            messages.trainDiagnoseRequest,
            { runId },
            { timeoutMs: DIAGNOSE_TIMEOUT_MS },
          ),
        );
        this.redraw();
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== METHOD_NOT_FOUND)
          this.output.appendLine(
            `[training] train/diagnose: ${err instanceof Error ? err.message : String(err)}`,
          );
      }
    }
    this.hideTimer = setTimeout(() => {
      if (this.run === run) this.status.hide();
    }, FINAL_STATUS_MS);
  }

  /** Unhooks the run from the engine; the run itself stays for the panel. */
  private endRun(): void {
    void vscode.commands.executeCommand('setContext', 'modelLens.training', false);
    for (const s of this.runSubs.splice(0)) s.dispose();
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.ended?.();
    this.ended = undefined;
  }

  private failStart(run: TrainingRun, err: unknown): void {
    const data = isEngineError(err) ? err.data : undefined;
    const message = err instanceof Error ? err.message : String(err);
    run.fail(message, data?.location ?? data?.userStack?.[data.userStack.length - 1], data?.hint);
    // Untrusted workspace, missing Python, a syntax error: the session knows how to say each.
    this.session.reportError(err, run.file);
    this.finishQuietly(run);
  }

  private finishQuietly(run: TrainingRun): void {
    if (run !== this.run) return;
    this.endRun();
    this.redraw();
    this.hideTimer = setTimeout(() => {
      if (this.run === run) this.status.hide();
    }, FINAL_STATUS_MS);
  }

  /** A run that failed mid-way: the error as a diagnostic on the user's line and a notification. */
  private reportFailure(run: TrainingRun): void {
    const e = run.last?.error;
    if (!e) return;
    const { message, ...data } = e;
    const err = new Error(message) as Error & { data: typeof data };
    err.name = 'EngineError';
    err.data = data;
    this.session.reportError(err, run.file);
  }

  private openSource(index: number): void {
    const loc: SourceLocation | undefined = this.run?.sources[index];
    if (!loc) return;
    void openLocation(loc);
  }
}
