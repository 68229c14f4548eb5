// Live GPU figures at almost no cost: one long-lived `nvidia-smi --query-gpu ... -lms N` child
// streams a CSV row per GPU per tick, instead of paying nvidia-smi's start-up (NVML init) on every
// poll. A second, slower child streams per-process memory while someone listens for it. Both start
// with the first listener, stop with the last, restart with exponential backoff when they die or
// go quiet, and never block the caller.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import * as readline from 'node:readline';
import { killProcessGroup } from '../client/processGroup';
import type { GpuInfo } from '../protocol/types';
import {
  NVIDIA_SMI_ONESHOT_TIMEOUT_MS,
  failureOfRun,
  nvidiaSmiSpawnOptions,
  queryCudaVersion,
  resolveNvidiaSmi,
  withoutRejectedField,
} from './nvidiaSmi';
import {
  GPU_QUERY_FIELDS,
  classifyNvidiaSmiError,
  computeAppsQueryArgs,
  gpuQueryArgs,
  parseComputeAppRow,
  parseGpuRow,
} from './nvidiaSmiParse';
import type {
  GpuProcess,
  GpuQueryField,
  NvidiaSmiFailure,
  NvidiaSmiFailureKind,
  ParsedGpuRow,
  UnavailableField,
} from './nvidiaSmiParse';

/** Default tick of the GPU stream (status bar refresh). */
export const GPU_SAMPLE_INTERVAL_MS = 1000;
/** Default tick of the per-process stream; process lists change slowly and cost more to gather. */
export const GPU_PROCESS_INTERVAL_MS = 5000;
/** A running stream with no GPU row for this long (or 3 ticks, if longer) is restarted. */
export const GPU_STALL_TIMEOUT_MIN_MS = 5000;
const STALL_TICKS = 3;
/** Without persistence mode, NVML start-up on a big box takes seconds before the first row. */
export const GPU_FIRST_ROW_TIMEOUT_MS = 20_000;
/** First retry delay; doubled on every consecutive failure up to the maximum. */
export const GPU_BACKOFF_INITIAL_MS = 1000;
export const GPU_BACKOFF_MAX_MS = 60_000;
/** A child that streamed this long before dying counts as healthy: the next retry starts from the initial delay. */
export const GPU_HEALTHY_RUN_MS = 30_000;
/** Rows of one tick arrive together; a group is complete once this long passes without a new row. */
export const GPU_TICK_SETTLE_MS = 100;
/** Output kept from a failing child to explain the failure. */
const FAILURE_TEXT_MAX_CHARS = 4096;
/** How long stop() waits for a killed child to be reaped before giving up on it. */
const STOP_WAIT_MS = 2000;

export interface GpuSnapshot {
  /** Milliseconds since the epoch when the tick's first row arrived. */
  time: number;
  /** Every GPU of one tick, by index. */
  gpus: GpuInfo[];
  unavailable: UnavailableField[];
  /** The latest per-process figures, while a processes listener keeps that stream running. */
  processes?: GpuProcess[];
}

export type GpuSamplerState = 'idle' | 'starting' | 'running' | 'unavailable';

export interface GpuSamplerStatus {
  state: GpuSamplerState;
  available: boolean;
  /** Why no figures are coming, in words for a tooltip. */
  reason?: string;
  kind?: NvidiaSmiFailureKind;
  /** GPU stream children started so far. */
  starts: number;
  /** Delay before the next start, while unavailable. */
  retryInMs?: number;
  /** The GPU stream child, while one runs. */
  pid?: number;
}

export interface GpuSamplerOptions {
  /** Path or bare name of nvidia-smi; default: `nvidia-smi` on PATH, resolved at every start. */
  nvidiaSmiPath?: string;
  intervalMs?: number;
  processIntervalMs?: number;
  stallTimeoutMs?: number;
  firstRowTimeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Receives one line per distinct failure (and recovery); default: nowhere. */
  log?: (message: string) => void;
}

export interface Disposable {
  dispose(): void;
}

type Listener<T> = (value: T) => void;

interface LoopHooks {
  label: string;
  args(): string[];
  /** Returns true when the line carried data (resets the stall timer). */
  onLine(line: string): boolean;
  /** The child rejected a query field; return true to restart at once without it. */
  dropField?(field: string | undefined): boolean;
  onStarted(pid: number): void;
  onFailure(failure: NvidiaSmiFailure, retryInMs: number): void;
  /** Stall limit while running; undefined: output may legitimately pause (no processes). */
  stallTimeoutMs?: number;
  firstRowTimeoutMs?: number;
}

