// model.json files: Keras 2 and Keras 3 exports, topology without weight files, weights written
// at test time, and weight paths that must stay inside the model's folder (issue #13 item 4).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineFailure } from '../src/engine/tfjs/engineError';
import { engine, loadAndCheck, MODELS, sessionOf } from './tfjsModelHarness';

interface ManifestJson {
  modelTopology: unknown;
  weightsManifest: {
    paths: string[];
    weights: { name: string; shape: number[]; dtype: string }[];
  }[];
}

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'ml-modeljson-'));

/** A copy of a fixture folder with its weight shard written: value i of the shard is i / 1e4. */
function withWeights(fixture: string): { file: string; values: Float32Array; json: ManifestJson } {
  const dir = tmp();
  const json = JSON.parse(
    fs.readFileSync(path.join(MODELS, fixture, 'model.json'), 'utf8'),
  ) as ManifestJson;
  const n = json.weightsManifest[0].weights.reduce(
    (a, w) => a + w.shape.reduce((x, y) => x * y, 1),
    0,
  );
  const values = Float32Array.from({ length: n }, (_, i) => (i % 1000) / 1e4);
  fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), Buffer.from(values.buffer));
  const file = path.join(dir, 'model.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return { file, values, json };
}

async function refused(file: string, re: RegExp): Promise<EngineFailure> {
  const e = await engine();
  let caught: unknown;
  await e.loadModel({ file }).catch((err: unknown) => (caught = err));
  assert.ok(caught instanceof EngineFailure, `expected a refusal, got ${String(caught)}`);
  assert.match(caught.message, re);
  return caught;
}

describe('Keras exports', () => {
  test('Keras 2.7 text classifier, topology only: counts, shapes, weights missing', async () => {
    const file = path.join(MODELS, 'keras2TextClassifier', 'model.json');
    const { load, summary, model } = await loadAndCheck({ file, inputShapes: [[2, 50]] });
    assert.ok(
      load.warnings.some((w) => /Weights missing: group1-shard1of1\.bin/.test(w)),
      load.warnings.join('\n'),
    );
    // Embedding(10001, 16) + Dense(16 → 1).
    assert.equal(model.countParams(), 10001 * 16 + 17);
    assert.equal(summary.totals.params, 10001 * 16 + 17);
    assert.deepEqual(summary.rows.find((r) => r.path === 'embedding')?.outputShape, [2, 50, 16]);
    assert.ok(summary.warnings.some((w) => /Weights are missing/.test(w)));
    const e = await engine();
    await assert.rejects(
      e.forward({ modelId: load.modelId }),
      /Running the model needs the weights of .*group1-shard1of1\.bin is missing/,
    );
  });

  test('the same export with weights written at test time runs and reads them', async () => {
    const { file, values } = withWeights('keras2TextClassifier');
    const e = await engine();
    const r = await e.loadModel({ file, inputShapes: [[2, 50]] });
    assert.ok(!r.warnings.some((w) => /missing/.test(w)));
    const fwd = await e.forward({ modelId: r.modelId });
    assert.deepEqual(fwd.outputShapes, [[2, 1]]);
    // Manifest order: dense/kernel (16 values) comes first in the shard.
    const k = await e.inspect({
      modelId: r.modelId,
      target: { kind: 'parameter', name: 'dense.kernel' },
      stats: true,
    });
    const want = values.slice(0, 16);
    assert.ok(Math.abs((k.stats?.max ?? 0) - Math.max(...want)) < 1e-7);
    const model = sessionOf(e, r.modelId).model;
    assert.deepEqual(
      Array.from(model.getLayer('dense').getWeights()[0].dataSync()),
      Array.from(want),
    );
  });

  test('Keras 3 Sequential (keras.io MNIST convnet): batch_shape, DTypePolicy', async () => {
    const file = path.join(MODELS, 'keras3MnistConvnet', 'model.json');
    const { load, summary, model } = await loadAndCheck({ file });
    assert.ok(load.warnings.some((w) => /Keras 3 export/.test(w)));
    // keras.io "Simple MNIST convnet": Total params: 34,826.
    assert.equal(model.countParams(), 34826);
    assert.equal(summary.totals.params, 34826);
    assert.deepEqual(summary.rows.find((r) => r.path === 'flatten')?.outputShape, [1, 1600]);
  });

  test('Keras 3 functional, 3 inputs, 2 outputs (keras.io tickets model)', async () => {
    const { file } = withWeights('keras3Tickets');
    const { load, summary, rows } = await loadAndCheck({
      file,
      inputShapes: [
        [2, 10],
        [2, 20],
        [2, 12],
      ],
    });
    assert.deepEqual(
      load.inputs.map((i) => /integer ids in \[0, (\d+)\)/.exec(i.note ?? '')?.[1] ?? null),
      ['10000', '10000', null],
    );
    assert.deepEqual(rows[''].outputShape, [
      [2, 1],
      [2, 4],
    ]);
    // keras.io: "Total params: 1,392,097".
    assert.equal(summary.totals.params, 1392097);
    assert.deepEqual(rows.lstm_1.outputShape, [2, 32]);
    // By name, in any order (`--input tags=2,12 --input title=2,7 --input body=2,9`).
    const e = await engine();
    const named = [
      { name: 'tags', shape: [2, 12] },
      { name: 'title', shape: [2, 7] },
      { name: 'body', shape: [2, 9] },
    ];
    const r = await e.loadModel(Object.assign({ file }, { inputs: named }));
    assert.deepEqual(
      r.inputs.map((i) => i.shape),
      [
        [2, 7],
        [2, 9],
        [2, 12],
      ],
    );
    await assert.rejects(
      e.loadModel(
        Object.assign(
          { file },
          { inputs: [named[0], { name: 'subject', shape: [2, 7] }, named[2]] },
        ),
      ),
      /no value given for input 'title'/,
    );
  });

  test('a Keras 3 layer tfjs does not have: says Keras 3 and what to do, in one line', async () => {
    const dir = tmp();
    const json = JSON.parse(
      fs.readFileSync(path.join(MODELS, 'keras3MnistConvnet', 'model.json'), 'utf8'),
    );
    json.modelTopology.model_config.config.layers[6].class_name = 'EinsumDense';
    json.weightsManifest = [];
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    const err = await refused(path.join(dir, 'model.json'), /Keras 3 export .*EinsumDense/);
    assert.equal(err.data.kind, 'unsupported');
    assert.match(err.data.hint ?? '', /tf_keras/);
    assert.ok(!err.message.includes('\n') && err.message.length < 400, err.message);
  });
});

