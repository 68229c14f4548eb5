// The requests that run a graph model: summary (every op node's output from one executeAsync
// with tfjs keeping intermediates), forward, tensor/inspect, profile and forward hooks on node
// outputs. What a frozen graph cannot do (backward, training) is refused naming the format.
import { performance } from 'node:perf_hooks';
import type * as tfTypes from '@tensorflow/tfjs';
import type {
  HookAttachParams,
  ProfileParams,
  ProfileResult,
  SummaryResult,
  TensorInspectParams,
  TensorInspectResult,
} from '../../protocol/messages';
import type { InputSpec, SummaryRow, SummaryTotals } from '../../protocol/types';
import type { Tf } from './backend';
import { fail, messageOf } from './engineError';
import { graphMacs, makeGraphInputs } from './graphModel';
import type { HookManager } from './hooks';
import type { GraphSession } from './graphModel';
import { requireWeights } from './modelJson';
import { median, OpTotals, TRACE_PID, TRACE_TID, traceKernels, writeTrace } from './kernelTrace';
import type { KernelRecord, TraceEvent } from './kernelTrace';
import { elementSize, numelOf, tensorInfo, tensorStats } from './tensorFacts';

export const GRAPH_FORMAT = 'graph model (tfjs-converter "format": "graph-model")';

/** One-line refusal for what a frozen graph cannot do. */
export function graphUnsupported(what: string, s: { file: string }): never {
  return fail('unsupported', `${what} is not possible for a ${GRAPH_FORMAT}: ${s.file}`, {
    location: { file: s.file, line: 1 },
    hint:
      'A graph model is frozen inference code; load the Keras/tfjs layers model to train it ' +
      'or see gradients.',
  });
}

export interface NodeOutputs {
  outputs: tfTypes.Tensor[];
  /** Node name → its output tensors (owned by the caller: dispose them). */
  nodes: Map<string, tfTypes.Tensor[]>;
}

/**
 * Sets KEEP_INTERMEDIATE_TENSORS without env().set(), whose hook prints a console warning into
 * the user's output on every call; the executor reads the flag at each execute.
 */
function keepIntermediates(tf: Tf, on: boolean): boolean {
  const flags = (tf.env() as unknown as { flags: Record<string, unknown> }).flags;
  const before = tf.env().getBool('KEEP_INTERMEDIATE_TENSORS');
  flags.KEEP_INTERMEDIATE_TENSORS = on;
  return before;
}

/** Graphs with control flow or dynamic shapes only run through executeAsync. */
const needsAsync = new WeakSet<object>();

async function execute(
  s: GraphSession,
  xs: tfTypes.NamedTensorMap,
): Promise<tfTypes.Tensor | tfTypes.Tensor[]> {
  if (!needsAsync.has(s.model)) {
    try {
      return s.model.execute(xs, s.outputNames);
    } catch (err) {
      if (!/executeAsync/.test(messageOf(err))) throw err;
      needsAsync.add(s.model);
    }
  }
  return s.model.executeAsync(xs, s.outputNames);
}

/** One run; with `keep`, the named nodes' outputs (or all when `keep` is 'all'). */
export async function runGraph(
  tf: Tf,
  s: GraphSession,
  keep: string[] | 'all' | null,
  specs?: InputSpec[],
): Promise<NodeOutputs> {
  const xs = makeGraphInputs(tf, s, specs);
  const nodes = new Map<string, tfTypes.Tensor[]>();
  let outputs: tfTypes.Tensor[] = [];
  const before = keep ? keepIntermediates(tf, true) : false;
  try {
    let out: tfTypes.Tensor | tfTypes.Tensor[];
    try {
      out = await execute(s, xs);
    } catch (err) {
      return fail(
        'userCodeError',
        `${s.file}: the graph model failed to run: ${firstLine(messageOf(err))}`,
        {
          location: { file: s.file, line: 1 },
        },
      );
    }
    outputs = Array.isArray(out) ? out : [out];
    if (keep) {
      const all = s.model.getIntermediateTensors();
      const wanted = keep === 'all' ? Object.keys(all) : keep;
      for (const name of wanted) {
        const ts = all[name];
        if (ts)
          nodes.set(
            name,
            ts.filter((t) => !t.isDisposed).map((t) => t.clone()),
          );
        // Placeholders are fed, not computed: their "output" is the input itself.
        const fed = xs[name] ?? xs[`${name}:0`];
        if (!ts && fed) nodes.set(name, [fed.clone()]);
      }
    }
  } finally {
    if (keep) {
      s.model.disposeIntermediateTensors();
      keepIntermediates(tf, before);
    }
    tf.dispose(Object.values(xs));
  }
  return { outputs, nodes };
}

