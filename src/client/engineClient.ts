import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import {
  CancellationTokenSource,
  createMessageConnection,
  ErrorCodes as JsonRpcErrorCodes,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  type CancellationToken,
  type Disposable,
  type MessageConnection,
  type NotificationType,
  type RequestType,
  type RequestType0,
} from 'vscode-jsonrpc/node';
import { ErrorCodes, type EngineErrorData, type EngineErrorKind } from '../protocol/errors';
import { initializeRequest, logNotification, shutdownRequest, type InitializeResult } from '../protocol/messages';
import { PROTOCOL_VERSION, type EngineInfo, type EngineKind } from '../protocol/types';
import { describeExit } from '../shared/processExit';
import { packageRoot } from './packageRoot';
import { killProcessGroup } from './processGroup';
import { findPython } from './pythonFinder';

/** Default for requests that run user code (a forward, a summary). Generous: torch imports are slow. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;
/** Starting an engine includes `import torch` or loading tfjs and its wasm binary. */
export const START_TIMEOUT_MS = 90_000;
/** After a timeout the engine gets this long to honour `$/cancelRequest` before it is killed. */
export const CANCEL_GRACE_MS = 2_000;
/** How long `dispose()` waits for a clean `engine/shutdown` before signalling. */
export const SHUTDOWN_GRACE_MS = 1_500;
const KILL_GRACE_MS = 1_500;
/** vscode-jsonrpc's codes for a request that died with the connection rather than being answered. */
const CONNECTION_LOST_CODES = new Set<number>([
  JsonRpcErrorCodes.MessageWriteError,
  JsonRpcErrorCodes.MessageReadError,
  JsonRpcErrorCodes.PendingResponseRejected,
  JsonRpcErrorCodes.ConnectionInactive,
]);
/** Last bytes of the engine's stderr kept to explain a crash. */
const STDERR_TAIL_BYTES = 8_192;

export interface EngineStartOptions {
  kind: EngineKind;
  /** Folder user code runs in. */
  cwd?: string;
  /** PyTorch engine: interpreter to use (`--python` / `modelLens.pythonPath`). */
  python?: string;
  /** PyTorch engine: the Python extension's active interpreter, tried after `python`. */
  editorPython?: string;
  backend?: string;
  /** Workspace Trust: engines run no user code unless this is true. */
  trusted?: boolean;
  clientName?: string;
  clientVersion?: string;
  env?: Record<string, string | undefined>;
  /** Receives the engine's stderr and log notifications, for an output channel. */
  onLog?: (line: string) => void;
}

export interface RequestOptions {
  timeoutMs?: number;
  token?: CancellationToken;
}

export interface EngineExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the client considers the engine gone: a crash, a hang it killed, or dispose(). */
  reason: 'crashed' | 'killedAfterTimeout' | 'disposed';
  stderrTail: string;
}

/** A failed engine request, with the engine's structured data when it sent some. */
export class EngineError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly data: EngineErrorData,
  ) {
    super(message);
    this.name = 'EngineError';
  }

  get kind(): EngineErrorKind {
    return this.data.kind;
  }
}

/** Engines and clients with the same major protocol version understand each other. */
function protocolMajor(version: unknown): string {
  return String(version ?? '').split('.')[0];
}

/** Which engine runs a model file, by its extension. */
export function engineKindForFile(file: string): EngineKind {
  return path.extname(file).toLowerCase() === '.py' ? 'pytorch' : 'tfjs';
}

/**
 * One engine process and the JSON-RPC connection to it. The extension and the CLI both use it;
 * a dead client stays dead (every request rejects) and the owner starts a new one.
 */
export class EngineClient {
  private exitInfo: EngineExit | undefined;
  private readonly exitListeners: ((e: EngineExit) => void)[] = [];
  private stderrTail = '';
  private killReason: EngineExit['reason'] | undefined;
  private readonly exited: Promise<EngineExit>;
  /** Things worth telling the user about how the engine was started (a skipped interpreter). */
  notes: string[] = [];

