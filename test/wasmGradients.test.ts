// The conv gradient kernels registered for wasm must agree with the cpu backend's own
// implementations (an independent reference) across strides, paddings, dilations and layouts.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/engine/tfjs/backend';
import { WASM_GRADIENT_KERNELS } from '../src/engine/tfjs/wasmGradients';

const REL_TOL = 1e-5;

/** Deterministic values in [-1, 1) so both backends see identical inputs. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

async function onBackend(name: string, fn: () => Float32Array): Promise<Float32Array> {
  assert.equal(await tf.setBackend(name), true, `setBackend(${name})`);
  await tf.ready();
  return tf.tidy(fn);
}

function relErr(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length, 'result sizes differ');
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    diff += (got[i] - want[i]) ** 2;
    norm += want[i] ** 2;
  }
  assert.ok(norm > 0, 'reference gradient is all zeros: the case tests nothing');
  return Math.sqrt(diff / norm);
}

/** Inputs are filled from fixed seeds in key order, so a reference can rebuild them. */
function makeInputs(inputs: Record<string, number[]>): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  let seed = 7;
  for (const [k, shape] of Object.entries(inputs)) out[k] = values(size(shape), seed++);
  return out;
}

function runOn(
  kernel: string,
  inputs: Record<string, number[]>,
  data: Record<string, Float32Array>,
  attrs: Record<string, unknown>,
) {
  return (): Float32Array => {
    const ts: Record<string, tf.Tensor> = {};
    for (const [k, shape] of Object.entries(inputs)) ts[k] = tf.tensor(data[k], shape);
    const out = tf.engine().runKernel(kernel, ts as never, attrs as never) as tf.Tensor;
    return out.dataSync() as Float32Array;
  };
}

async function compareKernel(
  kernel: string,
  inputs: Record<string, number[]>,
  attrs: Record<string, unknown>,
): Promise<number> {
  const data = makeInputs(inputs);
  const want = await onBackend('cpu', runOn(kernel, inputs, data, attrs));
  const got = await onBackend('wasm', runOn(kernel, inputs, data, attrs));
  return relErr(got, want);
}

/**
 * The cpu depthwise gradient kernels ignore dilations (tfjs rejects dilated depthwise gradients
 * before they get there), so for dilation > 1 the reference is built from an identity instead:
 * a dilated filter equals a dense filter with zeros inserted, run with dilation 1 on cpu.
 */
function expandFilter(
  f: Float32Array,
  shape: number[],
  d: [number, number],
): { values: Float32Array; shape: number[] } {
  const [kh, kw, c, m] = shape;
  const bh = (kh - 1) * d[0] + 1;
  const bw = (kw - 1) * d[1] + 1;
  const big = new Float32Array(bh * bw * c * m);
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++)
      for (let q = 0; q < c * m; q++)
        big[(i * d[0] * bw + j * d[1]) * c * m + q] = f[(i * kw + j) * c * m + q];
  return { values: big, shape: [bh, bw, c, m] };
}

