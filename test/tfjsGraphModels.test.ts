// Graph models (tfjs-converter "format": "graph-model") through the engine in-process. The two
// models are written at test time by test/graphModelWriter.ts from real architectures (MobileNet
// v1 0.25/128 and the tfjs-examples MNIST convnet), BatchNorm folded as the converter does; every
// figure is checked against the LayersModel they came from and against tf.loadGraphModel itself.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { EngineFailure } from '../src/engine/tfjs/engineError';
import { INPUT_SEED } from '../src/engine/tfjs/inputSynthesis';
import type { HookEvent } from '../src/protocol/messages';
import { writeGraphModel } from './graphModelWriter';
import { TfjsEngine } from '../src/engine/tfjs/tfjsEngine';
import { PROTOCOL_VERSION } from '../src/protocol/types';

// Fixtures are user model files that tsc does not compile; tsx loads them here.
const { createConvModel } = require('./fixtures/tfjsModels/mnistConvnet') as {
  createConvModel: () => tf.Sequential;
};
const { mobilenetV1 } = require('./fixtures/tfjsModels/mobilenet') as {
  mobilenetV1: (alpha: number, size: number, classes: number) => tf.Sequential;
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-graph-'));
const events: HookEvent[] = [];
let e: TfjsEngine;
let mobilenet: tf.Sequential;
let mnist: tf.Sequential;
let mobilenetFile: string;
let mnistFile: string;

/** BatchNorm statistics that are not the identity, so folding them is tested. */
function randomizeBatchNorm(m: tf.Sequential): void {
  let seed = 7;
  for (const l of m.layers) {
    if (l.getClassName() !== 'BatchNormalization') continue;
    const [g, b, mu, v] = l.getWeights();
    l.setWeights([
      tf.randomUniform(g.shape, 0.5, 1.5, 'float32', seed++),
      tf.randomNormal(b.shape, 0, 1, 'float32', seed++),
      tf.randomNormal(mu.shape, 0, 1, 'float32', seed++),
      tf.randomUniform(v.shape, 0.5, 2, 'float32', seed++),
    ]);
  }
}

const rejects = async (p: Promise<unknown>, kind: string, re: RegExp): Promise<void> => {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof EngineFailure, String(err));
    assert.equal(err.data.kind, kind, err.message);
    assert.match(err.message, re);
    assert.ok(err.message.length < 400, `one line, not a dump: ${err.message.length} chars`);
    return true;
  });
};

