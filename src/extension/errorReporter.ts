// One place that turns a failure into the right notification, squiggle or view message: user
// errors with a location become diagnostics with "Go to Error", a missing runtime one actionable
// message per distinct problem, an untrusted workspace a pointer to Workspace Trust.
import * as vscode from 'vscode';
import { ENGINE_ERROR_KINDS, ERROR_CODE_OF_KIND, ErrorCodes } from '../protocol/errors';
import type { EngineErrorData, EngineErrorKind } from '../protocol/errors';
import type { EngineKind, SourceLocation } from '../protocol/types';
import type { EngineManager } from './engineManager';
import { isEngineError } from './errors';

/**
 * User errors the engine places in a file: worth a squiggle, not just a notification. A missing
 * file has no file to squiggle, and a launcher failure is the launch options' fault, not a line's.
 */
const UNPLACED_USER_ERROR_KINDS: ReadonlySet<EngineErrorKind> = new Set<EngineErrorKind>([
  'fileNotFound',
  'launcherFailed',
]);
const USER_ERROR_KINDS: ReadonlySet<string> = new Set(
  ENGINE_ERROR_KINDS.filter(
    (kind) =>
      ERROR_CODE_OF_KIND[kind] === ErrorCodes.userError && !UNPLACED_USER_ERROR_KINDS.has(kind),
  ),
);
/** How long a save's error stays in the status bar (the squiggle stays until fixed). */
const SAVE_ERROR_STATUS_MS = 8_000;

export class ErrorReporter {
  private lastEnvironmentMessage: string | undefined;

  constructor(
    private readonly engines: EngineManager,
    private readonly output: vscode.OutputChannel,
    private readonly diagnostics: vscode.DiagnosticCollection,
    /** Puts a sentence in the Model Lens views (the engine cannot start, ...). */
    private readonly setViewMessage: (message: string) => void,
  ) {}

  clearDiagnostics(): void {
    this.diagnostics.clear();
  }

  /** `quiet` for saves: no popups, a status bar line beside the squiggle instead. */
  report(err: unknown, file: string | undefined, quiet = false, fallbackKind?: EngineKind): void {
    const message = err instanceof Error ? err.message : String(err);
    const data: EngineErrorData = isEngineError(err) ? err.data : { kind: 'internal' };
    const engineKind: EngineKind | undefined = file
      ? file.endsWith('.py')
        ? 'pytorch'
        : 'tfjs'
      : fallbackKind;
    this.output.appendLine(`[error] ${data.kind}: ${message}`);
    switch (data.kind) {
      case 'cancelled':
        return;
      case 'untrusted':
        void vscode.window
          .showWarningMessage(
            'Model Lens runs your model code, so it only works in a trusted workspace.',
            'Manage Workspace Trust',
          )
          .then((c) => c && vscode.commands.executeCommand('workbench.trust.manage'));
        return;
      case 'runtimeMissing': {
        this.setViewMessage(
          `The ${engineKind ?? ''} engine cannot start here: ` +
            'see the notification or "Model Lens: Show Engine Log".',
        );
        // One actionable message per distinct problem; saves do not repeat it.
        if (quiet && this.lastEnvironmentMessage === message) return;
        this.lastEnvironmentMessage = message;
        const actions = engineKind === 'pytorch' ? ['Open Settings', 'Show Log'] : ['Show Log'];
        void vscode.window.showErrorMessage(`Model Lens: ${message}`, ...actions).then((c) => {
          if (c === 'Open Settings')
            void vscode.commands.executeCommand(
              'workbench.action.openSettings',
              'modelLens.pythonPath',
            );
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
      vscode.window.setStatusBarMessage(
        `$(error) Model Lens: ${firstLine(message)}`,
        SAVE_ERROR_STATUS_MS,
      );
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
    const details = [
      data.layer && `layer ${data.layer}`,
      data.expected && `expected ${data.expected}`,
      data.got && `got ${data.got}`,
      data.hint,
    ]
      .filter(Boolean)
      .join('; ');
    const diag = new vscode.Diagnostic(
      range,
      details ? `${message}\n${details}` : message,
      vscode.DiagnosticSeverity.Error,
    );
    diag.source = 'Model Lens';
    diag.code = data.kind;
    diag.relatedInformation = (data.userStack ?? [])
      .filter((f) => f !== loc)
      .map(
        (f) =>
          new vscode.DiagnosticRelatedInformation(
            new vscode.Location(
              vscode.Uri.file(f.file),
              new vscode.Position(Math.max(0, f.line - 1), 0),
            ),
            `called from ${f.function ?? 'here'}`,
          ),
      );
    const uri = vscode.Uri.file(loc.file);
    this.diagnostics.set(uri, [...(this.diagnostics.get(uri) ?? []), diag]);
  }
}

export function firstLine(s: string): string {
  return s.split('\n', 1)[0];
}

/**
 * Opens a source line in the code's editor group: the group already showing the file, else one
 * showing any text editor. A click in a panel (Ops, Training) would otherwise open the file in the
 * panel's own group, on top of the panel the user clicked in.
 */
export async function openLocation(loc: SourceLocation): Promise<void> {
  const pos = new vscode.Position(Math.max(0, loc.line - 1), Math.max(0, (loc.column ?? 1) - 1));
  const editors = vscode.window.visibleTextEditors;
  const viewColumn =
    editors.find((e) => e.document.uri.fsPath === loc.file)?.viewColumn ??
    editors.find((e) => e.viewColumn !== undefined)?.viewColumn ??
    vscode.ViewColumn.One;
  await vscode.window.showTextDocument(vscode.Uri.file(loc.file), {
    selection: new vscode.Range(pos, pos),
    preview: true,
    viewColumn,
  });
}