async function compareDilatedDepthwise(
  kernel: 'DepthwiseConv2dNativeBackpropFilter' | 'DepthwiseConv2dNativeBackpropInput',
  inputs: Record<string, number[]>,
  attrs: Record<string, unknown> & { dilations: [number, number] },
): Promise<number> {
  const data = makeInputs(inputs);
  const got = await onBackend('wasm', runOn(kernel, inputs, data, attrs));
  const d = attrs.dilations;
  let want: Float32Array;
  if (kernel === 'DepthwiseConv2dNativeBackpropInput') {
    const big = expandFilter(data.filter, inputs.filter, d);
    want = await onBackend(
      'cpu',
      runOn(
        kernel,
        { dy: inputs.dy, filter: big.shape },
        { dy: data.dy, filter: big.values },
        { ...attrs, dilations: [1, 1] },
      ),
    );
  } else {
    const [kh, kw, c, m] = attrs.filterShape as number[];
    const bigShape = [(kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1, c, m];
    const bigGrad = await onBackend(
      'cpu',
      runOn(kernel, inputs, data, { ...attrs, dilations: [1, 1], filterShape: bigShape }),
    );
    want = new Float32Array(kh * kw * c * m);
    for (let i = 0; i < kh; i++)
      for (let j = 0; j < kw; j++)
        for (let q = 0; q < c * m; q++)
          want[(i * kw + j) * c * m + q] = bigGrad[(i * d[0] * bigShape[1] + j * d[1]) * c * m + q];
  }
  return relErr(got, want);
}

function outShape(
  x: number[],
  f: number[],
  strides: [number, number],
  dilations: [number, number],
  pad: unknown,
  depthwise: boolean,
  dataFormat: 'channelsLast' | 'channelsFirst' = 'channelsLast',
): number[] {
  return tf.backend_util.computeConv2DInfo(
    x as [number, number, number, number],
    f as [number, number, number, number],
    strides,
    dilations,
    pad as 'same',
    undefined,
    depthwise,
    dataFormat,
  ).outShape;
}

const PADS: unknown[] = [
  'same',
  'valid',
  [
    [0, 0],
    [1, 2],
    [0, 1],
    [0, 0],
  ],
];

let choice: Awaited<ReturnType<typeof selectBackend>>;

before(async () => {
  choice = await selectBackend('wasm');
});

test('wasm backend starts and the missing gradient kernels get registered', () => {
  assert.equal(choice.backend, 'wasm', choice.notes.join('; '));
  for (const k of WASM_GRADIENT_KERNELS) assert.ok(tf.getKernel(k, 'wasm'), `${k} registered`);
});

test('Conv2DBackpropFilter matches cpu (strides, paddings, data formats)', async () => {
  for (const dataFormat of ['NHWC', 'NCHW'] as const) {
    for (const strides of [
      [1, 1],
      [2, 2],
      [2, 1],
    ] as [number, number][]) {
      for (const pad of PADS) {
        if (dataFormat === 'NCHW' && Array.isArray(pad)) continue;
        const xNhwc = [2, 7, 8, 3];
        const filterShape = [3, 3, 3, 4];
        const dyNhwc = outShape(xNhwc, filterShape, strides, [1, 1], pad, false);
        const toFmt = (s: number[]): number[] =>
          dataFormat === 'NCHW' ? [s[0], s[3], s[1], s[2]] : s;
        const err = await compareKernel(
          'Conv2DBackpropFilter',
          { x: toFmt(xNhwc), dy: toFmt(dyNhwc) },
          { strides, pad, dataFormat, filterShape },
        );
        assert.ok(
          err < REL_TOL,
          `${dataFormat} strides=${strides} pad=${JSON.stringify(pad)}: rel err ${err}`,
        );
      }
    }
  }
});

test('DepthwiseConv2dNativeBackpropFilter and BackpropInput match cpu (strides, dilations, paddings, multipliers)', async () => {
  const cases: { strides: [number, number]; dilations: [number, number] }[] = [
    { strides: [1, 1], dilations: [1, 1] },
    { strides: [2, 2], dilations: [1, 1] },
    { strides: [1, 2], dilations: [1, 1] },
    { strides: [1, 1], dilations: [2, 2] },
    { strides: [1, 1], dilations: [2, 1] },
  ];
  for (const { strides, dilations } of cases) {
    for (const pad of PADS) {
      for (const mult of [1, 2]) {
        const x = [2, 9, 8, 3];
        const filterShape = [3, 3, 3, mult];
        const dy = outShape(x, filterShape, strides, dilations, pad, true);
        const label = `strides=${strides} dilations=${dilations} pad=${JSON.stringify(pad)} mult=${mult}`;
        const dilated = dilations[0] > 1 || dilations[1] > 1;
        const compare = dilated ? compareDilatedDepthwise : compareKernel;
        const errF = await compare(
          'DepthwiseConv2dNativeBackpropFilter',
          { x, dy },
          { strides, dilations, pad, filterShape },
        );
        assert.ok(errF < REL_TOL, `filter grad ${label}: rel err ${errF}`);
        const errI = await compare(
          'DepthwiseConv2dNativeBackpropInput',
          { dy, filter: filterShape },
          { strides, dilations, pad, inputShape: x },
        );
        assert.ok(errI < REL_TOL, `input grad ${label}: rel err ${errI}`);
      }
    }
  }
});

test('the rewritten kernels free every intermediate buffer (only the result stays)', async () => {
  assert.equal(await tf.setBackend('wasm'), true);
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const cases: [string, Record<string, number[]>, Record<string, unknown>][] = [
    [
      'Conv2DBackpropFilter',
      { x: [2, 7, 8, 3], dy: [2, 4, 4, 4] },
      { strides: [2, 2], pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 3, 4] },
    ],
    [
      'DepthwiseConv2dNativeBackpropFilter',
      { x: [2, 9, 8, 3], dy: [2, 5, 4, 6] },
      { strides: [2, 2], dilations: [1, 1], pad: 'same', filterShape: [3, 3, 3, 2] },
    ],
    [
      'DepthwiseConv2dNativeBackpropInput',
      { dy: [2, 5, 4, 6], filter: [3, 3, 3, 2] },
      { strides: [2, 2], dilations: [1, 1], pad: 'same', inputShape: [2, 9, 8, 3] },
    ],
  ];
  for (const [kernel, inputs, attrs] of cases) {
    const data = makeInputs(inputs);
    const ts = Object.fromEntries(
      Object.entries(inputs).map(([k, shape]) => [k, tf.tensor(data[k], shape)]),
    );
    const before = backend.numDataIds();
    const out = tf.engine().runKernel(kernel, ts as never, attrs as never) as tf.Tensor;
    assert.equal(
      backend.numDataIds() - before,
      1,
      `${kernel} leaked ${backend.numDataIds() - before - 1} buffers`,
    );
    out.dispose();
    Object.values(ts).forEach((t) => t.dispose());
  }
});

