// Writes a tfjs-converter graph model (model.json with "format": "graph-model" + one weight shard)
// from a Sequential LayersModel the way tensorflowjs_converter does for a Keras model: BatchNorm
// folded into the convolution before it, bias and activation fused into _FusedConv2D /
// FusedDepthwiseConv2dNative / _FusedMatMul, strings base64 in attrs, nodes named by Keras name
// scope. Nothing is downloaded; tests check the result against the LayersModel's own predict().
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs';

interface Attr {
  [k: string]: unknown;
}
interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Attr;
}
interface WeightEntry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const F = { type: 'DT_FLOAT' };
const dims = (shape: (number | null)[]): { dim: { size: string }[] } => ({
  dim: shape.map((d) => ({ size: String(d ?? -1) })),
});
const ints = (xs: number[]): { list: { i: string[] } } => ({ list: { i: xs.map(String) } });

type Layer = tf.layers.Layer;

class Writer {
  readonly nodes: GraphNode[] = [];
  readonly weights: WeightEntry[] = [];

  constant(name: string, data: Float32Array | Int32Array, shape: number[]): string {
    const dtype = data instanceof Int32Array ? 'int32' : 'float32';
    const type = dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT';
    this.nodes.push({
      name,
      op: 'Const',
      attr: { value: { tensor: { dtype: type, tensorShape: dims(shape) } }, dtype: { type } },
    });
    this.weights.push({ name, shape, dtype, data });
    return name;
  }

  op(name: string, op: string, input: string[], attr: Attr = {}): string {
    this.nodes.push({ name, op, input, attr: { T: F, ...attr } });
    return name;
  }
}

function activationName(layer: Layer | undefined): string | null {
  if (!layer) return null;
  const cfg = layer.getConfig() as { activation?: string };
  const a = cfg.activation ?? 'linear';
  return a === 'linear' ? null : a;
}

const FUSABLE: Record<string, string> = { relu: 'Relu', relu6: 'Relu6' };

export interface GraphOptions {
  /** Take int32 input (as MoveNet takes pixel values) and Cast it to float32 first. */
  int32Input?: boolean;
}

