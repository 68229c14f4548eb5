// Drives the TF.js engine in-process (same code main.ts serves over stdio) and checks what it says
// about a model against tfjs itself: countParams(), each layer's outputShape, predict().
import assert from 'node:assert/strict';
import * as path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { TfjsEngine } from '../src/engine/tfjs/tfjsEngine';
import type { ModelSession } from '../src/engine/tfjs/modelSession';
import type { ModelLoadParams, ModelLoadResult, SummaryResult } from '../src/protocol/messages';
import type { SummaryRow } from '../src/protocol/types';
import { PROTOCOL_VERSION } from '../src/protocol/types';

export const MODELS = path.resolve(__dirname, 'fixtures', 'tfjsModels');

let shared: TfjsEngine | undefined;

export async function engine(): Promise<TfjsEngine> {
  if (shared) return shared;
  const e = new TfjsEngine({ hookEvent: () => undefined, trainProgress: () => undefined });
  await e.initialize({
    protocolVersion: PROTOCOL_VERSION,
    trusted: true,
    backend: 'auto',
  } as never);
  shared = e;
  return e;
}

/** The engine's own session object, so tfjs can be asked about the very model the engine loaded. */
export function sessionOf(e: TfjsEngine, modelId: string): ModelSession {
  const s = (e as unknown as { models: Map<string, ModelSession> }).models.get(modelId);
  assert.ok(s, `session ${modelId}`);
  return s;
}

export interface Checked {
  load: ModelLoadResult;
  summary: SummaryResult;
  rows: Record<string, SummaryRow>;
  model: tfTypes.LayersModel;
}

/** Replaces unknown dims of a declared shape by the batch the engine ran with. */
function concrete(shape: (number | null)[], batch: number): number[] {
  return shape.map((d, i) => (d === null ? (i === 0 ? batch : -1) : d));
}

/**
 * Loads `params`, runs a summary, and asserts against tfjs: total params incl. buffers equals
 * countParams(), every leaf row that ran once has tfjs's outputShape (unknown time dims excepted),
 * and the root output has predict()'s shape.
 */
export async function loadAndCheck(params: ModelLoadParams): Promise<Checked> {
  const e = await engine();
  const load = await e.loadModel(params);
  const summary = await e.summary({ modelId: load.modelId });
  const rows = Object.fromEntries(summary.rows.map((r) => [r.path, r]));
  const s = sessionOf(e, load.modelId);
  const model = s.model as tfTypes.LayersModel;
  const bufferCount = s.index.weights
    .filter((w) => w.isBuffer)
    .reduce((a, w) => a + w.variable.read().size, 0);
  assert.equal(
    summary.totals.params + bufferCount,
    model.countParams(),
    'params + buffers = countParams()',
  );
  const batch = summary.inputs[0].shape[0];
  for (const [p, layer] of s.index.layerAt) {
    const row = rows[p];
    if (!row || !row.isLeaf || row.path === '' || s.index.pathOf.get(layer) !== p) continue;
    const nodes = (layer as unknown as { inboundNodes: unknown[] }).inboundNodes;
    if (nodes.length !== 1) continue;
    let declared: (number | null)[] | (number | null)[][];
    try {
      declared = layer.outputShape as (number | null)[];
    } catch {
      continue;
    }
    const want = Array.isArray(declared[0])
      ? (declared as unknown as (number | null)[][]).map((d) => concrete(d, batch))
      : concrete(declared as (number | null)[], batch);
    const got = row.outputShape as number[] | number[][];
    const matches = (w: number[], g: number[]): boolean =>
      w.length === g.length && w.every((d, i) => d === -1 || d === g[i]);
    if (Array.isArray(want[0])) {
      (want as number[][]).forEach((w, i) =>
        assert.ok(
          matches(w, (got as number[][])[i]),
          `${p}: ${JSON.stringify(got)} vs tfjs ${JSON.stringify(want)}`,
        ),
      );
    } else {
      assert.ok(
        matches(want as number[], got as number[]),
        `${p}: ${JSON.stringify(got)} vs tfjs ${JSON.stringify(want)}`,
      );
    }
  }
  // Without weight files only the structure is checked; running is refused (tested elsewhere).
  if (s.weightsMissing.length) return { load, summary, rows, model };
  const fwd = await e.forward({ modelId: load.modelId });
  const tf = e.tf;
  const predicted = tf.tidy(() => {
    const xs = summary.inputs.map((spec) => tf.zeros(spec.shape, spec.dtype as tfTypes.DataType));
    const out = model.predict(xs.length === 1 ? xs[0] : xs);
    return (Array.isArray(out) ? out : [out]).map((t) => [...t.shape]);
  });
  assert.deepEqual(fwd.outputShapes, predicted, 'forward output shapes = predict()');
  return { load, summary, rows, model };
}
