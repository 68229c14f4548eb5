// torchinfo-style summary from one inference pass: each layer's `call` is observed to record its
// output, then params/MACs/bytes are computed by torchinfo's rules.
import type * as tfTypes from '@tensorflow/tfjs';
import type { InputSpec, SummaryRow, SummaryTotals, TensorInfo } from '../../protocol/types';
import type { Tf } from './backend';
import { addCallListener, tensorsOf } from './callInterceptor';
import { classNameOf } from './layerTree';
import { makeInputs, predict } from './modelSession';
import type { ModelSession } from './modelSession';
import { elementSize, numelOf, tensorInfo } from './tensorFacts';

type Layer = tfTypes.layers.Layer;

interface Seen {
  calls: number;
  shapes: number[][];
  /** First input's shape in the last call (recurrent layers count over its time axis). */
  inShape?: number[];
  info?: TensorInfo;
  /** Output bytes summed over every call (torchinfo counts each call). */
  bytes: number;
}

/** Observes every layer (not the root, whose output is predict's) during `fn`. */
export function captureOutputs(
  s: ModelSession,
  fn: () => tfTypes.Tensor[],
): { seen: Map<Layer, Seen>; out: tfTypes.Tensor[] } {
  const seen = new Map<Layer, Seen>();
  const removers: (() => void)[] = [];
  const root = s.model as unknown as Layer;
  for (const layer of new Set(s.index.layerAt.values())) {
    if (layer === root) continue;
    removers.push(
      addCallListener(layer, {
        after: (l, inputs, _kw, output) => {
          const ts = tensorsOf(output);
          const cur = seen.get(l) ?? { calls: 0, shapes: [], bytes: 0 };
          cur.calls++;
          cur.shapes = ts.map((t) => [...t.shape]);
          const first = tensorsOf(inputs)[0];
          if (first) cur.inShape = [...first.shape];
          if (ts[0]) cur.info = tensorInfo(ts[0].shape, ts[0].dtype, s.device, ts[0]);
          cur.bytes += ts.reduce((a, t) => a + t.size * elementSize(t.dtype), 0);
          seen.set(l, cur);
        },
      }),
    );
  }
  try {
    return { seen, out: fn() };
  } finally {
    for (const r of removers) r();
  }
}

function channelAxis(layer: Layer, rank: number): number {
  const fmt = (layer as unknown as { dataFormat?: string }).dataFormat;
  return fmt === 'channelsFirst' ? 1 : rank - 1;
}

const RECURRENT = /^(LSTM|GRU|SimpleRNN|RNN)$/;

/**
 * torchinfo: Linear = params × output rows; Conv = params × batch × output positions;
 * nn.LSTM/GRU/RNN = params × batch × time steps (its rule for `weight_*`/`bias_*` parameters
 * takes the first two dims of the [B, T, H] output, which are those of the [B, T, F] input);
 * any other layer with parameters (BatchNormalization, Embedding...) = params × batch.
 */
export function macsOf(
  layer: Layer,
  ownParams: number,
  outShape: number[] | undefined,
  inShape?: number[],
): number {
  if (!outShape || ownParams === 0) return 0;
  const type = classNameOf(layer);
  if (RECURRENT.test(type)) {
    return inShape && inShape.length >= 2 ? ownParams * inShape[0] * inShape[1] : 0;
  }
  if (!/Dense|Conv/.test(type)) return ownParams * (outShape[0] ?? 1);
  const axis = /Conv/.test(type) ? channelAxis(layer, outShape.length) : outShape.length - 1;
  const positions = outShape.reduce((a, d, i) => (i === axis ? a : a * d), 1);
  return ownParams * positions;
}

/** Output of a container from the captured outputs of the layers that make its outputs. */
function containerOutput(
  layer: Layer,
  seen: Map<Layer, Seen>,
): { shapes: number[][]; info?: TensorInfo } | undefined {
  const outs = (layer as unknown as { outputs?: tfTypes.SymbolicTensor[] }).outputs;
  if (!Array.isArray(outs) || outs.length === 0) return undefined;
  const shapes: number[][] = [];
  let info: TensorInfo | undefined;
  for (const t of outs) {
    const src = seen.get(t.sourceLayer as Layer) ?? containerSeen(t.sourceLayer as Layer, seen);
    const shape = src?.shapes[t.tensorIndex ?? 0];
    if (!shape) return undefined;
    shapes.push(shape);
    info ??= src?.info;
  }
  return { shapes, info };
}

function containerSeen(layer: Layer, seen: Map<Layer, Seen>): Seen | undefined {
  const r = containerOutput(layer, seen);
  return r ? { calls: 1, shapes: r.shapes, info: r.info, bytes: 0 } : undefined;
}

/**
 * tfjs's countParams() and model.summary() include the buffers (BatchNorm moving statistics);
 * ours keep PyTorch's split. Both figures are given so neither looks wrong.
 */
function frameworkCounts(s: ModelSession, totals: SummaryTotals): SummaryTotals['frameworkCounts'] {
  const buffers = s.index.weights.filter((w) => w.isBuffer);
  if (!buffers.length) return undefined;
  const count = buffers.reduce((a, w) => a + numelOf(w.variable.shape), 0);
  const allBatchNorm = buffers.every(
    (w) => classNameOf(s.index.layerAt.get(w.module)!) === 'BatchNormalization',
  );
  const what = allBatchNorm ? 'moving statistics' : 'non-trainable weights listed here as buffers';
  const n = (x: number): string => x.toLocaleString('en-US');
  return {
    params: totals.params + count,
    nonTrainableParams: totals.nonTrainableParams + count,
    note: `tfjs counts ${n(totals.params + count)} including ${n(count)} ${what}`,
  };
}