/** One long-lived nvidia-smi child with restart, backoff and stall detection. */
class StreamLoop {
  private wanted = false;
  private child: ChildProcess | undefined;
  private generation = 0;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private abortReason: NvidiaSmiFailure | undefined;
  private unparsed = '';
  private firstRowAt: number | undefined;
  private exitWaiters: Array<() => void> = [];
  starts = 0;

  constructor(
    private readonly hooks: LoopHooks,
    private readonly opts: Required<Pick<GpuSamplerOptions, 'backoffInitialMs' | 'backoffMaxMs'>> &
      GpuSamplerOptions,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.wanted;
  }

  start(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    void this.launch();
  }

  /** Resolves once the child is gone (or could not be waited for). */
  stop(): Promise<void> {
    this.wanted = false;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stallTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.child = undefined;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const give = setTimeout(resolve, STOP_WAIT_MS);
      this.exitWaiters.push(() => {
        clearTimeout(give);
        resolve();
      });
      killProcessGroup(child);
    });
  }

  /**
   * The child produced good data. Its run resets the backoff only once it lasted
   * GPU_HEALTHY_RUN_MS, so a child that prints one tick and dies still backs off.
   */
  markHealthy(): void {
    if (this.firstRowAt === undefined) this.firstRowAt = Date.now();
  }

  private async launch(): Promise<void> {
    const gen = ++this.generation;
    this.abortReason = undefined;
    this.unparsed = '';
    this.firstRowAt = undefined;
    const resolved = await resolveNvidiaSmi(this.opts.nvidiaSmiPath, this.opts.env);
    if (!this.wanted || gen !== this.generation) return;
    if (!resolved.ok) {
      this.fail(resolved);
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(resolved.path, this.hooks.args(), nvidiaSmiSpawnOptions(this.opts.env));
    } catch (err) {
      this.fail(
        failureOfRun(
          {
            stdout: '',
            stderr: '',
            code: null,
            signal: null,
            timedOut: false,
            spawnError: err as NodeJS.ErrnoException,
          },
          resolved.path,
          0,
        )!,
      );
      return;
    }
    this.child = child;
    this.starts += 1;
    let spawnError: NodeJS.ErrnoException | undefined;
    let stderr = '';
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('exit', () => this.resolveExitWaiters());
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      if (stderr.length < FAILURE_TEXT_MAX_CHARS) stderr += d;
    });
    if (child.stdout) {
      const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
      lines.on('line', (line) => {
        if (gen !== this.generation) return;
        if (this.hooks.onLine(line)) {
          this.armStall(gen, this.hooks.stallTimeoutMs);
        } else if (line.trim() !== '' && this.unparsed.length < FAILURE_TEXT_MAX_CHARS) {
          this.unparsed += `${line}\n`;
        }
      });
    }
    let ended = false;
    const onEnded = (code: number | null, signal: NodeJS.Signals | null) => {
      if (ended) return;
      ended = true;
      if (this.child === child) this.child = undefined;
      if (gen !== this.generation || !this.wanted) return;
      clearTimeout(this.stallTimer);
      const ranHealthyFor = this.firstRowAt === undefined ? 0 : Date.now() - this.firstRowAt;
      if (ranHealthyFor >= GPU_HEALTHY_RUN_MS) this.attempt = 0;
      const run = { stdout: this.unparsed, stderr, code, signal, timedOut: false, spawnError };
      const failure = this.abortReason ??
        failureOfRun(run, resolved.path, 0) ??
        classifyNvidiaSmiError(this.unparsed) ?? {
          ok: false as const,
          kind: 'exited' as const,
          reason: 'nvidia-smi stopped streaming (exit code 0)',
        };
      if (failure.kind === 'invalidField' && this.hooks.dropField?.(failure.field)) {
        void this.launch();
        return;
      }
      this.fail(failure);
    };
    child.on('close', onEnded);
    if (child.pid === undefined) {
      // spawn failed (EACCES, ENOENT raced with the check): 'close' is not guaranteed to follow 'error'.
      child.once('error', () => {
        this.resolveExitWaiters();
        onEnded(null, null);
      });
      return;
    }
    this.hooks.onStarted(child.pid);
    this.armStall(gen, this.hooks.firstRowTimeoutMs);
  }

  private resolveExitWaiters(): void {
    const waiters = this.exitWaiters;
    this.exitWaiters = [];
    for (const w of waiters) w();
  }

  private armStall(gen: number, ms: number | undefined): void {
    clearTimeout(this.stallTimer);
    if (ms === undefined) return;
    this.stallTimer = setTimeout(() => {
      if (gen !== this.generation || !this.child) return;
      const said = this.unparsed.trim();
      this.abortReason = said
        ? (classifyNvidiaSmiError(said) ?? {
            ok: false,
            kind: 'unknownFormat',
            reason: `nvidia-smi printed an unexpected format: "${said.split('\n')[0].slice(0, 160)}"`,
          })
        : {
            ok: false,
            kind: 'timeout',
            reason: `nvidia-smi printed no ${this.hooks.label} row for ${ms / 1000} s (driver hung?)`,
          };
      killProcessGroup(this.child);
    }, ms);
  }

  private fail(failure: NvidiaSmiFailure): void {
    if (!this.wanted) return;
    const delay = Math.min(this.opts.backoffInitialMs * 2 ** this.attempt, this.opts.backoffMaxMs);
    this.attempt += 1;
    this.hooks.onFailure(failure, delay);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.wanted) void this.launch();
    }, delay);
  }
}

