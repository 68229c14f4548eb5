import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient, EngineExit } from '../client/engineClient';
import type { EngineKind } from '../protocol/types';
import { extensionError } from './errors';
import { engineModules } from './lazyModules';
import { activePythonInterpreter } from './pythonEnv';

export interface EngineStarted {
  kind: EngineKind;
  client: EngineClient;
}

export interface EngineStopped {
  kind: EngineKind;
  exit: EngineExit;
}

/**
 * One engine per kind, started on first use. A dead engine stays dead until the next request,
 * which starts a fresh one; a crash is announced once, with the log at hand.
 */
export class EngineManager implements vscode.Disposable {
  private readonly clients = new Map<EngineKind, EngineClient>();
  private readonly starting = new Map<EngineKind, Promise<EngineClient>>();
  /** Crashes already shown to the user, so failing requests do not announce them again. */
  private readonly announcedCrashes = new Set<EngineKind>();
  private readonly startedEmitter = new vscode.EventEmitter<EngineStarted>();
  private readonly stoppedEmitter = new vscode.EventEmitter<EngineStopped>();
  /** For views that show engine state, and for a later GPU status bar that polls system/info. */
  readonly onDidStart = this.startedEmitter.event;
  readonly onDidStop = this.stoppedEmitter.event;

  constructor(
    private readonly output: vscode.OutputChannel,
    private readonly extensionVersion: string,
  ) {}

  /** The running engine of a kind, if any; never starts one. */
  running(kind: EngineKind): EngineClient | undefined {
    const c = this.clients.get(kind);
    return c?.alive ? c : undefined;
  }

  wasCrashAnnounced(kind: EngineKind): boolean {
    return this.announcedCrashes.has(kind);
  }

  /** The engine for `kind`, starting it if needed. Refuses in an untrusted workspace. */
  async get(kind: EngineKind, resource?: vscode.Uri): Promise<EngineClient> {
    if (!vscode.workspace.isTrusted) {
      throw extensionError(
        'Model Lens runs your model code, so it only works in a trusted workspace.',
        {
          kind: 'untrusted',
          hint: 'Trust this workspace to inspect models in it.',
        },
      );
    }
    const live = this.running(kind);
    if (live) return live;
    let pending = this.starting.get(kind);
    if (!pending) {
      pending = this.start(kind, resource).finally(() => this.starting.delete(kind));
      this.starting.set(kind, pending);
    }
    return pending;
  }

  /** Stops one engine (or all); the next request starts a fresh one. */
  async restart(kind?: EngineKind): Promise<void> {
    const kinds = kind ? [kind] : [...this.clients.keys()];
    await Promise.all(
      kinds.map(async (k) => {
        const c = this.clients.get(k);
        this.clients.delete(k);
        this.announcedCrashes.delete(k);
        await c?.dispose();
      }),
    );
  }

  dispose(): void {
    void this.restart();
    this.startedEmitter.dispose();
    this.stoppedEmitter.dispose();
  }

  private async start(kind: EngineKind, resource?: vscode.Uri): Promise<EngineClient> {
    const { client: clientModule, messages } = engineModules();
    const config = vscode.workspace.getConfiguration('modelLens', resource);
    const folder = resource
      ? vscode.workspace.getWorkspaceFolder(resource)
      : vscode.workspace.workspaceFolders?.[0];
    const cwd = folder?.uri.fsPath ?? (resource ? path.dirname(resource.fsPath) : undefined);
    const log = (line: string) => this.output.appendLine(`[${kind}] ${line}`);
    log(`starting engine${cwd ? ` in ${cwd}` : ''}`);
    const client = await clientModule.EngineClient.start({
      kind,
      cwd,
      python: kind === 'pytorch' ? config.get<string>('pythonPath') || undefined : undefined,
      editorPython: kind === 'pytorch' ? await activePythonInterpreter(resource) : undefined,
      backend: kind === 'tfjs' ? config.get<string>('tfjsBackend', 'auto') : undefined,
      trusted: vscode.workspace.isTrusted,
      clientName: 'model-lens-vscode',
      clientVersion: this.extensionVersion,
      onLog: log,
      memoryLimitMB: config.get<number>('engineMemoryLimitMB') || undefined,
    });
    const info = client.info;
    log(
      `engine ${info.version} ready (pid ${client.pid}): ${info.runtimes.map((r) => `${r.name} ${r.version}`).join(', ')}; backend ${info.backend}` +
        (info.backendNotes.length ? ` (${info.backendNotes.join('; ')})` : ''),
    );
    client.onNotification(messages.outputNotification, (e) => {
      for (const line of e.text.replace(/\n$/, '').split('\n'))
        this.output.appendLine(`[${kind} ${e.stream}] ${line}`);
    });
    client.onExit((exit) => this.onExit(kind, client, exit));
    this.clients.set(kind, client);
    this.announcedCrashes.delete(kind);
    this.startedEmitter.fire({ kind, client });
    return client;
  }

  private onExit(kind: EngineKind, client: EngineClient, exit: EngineExit): void {
    if (this.clients.get(kind) === client) this.clients.delete(kind);
    const how = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    this.output.appendLine(`[${kind}] engine stopped (${exit.reason}, ${how})`);
    this.stoppedEmitter.fire({ kind, exit });
    if (exit.reason !== 'crashed') return;
    this.announcedCrashes.add(kind);
    void vscode.window
      .showErrorMessage(
        `Model Lens: the ${kind} engine stopped unexpectedly (${how}). The loaded model and its hooks are gone.`,
        'Show Log',
        'Restart Engine',
      )
      .then((choice) => {
        if (choice === 'Show Log') this.output.show(true);
        if (choice === 'Restart Engine')
          void vscode.commands.executeCommand('modelLens.restartEngine');
      });
  }
}
