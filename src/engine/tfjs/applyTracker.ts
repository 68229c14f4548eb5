// Names the layer whose apply() failed while the user's code builds a model. tfjs checks shapes
// symbolically in apply (two branches of different widths meeting in an Add or Concatenate), and
// its message names neither the layer nor the shapes it was given.
import type * as tfTypes from '@tensorflow/tfjs';
import type { Tf } from './backend';
import { EngineFailure } from './engineError';

type Layer = tfTypes.layers.Layer;
type Apply = (this: Layer, inputs: unknown, kwargs?: unknown) => unknown;

export interface FailedApply {
  layer: string;
  type: string;
  shapes: string[];
}

function shapesOf(inputs: unknown): string[] {
  const list = Array.isArray(inputs) ? inputs : [inputs];
  return list
    .filter(
      (t): t is { shape: (number | null)[] } =>
        !!t && Array.isArray((t as { shape?: unknown }).shape),
    )
    .map((t) => JSON.stringify(t.shape));
}

/** Runs `fn` with Layer.prototype.apply observed; a failure gets the innermost failing layer. */
export async function namingFailedLayer<T>(tf: Tf, fn: () => T | Promise<T>): Promise<T> {
  const proto = tf.layers.Layer.prototype as unknown as { apply: Apply };
  const original = proto.apply;
  let failed: FailedApply | undefined;
  proto.apply = function trackedApply(this: Layer, inputs: unknown, kwargs?: unknown): unknown {
    try {
      return original.call(this, inputs, kwargs);
    } catch (err) {
      // The innermost apply sees the error first; the enclosing ones keep its answer.
      failed ??= { layer: this.name, type: this.getClassName(), shapes: shapesOf(inputs) };
      throw err;
    }
  };
  try {
    return await fn();
  } catch (err) {
    if (err instanceof EngineFailure && failed && !err.data.layer) {
      err.data.layer = failed.layer;
      const given = failed.shapes.length ? ` given ${failed.shapes.join(' and ')}` : '';
      err.message = `${err.message} [in layer ${failed.layer} (${failed.type})${given}]`;
    }
    throw err;
  } finally {
    proto.apply = original;
  }
}
