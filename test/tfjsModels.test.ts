// Real TF.js models (test/fixtures/tfjsModels/README.md says where each comes from) through the
// engine in-process; every figure is checked against tfjs's own answer for the same model.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { EngineFailure } from '../src/engine/tfjs/engineError';
import { makeInputs } from '../src/engine/tfjs/modelSession';
import { engine, loadAndCheck, MODELS, sessionOf } from './tfjsModelHarness';

const file = (name: string): string => path.join(MODELS, name);

describe('embedding inputs', () => {
  test('sentiment CNN: ids below inputDim, conv1d figures as tfjs has them', async () => {
    const { load, rows, summary } = await loadAndCheck({ file: file('sentiment.ts'), model: 'cnn' });
    assert.equal(load.inputs[0].dtype, 'float32');
    assert.match(load.inputs[0].note ?? '', /integer ids in \[0, 10000\)/);
    const conv = summary.rows.find((r) => r.type === 'Conv1D')!;
    // 5×128×250 + 250 weights at 96 output positions (100 − 5 + 1), batch 1.
    assert.equal(conv.params, 5 * 128 * 250 + 250);
    assert.equal(conv.macs, (5 * 128 * 250 + 250) * 96);
    assert.deepEqual(rows[''].outputShape, [1, 1]);
  });

  test('the synthesized ids are whole numbers in [0, inputDim)', async () => {
    const e = await engine();
    const r = await e.loadModel({ file: file('sentiment.ts'), model: 'cnn' });
    const x = await e.inspect({ modelId: r.modelId, target: { kind: 'input', index: 0 }, stats: true });
    assert.ok((x.stats?.min ?? -1) >= 0 && (x.stats?.max ?? Infinity) < 10000, JSON.stringify(x.stats));
    const s = sessionOf(e, r.modelId);
    const values = e.tf.tidy(() => makeInputs(e.tf, s)[0].dataSync() as Float32Array).slice();
    assert.ok(values.every((v) => Number.isInteger(v)), 'integer-valued');
  });

  test('bidirectional LSTM on an embedding runs', async () => {
    const { rows } = await loadAndCheck({ file: file('sentiment.ts'), model: 'bidirectionalLSTM' });
    assert.deepEqual(rows[''].outputShape, [1, 1]);
  });

  test('date-conversion attention: two id inputs, each below its own vocabulary', async () => {
    const { load } = await loadAndCheck({ file: file('dateConversion.ts') });
    assert.deepEqual(
      load.inputs.map((i) => [i.shape, /\[0, (\d+)\)/.exec(i.note ?? '')?.[1]]),
      [
        [[1, 12], '35'],
        [[1, 10], '13'],
      ],
    );
  });

  test('a dtype asked for is used; one tfjs has not is refused by name', async () => {
    const e = await engine();
    const r = await e.loadModel({ file: file('sentiment.ts'), model: 'cnn', inputShapes: [[2, 100]], inputDtypes: ['int32'] });
    assert.deepEqual([r.inputs[0].shape, r.inputs[0].dtype], [[2, 100], 'int32']);
    const x = await e.inspect({ modelId: r.modelId, target: { kind: 'input', index: 0 } });
    assert.equal(x.tensor.dtype, 'int32');
    const s = await e.summary({ modelId: r.modelId, inputDtypes: ['float32'] });
    assert.equal(s.inputs[0].dtype, 'float32');
    await assert.rejects(
      e.loadModel({ file: file('sentiment.ts'), model: 'cnn', inputDtypes: ['int64'] }),
      (err: unknown) => err instanceof EngineFailure && /dtype 'int64'/.test(err.message),
    );
  });
});
