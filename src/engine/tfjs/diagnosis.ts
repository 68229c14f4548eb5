// Measured facts about a TF.js training run for train/diagnose: every read of a tensor's values
// (dataSync, arraySync, data, array, print) is counted and timed, the ones made by the user's
// own lines are attributed to that line, and tensors made from JS values are counted. The
// patches live on tf.Tensor.prototype and the engine only while the run lasts.
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as tfTypes from '@tensorflow/tfjs';
import type {
  DiagnosisFinding,
  SyncPoint,
  TrainDiagnosis,
  TransferStats,
} from '../../protocol/messages';
import type { SourceLocation } from '../../protocol/types';
import type { Tf } from './backend';
import { readSourceLines, userFrames } from './userCode';

/** Sync sites named in findings, busiest first. */
export const DIAGNOSIS_MAX_FINDING_SITES = 5;
/** Longest `expr.method()` quoted from the user's line in a finding. */
const MAX_EXPR_CHARS = 80;

const SYNC_METHODS = ['dataSync', 'arraySync', 'data', 'array', 'print'] as const;
type SyncMethod = (typeof SYNC_METHODS)[number];

const BYTES_PER_ELEMENT: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };

interface Site {
  kind: SyncPoint['kind'];
  method: SyncMethod;
  source: SourceLocation;
  count: number;
  totalMs: number;
  firstStep: number;
  lastStep: number;
}

type CallSite = NodeJS.CallSite;

function bytesOf(t: { size: number; dtype: string }): number {
  return t.size * (BYTES_PER_ELEMENT[t.dtype] ?? 0);
}

function kindOf(method: SyncMethod, size: number): SyncPoint['kind'] {
  if (method === 'print') return 'print';
  // A one-value read is what `.item()` is in PyTorch; a whole array has no closer name.
  if (size === 1) return 'item';
  return method === 'arraySync' || method === 'array' ? 'tolist' : 'other';
}

function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Structured frames of the current stack, without formatting them to text. */
function callSites(below: (...args: never[]) => unknown): CallSite[] {
  const prev = Error.prepareStackTrace;
  Error.prepareStackTrace = (_e, sites) => sites;
  try {
    const holder: { stack?: CallSite[] } = {};
    Error.captureStackTrace(holder, below);
    return holder.stack ?? [];
  } finally {
    Error.prepareStackTrace = prev;
  }
}

function expressionAt(loc: SourceLocation, method: SyncMethod): string {
  const text = readSourceLines(loc.file)[loc.line - 1] ?? '';
  // A receiver chain such as `a.b(c(1)).d()`: names, indexing and calls nested one level deep.
  const m = new RegExp(
    `[A-Za-z_$][\\w$]*(?:\\.[A-Za-z_$][\\w$]*|\\[[^\\[\\]]*\\]|\\((?:[^()]|\\([^()]*\\))*\\))*\\.${method}\\(`,
  ).exec(text);
  // Plain text, as the PyTorch engine's findings: the panel and the CLI show it as it is.
  return m && m[0].length <= MAX_EXPR_CHARS ? `${m[0]})` : `.${method}()`;
}

export class RunDiagnostics {
  private readonly sites = new Map<string, Site>();
  /** Generated position in the user's module → its mapped line (null: not mappable). */
  private readonly mapped = new Map<string, SourceLocation | null>();
  private readonly batchMs: number[] = [];
  private readonly restore: (() => void)[] = [];
  private readonly started = performance.now();
  private ended: number | null = null;
  private batchStart: number | null = null;
  private depth = 0;
  private readonly h2d: TransferStats = { count: 0, bytes: 0 };
  private readonly d2h: TransferStats = { count: 0, bytes: 0 };
  private readMs = 0;
  batchSize: number | null = null;

  constructor(
    private readonly tf: Tf,
    private readonly runId: string,
    private readonly device: string,
    private readonly userFile: string,
    private readonly currentStep: () => number,
  ) {}

  install(): void {
    const proto = this.tf.Tensor.prototype as unknown as Record<
      SyncMethod,
      (...a: unknown[]) => unknown
    >;
    for (const method of SYNC_METHODS) {
      const original = proto[method];
      if (typeof original !== 'function') continue;
      const self = this;
      const patched = function (this: tfTypes.Tensor, ...args: unknown[]): unknown {
        // Outermost read only: arraySync reads through dataSync, array through data.
        if (self.depth > 0) return original.apply(this, args);
        const sites = callSites(patched);
        const t0 = performance.now();
        self.depth++;
        let result: unknown;
        try {
          result = original.apply(this, args);
        } finally {
          self.depth--;
        }
        const size = this.size;
        const bytes = bytesOf(this);
        if (result instanceof Promise) {
          return result.then((v) => {
            self.record(method, size, bytes, performance.now() - t0, sites);
            return v;
          });
        }
        self.record(method, size, bytes, performance.now() - t0, sites);
        return result;
      };
      proto[method] = patched;
      this.restore.push(() => {
        proto[method] = original;
      });
    }
    // Tensors made from JS values (tf.tensor*, tf.scalar, tf.ones... and tfjs's own) all pass here.
    const engine = this.tf.engine() as unknown as {
      makeTensor: (...a: unknown[]) => tfTypes.Tensor;
    };
    const hadOwn = Object.prototype.hasOwnProperty.call(engine, 'makeTensor');
    const makeTensor = engine.makeTensor;
    engine.makeTensor = (...args: unknown[]) => {
      const t = makeTensor.apply(engine, args);
      this.h2d.count++;
      this.h2d.bytes += bytesOf(t);
      return t;
    };
    this.restore.push(() => {
      if (hadOwn) engine.makeTensor = makeTensor;
      else delete (engine as { makeTensor?: unknown }).makeTensor;
    });
  }