export function runSummary(
  tf: Tf,
  s: ModelSession,
  specs: InputSpec[],
): { rows: SummaryRow[]; totals: SummaryTotals } {
  const root = s.model as unknown as Layer;
  let seen = new Map<Layer, Seen>();
  let out: { shape: number[]; dtype: string }[] = [];
  // Shapes and facts are kept; the tensors themselves are freed by tidy.
  tf.tidy(() => {
    const r = captureOutputs(s, () => predict(s, makeInputs(tf, s, specs)));
    seen = r.seen;
    out = r.out.map((t) => ({ shape: [...t.shape], dtype: t.dtype }));
  });
  const weightBytes = (names: Set<string>, buffers: boolean): number =>
    s.index.weights
      .filter((w) => w.isBuffer === buffers && names.has(w.module))
      .reduce((a, w) => a + numelOf(w.variable.shape) * elementSize(w.variable.dtype), 0);
  const below = (path: string): Set<string> =>
    new Set(
      s.index.modules
        .filter((m) => path === '' || m.path === path || m.path.startsWith(path + '.'))
        .map((m) => m.path),
    );

  const ownTrainable = (path: string): number =>
    s.index.weights
      .filter((w) => w.module === path && !w.isBuffer && w.requiresGrad)
      .reduce((acc, w) => acc + numelOf(w.variable.shape), 0);
  const macsByPath = new Map<string, number>();
  for (const node of s.index.modules) {
    if (!node.isLeaf) continue;
    const layer = s.index.layerAt.get(node.path)!;
    const cap = seen.get(layer);
    // torchinfo lists every call of a shared layer, so its MACs count once per call.
    const perCall = macsOf(layer, node.ownParams, cap?.shapes[0], cap?.inShape);
    macsByPath.set(node.path, perCall * (cap?.calls ?? 0));
  }
  const rows: SummaryRow[] = s.index.modules.map((node) => {
    const layer = s.index.layerAt.get(node.path)!;
    const isRoot = layer === root;
    const cap = seen.get(layer);
    const subtree = node.isLeaf ? new Set([node.path]) : below(node.path);
    // tfjs runs a model added with Sequential.add(model) through its inner graph, so the
    // container's own call never runs: its output is that of its output layers.
    const inner = !isRoot && !cap && !node.isLeaf ? containerOutput(layer, seen) : undefined;
    const shapes = isRoot ? out.map((o) => o.shape) : (cap?.shapes ?? inner?.shapes);
    const ran = isRoot || !!cap || !!inner;
    const row: SummaryRow = {
      path: node.path,
      type: node.type,
      depth: node.depth,
      isLeaf: node.isLeaf,
      outputShape: shapes ? (shapes.length === 1 ? shapes[0] : shapes) : null,
      params: node.isLeaf ? node.ownParams : node.totalParams,
      trainableParams: node.isLeaf ? ownTrainable(node.path) : node.trainableParams,
      macs: node.isLeaf
        ? (macsByPath.get(node.path) ?? 0)
        : [...subtree].reduce((a, p) => a + (macsByPath.get(p) ?? 0), 0),
      paramBytes: weightBytes(subtree, false),
      aliases: node.aliases,
      ran,
    };
    row.ownParams = node.ownParams;
    row.totalParams = node.totalParams;
    if (isRoot && out[0]) row.output = tensorInfo(out[0].shape, out[0].dtype, s.device);
    else if (cap?.info) row.output = cap.info;
    else if (inner?.info) row.output = inner.info;
    if (!ran) row.note = 'not called in the forward pass';
    if (cap) row.calls = cap.calls;
    else if (ran) row.calls = 1;
    return row;
  });
  const rootNode = s.index.modules[0];
  const all = new Set(s.index.modules.map((m) => m.path));
  const paramBytes = weightBytes(all, false);
  const bufferBytes = weightBytes(all, true);
  const inputBytes = specs.reduce((a, sp) => a + numelOf(sp.shape) * elementSize(sp.dtype), 0);
  // torchinfo's forward/backward size: outputs of the leaves that have parameters, ×2.
  const ownParams = new Map(s.index.modules.map((m) => [m.path, m.ownParams]));
  let leafOutputBytes = 0;
  for (const layer of s.index.leaves) {
    if ((ownParams.get(s.index.pathOf.get(layer) ?? '') ?? 0) > 0)
      leafOutputBytes += seen.get(layer)?.bytes ?? 0;
  }
  const forwardBackwardBytes = 2 * leafOutputBytes;
  const totals: SummaryTotals = {
    params: rootNode.totalParams,
    trainableParams: rootNode.trainableParams,
    nonTrainableParams: rootNode.totalParams - rootNode.trainableParams,
    macs: [...macsByPath.values()].reduce((a, b) => a + b, 0),
    paramBytes,
    bufferBytes,
    inputBytes,
    forwardBackwardBytes,
    totalBytes: inputBytes + forwardBackwardBytes + paramBytes,
  };
  const counts = frameworkCounts(s, totals);
  if (counts) totals.frameworkCounts = counts;
  return { rows, totals };
}
