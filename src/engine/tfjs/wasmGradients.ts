// The wasm backend ships no Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropFilter or
// DepthwiseConv2dNativeBackpropInput, so no conv model can train on it. Each is rewritten here as
// a forward convolution (with strides and dilations swapped, or a flipped filter over a
// zero-stuffed gradient) plus transposes, pads and slices — kernels wasm has. The wasm kernel
// functions are called directly so the rewrite is one kernel to the tape and to tf.profile.
import type * as tfTypes from '@tensorflow/tfjs';

type Tf = typeof tfTypes;
interface Info {
  dataId: object;
  shape: number[];
  dtype: string;
}
interface Backend {
  disposeData(dataId: object, force?: boolean): boolean;
}
type Attrs = Record<string, unknown>;

export const WASM_GRADIENT_KERNELS = [
  'Conv2DBackpropFilter',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
] as const;

/** Runs wasm kernels and frees every intermediate except the one returned. */
class KernelScope {
  private readonly made: Info[] = [];
  constructor(
    private readonly tf: Tf,
    private readonly backend: Backend,
  ) {}

  run(name: string, inputs: Record<string, Info>, attrs: Attrs): Info {
    const kernel = this.tf.getKernel(name, 'wasm');
    if (!kernel) throw new Error(`wasm kernel '${name}' is missing`);
    const out = kernel.kernelFunc({
      inputs,
      attrs,
      backend: this.backend,
    } as never) as unknown as Info;
    this.made.push(out);
    return out;
  }

  transpose(x: Info, perm: number[]): Info {
    return this.run('Transpose', { x }, { perm });
  }

  reshape(x: Info, shape: number[]): Info {
    return this.run('Reshape', { x }, { shape });
  }

  /** Pads (positive) or crops (negative) spatial dims 1 and 2 of an NHWC tensor. */
  fitSpatial(x: Info, top: number, bottom: number, left: number, right: number): Info {
    let cur = x;
    const cropTop = Math.max(0, -top);
    const cropBottom = Math.max(0, -bottom);
    const cropLeft = Math.max(0, -left);
    const cropRight = Math.max(0, -right);
    if (cropTop || cropBottom || cropLeft || cropRight) {
      const [b, h, w, c] = cur.shape;
      cur = this.run(
        'Slice',
        { x: cur },
        {
          begin: [0, cropTop, cropLeft, 0],
          size: [b, h - cropTop - cropBottom, w - cropLeft - cropRight, c],
        },
      );
    }
    const padTop = Math.max(0, top);
    const padBottom = Math.max(0, bottom);
    const padLeft = Math.max(0, left);
    const padRight = Math.max(0, right);
    if (padTop || padBottom || padLeft || padRight) {
      cur = this.run(
        'PadV2',
        { x: cur },
        {
          paddings: [
            [0, 0],
            [padTop, padBottom],
            [padLeft, padRight],
            [0, 0],
          ],
          constantValue: 0,
        },
      );
    }
    return cur;
  }

  /** Result must not be freed; everything else made in this scope is. */
  finish(result: Info): Info {
    for (const info of this.made) {
      if (info !== result) this.backend.disposeData(info.dataId);
    }
    return result;
  }

  fail(err: unknown): never {
    for (const info of this.made) this.backend.disposeData(info.dataId);
    throw err;
  }
}

function pair(v: unknown, fallback = 1): [number, number] {
  if (v == null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  const a = v as number[];
  return [a[0], a[1]];
}

/** dW = conv(x^T, dy^T) with the forward's strides as dilations and its dilations as strides. */
function conv2DBackpropFilter(
  tf: Tf,
  args: { inputs: Record<string, Info>; backend: Backend; attrs: Attrs },
): Info {
  const { inputs, backend, attrs } = args;
  const filterShape = attrs.filterShape as number[];
  const dataFormat = (attrs.dataFormat as 'NHWC' | 'NCHW' | undefined) ?? 'NHWC';
  const strides = pair(attrs.strides);
  const dilations = pair(attrs.dilations);
  if ((strides[0] > 1 || strides[1] > 1) && (dilations[0] > 1 || dilations[1] > 1)) {
    throw new Error('Conv2DBackpropFilter (wasm): strides and dilations cannot both exceed 1');
  }
  const s = new KernelScope(tf, backend);
  try {
    let x = inputs.x;
    let dy = inputs.dy;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filterShape as [number, number, number, number],
      strides,
      dilations,
      attrs.pad as 'valid',
      attrs.dimRoundingMode as 'floor' | undefined,
      false,
      tf.backend_util.convertConv2DDataFormat(dataFormat),
    );
    if (dataFormat === 'NCHW') {
      x = s.transpose(x, [0, 2, 3, 1]);
      dy = s.transpose(dy, [0, 2, 3, 1]);
    }
    const [kh, kw] = filterShape;
    const [, h, w] = x.shape;
    const [, oh, ow] = dy.shape;
    const needH = (kh - 1) * dilations[0] + (oh - 1) * strides[0] + 1;
    const needW = (kw - 1) * dilations[1] + (ow - 1) * strides[1] + 1;
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    const xp = s.fitSpatial(x, top, needH - h - top, left, needW - w - left);
    const xt = s.transpose(xp, [3, 1, 2, 0]); // [Ci, H, W, B]: batch becomes the contraction
    const dyt = s.transpose(dy, [1, 2, 0, 3]); // [OH, OW, B, Co]
    const out = s.run(
      'Conv2D',
      { x: xt, filter: dyt },
      { strides: dilations, dilations: strides, pad: 'valid', dataFormat: 'NHWC' },
    ); // [Ci, KH, KW, Co]
    return s.finish(s.transpose(out, [1, 2, 0, 3]));
  } catch (err) {
    return s.fail(err);
  }
}

