// What the engine feeds a model when the user gave no tensor: the declared dtype of every input,
// and for an input that ends in an Embedding, integer ids below its inputDim (random normal
// floats would become negative indices, which GatherV2 rejects).
import * as os from 'node:os';
import type * as tfTypes from '@tensorflow/tfjs';
import type { DType, InputSpec } from '../../protocol/types';
import type { Tf } from './backend';
import { fail } from './engineError';

type Layer = tfTypes.layers.Layer;

/** The seed of every synthesized input, so two requests see the same values. */
export const INPUT_SEED = 42;
/** Dtypes an input may be asked for; tfjs has no other numeric ones. */
export const INPUT_DTYPES: readonly DType[] = ['float32', 'int32', 'bool'];

/** Integer ids in [0, high) for one input, and the layer that needs them. */
export interface IdRange {
  high: number;
  layer: string;
}

interface NodeLike {
  outboundLayer: Layer;
  inputTensors: tfTypes.SymbolicTensor[];
}

function consumersOf(t: tfTypes.SymbolicTensor): { layer: Layer; slot: number }[] {
  const out: { layer: Layer; slot: number }[] = [];
  const nodes = (t.sourceLayer as unknown as { outboundNodes?: NodeLike[] }).outboundNodes ?? [];
  for (const n of nodes) {
    const slot = n.inputTensors.findIndex((x) => x.id === t.id);
    if (slot >= 0) out.push({ layer: n.outboundLayer, slot });
  }
  return out;
}

/**
 * The smallest Embedding inputDim reached from `t`, looking through containers (a nested model
 * whose own input feeds an Embedding) but not through layers that compute on the values.
 */
function idRangeOf(t: tfTypes.SymbolicTensor, depth = 0): IdRange | undefined {
  let best: IdRange | undefined;
  const keep = (r: IdRange | undefined): void => {
    if (r && (!best || r.high < best.high)) best = r;
  };
  for (const { layer, slot } of consumersOf(t)) {
    const l = layer as unknown as {
      inputDim?: number;
      inputs?: tfTypes.SymbolicTensor[];
      layers?: Layer[];
    };
    if (layer.getClassName() === 'Embedding' && typeof l.inputDim === 'number') {
      keep({ high: l.inputDim, layer: layer.name });
    } else if (Array.isArray(l.layers) && Array.isArray(l.inputs) && l.inputs[slot] && depth < 8) {
      keep(idRangeOf(l.inputs[slot], depth + 1));
    }
  }
  return best;
}

export function idRanges(model: tfTypes.LayersModel): (IdRange | undefined)[] {
  return model.inputs.map((t) => idRangeOf(t));
}

/** Notes the id range on the spec so the user sees why the input holds integers. */
export function describeIds(spec: InputSpec, range: IdRange | undefined): InputSpec {
  if (!range) return spec;
  const ids =
    `integer ids in [0, ${range.high}) for ${range.layer} ` + `(Embedding, inputDim ${range.high})`;
  return { ...spec, note: spec.note ? `${spec.note}; ${ids}` : ids };
}

export function checkDtype(dtype: string, what: string): DType {
  if (!INPUT_DTYPES.includes(dtype)) {
    fail(
      'badRequest',
      `${what}: dtype '${dtype}' is not one TF.js has; use ${INPUT_DTYPES.join(', ')}`,
      {
        expected: INPUT_DTYPES.join(' | '),
        got: dtype,
      },
    );
  }
  return dtype;
}

/**
 * A synthesized input may take at most this share of the machine's memory: the CLI refuses a
 * larger `--input` before it starts an engine; inputs from the editor are checked here, before
 * tfjs tries to allocate them.
 */
const INPUT_MEMORY_SHARE = 0.5;
const BYTES_PER_ELEMENT: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };

/** Refuses an input too large to allocate, with its size, instead of an allocator failure. */
export function checkInputSize(spec: InputSpec): void {
  const bytes = spec.shape.reduce((a, d) => a * d, 1) * (BYTES_PER_ELEMENT[spec.dtype] ?? 4);
  const limit = os.totalmem() * INPUT_MEMORY_SHARE;
  if (bytes > limit) {
    const gib = (n: number): string => (n / 2 ** 30).toFixed(1);
    fail(
      'badRequest',
      `input too large: shape [${spec.shape.join(', ')}] ${spec.dtype} is ` +
        `${bytes.toLocaleString('en-US')} bytes (${gib(bytes)} GiB); this engine allows ` +
        `${gib(limit)} GiB for its inputs. Pass a smaller --input (or modelLens.defaultInputShape).`,
      { got: `[${spec.shape.join(', ')}]` },
    );
  }
}

/** One synthesized tensor: ids for embeddings, random normal floats, zeros / false otherwise. */
export function synthesize(tf: Tf, spec: InputSpec, range: IdRange | undefined): tfTypes.Tensor {
  checkInputSize(spec);
  const dtype = spec.dtype as tfTypes.DataType;
  if (range) {
    // randomUniform over [0, high) in int32 gives whole numbers; cast keeps the declared dtype.
    return tf.tidy(() => {
      const ids = tf.randomUniform(spec.shape, 0, range.high, 'int32', INPUT_SEED);
      return dtype === 'int32' ? ids : tf.cast(ids, dtype);
    });
  }
  if (dtype === 'float32') return tf.randomNormal(spec.shape, 0, 1, 'float32', INPUT_SEED);
  return tf.zeros(spec.shape, dtype);
}

/**
 * One input as a request asks for it: `inputs` of model/load and model/summary (the CLI's
 * `--input [NAME=]SHAPE[:DTYPE]`). Read structurally so this engine needs nothing beyond
 * `inputShapes` from a client that does not send it.
 */
export interface InputAsk {
  shape: number[];
  dtype?: string;
  name?: string;
}

/** `inputs` of a request, ordered as the model's inputs when they are named. */
export function askedInputs(
  params: object,
  inputNames: string[],
  file: string,
): { shapes?: number[][]; dtypes?: (DType | null)[] } {
  const asked = (params as { inputs?: InputAsk[] }).inputs;
  const shapes = (params as { inputShapes?: number[][] }).inputShapes;
  if (!asked?.length) return { shapes };
  let ordered = asked;
  if (asked.some((a) => a.name)) {
    const bare = (n: string): string => n.replace(/:\d+$/, '');
    ordered = inputNames.map((n) => {
      const hit = asked.find((a) => a.name && bare(a.name) === bare(n));
      if (!hit) {
        return fail('badRequest', `${file}: no value given for input '${bare(n)}'`, {
          expected: inputNames.map(bare).join(', '),
          got: asked.map((a) => a.name ?? '(positional)').join(', '),
        });
      }
      return hit;
    });
    const unknown = asked.filter(
      (a) => a.name && !inputNames.some((n) => bare(n) === bare(a.name!)),
    );
    if (unknown.length) {
      fail('badRequest', `${file} has no input named '${unknown[0].name}'`, {
        candidates: inputNames.map(bare),
      });
    }
  }
  return { shapes: ordered.map((a) => a.shape), dtypes: ordered.map((a) => a.dtype ?? null) };
}
