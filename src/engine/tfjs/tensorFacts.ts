// TensorInfo in PyTorch's words for TF.js tensors: TF.js has no strides or views, every tensor
// is a dense row-major buffer, so strides are synthetic and contiguity is always true.
import type * as tfTypes from '@tensorflow/tfjs';
import { DEFAULT_HISTOGRAM_BINS } from '../../protocol/defaults';
import type { Histogram, TensorInfo, TensorStats } from '../../protocol/types';

export const CONTIGUOUS_REASON =
  'TF.js tensors are always contiguous: each is one dense row-major buffer (no views or strides), so these strides are synthetic.';

const ELEMENT_SIZE: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  string: 0,
};

export function elementSize(dtype: string): number {
  return ELEMENT_SIZE[dtype] ?? 4;
}

export function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = acc;
    acc *= shape[i];
  }
  return strides;
}

export function numelOf(shape: readonly (number | null)[]): number {
  return shape.reduce<number>((a, b) => a * (b ?? 1), 1);
}

const storageIds = new WeakMap<object, string>();
let nextStorage = 1;

/** Same dataId ⇒ same buffer (tfjs shares it between a tensor and its reshapes/clones). */
function storageId(t: tfTypes.Tensor): string | undefined {
  const id = (t as unknown as { dataId?: object }).dataId;
  if (!id) return undefined;
  let s = storageIds.get(id);
  if (!s) {
    s = `tfjs:${nextStorage++}`;
    storageIds.set(id, s);
  }
  return s;
}

export function tensorInfo(
  shape: readonly number[],
  dtype: string,
  device: string,
  tensor?: tfTypes.Tensor,
  requiresGrad?: boolean,
): TensorInfo {
  const numel = numelOf(shape);
  const es = elementSize(dtype);
  const info: TensorInfo = {
    shape: [...shape],
    dtype,
    device,
    stride: rowMajorStrides(shape),
    storageOffset: 0,
    contiguous: true,
    contiguity: { contiguous: true, breaksAt: null, reason: CONTIGUOUS_REASON },
    numel,
    bytes: numel * es,
    elementSize: es,
    strideSynthetic: true,
    view: { wouldFail: false, copyBytes: 0 },
  };
  if (tensor) {
    const id = storageId(tensor);
    if (id) info.storage = { id, bytes: numel * es, sharedWith: [] };
  }
  if (requiresGrad !== undefined) info.requiresGrad = requiresGrad;
  return info;
}

export function statsOf(
  values: ArrayLike<number>,
  bins = DEFAULT_HISTOGRAM_BINS,
): { stats: TensorStats; histogram?: Histogram } {
  let n = 0;
  let sum = 0;
  let sumSq = 0;
  let min = Infinity;
  let max = -Infinity;
  let nan = 0;
  let inf = 0;
  let zero = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) nan++;
    else if (!Number.isFinite(v)) inf++;
    else {
      n++;
      sum += v;
      sumSq += v * v;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v === 0) zero++;
    }
  }
  const mean = n ? sum / n : null;
  const variance =
    n > 1 && mean !== null ? Math.max(0, (sumSq - n * mean * mean) / (n - 1)) : n === 1 ? 0 : null;
  const stats: TensorStats = {
    numel: values.length,
    mean,
    std: variance === null ? null : Math.sqrt(variance),
    min: n ? min : null,
    max: n ? max : null,
    nanCount: nan,
    infCount: inf,
    zeroCount: zero,
  };
  if (!n || bins <= 0) return { stats };
  const counts = new Array<number>(bins).fill(0);
  const width = (max - min) / bins;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    const b = width > 0 ? Math.min(bins - 1, Math.floor((v - min) / width)) : 0;
    counts[b]++;
  }
  return { stats, histogram: { min, max, counts } };
}

export function tensorStats(
  t: tfTypes.Tensor,
  bins = DEFAULT_HISTOGRAM_BINS,
): { stats: TensorStats; histogram?: Histogram } {
  if (t.dtype === 'string') {
    return {
      stats: {
        numel: t.size,
        mean: null,
        std: null,
        min: null,
        max: null,
        nanCount: 0,
        infCount: 0,
      },
    };
  }
  return statsOf(t.dataSync() as ArrayLike<number>, bins);
}