/** Depthwise dW: every (batch, channel) pair becomes a depthwise channel, then batch is summed. */
function depthwiseBackpropFilter(
  tf: Tf,
  args: { inputs: Record<string, Info>; backend: Backend; attrs: Attrs },
): Info {
  const { inputs, backend, attrs } = args;
  const filterShape = attrs.filterShape as number[];
  const strides = pair(attrs.strides);
  const dilations = pair(attrs.dilations);
  const s = new KernelScope(tf, backend);
  try {
    const { x, dy } = inputs;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filterShape as [number, number, number, number],
      strides,
      dilations,
      attrs.pad as 'valid',
      attrs.dimRoundingMode as 'floor' | undefined,
      true,
    );
    const [kh, kw, c, m] = filterShape;
    const [b, h, w] = x.shape;
    const [, oh, ow] = dy.shape;
    const needH = (kh - 1) * dilations[0] + (oh - 1) * strides[0] + 1;
    const needW = (kw - 1) * dilations[1] + (ow - 1) * strides[1] + 1;
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    const xp = s.fitSpatial(x, top, needH - h - top, left, needW - w - left);
    const x2 = s.reshape(s.transpose(xp, [1, 2, 0, 3]), [1, needH, needW, b * c]);
    const f5 = s.transpose(s.reshape(dy, [b, oh, ow, c, m]), [1, 2, 0, 3, 4]);
    const f = s.reshape(f5, [oh, ow, b * c, m]);
    const out = s.run(
      'DepthwiseConv2dNative',
      { x: x2, filter: f },
      { strides: dilations, dilations: strides, pad: 'valid' },
    ); // [1, KH, KW, B*C*M]
    const per = s.reshape(out, [kh, kw, b, c, m]);
    const summed =
      b === 1
        ? s.reshape(per, [kh, kw, c, m])
        : s.run('Sum', { x: per }, { axis: [2], keepDims: false });
    return s.finish(summed);
  } catch (err) {
    return s.fail(err);
  }
}

/** Depthwise dx: zero-stuff dy by the stride, then a stride-1 depthwise conv with the flipped filter. */
function depthwiseBackpropInput(
  tf: Tf,
  args: { inputs: Record<string, Info>; backend: Backend; attrs: Attrs },
): Info {
  const { inputs, backend, attrs } = args;
  const inputShape = attrs.inputShape as number[];
  const strides = pair(attrs.strides);
  const dilations = pair(attrs.dilations);
  const s = new KernelScope(tf, backend);
  try {
    const { dy, filter } = inputs;
    const info = tf.backend_util.computeConv2DInfo(
      inputShape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      strides,
      dilations,
      attrs.pad as 'valid',
      attrs.dimRoundingMode as 'floor' | undefined,
      true,
    );
    const [kh, kw, c, m] = filter.shape;
    const [b, h, w] = inputShape;
    const [, oh, ow, k] = dy.shape;
    let stuffed = dy;
    if (strides[0] > 1 || strides[1] > 1) {
      const six = s.reshape(dy, [b, oh, 1, ow, 1, k]);
      const padded = s.run(
        'PadV2',
        { x: six },
        {
          paddings: [
            [0, 0],
            [0, 0],
            [0, strides[0] - 1],
            [0, 0],
            [0, strides[1] - 1],
            [0, 0],
          ],
          constantValue: 0,
        },
      );
      const flat = s.reshape(padded, [b, oh * strides[0], ow * strides[1], k]);
      stuffed = s.run(
        'Slice',
        { x: flat },
        { begin: [0, 0, 0, 0], size: [b, (oh - 1) * strides[0] + 1, (ow - 1) * strides[1] + 1, k] },
      );
    }
    const padTop = (kh - 1) * dilations[0] - info.padInfo.top;
    const padLeft = (kw - 1) * dilations[1] - info.padInfo.left;
    const rows = stuffed.shape[1];
    const cols = stuffed.shape[2];
    const padBottom = h + (kh - 1) * dilations[0] - rows - padTop;
    const padRight = w + (kw - 1) * dilations[1] - cols - padLeft;
    const dyp = s.fitSpatial(stuffed, padTop, padBottom, padLeft, padRight);
    const flipped = s.run('Reverse', { x: filter }, { dims: [0, 1] });
    const f = s.reshape(flipped, [kh, kw, c * m, 1]);
    const out = s.run(
      'DepthwiseConv2dNative',
      { x: dyp, filter: f },
      { strides: [1, 1], dilations, pad: 'valid' },
    ); // [B, H, W, C*M]
    const summed =
      m === 1
        ? out
        : s.run('Sum', { x: s.reshape(out, [b, h, w, c, m]) }, { axis: [4], keepDims: false });
    return s.finish(summed);
  } catch (err) {
    return s.fail(err);
  }
}

/** Registers the missing gradient kernels on the wasm backend (idempotent). */
export function registerWasmGradients(tf: Tf): string[] {
  const impls: Record<(typeof WASM_GRADIENT_KERNELS)[number], typeof conv2DBackpropFilter> = {
    Conv2DBackpropFilter: conv2DBackpropFilter,
    DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter,
    DepthwiseConv2dNativeBackpropInput: depthwiseBackpropInput,
  };
  const added: string[] = [];
  for (const name of WASM_GRADIENT_KERNELS) {
    if (tf.getKernel(name, 'wasm')) continue;
    tf.registerKernel({
      kernelName: name,
      backendName: 'wasm',
      kernelFunc: ((args: never) => impls[name](tf, args)) as never,
    });
    added.push(name);
  }
  return added;
}