  /** Removes the patches and freezes the run's wall time; safe to call twice. */
  uninstall(): void {
    while (this.restore.length) this.restore.pop()!();
    if (this.ended === null) this.ended = performance.now();
  }

  batchBegin(): void {
    this.batchStart = performance.now();
  }

  batchEnd(): void {
    if (this.batchStart !== null) this.batchMs.push(performance.now() - this.batchStart);
    this.batchStart = null;
  }

  private record(
    method: SyncMethod,
    size: number,
    bytes: number,
    ms: number,
    sites: CallSite[],
  ): void {
    this.d2h.count++;
    this.d2h.bytes += bytes;
    this.readMs += ms;
    const frame = sites.find((c) => c.getFileName() === this.userFile);
    if (!frame) return;
    const rawKey = `${frame.getLineNumber()}:${frame.getColumnNumber()}`;
    let source = this.mapped.get(rawKey);
    if (source === undefined) {
      // The existing source-map lookup reads stack text; give it this one frame.
      const e = new Error();
      e.stack = `Error\n    at ${this.userFile}:${rawKey}`;
      source = userFrames(e).at(-1) ?? null;
      if (source) {
        const fn = frame.getFunctionName();
        if (fn) source.function = fn;
      }
      this.mapped.set(rawKey, source);
    }
    if (!source) return;
    const kind = kindOf(method, size);
    const key = `${kind}|${method}|${source.file}:${source.line}`;
    const step = this.currentStep();
    const site = this.sites.get(key);
    if (site) {
      site.count++;
      site.totalMs += ms;
      site.lastStep = step;
    } else {
      this.sites.set(key, {
        kind,
        method,
        source,
        count: 1,
        totalMs: ms,
        firstStep: step,
        lastStep: step,
      });
    }
  }

  snapshot(steps: number): TrainDiagnosis {
    const runMs = (this.ended ?? performance.now()) - this.started;
    const sites = [...this.sites.values()].sort(
      (a, b) => b.count - a.count || b.totalMs - a.totalMs,
    );
    const stepMs = median(this.batchMs);
    const findings: DiagnosisFinding[] = [];
    if (steps === 0) {
      findings.push({
        severity: 'warning',
        message: 'No batch was seen, so nothing is per step: the train export never ran model.fit.',
      });
    }
    const pct = (ms: number): string =>
      runMs > 0 ? `${((ms / runMs) * 100).toFixed(ms / runMs < 0.01 ? 1 : 0)}%` : '0%';
    for (const s of sites.slice(0, DIAGNOSIS_MAX_FINDING_SITES)) {
      const where = `${path.basename(s.source.file)}:${s.source.line}`;
      const freq = this.frequency(s);
      findings.push({
        severity: 'info',
        message: `${expressionAt(s.source, s.method)} at ${where} reads tensor values back ${freq}: ${s.count} call${s.count === 1 ? '' : 's'}, ${s.totalMs.toFixed(1)} ms total (${pct(s.totalMs)} of run time).`,
        source: s.source,
      });
    }
    const userCalls = sites.reduce((n, s) => n + s.count, 0);
    findings.push({
      severity: 'info',
      message: `${this.d2h.count} tensor reads (${userCalls} from your code, the rest tfjs's own) took ${this.readMs.toFixed(1)} ms; ${this.h2d.count} tensors were made from JS values. Counted as device→host and host→device copies.`,
    });
    if (this.device === 'cpu' || this.device === 'wasm' || /cpu|wasm/i.test(this.device)) {
      findings.push({
        severity: 'info',
        message: `On the ${this.device} backend these reads cost little because nothing leaves process memory; on a GPU backend (tfjs-node-gpu, webgl) each one waits for the device to finish its queued work.`,
      });
    }
    if (steps > 0) {
      findings.push({
        severity: 'info',
        message: `Median batch ${stepMs.toFixed(2)} ms over ${this.batchMs.length} batch${this.batchMs.length === 1 ? '' : 'es'}${this.batchSize !== null ? `, batch size ${this.batchSize}` : ''} on ${this.device}.`,
      });
    }
    return {
      runId: this.runId,
      steps,
      device: this.device,
      batchSize: this.batchSize,
      stepMs,
      opsPerStep: null,
      avgOpUs: null,
      hostToDevice: { ...this.h2d },
      deviceToHost: { ...this.d2h },
      syncs: sites.map((s) => ({
        kind: s.kind,
        source: s.source,
        count: s.count,
        totalMs: s.totalMs,
      })),
      // Forward/backward/optimizer are fused inside fit's step; splitting them is not measured.
      breakdown: null,
      findings,
    };
  }

  private frequency(s: Site): string {
    if (s.count === 1) return 'once';
    const span = s.lastStep - s.firstStep;
    if (span <= 0) return `${s.count} times`;
    const every = span / (s.count - 1);
    if (every >= 1.5) return `every ${Math.round(every)} batches`;
    const per = s.count / (span + 1);
    return per < 1.5 ? 'every batch' : `${per.toFixed(0)} times per batch`;
  }
}