/** The graph model of `model` (a Sequential of the layer types below) with its weight shard. */
export function graphModelArtifacts(
  model: tf.Sequential,
  options: GraphOptions = {},
  scope = model.name,
): { json: object; weights: Buffer } {
  const w = new Writer();
  const inShape = model.inputs[0].shape;
  const inType = options.int32Input ? 'DT_INT32' : 'DT_FLOAT';
  w.nodes.push({
    name: 'input_1',
    op: 'Placeholder',
    attr: { dtype: { type: inType }, shape: { shape: dims(inShape) } },
  });
  let x = 'input_1';
  if (options.int32Input) {
    x = w.op(`StatefulPartitionedCall/${scope}/Cast`, 'Cast', [x], {
      T: undefined,
      SrcT: { type: 'DT_INT32' },
      DstT: F,
      Truncate: { b: false },
    });
  }
  const layers = model.layers;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i];
    const type = layer.getClassName();
    const s = `StatefulPartitionedCall/${scope}/${layer.name}`;
    if (type === 'Conv2D' || type === 'DepthwiseConv2D' || type === 'Dense') {
      const vals = layer.getWeights().map((t) => t.dataSync() as Float32Array);
      let kernel = Float32Array.from(vals[0]);
      const kShape = [...layer.getWeights()[0].shape];
      const outCh = type === 'DepthwiseConv2D' ? kShape[2] * kShape[3] : kShape[kShape.length - 1];
      let bias = vals[1] ? Float32Array.from(vals[1]) : new Float32Array(outCh);
      let act = activationName(layer);
      // BatchNorm right after a linear conv folds into its kernel and bias, as the converter does.
      if (!act && layers[i + 1]?.getClassName() === 'BatchNormalization') {
        const bn = layers[++i];
        const [gamma, beta, mean, variance] = bn
          .getWeights()
          .map((t) => t.dataSync() as Float32Array);
        const eps = (bn.getConfig() as { epsilon: number }).epsilon;
        const scale = gamma.map((g, c) => g / Math.sqrt(variance[c] + eps));
        kernel = kernel.map((v, k) => v * scale[k % outCh]);
        bias = bias.map((b, c) => (b - mean[c]) * scale[c] + beta[c]);
      }
      if (!act && layers[i + 1]?.getClassName() === 'Activation') act = activationName(layers[++i]);
      const fused = act && FUSABLE[act] ? ['BiasAdd', FUSABLE[act]] : ['BiasAdd'];
      const k = w.constant(
        `${s}/${type === 'Dense' ? 'MatMul' : 'Conv2D'}/ReadVariableOp`,
        kernel,
        kShape,
      );
      const b = w.constant(`${s}/BiasAdd/ReadVariableOp`, bias, [outCh]);
      const common = {
        fused_ops: { list: { s: fused.map(b64) } },
        num_args: { i: '1' },
        epsilon: { f: 0 },
      };
      const name = `${s}/${fused[fused.length - 1]}`;
      if (type === 'Dense') {
        x = w.op(name, '_FusedMatMul', [x, k, b], {
          ...common,
          transpose_a: { b: false },
          transpose_b: { b: false },
        });
      } else {
        const cfg = layer.getConfig() as {
          strides: number[];
          padding: string;
          dilationRate?: number[] | number;
        };
        const st = cfg.strides;
        x = w.op(
          name,
          type === 'Conv2D' ? '_FusedConv2D' : 'FusedDepthwiseConv2dNative',
          [x, k, b],
          {
            ...common,
            strides: ints([1, st[0], st[1], 1]),
            padding: { s: b64(cfg.padding.toUpperCase()) },
            data_format: { s: b64('NHWC') },
            dilations: ints([1, 1, 1, 1]),
          },
        );
      }
      if (act === 'softmax') x = w.op(`${s}/Softmax`, 'Softmax', [x]);
      else if (act && !FUSABLE[act]) throw new Error(`no graph op for activation ${act}`);
    } else if (type === 'MaxPooling2D' || type === 'AveragePooling2D') {
      const cfg = layer.getConfig() as { poolSize: number[]; strides: number[]; padding: string };
      x = w.op(
        `${s}/${type === 'MaxPooling2D' ? 'MaxPool' : 'AvgPool'}`,
        type === 'MaxPooling2D' ? 'MaxPool' : 'AvgPool',
        [x],
        {
          ksize: ints([1, cfg.poolSize[0], cfg.poolSize[1], 1]),
          strides: ints([1, cfg.strides[0], cfg.strides[1], 1]),
          padding: { s: b64(cfg.padding.toUpperCase()) },
          data_format: { s: b64('NHWC') },
        },
      );
    } else if (type === 'GlobalAveragePooling2D') {
      const axes = w.constant(`${s}/Mean/reduction_indices`, Int32Array.from([1, 2]), [2]);
      x = w.op(`${s}/Mean`, 'Mean', [x, axes], {
        keep_dims: { b: false },
        Tidx: { type: 'DT_INT32' },
      });
    } else if (type === 'Flatten') {
      const out = layer.outputShape as number[];
      const shape = w.constant(`${s}/Const`, Int32Array.from([-1, out[1]]), [2]);
      x = w.op(`${s}/Reshape`, 'Reshape', [x, shape], { Tshape: { type: 'DT_INT32' } });
    } else if (type === 'Dropout') {
      continue;
    } else {
      throw new Error(`graphModelArtifacts: no graph ops for ${type}`);
    }
  }
  w.op('Identity', 'Identity', [x]);
  const outShape = model.outputs[0].shape;
  const json = {
    format: 'graph-model',
    generatedBy: '2.15.0',
    convertedBy: 'Model Lens test/graphModelWriter.ts (tfjs-converter layout)',
    signature: {
      inputs: { 'input_1:0': { name: 'input_1:0', dtype: inType, tensorShape: dims(inShape) } },
      outputs: {
        'Identity:0': { name: 'Identity:0', dtype: 'DT_FLOAT', tensorShape: dims(outShape) },
      },
    },
    modelTopology: { node: w.nodes, library: {}, versions: { producer: 1645 } },
    weightsManifest: [
      {
        paths: ['group1-shard1of1.bin'],
        weights: w.weights.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
      },
    ],
  };
  const weights = Buffer.concat(
    w.weights.map((e) => Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength)),
  );
  return { json, weights };
}

/** Writes model.json + group1-shard1of1.bin into `dir`; returns the model.json path. */
export function writeGraphModel(
  model: tf.Sequential,
  dir: string,
  options: GraphOptions = {},
): string {
  const { json, weights } = graphModelArtifacts(model, options);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), weights);
  const file = path.join(dir, 'model.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}