/**
 * Streams GPU snapshots. Listen with onSnapshot / onProcesses / onStatus; each returns a
 * Disposable. The children run only while a snapshot or processes listener exists.
 */
export class GpuSampler {
  private readonly opts: Required<
    Pick<
      GpuSamplerOptions,
      'intervalMs' | 'processIntervalMs' | 'backoffInitialMs' | 'backoffMaxMs'
    >
  > &
    GpuSamplerOptions;
  private readonly snapshotListeners = new Set<Listener<GpuSnapshot>>();
  private readonly processListeners = new Set<Listener<GpuProcess[]>>();
  private readonly statusListeners = new Set<Listener<GpuSamplerStatus>>();
  private readonly gpuLoop: StreamLoop;
  private readonly appsLoop: StreamLoop;
  private fields: GpuQueryField[] = [...GPU_QUERY_FIELDS];
  private currentStatus: GpuSamplerStatus = {
    state: 'idle',
    available: false,
    reason: 'not started',
    starts: 0,
  };
  private latestSnapshot: GpuSnapshot | undefined;
  private latestProcesses: GpuProcess[] | undefined;
  private readonly logged = new Set<string>();
  private cudaVersion: string | null | undefined;
  private cudaQueried = false;
  private stopping: Promise<void> | undefined;

  // The tick being assembled.
  private tickRows: ParsedGpuRow[] = [];
  private tickStart = 0;
  private expectedGpus = 0;
  private tickTimer: NodeJS.Timeout | undefined;

  // The process list being assembled.
  private appRows: GpuProcess[] = [];
  private appsTimer: NodeJS.Timeout | undefined;
  private appsEmptyTimer: NodeJS.Timeout | undefined;

  constructor(options: GpuSamplerOptions = {}) {
    this.opts = {
      ...options,
      intervalMs: options.intervalMs ?? GPU_SAMPLE_INTERVAL_MS,
      processIntervalMs: options.processIntervalMs ?? GPU_PROCESS_INTERVAL_MS,
      backoffInitialMs: options.backoffInitialMs ?? GPU_BACKOFF_INITIAL_MS,
      backoffMaxMs: options.backoffMaxMs ?? GPU_BACKOFF_MAX_MS,
    };
    const stall =
      options.stallTimeoutMs ??
      Math.max(GPU_STALL_TIMEOUT_MIN_MS, STALL_TICKS * this.opts.intervalMs);
    const firstRow = options.firstRowTimeoutMs ?? Math.max(GPU_FIRST_ROW_TIMEOUT_MS, stall);
    this.gpuLoop = new StreamLoop(
      {
        label: 'GPU',
        args: () => [...gpuQueryArgs(this.fields), '-lms', String(this.opts.intervalMs)],
        onLine: (line) => this.onGpuLine(line),
        dropField: (field) => {
          const next = withoutRejectedField(this.fields, field);
          if (!next) return false;
          this.logOnce(
            `field:${field}`,
            `nvidia-smi does not know "${field}" (older driver); querying without it`,
          );
          this.fields = next;
          return true;
        },
        onStarted: (pid) => {
          const previous = this.currentStatus;
          if (previous.state === 'running') return;
          this.setStatus({
            ...previous,
            state: 'starting',
            reason:
              previous.state === 'unavailable'
                ? previous.reason
                : 'waiting for the first nvidia-smi answer',
            pid,
            starts: this.gpuLoop.starts,
          });
        },
        onFailure: (failure, retryInMs) => this.onGpuFailure(failure, retryInMs),
        stallTimeoutMs: stall,
        firstRowTimeoutMs: firstRow,
      },
      this.opts,
    );
    this.appsLoop = new StreamLoop(
      {
        label: 'process',
        args: () => [...computeAppsQueryArgs(), '-lms', String(this.opts.processIntervalMs)],
        onLine: (line) => this.onAppLine(line),
        onStarted: () => this.armAppsEmpty(),
        onFailure: (failure, retryInMs) => {
          clearTimeout(this.appsEmptyTimer);
          this.logOnce(
            `apps:${failure.kind}:${failure.reason}`,
            `GPU process query unavailable: ${failure.reason} (retrying in ${retryInMs / 1000} s)`,
          );
        },
        // No rows is a valid answer (nothing runs on the GPU), so silence is never a stall here;
        // a hung process stream only leaves the list stale, while the GPU stream has its own watchdog.
        stallTimeoutMs: undefined,
        firstRowTimeoutMs: undefined,
      },
      this.opts,
    );
  }