  private constructor(
    private readonly child: ChildProcess,
    private readonly connection: MessageConnection,
    readonly kind: EngineKind,
    private readonly onLog: ((line: string) => void) | undefined,
    public info: EngineInfo,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        const e: EngineExit = {
          code,
          signal,
          reason: this.killReason ?? 'crashed',
          stderrTail: this.stderrTail,
        };
        this.exitInfo = e;
        connection.dispose();
        for (const l of this.exitListeners.splice(0)) l(e);
        resolve(e);
      });
    });
  }

  static async start(options: EngineStartOptions): Promise<EngineClient> {
    const { command, args, env, notes } = await engineCommand(options);
    const child = spawn(command, args, {
      cwd: options.cwd ?? process.cwd(),
      env: { ...process.env, ...env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group, so stopping the engine also stops what user code forked (DataLoader
      // workers, subprocesses) instead of leaving orphans.
      detached: process.platform !== 'win32',
      windowsHide: true,
    });
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));

    const spawnFailure = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(
          new EngineError(`Cannot start the ${options.kind} engine (${command}): ${err.message}`, ErrorCodes.environment, {
            kind: 'runtimeMissing',
          }),
        ),
      );
    });
    const connection = createMessageConnection(
      new StreamMessageReader(child.stdout!),
      new StreamMessageWriter(child.stdin!),
    );
    const placeholder = { kind: options.kind } as EngineInfo;
    const client = new EngineClient(child, connection, options.kind, options.onLog, placeholder);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => client.onStderr(chunk));
    // Writes to a dead engine raise EPIPE on the socket; the exit handler reports it instead.
    child.stdin!.on('error', () => undefined);
    connection.onNotification(logNotification, (m) => options.onLog?.(`[${m.level}] ${m.message}`));
    connection.listen();

    try {
      const init = await Promise.race([
        spawnFailure,
        client.request(
          initializeRequest,
          {
            protocolVersion: PROTOCOL_VERSION,
            clientName: options.clientName ?? 'model-lens',
            clientVersion: options.clientVersion ?? '0',
            trusted: options.trusted ?? false,
            backend: options.backend,
            cwd: options.cwd,
          },
          { timeoutMs: START_TIMEOUT_MS },
        ) as Promise<InitializeResult>,
      ]);
      if (protocolMajor(init.protocolVersion) !== protocolMajor(PROTOCOL_VERSION)) {
        throw new EngineError(
          `The ${options.kind} engine speaks protocol ${init.protocolVersion}; this client speaks ${PROTOCOL_VERSION}`,
          ErrorCodes.environment,
          { kind: 'unsupported', expected: PROTOCOL_VERSION, got: String(init.protocolVersion) },
        );
      }
      client.info = init.engine;
      client.notes = notes;
      return client;
    } catch (err) {
      await client.kill('crashed');
      throw err;
    }
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  onExit(listener: (e: EngineExit) => void): Disposable {
    if (this.exitInfo) {
      listener(this.exitInfo);
      return { dispose: () => undefined };
    }
    this.exitListeners.push(listener);
    return {
      dispose: () => {
        const i = this.exitListeners.indexOf(listener);
        if (i >= 0) this.exitListeners.splice(i, 1);
      },
    };
  }

  onNotification<P>(type: NotificationType<P>, handler: (params: P) => void): Disposable {
    return this.connection.onNotification(type, handler);
  }

  request<R, E>(type: RequestType0<R, E>, params?: undefined, options?: RequestOptions): Promise<R>;
  request<P, R, E>(type: RequestType<P, R, E>, params: P, options?: RequestOptions): Promise<R>;
  async request<P, R, E>(
    type: RequestType<P, R, E> | RequestType0<R, E>,
    params: P | undefined,
    options: RequestOptions = {},
  ): Promise<R> {
    if (this.exitInfo) throw this.deadError(type.method, this.exitInfo);
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const cts = new CancellationTokenSource();
    const outer = options.token?.onCancellationRequested(() => cts.cancel());
    let timer: NodeJS.Timeout | undefined;
    let exitSub: Disposable | undefined;
    try {
      const sent =
        params === undefined
          ? this.connection.sendRequest(type as RequestType0<R, E>, cts.token)
          : this.connection.sendRequest(type as RequestType<P, R, E>, params, cts.token);
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          cts.cancel();
          // An engine busy in user code (an endless loop) cannot read the cancellation: give it
          // a moment, then stop it so the caller is never left waiting.
          setTimeout(() => {
            if (this.alive) void this.kill('killedAfterTimeout');
          }, CANCEL_GRACE_MS).unref();
          reject(
            new EngineError(
              `The ${this.kind} engine did not answer ${type.method} within ${Math.round(timeoutMs / 1000)} s; it was stopped and will be restarted on the next request.`,
              ErrorCodes.internal,
              { kind: 'timeout' },
            ),
          );
        }, timeoutMs);
      });
      const died = new Promise<never>((_, reject) => {
        exitSub = this.onExit((e) => reject(this.deadError(type.method, e)));
      });
      return await Promise.race([sent, timedOut, died]);
    } catch (err) {
      if (err instanceof ResponseError && CONNECTION_LOST_CODES.has(err.code)) {
        // The pipe closed before the process reported its exit: wait for the exit so the error
        // says how the engine died, not merely that the connection went away.
        const exit = await Promise.race([this.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), KILL_GRACE_MS).unref())]);
        if (exit) throw this.deadError(type.method, exit);
      }
      throw this.toEngineError(err, type.method);
    } finally {
      clearTimeout(timer);
      outer?.dispose();
      exitSub?.dispose();
      cts.dispose();
    }
  }

  /** Asks the engine to exit; signals it (and anything it forked) if it does not. */
  async dispose(): Promise<void> {
    if (!this.alive) return;
    this.killReason = 'disposed';
    try {
      await Promise.race([
        this.connection.sendRequest(shutdownRequest),
        new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS).unref()),
      ]);
    } catch {
      // Already going away.
    }
    this.child.stdin?.end();
    await this.kill('disposed');
  }

  /** Ends the process group: SIGTERM, then SIGKILL after a grace period. */
  async kill(reason: EngineExit['reason']): Promise<EngineExit> {
    if (this.exitInfo) return this.exitInfo;
    this.killReason ??= reason;
    let timer: NodeJS.Timeout | undefined;
    const exited = Promise.race([this.exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), KILL_GRACE_MS)))]);
    killProcessGroup(this.child, 'SIGTERM');
    const gone = await exited;
    // A pending grace timer would keep a CLI alive after the engine is already gone.
    clearTimeout(timer);
    if (!gone) killProcessGroup(this.child, 'SIGKILL');
    return this.exited;
  }

  private onStderr(chunk: string): void {
    this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    if (this.onLog) for (const line of chunk.split('\n')) if (line) this.onLog(line);
  }

  private deadError(method: string, e: EngineExit): EngineError {
    const how = describeExit(e);
    const why =
      e.reason === 'disposed'
        ? 'the engine was shut down'
        : e.reason === 'killedAfterTimeout'
          ? `the engine was stopped after a request timed out (it ${how})`
          : `the engine ${how}`;
    const tail = e.stderrTail.trim().split('\n').slice(-12).join('\n');
    return new EngineError(
      `${method} failed: ${why}.${tail ? `\nLast engine output:\n${tail}` : ''}`,
      ErrorCodes.internal,
      { kind: e.reason === 'disposed' ? 'cancelled' : 'engineCrashed' },
    );
  }

  private toEngineError(err: unknown, method: string): EngineError {
    if (err instanceof EngineError) return err;
    if (err instanceof ResponseError) {
      const data = (err.data as EngineErrorData | undefined) ?? {
        kind: err.code === ErrorCodes.cancelled ? 'cancelled' : 'internal',
      };
      return new EngineError(err.message, err.code, data);
    }
    const message = err instanceof Error ? err.message : String(err);
    return new EngineError(`${method} failed: ${message}`, ErrorCodes.internal, { kind: 'internal' });
  }
}

