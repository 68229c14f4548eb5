// The real TF.js engine process (dist/engine.js) driven through the real EngineClient. Expected
// numbers are computed by hand in the comments (and in the fixtures' headers), never taken from
// the engine's own output.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { EngineClient, EngineError } from '../src/client/engineClient';
import {
  hookAttachRequest,
  hookDetachRequest,
  hookEventNotification,
  logNotification,
  modelForwardRequest,
  modelLoadRequest,
  modelSummaryRequest,
  modelTreeRequest,
  outputNotification,
  profileRunRequest,
  systemInfoRequest,
  tensorInspectRequest,
  trainProgressNotification,
  trainStartRequest,
  trainStopRequest,
} from '../src/protocol/messages';
import type { HookEvent, LogMessage, OutputEvent, TrainProgress } from '../src/protocol/messages';
import type { EngineErrorData } from '../src/protocol/errors';
import { addCallListener } from '../src/engine/tfjs/callInterceptor';
import { writeGraphModel } from './graphModelWriter';

const ROOT = path.resolve(__dirname, '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'tfjs');
const IRIS = path.join(ROOT, 'examples', 'iris_mlp.ts');
const CNN = path.join(ROOT, 'examples', 'small_cnn.ts');
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * Bundles the engine with esbuild.js's own configuration so these tests always run the current
 * sources even while other parts of `npm run build` are mid-edit.
 */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

function buildEngine(): void {
  const bundle = path.join(ROOT, 'dist', 'engine.js');
  const wasmOk = fs.existsSync(path.join(ROOT, 'dist', 'wasm', 'tfjs-backend-wasm-simd.wasm'));
  const sources = Math.max(
    newestSource(path.join(ROOT, 'src', 'engine')),
    newestSource(path.join(ROOT, 'src', 'protocol')),
  );
  // Other suites may be starting dist/engine.js right now: rewrite it only when it is stale.
  if (wasmOk && fs.existsSync(bundle) && fs.statSync(bundle).mtimeMs >= sources) return;
  const esbuild = require('esbuild') as typeof import('esbuild');
  const config = require(path.join(ROOT, 'esbuild.js')) as {
    engineBuild(): import('esbuild').BuildOptions;
    copyWasm(): void;
  };
  esbuild.buildSync(config.engineBuild());
  config.copyWasm();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<EngineErrorData & { message: string }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof EngineError, `expected EngineError, got ${String(err)}`);
    return { ...err.data, message: err.message };
  }
  assert.fail('the request should have been rejected');
}

let client: EngineClient;
const outputs: OutputEvent[] = [];
const logs: LogMessage[] = [];

before(async () => {
  buildEngine();
  client = await EngineClient.start({ kind: 'tfjs', cwd: ROOT, trusted: true });
  client.onNotification(outputNotification, (o) => outputs.push(o));
  client.onNotification(logNotification, (m) => logs.push(m));
});

after(async () => {
  await client?.dispose();
});

const load = (file: string, extra: { model?: string; inputShapes?: number[][] } = {}) =>
  client.request(modelLoadRequest, { file, ...extra }, { timeoutMs: REQUEST_TIMEOUT_MS });

