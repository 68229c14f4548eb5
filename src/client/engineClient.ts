import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { Readable, Duplex } from 'node:stream';
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
import {
  initializeRequest,
  logNotification,
  shutdownRequest,
  type InitializeResult,
} from '../protocol/messages';
import {
  PROTOCOL_VERSION,
  type EngineInfo,
  type EngineKind,
  type SourceLocation,
} from '../protocol/types';
import { explainingTail, howItEnded, userFrameOfStackDump } from './engineExit';
import {
  defaultMemoryLimitMB,
  engineCommand,
  MEMORY_LIMIT_ENV,
  PARENT_PID_ENV,
  TFJS_PROTOCOL_FD,
} from './engineCommand';
import { killProcessGroup } from './processGroup';

/** Default for requests that run user code (a forward, a summary). Generous: torch imports are slow. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;
/** Starting an engine includes `import torch` or loading tfjs and its wasm binary. */
export const START_TIMEOUT_MS = 90_000;
/** After a timeout the engine gets this long to honour `$/cancelRequest` before it is killed. */
export const CANCEL_GRACE_MS = 2_000;
/** SIGUSR1 makes the PyTorch engine print every thread's Python stack (faulthandler). */
const STACK_DUMP_SIGNAL: NodeJS.Signals = 'SIGUSR1';
const STACK_DUMP_MARK = '(most recent call first):';
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
  /**
   * Receives, unsplit, what the engine process wrote outside the protocol (user code writing to
   * fd 1 or 2, warnings, native libraries), for a terminal.
   */
  onOutput?: (text: string) => void;
  /** Memory ceiling in MB; 0 for none. Default: DEFAULT_MEMORY_LIMIT_FRACTION of the machine. */
  memoryLimitMB?: number;
}

/**
 * What a request that overruns its time does: `kill` stops the engine (a request running user
 * code that may never return), `reject` only fails the request and leaves the engine running (a
 * cheap poll that may merely queue behind a long request).
 */
export type TimeoutPolicy = 'kill' | 'reject';