test('end to end: tf.grads through conv2d and depthwiseConv2d agree between wasm and cpu', async () => {
  const grads = (): Float32Array => {
    const x = tf.tensor4d(values(2 * 10 * 10 * 3, 3), [2, 10, 10, 3]);
    const w1 = tf.tensor4d(values(3 * 3 * 3 * 4, 4), [3, 3, 3, 4]);
    const w2 = tf.tensor4d(values(3 * 3 * 4 * 2, 5), [3, 3, 4, 2]);
    const f = (xx: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Scalar =>
      tf
        .depthwiseConv2d(
          tf.relu(tf.conv2d(xx as tf.Tensor4D, a as tf.Tensor4D, 2, 'same')),
          b as tf.Tensor4D,
          1,
          'valid',
        )
        .square()
        .sum();
    const g = tf.grads(f)([x, w1, w2]);
    return new Float32Array(g.flatMap((t) => Array.from(t.dataSync())));
  };
  const want = await onBackend('cpu', grads);
  const got = await onBackend('wasm', grads);
  const err = relErr(got, want);
  assert.ok(err < REL_TOL, `rel err ${err}`);
});

test('a conv LayersModel trains on wasm (the original failure: Conv2DBackpropFilter not registered)', async () => {
  assert.equal(await tf.setBackend('wasm'), true);
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [8, 8, 1],
        filters: 4,
        kernelSize: 3,
        strides: 2,
        activation: 'relu',
      }),
      tf.layers.depthwiseConv2d({ kernelSize: 2, depthMultiplier: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  model.compile({ optimizer: 'adam', loss: 'categoricalCrossentropy' });
  const xs = tf.tensor4d(values(16 * 64, 11), [16, 8, 8, 1]);
  const ys = tf.oneHot(
    tf.tensor1d(
      Array.from({ length: 16 }, (_, i) => i % 2),
      'int32',
    ),
    2,
  );
  const loss = (await model.trainOnBatch(xs, ys)) as number;
  assert.ok(Number.isFinite(loss), `loss ${loss}`);
});
