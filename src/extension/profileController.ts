// "Profile Current File" and the Ops panel: one profiled step's per-op and per-module times,
// sorting in the page, a click from an op to its source line, and the Chrome trace export.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { privateTempFile } from '../client/privateTemp';
import type { ProfileResult } from '../protocol/messages';
import type { WebviewMessage } from '../protocol/webviewMessages';
import type { ModelTarget } from './codeLens';
import { openLocation, type ErrorReporter } from './errorReporter';
import { protocol } from './lazyModules';
import type { HookHost } from './hooksController';
import type { ModelState } from './modelState';
import type { PanelHost } from './panels';

/** What profiling needs of the session: the model, loaded, and its engine. */
export interface ProfileHost extends Pick<HookHost, 'model' | 'client' | 'revealModule'> {
  ensureModel(target?: ModelTarget): Promise<ModelState | undefined>;
  /** Shows "profiling …" in the status bar while it runs; restores it after. */
  setBusy(text: string | undefined, model: ModelState): void;
}

export class ProfileController {
  private last: { model: ModelState; result: ProfileResult } | undefined;

  constructor(
    private readonly host: ProfileHost,
    private readonly panels: PanelHost,
    private readonly errors: ErrorReporter,
    private readonly output: vscode.OutputChannel,
  ) {
    panels.handle('ops', (m) => this.onMessage(m));
  }

  async profile(target?: ModelTarget, traceFile?: string): Promise<ProfileResult | undefined> {
    const model = await this.host.ensureModel(target);
    if (!model) return undefined;
    const client = this.host.client();
    const trace =
      traceFile ??
      (client.info.capabilities?.trace ? privateTempFile(`trace-${model.kind}.json`) : undefined);
    this.host.setBusy(`$(sync~spin) Model Lens: profiling ${model.load.name}`, model);
    try {
      const result = await vscode.window.withProgress(
        {
          location: vscode.ProgressLocation.Notification,
          title: `Model Lens: profiling ${model.load.name}`,
          cancellable: true,
        },
        (_, token) =>
          client.request(
            protocol().profileRunRequest,
            { modelId: model.modelId, traceFile: trace },
            { token },
          ),
      );
      this.last = { model, result };
      for (const w of result.warnings) this.output.appendLine(`[${model.kind}] profile: ${w}`);
      await vscode.commands.executeCommand('setContext', 'modelLens.hasProfile', true);
      this.panels.show('ops', {
        modelName: model.load.name,
        kind: model.kind,
        profile: result,
        canExport: Boolean(result.traceFile),
      });
      return result;
    } catch (err) {
      this.errors.report(err, model.file);
      return undefined;
    } finally {
      this.host.setBusy(undefined, model);
    }
  }

  async exportTrace(): Promise<void> {
    const model = this.host.model;
    const defaultUri = vscode.Uri.file(
      path.join(
        vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? os.homedir(),
        `${model?.load.name ?? 'model'}-trace.json`,
      ),
    );
    const dest = await vscode.window.showSaveDialog({
      defaultUri,
      filters: { 'Chrome trace': ['json'] },
      title: 'Export Trace',
    });
    if (!dest) return;
    const existing = this.last?.result.traceFile;
    if (existing && fs.existsSync(existing) && this.last?.model === model) {
      await fs.promises.copyFile(existing, dest.fsPath);
    } else {
      const result = await this.profile(undefined, dest.fsPath);
      if (!result?.traceFile) {
        if (result)
          void vscode.window.showWarningMessage(
            `Model Lens: the ${this.host.model?.kind} engine cannot write traces.`,
          );
        return;
      }
    }
    const choice = await vscode.window.showInformationMessage(
      `Model Lens: trace written to ${dest.fsPath}. Open it in chrome://tracing or https://ui.perfetto.dev.`,
      'Reveal',
    );
    if (choice === 'Reveal') void vscode.commands.executeCommand('revealFileInOS', dest);
  }

  private onMessage(message: WebviewMessage): void {
    switch (message.type) {
      case 'exportTrace':
        void this.exportTrace();
        break;
      case 'openOpSource': {
        // The page sends an index into the profile the host holds, never a path.
        const loc = this.last?.result.ops[message.index]?.source;
        if (loc) void openLocation(loc);
        break;
      }
      case 'revealModule':
        void this.host.revealModule(message.path);
        break;
    }
  }
}