describe('engine/initialize', () => {
  test('reports the backend, why each better one was not taken, versions, strides', () => {
    const info = client.info;
    assert.equal(info.kind, 'tfjs');
    // Best first: a native backend that did not load is explained, whichever loaded here.
    const ranked = [
      ['tensorflow-gpu', '@tensorflow/tfjs-node-gpu'],
      ['tensorflow', '@tensorflow/tfjs-node'],
      ['wasm', '@tensorflow/tfjs-backend-wasm'],
      ['cpu', '@tensorflow/tfjs-backend-cpu'],
    ];
    const chosen = ranked.findIndex(([label]) => label === info.backend);
    assert.ok(chosen >= 0, `backend ${info.backend}`);
    for (const [, pkg] of ranked.slice(0, Math.min(chosen, 2))) {
      const notes = info.backendNotes;
      const why = `a note for ${pkg}: ${notes.join('; ')}`;
      assert.ok(
        notes.some((n) => n.startsWith(`${pkg}:`)),
        why,
      );
    }
    assert.deepEqual(
      info.runtimes.find((r) => r.name === '@tensorflow/tfjs'),
      { name: '@tensorflow/tfjs', version: '4.22.0' },
    );
    assert.equal(info.runtimes.find((r) => r.name === 'node')?.version, process.versions.node);
    assert.equal(info.capabilities.strides, 'rowMajor');
  });

  test('an untrusted workspace starts the engine but runs no training either', async () => {
    const c = await EngineClient.start({ kind: 'tfjs', cwd: ROOT, trusted: false });
    try {
      const err = await rejection(
        c.request(trainStartRequest, { file: path.join(ROOT, 'examples', 'iris_mlp.ts') }),
      );
      assert.equal(err.kind, 'untrusted');
    } finally {
      await c.dispose();
    }
  });

  test('backend cpu can be asked for', async () => {
    const c = await EngineClient.start({ kind: 'tfjs', cwd: ROOT, trusted: true, backend: 'cpu' });
    try {
      assert.equal(c.info.backend, 'cpu');
    } finally {
      await c.dispose();
    }
  });
});