function firstLine(msg: string): string {
  const line = msg.split('\n')[0];
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function disposeAll(r: NodeOutputs): void {
  for (const ts of r.nodes.values()) for (const t of ts) t.dispose();
  for (const t of r.outputs) t.dispose();
}

/** A name scope's output: that of the last op node inside it, in graph order. */
function lastNodeIn(idx: GraphSession['index'], scope: string): string | undefined {
  let last: string | undefined;
  for (const [p, node] of idx.nodeOf) if (p.startsWith(`${scope}.`)) last = node;
  return last;
}

interface SignatureJson {
  outputs?: Record<string, { tensorShape?: { dim?: { size?: string | number }[] } }>;
}

/** Output shapes the graph's signature declares (unknown dims as 1); [] where it has none. */
function declaredOutputShapes(s: GraphSession): number[][] {
  const sig = s.model.modelSignature as SignatureJson | undefined;
  const declared = Object.values(sig?.outputs ?? {});
  return s.model.outputs.map((o, i) => {
    const dims = declared[i]?.tensorShape?.dim;
    if (dims) return dims.map((d) => Math.max(1, Number(d.size ?? -1)));
    return (o.shape ?? []).map((d) => (d < 0 ? 1 : d));
  });
}

export async function graphSummary(
  tf: Tf,
  s: GraphSession,
  specs: InputSpec[],
): Promise<SummaryResult> {
  const shapes = new Map<string, number[][]>();
  const bytes = new Map<string, number>();
  // Placeholder weights (zeros) break shape constants such as Reshape's: without the weight
  // files only the structure is shown, and the outputs the signature declares.
  const missing = s.weightsMissing.length > 0;
  let outShapes = declaredOutputShapes(s);
  let outDtype: string = s.model.outputs[0]?.dtype ?? 'float32';
  if (!missing) {
    const r = await runGraph(tf, s, 'all', specs);
    for (const [name, ts] of r.nodes) {
      shapes.set(
        name,
        ts.map((t) => [...t.shape]),
      );
      bytes.set(
        name,
        ts.reduce((a, t) => a + t.size * elementSize(t.dtype), 0),
      );
    }
    outShapes = r.outputs.map((t) => [...t.shape]);
    outDtype = r.outputs[0]?.dtype ?? 'float32';
    disposeAll(r);
  }
  const idx = s.index;
  const macs = new Map<string, number>();
  let leafOutputBytes = 0;
  for (const [p, node] of idx.nodeOf) {
    const own = idx.ownParams.get(p) ?? 0;
    macs.set(p, graphMacs(idx.opOf.get(p)!, own, shapes.get(node)?.[0]));
    leafOutputBytes += bytes.get(node) ?? 0;
  }
  const paramBytesOf = (pred: (module: string) => boolean, buffers: boolean): number =>
    idx.weights
      .filter((w) => w.isBuffer === buffers && pred(w.module))
      .reduce((a, w) => a + numelOf(w.shape) * elementSize(w.dtype), 0);
  const inside =
    (root: string) =>
    (m: string): boolean =>
      root === '' || m === root || m.startsWith(`${root}.`);
  const rows: SummaryRow[] = idx.modules.map((m) => {
    const node = idx.nodeOf.get(m.path);
    const last = node ?? lastNodeIn(idx, m.path);
    const sh = m.path === '' ? outShapes : last ? shapes.get(last) : undefined;
    const subtreeMacs = [...macs].filter(([p]) => inside(m.path)(p)).reduce((a, [, v]) => a + v, 0);
    const ran = m.path === '' || !last || shapes.has(last);
    const row: SummaryRow = {
      path: m.path,
      type: m.type,
      depth: m.depth,
      isLeaf: m.isLeaf,
      outputShape: sh ? (sh.length === 1 ? sh[0] : sh) : null,
      params: m.isLeaf ? m.ownParams : m.totalParams,
      ownParams: m.ownParams,
      totalParams: m.totalParams,
      trainableParams: 0,
      macs: m.isLeaf ? (macs.get(m.path) ?? 0) : subtreeMacs,
      paramBytes: paramBytesOf(m.isLeaf ? (x) => x === m.path : inside(m.path), false),
      aliases: [],
      ran,
    };
    if (!ran)
      row.note = missing
        ? 'not run: the weight files are missing'
        : 'not executed for these outputs';
    if (m.path === '' && outShapes[0]) row.output = tensorInfo(outShapes[0], outDtype, s.device);
    return row;
  });
  const all = (): boolean => true;
  const paramBytes = paramBytesOf(all, false);
  const bufferBytes = paramBytesOf(all, true);
  const inputBytes = specs.reduce((a, sp) => a + numelOf(sp.shape) * elementSize(sp.dtype), 0);
  const root = idx.modules[0];
  const totals: SummaryTotals = {
    params: root.totalParams,
    trainableParams: 0,
    nonTrainableParams: root.totalParams,
    macs: [...macs.values()].reduce((a, b) => a + b, 0),
    paramBytes,
    bufferBytes,
    inputBytes,
    forwardBackwardBytes: 2 * leafOutputBytes,
    totalBytes: inputBytes + 2 * leafOutputBytes + paramBytes + bufferBytes,
  };
  const warnings = [
    `${GRAPH_FORMAT}: constants are not trainable, so every parameter counts as non-trainable.`,
  ];
  if (missing) {
    warnings.push(
      'Weights are missing: the graph was not run, so output shapes and multiply-adds are unknown; ' +
        'the counts come from the weights manifest.',
    );
  }
  return { rows, totals, inputs: specs, warnings };
}

/** Runs the graph `steps` times; forward hooks see their nodes' outputs after each run. */
export async function graphForward(
  tf: Tf,
  s: GraphSession,
  steps: number,
): Promise<{ outputShapes: number[][]; stepMs: number }> {
  requireWeights(s, 'Running the model');
  let outputShapes: number[][] = [];
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    const hooks = [...s.nodeHooks.values()];
    const hooked = [...new Set(hooks.flatMap((h) => h.nodes))];
    const r = await runGraph(tf, s, hooked.length ? hooked : null);
    outputShapes = r.outputs.map((t) => [...t.shape]);
    try {
      for (const h of hooks) h.emit(h.nodes.flatMap((n) => r.nodes.get(n) ?? []));
    } finally {
      disposeAll(r);
    }
  }
  return { outputShapes, stepMs: (performance.now() - start) / steps };
}

