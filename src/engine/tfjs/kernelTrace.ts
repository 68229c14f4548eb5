// What layers-model and graph-model profiles share: per-op totals from tf.profile's kernel
// records (minus the `*__op` wrappers that enclose inner kernels), kernel start times through a
// wrapper on engine.runKernel (tf.profile's records have durations only), and the Chrome trace.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { OpStat } from '../../protocol/types';
import type { Tf } from './backend';

/** Distinct input-shape lists kept per op. */
export const OP_SHAPES_MAX = 5;
export const TRACE_PID = process.pid;
export const TRACE_TID = 1;

export interface TraceEvent {
  name: string;
  cat: string;
  ph: 'X' | 'M';
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: Record<string, unknown>;
}

export interface KernelRecord {
  name: string;
  inputShapes: (number[] | null | undefined)[];
  kernelTimeMs: number | { error: string } | Promise<number | { error: string }>;
}

export function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class OpTotals {
  private readonly ops = new Map<string, OpStat & { shapeCounts: Map<string, number> }>();

  add(kernels: KernelRecord[], phaseOf: (index: number) => OpStat['phase']): void {
    kernels.forEach((k, idx) => {
      if (k.name.endsWith('__op')) return;
      const phase = phaseOf(idx);
      const key = `${k.name}|${phase}`;
      const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      const op = this.ops.get(key) ?? {
        name: k.name,
        calls: 0,
        totalMs: 0,
        selfMs: 0,
        inputShapes: [],
        phase,
        shapeCounts: new Map<string, number>(),
      };
      op.calls++;
      op.totalMs += ms;
      op.selfMs += ms;
      const shapes = JSON.stringify((k.inputShapes ?? []).map((sh) => sh ?? []));
      op.shapeCounts.set(shapes, (op.shapeCounts.get(shapes) ?? 0) + 1);
      this.ops.set(key, op);
    });
  }

  list(): OpStat[] {
    return [...this.ops.values()]
      .map(({ shapeCounts, ...op }) => ({
        ...op,
        inputShapes: [...shapeCounts.entries()]
          .sort((a, b) => b[1] - a[1])
          .slice(0, OP_SHAPES_MAX)
          .map(([k]) => JSON.parse(k) as number[][]),
      }))
      .sort((a, b) => b.totalMs - a.totalMs);
  }
}

/** Records every kernel run with its start time until the returned function is called. */
export function traceKernels(tf: Tf, trace: TraceEvent[], us: (ms: number) => number): () => void {
  const engine = tf.engine() as unknown as { runKernel: (...a: unknown[]) => unknown };
  const hadOwn = Object.prototype.hasOwnProperty.call(engine, 'runKernel');
  const original = engine.runKernel;
  engine.runKernel = function tracedRunKernel(this: unknown, ...args: unknown[]): unknown {
    const start = performance.now();
    try {
      return original.apply(this, args);
    } finally {
      const inputs = (args[1] ?? {}) as Record<string, { shape?: number[] }>;
      trace.push({
        name: String(args[0]),
        cat: 'kernel',
        ph: 'X',
        ts: us(start),
        dur: (performance.now() - start) * 1000,
        pid: TRACE_PID,
        tid: TRACE_TID,
        args: { inputShapes: Object.values(inputs).map((t) => t?.shape ?? null) },
      });
    }
  };
  return () => {
    if (hadOwn) engine.runKernel = original;
    else delete (engine as { runKernel?: unknown }).runKernel;
  };
}

/** Writes the Chrome trace; returns an error message instead of throwing. */
export function writeTrace(
  file: string,
  processName: string,
  backend: string,
  trace: TraceEvent[],
): string | null {
  const meta: TraceEvent[] = [
    {
      name: 'process_name',
      cat: '__metadata',
      ph: 'M',
      ts: 0,
      pid: TRACE_PID,
      tid: TRACE_TID,
      args: { name: processName },
    },
    {
      name: 'thread_name',
      cat: '__metadata',
      ph: 'M',
      ts: 0,
      pid: TRACE_PID,
      tid: TRACE_TID,
      args: { name: `${backend} main` },
    },
  ];
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(
      file,
      JSON.stringify({
        traceEvents: [...meta, ...trace.sort((a, b) => a.ts - b.ts)],
        displayTimeUnit: 'ms',
      }),
    );
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