describe('iris MLP (4→10→3)', () => {
  test('layer names find their creation line; synthetic strides; MACs at batch 5', async () => {
    // Tree, parameters and totals of this model are in the conformance suite; these are tfjs's own.
    const r = await load(IRIS);
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    assert.deepEqual(
      tree.modules.map((m) => m.path),
      ['', 'hidden', 'output'],
    );
    // `tf.layers.dense({ ..., name: 'hidden' })` is on line 12 of the example.
    assert.equal(tree.modules[1].source?.creation?.line, 12);
    const k = tree.parameters[0].tensor;
    assert.deepEqual(k.stride, [10, 1]);
    assert.equal(k.strideSynthetic, true);
    assert.match(k.contiguity.reason, /TF\.js tensors are always contiguous/);
    assert.equal(k.view.wouldFail, false);

    const s = await client.request(modelSummaryRequest, {
      modelId: r.modelId,
      inputShapes: [[5, 4]],
    });
    const rows = Object.fromEntries(s.rows.map((row) => [row.path, row]));
    assert.deepEqual(rows.hidden.outputShape, [5, 10]);
    // torchinfo: Linear MACs = (weight + bias elements) × output rows = 50×5 and 33×5.
    assert.equal(rows.hidden.macs, 250);
    assert.equal(rows.output.macs, 165);
    // Leaf outputs 5×10 + 5×3 floats, ×2 for forward+backward.
    assert.equal(s.totals.forwardBackwardBytes, 2 * (50 + 15) * 4);
    assert.deepEqual(rows.hidden.output?.stride, [10, 1]);
    const counts = [rows.hidden.ownParams, rows[''].ownParams, rows[''].totalParams];
    assert.deepEqual(counts, [50, 0, 83]);
  });

  test('an input shape that does not fit names the layer, expected and got', async () => {
    // model/load never runs the model: the first request that does fails.
    const r = await load(IRIS, { inputShapes: [[1, 5]] });
    const err = await rejection(client.request(modelSummaryRequest, { modelId: r.modelId }));
    assert.equal(err.kind, 'shapeMismatch');
    assert.match(err.layer ?? '', /hidden/);
    assert.match(err.expected ?? '', /4/);
    assert.match(err.got ?? '', /1,5/);
  });

  test('tensor/inspect: a layer output (relu ≥ 0), the root output and the input', async () => {
    const r = await load(IRIS);
    const o = await client.request(tensorInspectRequest, {
      modelId: r.modelId,
      target: { kind: 'output', path: 'hidden' },
      stats: true,
    });
    assert.deepEqual(o.tensor.shape, [1, 10]);
    assert.ok((o.stats?.min ?? -1) >= 0, 'relu output is never negative');
    const softmax = await client.request(tensorInspectRequest, {
      modelId: r.modelId,
      target: { kind: 'output', path: '' },
      stats: true,
    });
    assert.ok(Math.abs((softmax.stats?.mean ?? 0) * 3 - 1) < 1e-5, 'softmax row sums to 1');
    const i = await client.request(tensorInspectRequest, {
      modelId: r.modelId,
      target: { kind: 'input', index: 0 },
    });
    assert.deepEqual(i.tensor.shape, [1, 4]);
  });

  test('hooks: forward-pre sees the input, backward dL/d(output); none after detach', async () => {
    const r = await load(IRIS);
    const events: HookEvent[] = [];
    const sub = client.onNotification(hookEventNotification, (e) => events.push(e));
    // Hook events are sent during the forward pass, before its response, and arrive in order:
    // each request's answer means its events are already here.
    try {
      const pre = await client.request(hookAttachRequest, {
        modelId: r.modelId,
        path: 'output',
        kind: 'forwardPre',
        intervalMs: 0,
      });
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 1 });
      const inputsSeen = events.filter((e) => e.hookId === pre.hookId);
      assert.equal(inputsSeen.length, 1);
      // The output layer's input is the hidden layer's relu output.
      assert.deepEqual(inputsSeen[0].tensor.shape, [1, 10]);
      assert.ok((inputsSeen[0].stats.min ?? -1) >= 0);

      const bwd = await client.request(hookAttachRequest, {
        modelId: r.modelId,
        path: 'output',
        kind: 'backward',
        intervalMs: 0,
      });
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 1, backward: true });
      const grads = events.filter((e) => e.hookId === bwd.hookId);
      assert.equal(grads.length, 1);
      assert.deepEqual(grads[0].tensor.shape, [1, 3]);
      // d mean(y)/dy = 1/3 for each of the 3 outputs.
      assert.ok(
        Math.abs((grads[0].stats.mean ?? 0) - 1 / 3) < 1e-6,
        `grad mean ${grads[0].stats.mean}`,
      );

      const d = await client.request(hookDetachRequest, { all: true });
      assert.equal(d.detached, 2);
      assert.equal(d.remaining, 0);
      const before = events.length;
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 2, backward: true });
      assert.equal(events.length, before, 'no hook events after detach');
      const err = await rejection(
        client.request(hookAttachRequest, { modelId: r.modelId, path: 'nope', kind: 'forward' }),
      );
      assert.equal(err.kind, 'unknownPath');
    } finally {
      sub.dispose();
    }
  });

  test('profile: per-op timings without __op wrappers, per-layer times and a Chrome trace', async () => {
    const r = await load(IRIS);
    const traceFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ml-trace-')), 'trace.json');
    const p = await client.request(
      profileRunRequest,
      { modelId: r.modelId, steps: 2, warmup: 1, mode: 'train', traceFile },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    assert.equal(p.method, 'tf.profile');
    assert.ok(p.ops.length > 0);
    assert.ok(
      p.ops.every((o) => !o.name.endsWith('__op')),
      p.ops.map((o) => o.name).join(','),
    );
    assert.ok(
      p.ops.some(
        (o) =>
          /MatMul/.test(o.name) &&
          o.inputShapes.some((s) => JSON.stringify(s) === '[[1,4],[4,10]]'),
      ),
    );
    assert.ok(p.ops.some((o) => o.phase === 'backward'));
    const hidden = p.modules.find((m) => m.path === 'hidden');
    assert.equal(hidden?.calls, 2);
    const trace = JSON.parse(fs.readFileSync(traceFile, 'utf8')) as {
      traceEvents: Record<string, unknown>[];
    };
    const complete = trace.traceEvents.filter((e) => e.ph === 'X');
    assert.ok(complete.some((e) => e.cat === 'kernel'));
    assert.ok(complete.some((e) => e.cat === 'layer' && e.name === 'hidden'));
    for (const e of complete) {
      assert.equal(typeof e.ts, 'number');
      assert.equal(typeof e.dur, 'number');
      assert.equal(typeof e.pid, 'number');
      assert.equal(typeof e.tid, 'number');
    }
  });

  test('training: progress notifications with a falling loss, and user output tagged with the run', async () => {
    const progress: TrainProgress[] = [];
    const sub = client.onNotification(trainProgressNotification, (p) => progress.push(p));
    try {
      const { runId } = await client.request(trainStartRequest, { file: IRIS, epochs: 20 });
      const deadline = Date.now() + REQUEST_TIMEOUT_MS;
      while (
        !progress.some(
          (p) => p.runId === runId && ['done', 'failed', 'stopped'].includes(p.state),
        ) &&
        Date.now() < deadline
      )
        await sleep(50);
      const mine = progress.filter((p) => p.runId === runId);
      const last = mine[mine.length - 1];
      assert.equal(last.state, 'done', JSON.stringify(last.error));
      // 150 rows in batches of 16 → 10 steps per epoch.
      assert.equal(last.step, 200);
      assert.equal(last.totalSteps, 200);
      const losses = mine.flatMap((p) => p.loss.map(([, l]) => l));
      assert.ok(losses.length >= 20, `${losses.length} loss points`);
      const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
      assert.ok(
        avg(losses.slice(-5)) < avg(losses.slice(0, 5)) * 0.5,
        `loss ${avg(losses.slice(0, 5))} → ${avg(losses.slice(-5))}`,
      );
      assert.ok(outputs.some((o) => o.runId === runId && /epoch 20: loss=/.test(o.text)));
    } finally {
      sub.dispose();
    }
  });
});

