// Per-op timings come from tf.profile (real kernel wall time on cpu and wasm); per-layer times
// from the layers' `call`; the Chrome trace also records each kernel's start through a wrapper on
// engine.runKernel, because tf.profile's records carry durations but no start times.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as tfTypes from '@tensorflow/tfjs';
import type { ProfileParams, ProfileResult } from '../../protocol/messages';
import type { ModuleTiming, OpStat } from '../../protocol/types';
import type { Tf } from './backend';
import { addCallListener } from './callInterceptor';
import { fail, messageOf } from './engineError';
import { forwardBackward, makeInputs, predict } from './modelSession';
import type { ModelSession } from './modelSession';

export const PROFILE_DEFAULT_STEPS = 3;
export const PROFILE_DEFAULT_WARMUP = 1;
export const PROFILE_MAX_STEPS = 1000;
/** Distinct input-shape lists kept per op. */
export const OP_SHAPES_MAX = 5;
const TRACE_PID = process.pid;
const TRACE_TID = 1;

type Layer = tfTypes.layers.Layer;

interface TraceEvent {
  name: string;
  cat: string;
  ph: 'X' | 'M';
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: Record<string, unknown>;
}

interface KernelRecord {
  name: string;
  inputShapes: (number[] | null | undefined)[];
  kernelTimeMs: number | { error: string } | Promise<number | { error: string }>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function activeKernelCount(tf: Tf): number {
  const state = (tf.engine() as unknown as { state?: { activeProfile?: { kernels?: unknown[] } } }).state;
  return state?.activeProfile?.kernels?.length ?? 0;
}

export async function runProfile(tf: Tf, s: ModelSession, params: ProfileParams): Promise<ProfileResult> {
  const steps = Math.max(1, Math.min(PROFILE_MAX_STEPS, params.steps ?? PROFILE_DEFAULT_STEPS));
  const warmup = Math.max(0, params.warmup ?? PROFILE_DEFAULT_WARMUP);
  const mode = params.mode ?? 'forward';
  const warnings: string[] = [];
  if (mode === 'train') {
    warnings.push('train mode times forward (training=true) and backward of mean(outputs); no optimizer step is run, so weights are unchanged.');
  }
  if (params.traceFile && !path.isAbsolute(params.traceFile)) fail('badRequest', `traceFile must be an absolute path: ${params.traceFile}`);

  let forwardBoundary = -1;
  const step = (): void => {
    tf.tidy(() => {
      const xs = makeInputs(tf, s);
      if (mode === 'train') forwardBackward(tf, s, xs, () => (forwardBoundary = activeKernelCount(tf)));
      else predict(s, xs);
    });
  };
  for (let i = 0; i < warmup; i++) step();

  const trace: TraceEvent[] = [];
  const t0 = performance.now();
  const us = (ms: number): number => Math.round((ms - t0) * 1000 * 1000) / 1000;
  const modules = new Map<string, ModuleTiming>();
  const stack: number[] = [];
  const root = s.model as unknown as Layer;
  const removers: (() => void)[] = [];
  for (const [p, layer] of s.index.layerAt) {
    if (layer === root || s.index.pathOf.get(layer) !== p) continue;
    const type = s.index.modules.find((m) => m.path === p)?.type ?? layer.getClassName();
    removers.push(
      addCallListener(layer, {
        before: () => void stack.push(performance.now()),
        after: () => {
          const start = stack.pop() ?? performance.now();
          const dur = performance.now() - start;
          const m = modules.get(p) ?? { path: p, type, calls: 0, forwardMs: 0 };
          m.calls++;
          m.forwardMs += dur;
          modules.set(p, m);
          if (params.traceFile) trace.push({ name: p, cat: 'layer', ph: 'X', ts: us(start), dur: dur * 1000, pid: TRACE_PID, tid: TRACE_TID, args: { type } });
        },
      }),
    );
  }
  const engine = tf.engine() as unknown as { runKernel: (...a: unknown[]) => unknown };
  const hadOwnRunKernel = Object.prototype.hasOwnProperty.call(engine, 'runKernel');
  const originalRunKernel = engine.runKernel;
  if (params.traceFile) {
    engine.runKernel = function tracedRunKernel(this: unknown, ...args: unknown[]): unknown {
      const start = performance.now();
      try {
        return originalRunKernel.apply(this, args);
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
  }
  const stepTimes: number[] = [];
  const forwardTimes: number[] = [];
  const ops = new Map<string, OpStat & { shapeCounts: Map<string, number> }>();
  try {
    for (let i = 0; i < steps; i++) {
      forwardBoundary = -1;
      const start = performance.now();
      let forwardEnd = 0;
      const info = await tf.profile(() => {
        step();
        forwardEnd = performance.now();
      });
      const end = performance.now();
      stepTimes.push(end - start);
      if (mode === 'forward') forwardTimes.push(forwardEnd - start);
      if (params.traceFile) trace.push({ name: `step ${i}`, cat: 'step', ph: 'X', ts: us(start), dur: (end - start) * 1000, pid: TRACE_PID, tid: TRACE_TID, args: { mode } });
      const kernels = info.kernels as unknown as KernelRecord[];
      kernels.forEach((k, idx) => {
        if (k.name.endsWith('__op')) return;
        const phase: OpStat['phase'] = mode === 'forward' || forwardBoundary < 0 || idx < forwardBoundary ? 'forward' : 'backward';
        const key = `${k.name}|${phase}`;
        const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
        const op = ops.get(key) ?? { name: k.name, calls: 0, totalMs: 0, selfMs: 0, inputShapes: [], phase, shapeCounts: new Map<string, number>() };
        op.calls++;
        op.totalMs += ms;
        op.selfMs += ms;
        const shapes = JSON.stringify((k.inputShapes ?? []).map((sh) => sh ?? []));
        op.shapeCounts.set(shapes, (op.shapeCounts.get(shapes) ?? 0) + 1);
        ops.set(key, op);
      });
    }
  } finally {
    for (const r of removers) r();
    if (params.traceFile) {
      if (hadOwnRunKernel) engine.runKernel = originalRunKernel;
      else delete (engine as { runKernel?: unknown }).runKernel;
    }
  }
  const rootTiming: ModuleTiming = {
    path: '',
    type: s.type,
    calls: steps,
    forwardMs: mode === 'forward' ? forwardTimes.reduce((a, b) => a + b, 0) : [...modules.values()].filter((m) => !m.path.includes('.')).reduce((a, m) => a + m.forwardMs, 0),
  };
  const opList: OpStat[] = [...ops.values()]
    .map(({ shapeCounts, ...op }) => ({
      ...op,
      inputShapes: [...shapeCounts.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, OP_SHAPES_MAX)
        .map(([k]) => JSON.parse(k) as number[][]),
    }))
    .sort((a, b) => b.totalMs - a.totalMs);
  const moduleList = [rootTiming, ...s.index.modules.filter((m) => modules.has(m.path)).map((m) => modules.get(m.path)!)];
  let traceFile: string | undefined;
  if (params.traceFile) {
    const meta: TraceEvent[] = [
      { name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid: TRACE_PID, tid: TRACE_TID, args: { name: `Model Lens tfjs: ${s.name}` } },
      { name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: TRACE_PID, tid: TRACE_TID, args: { name: `${tf.getBackend()} main` } },
    ];
    try {
      fs.mkdirSync(path.dirname(params.traceFile), { recursive: true });
      fs.writeFileSync(params.traceFile, JSON.stringify({ traceEvents: [...meta, ...trace.sort((a, b) => a.ts - b.ts)], displayTimeUnit: 'ms' }));
      traceFile = params.traceFile;
    } catch (err) {
      warnings.push(`Could not write the trace to ${params.traceFile}: ${messageOf(err)}`);
    }
  }
  return { ops: opList, modules: moduleList, stepMs: median(stepTimes), steps, method: 'tf.profile', traceFile, warnings };
}