before(async () => {
  e = new TfjsEngine({ hookEvent: (ev) => events.push(ev), trainProgress: () => undefined });
  await e.initialize({
    protocolVersion: PROTOCOL_VERSION,
    trusted: true,
    backend: 'auto',
  } as never);
  mobilenet = mobilenetV1(0.25, 128, 1000);
  randomizeBatchNorm(mobilenet);
  mobilenetFile = writeGraphModel(mobilenet, path.join(dir, 'mobilenet'));
  mnist = createConvModel();
  mnistFile = writeGraphModel(mnist, path.join(dir, 'mnist'));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('graph models', () => {
  test('MobileNet v1: signature, name-scope tree, folded parameter count', async () => {
    const r = await e.loadModel({ file: mobilenetFile });
    assert.equal(r.type, 'GraphModel');
    assert.deepEqual(
      r.inputs.map((i) => [i.shape, i.dtype]),
      [[[1, 128, 128, 3], 'float32']],
    );
    assert.match(r.inputs[0].note ?? '', /input_1 \[null,128,128,3\]/);
    const tree = e.tree({ modelId: r.modelId });
    const scope = 'mobilenet_0_25_128';
    const byPath = Object.fromEntries(tree.modules.map((m) => [m.path, m]));
    assert.equal(byPath[scope].type, 'NameScope');
    assert.equal(byPath[`${scope}.conv1`].type, 'NameScope');
    assert.equal(byPath[`${scope}.conv1.Relu6`].type, '_FusedConv2D');
    assert.equal(byPath[`${scope}.conv_dw_1.Relu6`].type, 'FusedDepthwiseConv2dNative');
    // Folding turns each BatchNorm's 4×C weights into C biases: countParams() − 3 × ΣC.
    const bnChannels = mobilenet.layers
      .filter((l) => l.getClassName() === 'BatchNormalization')
      .reduce((a, l) => a + (l.getWeights()[0].shape[0] as number), 0);
    assert.equal(byPath[''].totalParams, mobilenet.countParams() - 3 * bnChannels);
    // conv1: 3×3×3×8 kernel + 8 folded biases.
    assert.equal(byPath[`${scope}.conv1`].totalParams, 3 * 3 * 3 * 8 + 8);
    assert.deepEqual(
      tree.parameters.filter((p) => p.module === `${scope}.conv1.Relu6`).map((p) => p.tensor.shape),
      [[3, 3, 3, 8], [8]],
    );
  });

  test('MobileNet v1: summary shapes = the LayersModel’s, output = its predict()', async () => {
    const r = await e.loadModel({ file: mobilenetFile });
    const s = await e.summary({ modelId: r.modelId });
    const rows = Object.fromEntries(s.rows.map((row) => [row.path, row]));
    const scope = 'mobilenet_0_25_128';
    for (const name of ['conv1', 'conv_dw_1', 'conv_pw_1', 'conv_dw_2', 'conv_pw_13']) {
      const shape = (mobilenet.getLayer(name).outputShape as number[]).map((d) => d ?? 1);
      const row = s.rows.find((x) => x.path.startsWith(`${scope}.${name}.`) && x.isLeaf)!;
      assert.deepEqual(row.outputShape, shape, name);
    }
    assert.deepEqual(rows[''].outputShape, [1, 1000]);
    // torchinfo's conv rule: (kernel + bias) × output positions.
    assert.equal(rows[`${scope}.conv1.Relu6`].macs, (3 * 3 * 3 * 8 + 8) * 64 * 64);
    assert.equal(s.totals.params, rows[''].params);
    const conv1 = rows[`${scope}.conv1`];
    assert.deepEqual([conv1.ownParams, conv1.totalParams], [0, 3 * 3 * 3 * 8 + 8]);
    const out = await e.inspect({
      modelId: r.modelId,
      target: { kind: 'output', path: '' },
      stats: true,
    });
    const want = tf.tidy(() => {
      const y = mobilenet.predict(
        tf.randomNormal([1, 128, 128, 3], 0, 1, 'float32', INPUT_SEED),
      ) as tf.Tensor;
      return { max: y.max().dataSync()[0], std: tf.moments(y).variance.sqrt().dataSync()[0] };
    });
    assert.ok(
      Math.abs((out.stats?.max ?? 0) - want.max) < 1e-4,
      `${out.stats?.max} vs ${want.max}`,
    );
    assert.ok(Math.abs((out.stats?.mean ?? 0) - 1 / 1000) < 1e-6, 'softmax over 1000 classes');
  });

  test('MNIST convnet: counts equal countParams(); the Reshape shape is a buffer', async () => {
    const r = await e.loadModel({ file: mnistFile });
    const tree = e.tree({ modelId: r.modelId });
    assert.equal(tree.modules[0].totalParams, mnist.countParams());
    assert.deepEqual(
      tree.buffers.map((b) => [b.tensor.dtype, b.tensor.shape]),
      [['int32', [2]]],
    );
    const s = await e.summary({ modelId: r.modelId, inputShapes: [[4, 28, 28, 1]] });
    const flat = s.rows.find((x) => x.type === 'Reshape')!;
    assert.deepEqual(flat.outputShape, [4, (mnist.layers[5].outputShape as number[])[1]]);
    assert.deepEqual(s.rows[0].outputShape, [4, 10]);
  });

  test('profile: per-op kernels of the fused ops and a Chrome trace', async () => {
    const r = await e.loadModel({ file: mnistFile });
    const traceFile = path.join(dir, 'trace.json');
    const p = await e.profile({ modelId: r.modelId, steps: 2, warmup: 1, traceFile });
    assert.ok(
      p.ops.some((o) => o.name === 'FusedConv2D' && o.calls === 6),
      p.ops.map((o) => `${o.name}×${o.calls}`).join(' '),
    );
    assert.ok(p.ops.some((o) => o.name === '_FusedMatMul' && o.calls === 4));
    assert.equal(p.modules[0].calls, 2);
    const trace = JSON.parse(fs.readFileSync(traceFile, 'utf8')) as {
      traceEvents: { cat: string }[];
    };
    assert.ok(trace.traceEvents.some((ev) => ev.cat === 'kernel'));
  });

  test('hooks on node outputs; backward and training refused naming the format', async () => {
    const r = await e.loadModel({ file: mnistFile });
    const node = e.tree({ modelId: r.modelId }).modules.find((m) => m.type === 'MaxPool')!.path;
    const fwd = e.attachHook({ modelId: r.modelId, path: node, kind: 'forward', intervalMs: 0 });
    const pre = e.attachHook({ modelId: r.modelId, path: node, kind: 'forwardPre', intervalMs: 0 });
    await e.forward({ modelId: r.modelId, steps: 2 });
    e.detachHook({ all: true });
    const mine = events.filter((ev) => ev.hookId === fwd.hookId);
    assert.equal(mine.length, 2);
    assert.deepEqual(
      mine[0].tensor.shape,
      (mnist.layers[1].outputShape as number[]).map((d) => d ?? 1),
    );
    assert.ok((mine[0].stats.min ?? -1) >= 0, 'max-pool of relu');
    assert.deepEqual(events.find((ev) => ev.hookId === pre.hookId)?.tensor.shape, [1, 26, 26, 16]);
    await rejects(
      Promise.resolve().then(() =>
        e.attachHook({ modelId: r.modelId, path: node, kind: 'backward' }),
      ),
      'unsupported',
      /graph model/,
    );
    await rejects(e.forward({ modelId: r.modelId, backward: true }), 'unsupported', /graph model/);
    await rejects(
      e.startTrain({ file: mnistFile }),
      'unsupported',
      /Training is not possible for a graph model/,
    );
  });

  test('tf.loadGraphModel agrees: the same output for the same input', async () => {
    const json = JSON.parse(fs.readFileSync(mnistFile, 'utf8'));
    const weights = fs.readFileSync(path.join(path.dirname(mnistFile), 'group1-shard1of1.bin'));
    const g = await tf.loadGraphModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0].weights,
        weightData: new Uint8Array(weights).buffer,
      }),
    );
    const r = await e.loadModel({ file: mnistFile });
    const out = await e.inspect({
      modelId: r.modelId,
      target: { kind: 'output', path: '' },
      stats: true,
    });
    const want = tf.tidy(
      () =>
        (g.predict(tf.randomNormal([1, 28, 28, 1], 0, 1, 'float32', INPUT_SEED)) as tf.Tensor)
          .max()
          .dataSync()[0],
    );
    assert.ok(Math.abs((out.stats?.max ?? 0) - want) < 1e-6);
  });

  test('int32 input (as MoveNet takes pixels): declared dtype fed, Cast op in the tree', async () => {
    const file = writeGraphModel(mnist, path.join(dir, 'mnistInt'), { int32Input: true });
    const r = await e.loadModel({ file });
    assert.deepEqual(
      r.inputs.map((i) => [i.shape, i.dtype]),
      [[[1, 28, 28, 1], 'int32']],
    );
    const s = await e.summary({ modelId: r.modelId, inputShapes: [[2, 28, 28, 1]] });
    const cast = s.rows.find((row) => row.type === 'Cast')!;
    assert.deepEqual(cast.outputShape, [2, 28, 28, 1]);
    assert.equal(s.totals.params, mnist.countParams());
    const x = await e.inspect({ modelId: r.modelId, target: { kind: 'input', index: 0 } });
    assert.equal(x.tensor.dtype, 'int32');
  });

  test('an op tfjs does not have: one line naming the graph model and the op', async () => {
    const bad = path.join(dir, 'badOp');
    fs.cpSync(path.dirname(mnistFile), bad, { recursive: true });
    const json = JSON.parse(fs.readFileSync(path.join(bad, 'model.json'), 'utf8'));
    const pool = json.modelTopology.node.find((n: { op: string }) => n.op === 'MaxPool');
    pool.op = 'FractionalMaxPool';
    fs.writeFileSync(path.join(bad, 'model.json'), JSON.stringify(json));
    // model/load never runs the model: the first request that does fails.
    const r = await e.loadModel({ file: path.join(bad, 'model.json') });
    await rejects(
      e.summary({ modelId: r.modelId }),
      'userCodeError',
      /graph model.*FractionalMaxPool/,
    );
  });

  test('without its weight shard: structure and counts, running refused naming the file', async () => {
    const topo = path.join(dir, 'mnistTopologyOnly');
    fs.mkdirSync(topo);
    fs.copyFileSync(mnistFile, path.join(topo, 'model.json'));
    const r = await e.loadModel({ file: path.join(topo, 'model.json') });
    assert.ok(
      r.warnings.some((w) => /Weights missing: group1-shard1of1\.bin/.test(w)),
      r.warnings.join(),
    );
    assert.equal(e.tree({ modelId: r.modelId }).modules[0].totalParams, mnist.countParams());
    const s = await e.summary({ modelId: r.modelId });
    assert.deepEqual(s.rows[0].outputShape, [1, 10]);
    await rejects(
      e.forward({ modelId: r.modelId }),
      'fileNotFound',
      /group1-shard1of1\.bin is missing/,
    );
  });
});