describe('model structure', () => {
  test('nested models and a shared layer: dotted paths, aliases, counted once', async () => {
    const r = await load(path.join(FIXTURES, 'nestedShared.ts'));
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    const byPath = Object.fromEntries(tree.modules.map((m) => [m.path, m]));
    assert.deepEqual(Object.keys(byPath), [
      '',
      'encoder',
      'encoder.enc_dense',
      'encoder.shared',
      'head',
    ]);
    assert.deepEqual(byPath['encoder.shared'].aliases, ['shared']);
    assert.deepEqual(byPath[''].children, ['encoder', 'shared', 'head']);
    assert.equal(byPath[''].totalParams, 54 + 42 + 14);
    assert.equal(byPath.encoder.totalParams, 54 + 42);
    assert.equal(byPath.encoder.isLeaf, false);
    const kernel = tree.parameters.find((p) => p.name === 'encoder.shared.kernel');
    assert.deepEqual(kernel?.aliases, ['shared.kernel']);
    assert.equal(tree.parameters.length, 6);
    const s = await client.request(modelSummaryRequest, { modelId: r.modelId });
    assert.equal(s.totals.params, 110);
    // batch 1: enc_dense 54 + shared 42 per call × 2 calls + head 14.
    assert.equal(s.totals.macs, 54 + 2 * 42 + 14);
  });

  test('small CNN: conv params and MACs by torchinfo’s rule', async () => {
    const r = await load(CNN);
    const s = await client.request(modelSummaryRequest, { modelId: r.modelId });
    const rows = Object.fromEntries(s.rows.map((row) => [row.path, row]));
    // conv1: 3*3*1*8+8 = 80 params, output 26×26 → 80*676; conv2: 3*3*8*16+16 = 1168, 13→6 (stride 2) → 1168*36.
    assert.deepEqual(rows.conv1.outputShape, [1, 26, 26, 8]);
    assert.equal(rows.conv1.macs, 80 * 26 * 26);
    assert.deepEqual(rows.conv2.outputShape, [1, 6, 6, 16]);
    assert.equal(rows.conv2.macs, 1168 * 36);
    assert.equal(rows.pool1.macs, 0);
    assert.equal(rows.classifier.params, 576 * 10 + 10);
    assert.equal(s.totals.params, 80 + 1168 + 5770);
    assert.equal(s.totals.macs, 80 * 676 + 1168 * 36 + 5770);
  });

  test('the small CNN trains on wasm (needs the registered conv gradient kernels)', async () => {
    const progress: TrainProgress[] = [];
    const sub = client.onNotification(trainProgressNotification, (p) => progress.push(p));
    try {
      const { runId } = await client.request(trainStartRequest, { file: CNN, epochs: 1 });
      const deadline = Date.now() + REQUEST_TIMEOUT_MS;
      while (
        !progress.some(
          (p) => p.runId === runId && ['done', 'failed', 'stopped'].includes(p.state),
        ) &&
        Date.now() < deadline
      )
        await sleep(50);
      const last = progress.filter((p) => p.runId === runId).pop();
      assert.equal(last?.state, 'done', JSON.stringify(last?.error));
      assert.equal(last?.step, 128 / 32);
    } finally {
      sub.dispose();
    }
  });

  test('a saved model.json loads through the fs loader with its weights', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-modeljson-'));
    await tf.setBackend('cpu');
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [3], units: 2, name: 'fc' })],
    });
    const kernel = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    model.getLayer('fc').setWeights([kernel, tf.tensor1d([10, 20])]);
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(a.weightData as ArrayBuffer));
        fs.writeFileSync(
          path.join(dir, 'model.json'),
          JSON.stringify({
            modelTopology: a.modelTopology,
            format: 'layers-model',
            weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
          }),
        );
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const r = await load(path.join(dir, 'model.json'));
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    assert.equal(tree.modules[0].totalParams, 8);
    const k = await client.request(tensorInspectRequest, {
      modelId: r.modelId,
      target: { kind: 'parameter', name: 'fc.kernel' },
      stats: true,
    });
    assert.equal(k.stats?.mean, 3.5);
    assert.equal(k.stats?.max, 6);
    const b = await client.request(tensorInspectRequest, {
      modelId: r.modelId,
      target: { kind: 'parameter', name: 'fc.bias' },
      stats: true,
    });
    assert.equal(b.stats?.mean, 15);
  });
});

