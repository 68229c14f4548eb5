// Replacing a layer's `call` is the one place every forward of that layer passes through, in
// predict, fit and trainOnBatch alike (kwargs.training tells which). Summary capture, hooks and
// per-layer timing all attach here; when the last listener leaves, the original `call` is back.
import type * as tfTypes from '@tensorflow/tfjs';

type Layer = tfTypes.layers.Layer;
export type CallOutput = tfTypes.Tensor | tfTypes.Tensor[];
type CallFn = (inputs: CallOutput, kwargs: Record<string, unknown>) => CallOutput;

export interface CallListener {
  before?(layer: Layer, inputs: CallOutput, kwargs: Record<string, unknown>): void;
  /** May return a replacement output (backward hooks wrap it in a custom gradient). */
  after?(
    layer: Layer,
    inputs: CallOutput,
    kwargs: Record<string, unknown>,
    output: CallOutput,
  ): CallOutput | void;
}

interface Patched {
  hadOwn: boolean;
  ownCall: CallFn | undefined;
  listeners: CallListener[];
}

const patched = new Map<Layer, Patched>();

/** Listener failures must never change what the user's model computes; they are reported here. */
let onListenerError: (err: unknown) => void = () => {};

export function setListenerErrorHandler(fn: (err: unknown) => void): void {
  onListenerError = fn;
}

export function addCallListener(layer: Layer, listener: CallListener): () => void {
  let p = patched.get(layer);
  if (!p) {
    const target = layer as unknown as { call: CallFn };
    const hadOwn = Object.prototype.hasOwnProperty.call(layer, 'call');
    const original = target.call;
    const entry: Patched = { hadOwn, ownCall: hadOwn ? original : undefined, listeners: [] };
    p = entry;
    patched.set(layer, entry);
    target.call = function patchedCall(
      this: Layer,
      inputs: CallOutput,
      kwargs: Record<string, unknown>,
    ): CallOutput {
      const ls = entry.listeners.slice();
      for (const l of ls) {
        if (!l.before) continue;
        try {
          l.before(this, inputs, kwargs ?? {});
        } catch (err) {
          onListenerError(err);
        }
      }
      let out = original.call(this, inputs, kwargs);
      for (const l of ls) {
        if (!l.after) continue;
        try {
          const replaced = l.after(this, inputs, kwargs ?? {}, out);
          if (replaced) out = replaced;
        } catch (err) {
          onListenerError(err);
        }
      }
      return out;
    };
  }
  p.listeners.push(listener);
  let removed = false;
  return () => {
    if (removed) return;
    removed = true;
    const cur = patched.get(layer);
    if (!cur) return;
    cur.listeners = cur.listeners.filter((l) => l !== listener);
    if (cur.listeners.length > 0) return;
    patched.delete(layer);
    const target = layer as unknown as { call?: CallFn };
    if (cur.hadOwn) target.call = cur.ownCall;
    else delete target.call;
  };
}

export function tensorsOf(v: CallOutput | undefined | null): tfTypes.Tensor[] {
  if (!v) return [];
  return (Array.isArray(v) ? v : [v]).filter(
    (t) => t && typeof (t as tfTypes.Tensor).dataSync === 'function',
  );
}