export interface RequestOptions {
  timeoutMs?: number;
  /** Default `kill`. */
  onTimeout?: TimeoutPolicy;
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
  /** The user file the engine was last asked to load or run: named when the engine fails. */
  private userFile: string | undefined;
  private memoryLimitMB: number | undefined;
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
        // What user code forked may still hold the pipes open (and keep a CLI alive).
        killLeftovers(child);
        for (const l of this.exitListeners.splice(0)) l(e);
        resolve(e);
      });
    });
  }

  static async start(options: EngineStartOptions): Promise<EngineClient> {
    const memoryLimitMB = options.memoryLimitMB ?? defaultMemoryLimitMB();
    const { command, args, env, notes, cwd } = await engineCommand(options, memoryLimitMB);
    const tfjs = options.kind === 'tfjs';
    const child = spawn(command, args, {
      cwd: cwd ?? options.cwd ?? process.cwd(),
      env: {
        ...process.env,
        ...env,
        [PARENT_PID_ENV]: String(process.pid),
        [MEMORY_LIMIT_ENV]: String(memoryLimitMB),
        ...options.env,
      },
      // TF.js: the protocol has its own socket (fd 3); fd 1 is plain output like fd 2.
      stdio: tfjs ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'],
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
          new EngineError(
            `Cannot start the ${options.kind} engine (${command}): ${err.message}`,
            ErrorCodes.environment,
            {
              kind: 'runtimeMissing',
            },
          ),
        ),
      );
    });
    const protocol = (tfjs ? child.stdio[TFJS_PROTOCOL_FD] : undefined) as Duplex | undefined;
    const input = protocol ?? child.stdout!;
    const output = protocol ?? child.stdin!;
    const reader = new StreamMessageReader(input);
    // The reader re-arms a partial-message timer forever when the engine dies mid-frame, which
    // would keep a CLI alive after the engine is gone; an engine's exit is reported anyway.
    reader.partialMessageTimeout = 0;
    const connection = createMessageConnection(reader, new StreamMessageWriter(output));
    const placeholder = { kind: options.kind } as EngineInfo;
    const client = new EngineClient(child, connection, options.kind, options.onLog, placeholder);
    client.memoryLimitMB = memoryLimitMB || undefined;
    const raw: Readable[] = tfjs ? [child.stdout!, child.stderr!] : [child.stderr!];
    for (const stream of raw) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        client.onStderr(chunk);
        options.onOutput?.(chunk);
      });
    }
    // Writes to a dead engine raise EPIPE on the socket; the exit handler reports it instead.
    output.on('error', () => undefined);
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
            // The PyTorch engine starts in a neutral folder and moves here.
            cwd: options.cwd ?? process.cwd(),
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
    const file = (params as { file?: unknown } | undefined)?.file;
    if (typeof file === 'string' && file) this.userFile = file;
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const policy = options.onTimeout ?? 'kill';
    const cts = new CancellationTokenSource();
    const outer = options.token?.onCancellationRequested(() => cts.cancel());
    let timer: NodeJS.Timeout | undefined;
    let exitSub: Disposable | undefined;
    let overran: Promise<EngineError> | undefined;
    try {
      const sent =
        params === undefined
          ? this.connection.sendRequest(type as RequestType0<R, E>, cts.token)
          : this.connection.sendRequest(type as RequestType<P, R, E>, params, cts.token);
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          cts.cancel();
          if (policy === 'reject') {
            reject(this.timeoutError(type.method, timeoutMs, 'it is still running'));
            return;
          }
          // Stopping the engine also fails `sent` and `died`; the timeout is what the caller sees.
          overran = this.stopOverrun(sent).then(({ what, at }) =>
            this.timeoutError(type.method, timeoutMs, what, at),
          );
          void overran.then(reject);
        }, timeoutMs);
      });
      const died = new Promise<never>((_, reject) => {
        exitSub = this.onExit((e) => reject(this.deadError(type.method, e)));
      });
      return await Promise.race([sent, timedOut, died]);
    } catch (err) {
      if (overran) throw await overran;
      if (err instanceof ResponseError && CONNECTION_LOST_CODES.has(err.code)) {
        // The pipe closed before the process reported its exit: wait for the exit so the error
        // says how the engine died, not merely that the connection went away.
        const exit = await Promise.race([
          this.exited,
          new Promise<undefined>((r) => setTimeout(() => r(undefined), KILL_GRACE_MS).unref()),
        ]);
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
    const exited = Promise.race([
      this.exited,
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), KILL_GRACE_MS))),
    ]);
    killProcessGroup(this.child, 'SIGTERM');
    const gone = await exited;
    // A pending grace timer would keep a CLI alive after the engine is already gone.
    clearTimeout(timer);
    if (!gone) killProcessGroup(this.child, 'SIGKILL');
    return this.exited;
  }

  /**
   * A request overran: the engine gets CANCEL_GRACE_MS to honour the cancellation; if it does
   * not (user code in an endless loop cannot read it), it is asked where it is (the PyTorch
   * engine prints its Python stacks) and stopped. Says what happened, for the error message.
   */
  private async stopOverrun(
    sent: Promise<unknown>,
  ): Promise<{ what: string; at?: SourceLocation }> {
    const before = this.stderrTail.length;
    const dumped = this.kind === 'pytorch' && this.signalEngine(STACK_DUMP_SIGNAL);
    const answered = await Promise.race([
      sent.then(
        () => true,
        () => true,
      ),
      this.exited.then(() => false),
      delay(CANCEL_GRACE_MS).then(() => false),
    ]);
    if (answered && this.alive) return { what: 'it stopped when cancelled' };
    const dump = dumped ? this.stderrTail.slice(Math.max(0, before - 1)) : '';
    const at = dump.includes(STACK_DUMP_MARK) ? userFrameOfStackDump(dump) : undefined;
    if (this.alive) await this.kill('killedAfterTimeout');
    const where = at
      ? `it was at ${at.file}:${at.line}${at.function ? ` in ${at.function}` : ''}; `
      : '';
    return { what: `${where}the engine was stopped`, at };
  }

  private timeoutError(
    method: string,
    timeoutMs: number,
    what: string,
    at?: SourceLocation,
  ): EngineError {
    const running = this.userFile ? ` while running ${this.userFile}` : '';
    const location = at ?? (this.userFile ? { file: this.userFile, line: 1 } : undefined);
    return new EngineError(
      `The ${this.kind} engine did not answer ${method} within ${formatSeconds(timeoutMs)}${running} (${what}).`,
      ErrorCodes.internal,
      { kind: 'timeout', ...(location ? { location } : {}) },
    );
  }

  private signalEngine(signal: NodeJS.Signals): boolean {
    try {
      return this.child.kill(signal);
    } catch {
      return false;
    }
  }

  private onStderr(chunk: string): void {
    this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    if (this.onLog) for (const line of chunk.split('\n')) if (line) this.onLog(line);
  }

  private deadError(method: string, e: EngineExit): EngineError {
    const how = howItEnded({ ...e, memoryLimitMB: this.memoryLimitMB });
    const running = this.userFile ? ` while running ${this.userFile}` : '';
    const why =
      e.reason === 'disposed'
        ? 'the engine was shut down'
        : e.reason === 'killedAfterTimeout'
          ? `the engine was stopped after a request timed out (it ${how})`
          : `the engine ${how}${running}`;
    const tail = explainingTail(e.stderrTail);
    const at = userFrameOfStackDump(e.stderrTail);
    const location = at ?? (this.userFile ? { file: this.userFile, line: 1 } : undefined);
    return new EngineError(
      `${method} failed: ${why}${at ? ` (at ${at.file}:${at.line})` : ''}.${tail ? `\nLast engine output:\n${tail}` : ''}`,
      ErrorCodes.internal,
      {
        kind: e.reason === 'disposed' ? 'cancelled' : 'engineCrashed',
        ...(location && e.reason !== 'disposed' ? { location } : {}),
      },
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
    return new EngineError(`${method} failed: ${message}`, ErrorCodes.internal, {
      kind: 'internal',
    });
  }
}

/** Every engine this process started, so none outlives an abrupt exit of the CLI. */
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) killProcessGroup(child, 'SIGKILL');
});

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/** Ends what is left of an engine's process group after the engine itself has exited. */
function killLeftovers(child: ChildProcess): void {
  if (child.pid === undefined || process.platform === 'win32') return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // The group is empty: nothing was left behind.
  }
}