  get status(): GpuSamplerStatus {
    return this.currentStatus;
  }

  get latest(): GpuSnapshot | undefined {
    return this.latestSnapshot;
  }

  /** Pids of the running children, for diagnostics and tests. */
  get childPids(): { gpu?: number; processes?: number } {
    return { gpu: this.gpuLoop.pid, processes: this.appsLoop.pid };
  }

  onSnapshot(listener: Listener<GpuSnapshot>): Disposable {
    this.snapshotListeners.add(listener);
    this.reconcile();
    return { dispose: () => this.remove(this.snapshotListeners, listener) };
  }

  onProcesses(listener: Listener<GpuProcess[]>): Disposable {
    this.processListeners.add(listener);
    this.reconcile();
    return { dispose: () => this.remove(this.processListeners, listener) };
  }

  /** Status changes; does not by itself start sampling. */
  onStatus(listener: Listener<GpuSamplerStatus>): Disposable {
    this.statusListeners.add(listener);
    return { dispose: () => void this.statusListeners.delete(listener) };
  }

  /** Stops both children and drops every listener. Resolves once the children are gone. */
  async dispose(): Promise<void> {
    this.snapshotListeners.clear();
    this.processListeners.clear();
    await this.stopAll();
    this.statusListeners.clear();
  }

  /** Resolves once the children stopped after the last listener went (at once if none ran). */
  whenStopped(): Promise<void> {
    return this.stopping ?? Promise.resolve();
  }

  private remove<T>(set: Set<T>, listener: T): void {
    set.delete(listener);
    this.reconcile();
  }

  private reconcile(): void {
    const wantGpu = this.snapshotListeners.size > 0 || this.processListeners.size > 0;
    const wantApps = this.processListeners.size > 0;
    if (wantGpu && !this.gpuLoop.running) {
      this.gpuLoop.start();
    }
    if (wantApps && !this.appsLoop.running) {
      this.appsLoop.start();
    }
    if (!wantApps && this.appsLoop.running) {
      clearTimeout(this.appsTimer);
      clearTimeout(this.appsEmptyTimer);
      this.latestProcesses = undefined;
      void this.appsLoop.stop();
    }
    if (!wantGpu && this.gpuLoop.running) {
      this.stopping = this.stopAll();
    }
  }

  private async stopAll(): Promise<void> {
    clearTimeout(this.tickTimer);
    clearTimeout(this.appsTimer);
    clearTimeout(this.appsEmptyTimer);
    this.tickRows = [];
    this.appRows = [];
    const wasRunning = this.gpuLoop.running;
    await Promise.all([this.gpuLoop.stop(), this.appsLoop.stop()]);
    if (wasRunning)
      this.setStatus({
        state: 'idle',
        available: false,
        reason: 'stopped (no listeners)',
        starts: this.gpuLoop.starts,
      });
  }

  // ---- GPU stream ------------------------------------------------------------------------------

