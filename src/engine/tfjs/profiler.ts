// Per-op timings come from tf.profile (real kernel wall time on cpu and wasm); per-layer times
// from the layers' `call`; the Chrome trace also records each kernel's start through a wrapper on
// engine.runKernel, because tf.profile's records carry durations but no start times.
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as tfTypes from '@tensorflow/tfjs';
import type { ProfileParams, ProfileResult } from '../../protocol/messages';
import type { ModuleTiming } from '../../protocol/types';
import type { Tf } from './backend';
import { addCallListener } from './callInterceptor';
import { fail } from './engineError';
import { median, OpTotals, TRACE_PID, TRACE_TID, traceKernels, writeTrace } from './kernelTrace';
import type { KernelRecord, TraceEvent } from './kernelTrace';
import { forwardBackward, makeInputs, predict } from './modelSession';
import type { ModelSession } from './modelSession';

export const PROFILE_DEFAULT_STEPS = 3;
export const PROFILE_DEFAULT_WARMUP = 1;
export const PROFILE_MAX_STEPS = 1000;
type Layer = tfTypes.layers.Layer;

function activeKernelCount(tf: Tf): number {
  const state = (tf.engine() as unknown as { state?: { activeProfile?: { kernels?: unknown[] } } })
    .state;
  return state?.activeProfile?.kernels?.length ?? 0;
}

export async function runProfile(
  tf: Tf,
  s: ModelSession,
  params: ProfileParams,
): Promise<ProfileResult> {
  const steps = Math.max(1, Math.min(PROFILE_MAX_STEPS, params.steps ?? PROFILE_DEFAULT_STEPS));
  const warmup = Math.max(0, params.warmup ?? PROFILE_DEFAULT_WARMUP);
  const mode = params.mode ?? 'forward';
  const warnings: string[] = [];
  if (mode === 'train') {
    warnings.push(
      'train mode times forward (training=true) and backward of mean(outputs); no optimizer step is run, so weights are unchanged.',
    );
  }
  if (params.traceFile && !path.isAbsolute(params.traceFile))
    fail('badRequest', `traceFile must be an absolute path: ${params.traceFile}`);

  let forwardBoundary = -1;
  const step = (): void => {
    tf.tidy(() => {
      const xs = makeInputs(tf, s);
      if (mode === 'train')
        forwardBackward(tf, s, xs, () => (forwardBoundary = activeKernelCount(tf)));
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
          if (params.traceFile)
            trace.push({
              name: p,
              cat: 'layer',
              ph: 'X',
              ts: us(start),
              dur: dur * 1000,
              pid: TRACE_PID,
              tid: TRACE_TID,
              args: { type },
            });
        },
      }),
    );
  }
  const untrace = params.traceFile ? traceKernels(tf, trace, us) : null;
  const stepTimes: number[] = [];
  const forwardTimes: number[] = [];
  const ops = new OpTotals();
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
      if (params.traceFile)
        trace.push({
          name: `step ${i}`,
          cat: 'step',
          ph: 'X',
          ts: us(start),
          dur: (end - start) * 1000,
          pid: TRACE_PID,
          tid: TRACE_TID,
          args: { mode },
        });
      const kernels = info.kernels as unknown as KernelRecord[];
      const boundary = forwardBoundary;
      const forwardOnly = mode === 'forward' || boundary < 0;
      ops.add(kernels, (idx) => (forwardOnly || idx < boundary ? 'forward' : 'backward'));
    }
  } finally {
    for (const r of removers) r();
    untrace?.();
  }
  const rootTiming: ModuleTiming = {
    path: '',
    type: s.type,
    calls: steps,
    forwardMs:
      mode === 'forward'
        ? forwardTimes.reduce((a, b) => a + b, 0)
        : [...modules.values()]
            .filter((m) => !m.path.includes('.'))
            .reduce((a, m) => a + m.forwardMs, 0),
  };
  const opList = ops.list();
  const moduleList = [
    rootTiming,
    ...s.index.modules.filter((m) => modules.has(m.path)).map((m) => modules.get(m.path)!),
  ];
  let traceFile: string | undefined;
  if (params.traceFile) {
    const err = writeTrace(params.traceFile, `Model Lens tfjs: ${s.name}`, tf.getBackend(), trace);
    if (err) warnings.push(`Could not write the trace to ${params.traceFile}: ${err}`);
    else traceFile = params.traceFile;
  }
  return {
    ops: opList,
    modules: moduleList,
    stepMs: median(stepTimes),
    steps,
    method: 'tf.profile',
    traceFile,
    warnings,
  };
}
