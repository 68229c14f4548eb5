// A loaded model and everything derived from it that the requests share.
import type * as tfTypes from '@tensorflow/tfjs';
import type { InputSpec, ModelCandidate, SourceLocation } from '../../protocol/types';
import type { Tf } from './backend';
import type { LayerIndex } from './layerTree';
import { userCodeFailure } from './userCode';
import { addCallListener, tensorsOf } from './callInterceptor';
import { EngineFailure } from './engineError';
import { synthesize } from './inputSynthesis';
import type { IdRange } from './inputSynthesis';

export interface ModelSession {
  id: string;
  file: string;
  name: string;
  type: string;
  model: tfTypes.LayersModel;
  index: LayerIndex;
  inputs: InputSpec[];
  /** Per input: the Embedding id range its values must stay in, if one consumes it. */
  idRanges: (IdRange | undefined)[];
  example?: tfTypes.Tensor[];
  exports: Record<string, unknown>;
  candidates: ModelCandidate[];
  location?: SourceLocation;
  device: string;
  /** Weight shards a model.json lists that are not on disk (its weights are placeholders). */
  weightsMissing: string[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The example input when it fits the specs, otherwise synthesized (see inputSynthesis). */
export function makeInputs(
  tf: Tf,
  s: ModelSession,
  specs: InputSpec[] = s.inputs,
): tfTypes.Tensor[] {
  const fits = (t: tfTypes.Tensor, i: number): boolean =>
    sameShape(t.shape, specs[i].shape) && t.dtype === specs[i].dtype;
  if (s.example && s.example.length === specs.length && s.example.every(fits)) {
    return s.example.map((t) => t.clone());
  }
  return specs.map((spec, i) => synthesize(tf, spec, s.idRanges[i]));
}

/** One inference pass; errors become shapeMismatch / userCodeError with the user's frames. */
export function predict(s: ModelSession, xs: tfTypes.Tensor[]): tfTypes.Tensor[] {
  try {
    const out = s.model.predict(xs.length === 1 ? xs[0] : xs) as tfTypes.Tensor | tfTypes.Tensor[];
    return tensorsOf(out);
  } catch (err) {
    throw userCodeFailure(err, 'running the model', s.file);
  }
}

/** Forward in training mode plus gradients of mean(outputs); no optimizer step, weights stay. */
export function forwardBackward(
  tf: Tf,
  s: ModelSession,
  xs: tfTypes.Tensor[],
  onForwardDone?: (outputs: tfTypes.Tensor[]) => void,
): tfTypes.Tensor[] {
  const vars = s.model.trainableWeights.map((w) => w.read());
  try {
    if (vars.length === 0) {
      const out = tensorsOf(
        s.model.apply(xs.length === 1 ? xs[0] : xs, { training: true }) as
          tfTypes.Tensor | tfTypes.Tensor[],
      );
      onForwardDone?.(out);
      return out;
    }
    const { value, grads } = tf.variableGrads(() => {
      const out = tensorsOf(
        s.model.apply(xs.length === 1 ? xs[0] : xs, { training: true }) as
          tfTypes.Tensor | tfTypes.Tensor[],
      );
      const loss = out.map((t) => tf.mean(t)).reduce((a, b) => tf.add(a, b)) as tfTypes.Scalar;
      onForwardDone?.(out);
      return loss;
    }, vars as tfTypes.Variable[]);
    return [value, ...Object.values(grads)];
  } catch (err) {
    throw userCodeFailure(err, 'running forward and backward', s.file);
  }
}

/** predict() that also names the innermost layer running when it fails (for the error's `layer`). */
export function predictNamingLayer(s: ModelSession, xs: tfTypes.Tensor[]): tfTypes.Tensor[] {
  const stack: string[] = [];
  const removers: (() => void)[] = [];
  const root = s.model as unknown as tfTypes.layers.Layer;
  for (const [path, layer] of s.index.layerAt) {
    if (layer === root || s.index.pathOf.get(layer) !== path) continue;
    removers.push(
      addCallListener(layer, {
        before: () => void stack.push(path),
        after: () => void stack.pop(),
      }),
    );
  }
  try {
    return predict(s, xs);
  } catch (err) {
    if (err instanceof EngineFailure && !err.data.layer && stack.length) {
      err.data.layer = stack[stack.length - 1];
      err.message = `${err.message} [in layer ${err.data.layer}]`;
    }
    throw err;
  } finally {
    for (const r of removers) r();
  }
}
