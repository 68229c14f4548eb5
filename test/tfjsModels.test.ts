// Real TF.js models (test/fixtures/tfjsModels/README.md says where each comes from) through the
// engine in-process; every figure is checked against tfjs's own answer for the same model.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { EngineFailure } from '../src/engine/tfjs/engineError';
import type { InputAsk } from '../src/engine/tfjs/inputSynthesis';
import { makeInputs } from '../src/engine/tfjs/modelSession';
import { engine, loadAndCheck, MODELS, sessionOf } from './tfjsModelHarness';

const ROOT = path.resolve(__dirname, '..');
const file = (name: string): string => path.join(MODELS, name);
/** Request params with `inputs` ([NAME=]SHAPE[:DTYPE] from the CLI), which this engine reads. */
const withInputs = <P extends object>(p: P, inputs: InputAsk[]): P => ({ ...p, inputs });

describe('embedding inputs', () => {
  test('sentiment CNN: ids below inputDim, conv1d figures as tfjs has them', async () => {
    const { load, rows, summary } = await loadAndCheck({
      file: file('sentiment.ts'),
      model: 'cnn',
    });
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
    const x = await e.inspect({
      modelId: r.modelId,
      target: { kind: 'input', index: 0 },
      stats: true,
    });
    assert.ok(
      (x.stats?.min ?? -1) >= 0 && (x.stats?.max ?? Infinity) < 10000,
      JSON.stringify(x.stats),
    );
    const s = sessionOf(e, r.modelId);
    const values = e.tf.tidy(() => makeInputs(e.tf, s)[0].dataSync() as Float32Array).slice();
    assert.ok(
      values.every((v) => Number.isInteger(v)),
      'integer-valued',
    );
  });

  test('bidirectional LSTM on an embedding runs', async () => {
    const { rows, summary } = await loadAndCheck({
      file: file('sentiment.ts'),
      model: 'bidirectionalLSTM',
    });
    assert.deepEqual(rows[''].outputShape, [1, 1]);
    // Each direction: 4 × (128·32 + 32·32 + 32) weights, once per batch row and word.
    const directions = summary.rows.filter((r) => r.type === 'LSTM');
    assert.deepEqual(
      directions.map((r) => r.macs),
      [1, 2].map(() => 4 * (128 * 32 + 32 * 32 + 32) * 1 * 100),
    );
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

  test('--input 2,100:int32 (`inputs` with a dtype) is used; int64 is refused', async () => {
    const e = await engine();
    const cnn = { file: file('sentiment.ts'), model: 'cnn' };
    const r = await e.loadModel(withInputs(cnn, [{ shape: [2, 100], dtype: 'int32' }]));
    assert.deepEqual([r.inputs[0].shape, r.inputs[0].dtype], [[2, 100], 'int32']);
    const x = await e.inspect({ modelId: r.modelId, target: { kind: 'input', index: 0 } });
    assert.equal(x.tensor.dtype, 'int32');
    const s = await e.summary(
      withInputs({ modelId: r.modelId }, [{ shape: [3, 100], dtype: 'float32' }]),
    );
    assert.deepEqual([s.inputs[0].shape, s.inputs[0].dtype], [[3, 100], 'float32']);
    await assert.rejects(
      e.loadModel(withInputs(cnn, [{ shape: [1, 100], dtype: 'int64' }])),
      (err: unknown) =>
        err instanceof EngineFailure && /dtype 'int64' is not one TF\.js has/.test(err.message),
    );
  });
});

type Recurrent = 'LSTM' | 'GRU' | 'RNN';
let torchinfoFigures: Record<Recurrent, { macs: number; params: number }> | undefined;

/**
 * torchinfo's multiply-adds and parameter count for nn.LSTM / nn.GRU / nn.RNN(12 → 128) on a
 * batch of 2 sequences of 5 steps, from torchinfo itself (one Python start for all three).
 */
function torchinfoRecurrent(kind: Recurrent): { macs: number; params: number } {
  if (!torchinfoFigures) {
    const python =
      (process.env.MODEL_LENS_TEST_PYTHONS ?? '').split(path.delimiter).find(Boolean) ??
      path.join(ROOT, '.cache', 'venvs', 'torch2', 'bin', 'python');
    const code = [
      'import json, torch, torchinfo',
      'out = {}',
      'for kind in ("LSTM", "GRU", "RNN"):',
      '    m = getattr(torch.nn, kind)(12, 128, batch_first=True)',
      '    s = torchinfo.summary(m, input_size=(2, 5, 12), verbose=0)',
      '    out[kind] = {"macs": s.total_mult_adds, "params": s.total_params}',
      'print(json.dumps(out))',
    ].join('\n');
    const r = spawnSync(python, ['-c', code], {
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    assert.equal(r.status, 0, r.stderr);
    torchinfoFigures = JSON.parse(r.stdout) as Record<Recurrent, { macs: number; params: number }>;
  }
  return torchinfoFigures[kind];
}

describe('recurrent layers', () => {
  for (const [fixture, kind] of [
    ['lstm', 'LSTM'],
    ['gru', 'GRU'],
    ['simpleRNN', 'RNN'],
  ] as const) {
    test(`addition-rnn ${fixture}: MACs by torchinfo's nn.${kind} rule`, async () => {
      const { rows, summary } = await loadAndCheck({
        file: file('additionRnn.ts'),
        model: fixture,
        inputShapes: [[2, 5, 12]],
      });
      const encoder = summary.rows.find((r) => r.depth === 1 && r.params > 0)!;
      const ref = torchinfoRecurrent(kind);
      // torchinfo: every weight_*/bias_* element once per batch row and time step.
      assert.equal(ref.macs, ref.params * 2 * 5);
      assert.equal(encoder.macs, encoder.params * 2 * 5);
      // The decoder runs 3 steps (RepeatVector n = 3) on 128 features.
      const decoder = summary.rows.filter((r) => r.depth === 1 && r.type === encoder.type)[1];
      assert.equal(decoder.macs, decoder.params * 2 * 3);
      assert.ok(rows[''].macs > 0);
    });
  }

  test('unknown batch and time dims: set to 1 with a note, or taken from --input', async () => {
    const { load } = await loadAndCheck({
      file: file('additionRnn.ts'),
      model: 'variableLengthLstm',
    });
    assert.deepEqual(load.inputs[0].shape, [1, 1, 8]);
    assert.ok(load.warnings.some((w) => /unknown and were set to 1/.test(w)));
    const { rows } = await loadAndCheck({
      file: file('additionRnn.ts'),
      model: 'variableLengthLstm',
      inputShapes: [[3, 40, 8]],
    });
    assert.deepEqual(rows.lstm.outputShape, [3, 40, 16]);
    assert.equal(rows.lstm.macs, 4 * (8 * 16 + 16 * 16 + 16) * 3 * 40);
  });
});

describe('nested models and BatchNorm', () => {
  test('Teachable Machine image: the added MobileNetV2 ran; tfjs’s 538,508 shown', async () => {
    const { rows, summary, model } = await loadAndCheck({ file: file('teachableMachine.ts') });
    assert.equal(rows.model1.ran, true);
    assert.equal(rows.model1.note, undefined);
    assert.deepEqual(rows.model1.outputShape, [1, 1280]);
    assert.deepEqual(rows.sequential_3.outputShape, [1, 2]);
    // model.summary() of the tm-image model: Total params 538,508, non-trainable 14,080.
    const nonTrainable = model.nonTrainableWeights.reduce((a, w) => a + w.read().size, 0);
    assert.equal(model.countParams(), 538508);
    assert.equal(nonTrainable, 14080);
    assert.deepEqual(summary.totals.frameworkCounts, {
      params: 538508,
      nonTrainableParams: 14080,
      note: 'tfjs counts 538,508 including 14,080 moving statistics',
    });
    assert.equal(summary.totals.params, 538508 - 14080);
    assert.equal(summary.totals.bufferBytes, 14080 * 4);
    // Every row carries both counts; a container's own is 0, its total its subtree's.
    assert.deepEqual([rows.model1.ownParams, rows.model1.totalParams], [0, rows.model1.params]);
    assert.deepEqual(
      [rows.sequential_3.ownParams, rows.sequential_3.totalParams],
      [0, 1280 * 100 + 100 + 100 * 2],
    );
  });

  test('tfjs’s nested-Sequential test: the inner Sequential has its shape', async () => {
    const { rows } = await loadAndCheck({ file: file('nestedSequential.ts') });
    assert.deepEqual(rows.inner.outputShape, [1, 2]);
    assert.equal(rows.inner.ran, true);
    assert.equal(rows.inner.macs, 4 * 3 + 3 + 3 * 2 + 2);
  });

  test('a layer called twice (Keras guide’s shared LSTM): counted once, its MACs twice', async () => {
    const { rows, summary, model } = await loadAndCheck({ file: file('sharedLstm.ts') });
    const lstm = 4 * (256 * 64 + 64 * 64 + 64);
    assert.equal(model.countParams(), lstm + 129);
    assert.equal(summary.totals.params, lstm + 129);
    // torchinfo lists every call: 2 calls × batch 1 × 280 steps.
    assert.equal(rows.shared_lstm.macs, lstm * 280 * 2);
    assert.deepEqual(rows.merged.outputShape, [1, 128]);
  });
});