  private onGpuLine(line: string): boolean {
    if (line.trim() === '') return false;
    const row = parseGpuRow(line, this.fields);
    if (!row) return false;
    if (this.tickRows.some((r) => r.gpu.index === row.gpu.index)) this.flushTick();
    if (this.tickRows.length === 0) this.tickStart = Date.now();
    this.tickRows.push(row);
    clearTimeout(this.tickTimer);
    if (this.expectedGpus > 0 && this.tickRows.length >= this.expectedGpus) {
      this.flushTick();
    } else {
      this.tickTimer = setTimeout(() => this.flushTick(), GPU_TICK_SETTLE_MS);
    }
    return true;
  }

  private flushTick(): void {
    clearTimeout(this.tickTimer);
    if (this.tickRows.length === 0) return;
    const rows = this.tickRows.sort((a, b) => a.gpu.index - b.gpu.index);
    this.tickRows = [];
    this.expectedGpus = rows.length;
    const gpus = rows.map((r) =>
      this.cudaVersion !== undefined ? { ...r.gpu, cudaVersion: this.cudaVersion } : r.gpu,
    );
    const snapshot: GpuSnapshot = {
      time: this.tickStart,
      gpus,
      unavailable: rows.flatMap((r) => r.unavailable),
    };
    if (this.latestProcesses) snapshot.processes = this.latestProcesses;
    this.latestSnapshot = snapshot;
    this.gpuLoop.markHealthy();
    if (!this.currentStatus.available) {
      if (this.currentStatus.state === 'unavailable')
        this.logOnce('recovered', 'nvidia-smi is answering again');
      this.setStatus({
        state: 'running',
        available: true,
        starts: this.gpuLoop.starts,
        pid: this.gpuLoop.pid,
      });
      this.fetchCudaVersion();
    }
    for (const l of this.snapshotListeners) this.safely(() => l(snapshot));
  }

  private onGpuFailure(failure: NvidiaSmiFailure, retryInMs: number): void {
    // Rows printed before the child died are still a true reading.
    this.flushTick();
    this.logOnce(
      `gpu:${failure.kind}:${failure.reason}`,
      `GPU monitor unavailable: ${failure.reason} (retrying with backoff)`,
    );
    this.setStatus({
      state: 'unavailable',
      available: false,
      reason: failure.reason,
      kind: failure.kind,
      starts: this.gpuLoop.starts,
      retryInMs,
    });
  }

  /** The CUDA version is only in the plain header; ask once per sampler, off the hot path. */
  private fetchCudaVersion(): void {
    if (this.cudaQueried) return;
    this.cudaQueried = true;
    void resolveNvidiaSmi(this.opts.nvidiaSmiPath, this.opts.env).then(async (r) => {
      this.cudaVersion = r.ok
        ? await queryCudaVersion(r.path, NVIDIA_SMI_ONESHOT_TIMEOUT_MS, this.opts.env)
        : null;
    });
  }

  // ---- process stream --------------------------------------------------------------------------

  private onAppLine(line: string): boolean {
    if (line.trim() === '') return false;
    const row = parseComputeAppRow(line);
    if (!row) return false;
    this.appRows.push(row);
    clearTimeout(this.appsTimer);
    this.appsTimer = setTimeout(() => this.flushApps(), GPU_TICK_SETTLE_MS);
    return true;
  }

  private flushApps(): void {
    const rows = this.appRows;
    this.appRows = [];
    this.emitProcesses(rows);
  }

  /** A tick with no process prints nothing; no row for 1.5 ticks means the list is empty. */
  private armAppsEmpty(): void {
    clearTimeout(this.appsEmptyTimer);
    this.appsEmptyTimer = setTimeout(
      () => this.emitProcesses([]),
      this.opts.processIntervalMs * 1.5 + GPU_TICK_SETTLE_MS,
    );
  }

  private emitProcesses(rows: GpuProcess[]): void {
    this.armAppsEmpty();
    this.latestProcesses = rows;
    if (this.latestSnapshot) this.latestSnapshot = { ...this.latestSnapshot, processes: rows };
    for (const l of this.processListeners) this.safely(() => l(rows));
  }

  // ---- plumbing --------------------------------------------------------------------------------

  private setStatus(status: GpuSamplerStatus): void {
    this.currentStatus = status;
    for (const l of this.statusListeners) this.safely(() => l(status));
  }

  private logOnce(key: string, message: string): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    this.opts.log?.(message);
  }

  /** A throwing listener must not stop the stream for the others. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.logOnce(
        `listener:${String(err)}`,
        `GPU monitor listener failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}