/** Every engine this process started, so none outlives an abrupt exit of the CLI. */
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) killProcessGroup(child, 'SIGKILL');
});

async function engineCommand(
  options: EngineStartOptions,
): Promise<{ command: string; args: string[]; env: Record<string, string>; notes: string[] }> {
  const root = packageRoot();
  if (options.kind === 'tfjs') {
    // In the extension host process.execPath is VS Code's Electron; this makes it a plain Node.
    return {
      command: process.execPath,
      args: [path.join(root, 'dist', 'engine.js')],
      env: { ELECTRON_RUN_AS_NODE: '1' },
      notes: [],
    };
  }
  const python = await findPython(options.python, options.editorPython).catch((err: Error) => {
    throw new EngineError(err.message, ErrorCodes.environment, {
      kind: 'runtimeMissing',
      hint: 'Set modelLens.pythonPath or pass --python to an interpreter where `import torch` works.',
    });
  });
  const pythonPath = [path.join(root, 'python'), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  return {
    command: python.executable ?? python.path,
    args: ['-u', '-m', 'model_lens_engine'],
    env: { PYTHONPATH: pythonPath, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    notes: (python.skipped ?? [])
      .filter((p) => p.origin !== 'default')
      .map((p) => `${p.origin} interpreter ${p.path} skipped: ${p.reason}; using ${python.executable ?? python.path}`),
  };
}