describe('user folders', () => {
  test('a model file outside any node_modules gets the engine’s own tf, __dirname and its exampleInput', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-shim-'));
    fs.writeFileSync(path.join(dir, 'scale.json'), JSON.stringify({ units: 7 }));
    fs.writeFileSync(path.join(dir, 'layers.ts'), "export const hiddenName: string = 'body';\n");
    const file = path.join(dir, 'model.ts');
    fs.writeFileSync(
      file,
      [
        "import * as tf from '@tensorflow/tfjs';",
        "import * as core from '@tensorflow/tfjs-core';",
        "import * as fs from 'node:fs';",
        "import * as path from 'node:path';",
        "import { hiddenName } from './layers';",
        "const { units } = JSON.parse(fs.readFileSync(path.join(__dirname, 'scale.json'), 'utf8')) as { units: number };",
        '// The engine runs on wasm; a private copy of tfjs would sit on another backend.',
        "if (tf.getBackend() !== 'wasm' || core.getBackend() !== 'wasm') throw new Error('not the engine tf: ' + tf.getBackend());",
        'export const exampleInput = () => tf.ones([3, 5]);',
        'export async function create(): Promise<tf.LayersModel> {',
        '  return tf.sequential({ layers: [tf.layers.dense({ inputShape: [5], units, name: hiddenName })] });',
        '}',
      ].join('\n'),
    );
    const r = await load(file);
    assert.equal(r.name, 'create');
    assert.deepEqual(r.inputs, [
      { shape: [3, 5], dtype: 'float32', source: 'example', note: 'from the exampleInput export' },
    ]);
    const s = await client.request(modelSummaryRequest, { modelId: r.modelId });
    assert.deepEqual(s.rows.find((row) => row.path === 'body')?.outputShape, [3, 7]);
    // exampleInput is ones: the input's statistics say so.
    const x = await client.request(tensorInspectRequest, {
      modelId: r.modelId,
      target: { kind: 'input', index: 0 },
      stats: true,
    });
    assert.deepEqual([x.stats?.min, x.stats?.max], [1, 1]);
  });
});