let nextNodeHook = 1;

/** forward: the node's outputs; forwardPre: the outputs of the nodes it reads. */
export function attachGraphHook(hooks: HookManager, s: GraphSession, p: HookAttachParams): string {
  if (p.kind === 'backward') graphUnsupported('A backward hook', s);
  const node = s.index.nodeOf.get(p.path);
  if (!node) {
    fail(
      'unknownPath',
      `No op node at path '${p.path}' in ${s.name}: hooks go on op nodes, not name scopes`,
      {
        layer: p.path,
        candidates: [...s.index.nodeOf.keys()].slice(0, 50),
      },
    );
  }
  const nodes = p.kind === 'forwardPre' ? (s.index.inputsOf.get(p.path) ?? []) : [node];
  return hooks.attachExternal(s, p, (emit) => {
    const key = `${p.path}#${nextNodeHook++}`;
    s.nodeHooks.set(key, { nodes, emit });
    return () => void s.nodeHooks.delete(key);
  });
}

export async function graphInspect(
  tf: Tf,
  s: GraphSession,
  p: TensorInspectParams,
): Promise<TensorInspectResult> {
  const t = p.target;
  const bins = p.histogramBins;
  if (t.kind === 'parameter' || t.kind === 'buffer') {
    const w = s.index.weightByName.get(t.name);
    if (!w || w.isBuffer !== (t.kind === 'buffer')) {
      fail('unknownPath', `No ${t.kind} named '${t.name}'`, {
        candidates: s.index.weights
          .filter((e) => e.isBuffer === (t.kind === 'buffer'))
          .map((e) => e.name)
          .slice(0, 50),
      });
    }
    if (p.stats) requireWeights(s, 'Reading weight values');
    const v = s.model.weights[w.graphName][0];
    return {
      name: w.name,
      tensor: tensorInfo(v.shape, v.dtype, s.device, v, false),
      ...(p.stats ? tensorStats(v, bins) : {}),
    };
  }
  if (t.kind === 'input') {
    const spec = s.inputs[t.index];
    if (!spec)
      fail('unknownPath', `The model has ${s.inputs.length} input(s); no input ${t.index}`);
    const xs = makeGraphInputs(tf, s);
    try {
      const x = xs[s.model.inputs[t.index].name];
      return {
        name: `input:${t.index}`,
        tensor: tensorInfo(x.shape, x.dtype, s.device, x),
        ...(p.stats ? tensorStats(x, bins) : {}),
      };
    } finally {
      tf.dispose(Object.values(xs));
    }
  }
  requireWeights(s, 'Reading outputs');
  const out = t as { kind: 'output'; path: string; index?: number };
  const node = out.path === '' ? null : s.index.nodeOf.get(out.path);
  if (out.path !== '' && !node) {
    fail('unknownPath', `No op node at path '${out.path}' (scopes have no output of their own)`, {
      layer: out.path,
      candidates: [...s.index.nodeOf.keys()].slice(0, 50),
    });
  }
  const r = await runGraph(tf, s, node ? [node] : null);
  try {
    const outs = node ? (r.nodes.get(node) ?? []) : r.outputs;
    const o = outs[out.index ?? 0];
    if (!o)
      return fail('unknownPath', `Node '${out.path}' produced no output ${out.index ?? 0}`, {
        layer: out.path,
      });
    return {
      name: `output:${out.path}`,
      tensor: tensorInfo(o.shape, o.dtype, s.device, o),
      ...(p.stats ? tensorStats(o, bins) : {}),
    };
  } finally {
    disposeAll(r);
  }
}