describe('weight paths stay inside the model folder (#13 item 4)', () => {
  const layout = (paths: string[], bytes = 8): string => {
    const dir = tmp();
    const json = {
      format: 'layers-model',
      modelTopology: JSON.parse(
        fs.readFileSync(path.join(MODELS, 'keras2TextClassifier', 'model.json'), 'utf8'),
      ).modelTopology,
      weightsManifest: [
        { paths, weights: [{ name: 'dense/bias', shape: [bytes / 4], dtype: 'float32' }] },
      ],
    };
    fs.mkdirSync(path.join(dir, 'model'));
    fs.writeFileSync(path.join(dir, 'secret.bin'), Buffer.alloc(bytes, 7));
    fs.writeFileSync(path.join(dir, 'model', 'model.json'), JSON.stringify(json));
    return path.join(dir, 'model', 'model.json');
  };

  test('../ and absolute paths are refused with the path and the folder', async () => {
    await refused(
      layout(['../secret.bin']),
      /weight path '\.\.\/secret\.bin' leaves the folder; weight files must lie in/,
    );
    await refused(layout(['../../../../etc/passwd']), /leaves the folder/);
    await refused(layout([path.join(os.tmpdir(), 'x.bin')]), /is absolute/);
    await refused(layout(['file:///etc/passwd']), /is absolute/);
  });

  test('a link out of the folder and a device are refused; /dev/zero is never read', async () => {
    const out = layout(['w.bin']);
    fs.symlinkSync(
      path.join(path.dirname(out), '..', 'secret.bin'),
      path.join(path.dirname(out), 'w.bin'),
    );
    await refused(out, /is a link to .*secret\.bin, outside the folder/);
    const zero = layout(['zero.bin']);
    fs.symlinkSync('/dev/zero', path.join(path.dirname(zero), 'zero.bin'));
    await refused(zero, /outside the folder/);
  });

  test('a shard larger than its manifest declares is refused, not read', async () => {
    const file = layout(['w.bin'], 8);
    fs.writeFileSync(path.join(path.dirname(file), 'w.bin'), Buffer.alloc(64));
    const err = await refused(file, /has 64 bytes, more than the 8 its manifest declares/);
    assert.equal(err.data.got, '64 bytes');
  });
});