describe('bad input', () => {
  test('syntax error with file:line:column', async () => {
    const file = path.join(FIXTURES, 'syntaxError.js');
    const err = await rejection(load(file));
    assert.equal(err.kind, 'syntaxError');
    // "  const model = tf.sequential(;" — the ';' is the 31st character of line 5.
    assert.deepEqual(err.location, { file, line: 5, column: 31 });
    assert.match(err.message, /syntaxError\.js:5:31/);
  });

  test('several candidates: ambiguousModel, then `model` picks one', async () => {
    const file = path.join(FIXTURES, 'ambiguous.ts');
    const err = await rejection(load(file));
    assert.equal(err.kind, 'ambiguousModel');
    assert.deepEqual(err.candidates, ['small', 'large']);
    const r = await load(file, { model: 'large' });
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    assert.equal(tree.modules[0].totalParams, 2 * 8 + 8 + 8 + 1);
    const missing = await rejection(load(file, { model: 'medium' }));
    assert.equal(missing.kind, 'noModel');
  });

  test('an input too large to allocate is refused with its size, before tfjs tries', async () => {
    // 100000 × 100000 float32 is 40 GB (was: "TF.js engine bug: tried to allocate ...").
    const r = await load(IRIS, { inputShapes: [[100000, 100000]] });
    const err = await rejection(client.request(modelSummaryRequest, { modelId: r.modelId }));
    assert.equal(err.kind, 'badRequest');
    assert.match(
      err.message,
      /input too large: shape \[100000, 100000\] float32 is 40,000,000,000 bytes/,
    );
  });

  test('a custom layer that throws in call(): message, its line and the layer', async () => {
    const file = path.join(FIXTURES, 'customLayerThrows.ts');
    const r = await load(file);
    const err = await rejection(client.request(modelSummaryRequest, { modelId: r.modelId }));
    assert.equal(err.kind, 'userCodeError');
    assert.match(err.message, /Scale wants 3 features, got 5/);
    assert.equal(err.layer, 'scale');
    assert.deepEqual([err.location?.file, err.location?.line], [file, 8]);
  });

  test('branches of different widths meeting in Add: merge layer and shapes named', async () => {
    const file = path.join(FIXTURES, 'mergeMismatch.ts');
    const err = await rejection(load(file, { model: 'build' }));
    assert.equal(err.kind, 'shapeMismatch');
    assert.equal(err.layer, 'merge');
    assert.match(err.message, /\[in layer merge \(Add\) given \[null,4\] and \[null,5\]\]/);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const line = lines.findIndex((l) => l.includes("tf.layers.add({ name: 'merge' })")) + 1;
    assert.equal(err.location?.line, line);
  });

  test('time axes that differ only at run time: the Concatenate is named', async () => {
    const file = path.join(FIXTURES, 'mergeMismatch.ts');
    const inputShapes = [
      [1, 3, 8],
      [1, 5, 8],
    ];
    // model/load never runs the model: the first request that does fails.
    const r = await load(file, { model: 'variableLength', inputShapes });
    const err = await rejection(client.request(modelSummaryRequest, { modelId: r.modelId }));
    assert.equal(err.kind, 'shapeMismatch');
    assert.equal(err.layer, 'joined');
    assert.match(err.message, /\(1,5,4\) does not match the shape of the rest \(1,3,4\)/);
  });

  test('a graph model over the protocol: summary, and a one-line refusal to train it', async () => {
    const cnn = require('../examples/small_cnn') as { createModel: () => tf.Sequential };
    await tf.setBackend('cpu');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-graph-'));
    const file = writeGraphModel(cnn.createModel(), dir);
    const r = await load(file);
    assert.equal(r.type, 'GraphModel');
    const s = await client.request(modelSummaryRequest, { modelId: r.modelId });
    // conv1 80 + conv2 1168 + classifier 5770, as in the layers model (see 'small CNN' above).
    assert.equal(s.totals.params, 80 + 1168 + 5770);
    assert.deepEqual(s.rows[0].outputShape, [1, 10]);
    const err = await rejection(client.request(trainStartRequest, { file }));
    assert.equal(err.kind, 'unsupported');
    assert.match(err.message, /^Training is not possible for a graph model \(tfjs-converter/);
  });

  test('user prints and stray async errors neither corrupt the protocol nor kill the engine', async () => {
    const r = await load(path.join(FIXTURES, 'noisy.mjs'));
    assert.equal(r.name, 'model');
    await sleep(300);
    const info = await client.request(systemInfoRequest, undefined);
    assert.ok(info.memory.rssBytes > 0);
    assert.deepEqual(info.gpus, []);
    assert.equal(typeof info.memory.tfjsTensors, 'number');
    const text = outputs.map((o) => o.text).join('');
    assert.match(text, /hello from the model file/);
    assert.match(text, /raw stdout write/);
    assert.ok(
      logs.some((l) => /stray async error from user code/.test(l.message)),
      'uncaught error logged',
    );
    assert.ok(
      logs.some((l) => /stray rejection from user code/.test(l.message)),
      'rejection logged',
    );
  });

  test('user code calling process.exit is a userExit error and the engine stays up', async () => {
    const err = await rejection(load(path.join(FIXTURES, 'callsExit.ts')));
    assert.equal(err.kind, 'userExit');
    assert.match(err.message, /process\.exit\(3\)/);
    const info = await client.request(systemInfoRequest, undefined);
    assert.ok(info.memory.rssBytes > 0);
  });

  test('hooks without modelId follow the training run; train/stop ends a long fit early', async () => {
    const progress: TrainProgress[] = [];
    const sub = client.onNotification(trainProgressNotification, (p) => progress.push(p));
    try {
      const { runId } = await client.request(trainStartRequest, {
        file: path.join(FIXTURES, 'trainForever.ts'),
      });
      const deadline = Date.now() + REQUEST_TIMEOUT_MS;
      while (
        !progress.some((p) => p.runId === runId && p.state === 'running') &&
        Date.now() < deadline
      )
        await sleep(20);
      // No modelId: the hook goes on the model being trained, and fires inside fit.
      const hook = await client.request(hookAttachRequest, {
        path: 'fc',
        kind: 'forward',
        intervalMs: 0,
      });
      const events: HookEvent[] = [];
      const hookSub = client.onNotification(hookEventNotification, (e) => events.push(e));
      while (events.length < 3 && Date.now() < deadline) await sleep(20);
      await client.request(hookDetachRequest, { hookId: hook.hookId });
      hookSub.dispose();
      assert.ok(events.length >= 3, 'hook events during fit');
      assert.deepEqual(events[0].tensor.shape, [8, 1], 'batches of 8');
      assert.equal(typeof events[0].step, 'number');
      const res = await client.request(
        trainStopRequest,
        { runId },
        { timeoutMs: REQUEST_TIMEOUT_MS },
      );
      assert.equal(res.stopped, true);
      // The run's last progress is sent before train/stop answers: it is already here.
      const last = progress.filter((p) => p.runId === runId).pop();
      assert.equal(last?.state, 'stopped');
      assert.ok((last?.step ?? Infinity) < 100000 * 8, 'stopped long before the end');
    } finally {
      sub.dispose();
    }
  });
});

describe('call interception (in-process)', () => {
  test('removing the last listener gives the layer back its original call', () => {
    const layer = tf.layers.dense({ units: 2, inputShape: [3] });
    const original = (layer as unknown as { call: unknown }).call;
    const removeA = addCallListener(layer, { after: () => undefined });
    const removeB = addCallListener(layer, { before: () => undefined });
    assert.notEqual((layer as unknown as { call: unknown }).call, original);
    removeA();
    assert.ok(
      Object.prototype.hasOwnProperty.call(layer, 'call'),
      'still patched while a listener remains',
    );
    removeB();
    assert.equal((layer as unknown as { call: unknown }).call, original);
    assert.equal(Object.prototype.hasOwnProperty.call(layer, 'call'), false);
  });
});