export async function graphProfile(
  tf: Tf,
  s: GraphSession,
  params: ProfileParams,
  steps: number,
  warmup: number,
): Promise<ProfileResult> {
  if ((params.mode ?? 'forward') === 'train') graphUnsupported('Profiling a training step', s);
  requireWeights(s, 'Profiling');
  const step = async (): Promise<void> => disposeAll(await runGraph(tf, s, null));
  for (let i = 0; i < warmup; i++) await step();
  const trace: TraceEvent[] = [];
  const t0 = performance.now();
  const us = (ms: number): number => Math.round((ms - t0) * 1000 * 1000) / 1000;
  const untrace = params.traceFile ? traceKernels(tf, trace, us) : null;
  const ops = new OpTotals();
  const times: number[] = [];
  try {
    for (let i = 0; i < steps; i++) {
      const start = performance.now();
      const info = await tf.profile(step);
      const end = performance.now();
      times.push(end - start);
      if (params.traceFile)
        trace.push({
          name: `step ${i}`,
          cat: 'step',
          ph: 'X',
          ts: us(start),
          dur: (end - start) * 1000,
          pid: TRACE_PID,
          tid: TRACE_TID,
          args: { mode: 'forward' },
        });
      ops.add(info.kernels as unknown as KernelRecord[], () => 'forward');
    }
  } finally {
    untrace?.();
  }
  const warnings = [
    `${GRAPH_FORMAT}: tfjs runs its nodes without a per-node callback, so times are per op ` +
      'kind and for the whole graph.',
  ];
  let traceFile: string | undefined;
  if (params.traceFile) {
    const err = writeTrace(params.traceFile, `Model Lens tfjs: ${s.name}`, tf.getBackend(), trace);
    if (err) warnings.push(`Could not write the trace to ${params.traceFile}: ${err}`);
    else traceFile = params.traceFile;
  }
  const total = times.reduce((a, b) => a + b, 0);
  return {
    ops: ops.list(),
    modules: [{ path: '', type: s.type, calls: steps, forwardMs: total }],
    stepMs: median(times),
    steps,
    method: 'tf.profile',
    traceFile,
    warnings,
  };
}
