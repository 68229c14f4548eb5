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

const ROOT = path.resolve(__dirname, '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'tfjs');
const IRIS = path.join(ROOT, 'examples', 'iris_mlp.ts');
const CNN = path.join(ROOT, 'examples', 'small_cnn.ts');
const REQUEST_TIMEOUT_MS = 60_000;
/** Time for notifications already on the wire to be delivered. */
const SETTLE_MS = 150;

/**
 * Bundles the engine exactly as esbuild.js does (same entry, externals and format) so these tests
 * always run the current sources even while other parts of `npm run build` are mid-edit.
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
  const sources = Math.max(newestSource(path.join(ROOT, 'src', 'engine')), newestSource(path.join(ROOT, 'src', 'protocol')));
  // Other suites may be starting dist/engine.js right now: rewrite it only when it is stale.
  if (wasmOk && fs.existsSync(bundle) && fs.statSync(bundle).mtimeMs >= sources) return;
  const esbuild = require('esbuild') as typeof import('esbuild');
  esbuild.buildSync({
    absWorkingDir: ROOT,
    bundle: true,
    sourcemap: 'linked',
    logLevel: 'warning',
    legalComments: 'none',
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['vscode', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'esbuild'],
    entryPoints: { engine: 'src/engine/main.ts', enginePipe: 'src/engine/pipeWorker.ts' },
    outdir: path.join(ROOT, 'dist'),
  });
  const from = path.join(ROOT, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
  const to = path.join(ROOT, 'dist', 'wasm');
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(from)) if (f.endsWith('.wasm')) fs.copyFileSync(path.join(from, f), path.join(to, f));
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
  test('reports tfjs on wasm, why the native backends failed, versions and rowMajor strides', () => {
    const info = client.info;
    assert.equal(info.kind, 'tfjs');
    assert.equal(info.backend, 'wasm');
    assert.ok(info.backendNotes.some((n) => n.includes('@tensorflow/tfjs-node-gpu')), info.backendNotes.join('; '));
    assert.ok(info.backendNotes.some((n) => n.startsWith('@tensorflow/tfjs-node:')), info.backendNotes.join('; '));
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
      const err = await rejection(c.request(trainStartRequest, { file: path.join(ROOT, 'examples', 'iris_mlp.ts') }));
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
  test('tree, parameters and summary match the hand count 4*10+10 + 10*3+3 = 83', async () => {
    const r = await load(IRIS);
    assert.equal(r.type, 'Sequential');
    assert.deepEqual(r.inputs[0].shape, [1, 4]);
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    assert.deepEqual(
      tree.modules.map((m) => m.path),
      ['', 'hidden', 'output'],
    );
    assert.equal(tree.modules[0].totalParams, 83);
    assert.deepEqual(tree.modules[0].children, ['hidden', 'output']);
    assert.equal(tree.modules[1].ownParams, 4 * 10 + 10);
    // `tf.layers.dense({ ..., name: 'hidden' })` is on line 12 of the example.
    assert.equal(tree.modules[1].source?.creation?.line, 12);
    assert.deepEqual(
      tree.parameters.map((p) => [p.name, p.tensor.shape]),
      [
        ['hidden.kernel', [4, 10]],
        ['hidden.bias', [10]],
        ['output.kernel', [10, 3]],
        ['output.bias', [3]],
      ],
    );
    assert.deepEqual(tree.buffers, []);
    const k = tree.parameters[0].tensor;
    assert.deepEqual(k.stride, [10, 1]);
    assert.equal(k.strideSynthetic, true);
    assert.equal(k.contiguous, true);
    assert.match(k.contiguity.reason, /TF\.js tensors are always contiguous/);
    assert.equal(k.storageOffset, 0);
    assert.equal(k.view.wouldFail, false);
    assert.equal(k.bytes, 40 * 4);

    const s = await client.request(modelSummaryRequest, { modelId: r.modelId, inputShapes: [[5, 4]] });
    const rows = Object.fromEntries(s.rows.map((row) => [row.path, row]));
    assert.deepEqual(rows.hidden.outputShape, [5, 10]);
    assert.deepEqual(rows.output.outputShape, [5, 3]);
    // torchinfo: Linear MACs = (weight + bias elements) × output rows = 50×5 and 33×5.
    assert.equal(rows.hidden.macs, 250);
    assert.equal(rows.output.macs, 165);
    assert.equal(s.totals.macs, 415);
    assert.equal(s.totals.params, 83);
    assert.equal(s.totals.paramBytes, 83 * 4);
    assert.equal(s.totals.inputBytes, 5 * 4 * 4);
    // Leaf outputs 5×10 + 5×3 floats, ×2 for forward+backward.
    assert.equal(s.totals.forwardBackwardBytes, 2 * (50 + 15) * 4);
    assert.deepEqual(rows.hidden.output?.stride, [10, 1]);
  });

  test('an input shape that does not fit names the layer, expected and got', async () => {
    const err = await rejection(load(IRIS, { inputShapes: [[1, 5]] }));
    assert.equal(err.kind, 'shapeMismatch');
    assert.match(err.layer ?? '', /hidden/);
    assert.match(err.expected ?? '', /4/);
    assert.match(err.got ?? '', /1,5/);
  });

  test('tensor/inspect: parameter, layer output (relu ≥ 0) and input', async () => {
    const r = await load(IRIS);
    const p = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'parameter', name: 'hidden.kernel' }, stats: true });
    assert.equal(p.stats?.numel, 40);
    assert.equal(p.tensor.requiresGrad, true);
    const o = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'output', path: 'hidden' }, stats: true });
    assert.deepEqual(o.tensor.shape, [1, 10]);
    assert.ok((o.stats?.min ?? -1) >= 0, 'relu output is never negative');
    const softmax = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'output', path: '' }, stats: true });
    assert.ok(Math.abs((softmax.stats?.mean ?? 0) * 3 - 1) < 1e-5, 'softmax row sums to 1');
    const i = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'input', index: 0 } });
    assert.deepEqual(i.tensor.shape, [1, 4]);
    const bad = await rejection(client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'parameter', name: 'nope.kernel' } }));
    assert.equal(bad.kind, 'unknownPath');
  });

  test('hooks: forward events with stats, backward events, none after detach', async () => {
    const r = await load(IRIS);
    const events: HookEvent[] = [];
    const sub = client.onNotification(hookEventNotification, (e) => events.push(e));
    try {
      const fwd = await client.request(hookAttachRequest, { modelId: r.modelId, path: 'hidden', kind: 'forward', intervalMs: 0 });
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 3 });
      await sleep(SETTLE_MS);
      const mine = events.filter((e) => e.hookId === fwd.hookId);
      assert.equal(mine.length, 3);
      assert.deepEqual(mine[0].tensor.shape, [1, 10]);
      assert.ok((mine[0].stats.min ?? -1) >= 0);
      assert.equal(mine[2].call, 3);
      assert.ok(mine[0].histogram && mine[0].histogram.counts.reduce((a, b) => a + b, 0) === 10);

      const pre = await client.request(hookAttachRequest, { modelId: r.modelId, path: 'output', kind: 'forwardPre', intervalMs: 0 });
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 1 });
      await sleep(SETTLE_MS);
      const inputsSeen = events.filter((e) => e.hookId === pre.hookId);
      assert.equal(inputsSeen.length, 1);
      // The output layer's input is the hidden layer's relu output.
      assert.deepEqual(inputsSeen[0].tensor.shape, [1, 10]);
      assert.ok((inputsSeen[0].stats.min ?? -1) >= 0);

      const bwd = await client.request(hookAttachRequest, { modelId: r.modelId, path: 'output', kind: 'backward', intervalMs: 0 });
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 1, backward: true });
      await sleep(SETTLE_MS);
      const grads = events.filter((e) => e.hookId === bwd.hookId);
      assert.equal(grads.length, 1);
      assert.deepEqual(grads[0].tensor.shape, [1, 3]);
      // d mean(y)/dy = 1/3 for each of the 3 outputs.
      assert.ok(Math.abs((grads[0].stats.mean ?? 0) - 1 / 3) < 1e-6, `grad mean ${grads[0].stats.mean}`);

      const d = await client.request(hookDetachRequest, { all: true });
      assert.equal(d.detached, 3);
      assert.equal(d.remaining, 0);
      const before = events.length;
      await client.request(modelForwardRequest, { modelId: r.modelId, steps: 2, backward: true });
      await sleep(SETTLE_MS);
      assert.equal(events.length, before, 'no hook events after detach');
      const err = await rejection(client.request(hookAttachRequest, { modelId: r.modelId, path: 'nope', kind: 'forward' }));
      assert.equal(err.kind, 'unknownPath');
    } finally {
      sub.dispose();
    }
  });

  test('profile: per-op timings without __op wrappers, per-layer times and a Chrome trace', async () => {
    const r = await load(IRIS);
    const traceFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ml-trace-')), 'trace.json');
    const p = await client.request(profileRunRequest, { modelId: r.modelId, steps: 2, warmup: 1, mode: 'train', traceFile }, { timeoutMs: REQUEST_TIMEOUT_MS });
    assert.equal(p.method, 'tf.profile');
    assert.ok(p.ops.length > 0);
    assert.ok(p.ops.every((o) => !o.name.endsWith('__op')), p.ops.map((o) => o.name).join(','));
    assert.ok(p.ops.some((o) => /MatMul/.test(o.name) && o.inputShapes.some((s) => JSON.stringify(s) === '[[1,4],[4,10]]')));
    assert.ok(p.ops.some((o) => o.phase === 'backward'));
    const hidden = p.modules.find((m) => m.path === 'hidden');
    assert.equal(hidden?.calls, 2);
    const trace = JSON.parse(fs.readFileSync(traceFile, 'utf8')) as { traceEvents: Record<string, unknown>[] };
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
      while (!progress.some((p) => p.runId === runId && ['done', 'failed', 'stopped'].includes(p.state)) && Date.now() < deadline) await sleep(50);
      const mine = progress.filter((p) => p.runId === runId);
      const last = mine[mine.length - 1];
      assert.equal(last.state, 'done', JSON.stringify(last.error));
      // 150 rows in batches of 16 → 10 steps per epoch.
      assert.equal(last.step, 200);
      assert.equal(last.totalSteps, 200);
      const losses = mine.flatMap((p) => p.loss.map(([, l]) => l));
      assert.ok(losses.length >= 20, `${losses.length} loss points`);
      const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
      assert.ok(avg(losses.slice(-5)) < avg(losses.slice(0, 5)) * 0.5, `loss ${avg(losses.slice(0, 5))} → ${avg(losses.slice(-5))}`);
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
    assert.deepEqual(Object.keys(byPath), ['', 'encoder', 'encoder.enc_dense', 'encoder.shared', 'head']);
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

  test('BatchNorm moving stats are buffers; a frozen layer keeps parameters with requiresGrad false', async () => {
    const r = await load(path.join(FIXTURES, 'batchNormFrozen.ts'));
    assert.deepEqual(r.inputs[0].shape, [1, 4]);
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    assert.deepEqual(
      tree.buffers.map((b) => b.name),
      ['bn.moving_mean', 'bn.moving_variance'],
    );
    assert.deepEqual(
      tree.parameters.map((p) => [p.name, p.requiresGrad]),
      [
        ['dense_in.kernel', false],
        ['dense_in.bias', false],
        ['bn.gamma', true],
        ['bn.beta', true],
        ['dense_out.kernel', true],
        ['dense_out.bias', true],
      ],
    );
    const byPath = Object.fromEntries(tree.modules.map((m) => [m.path, m]));
    assert.equal(byPath.dense_in.frozen, true);
    assert.equal(byPath[''].totalParams, 29);
    assert.equal(byPath[''].trainableParams, 14);
    const s = await client.request(modelSummaryRequest, { modelId: r.modelId });
    assert.equal(s.totals.nonTrainableParams, 15);
    assert.equal(s.totals.bufferBytes, 6 * 4);
    const buf = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'buffer', name: 'bn.moving_variance' }, stats: true });
    assert.equal(buf.stats?.mean, 1, 'moving variance starts at ones');
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
      while (!progress.some((p) => p.runId === runId && ['done', 'failed', 'stopped'].includes(p.state)) && Date.now() < deadline) await sleep(50);
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
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, name: 'fc' })] });
    const kernel = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    model.getLayer('fc').setWeights([kernel, tf.tensor1d([10, 20])]);
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(a.weightData as ArrayBuffer));
        fs.writeFileSync(
          path.join(dir, 'model.json'),
          JSON.stringify({ modelTopology: a.modelTopology, format: 'layers-model', weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] }),
        );
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const r = await load(path.join(dir, 'model.json'));
    const tree = await client.request(modelTreeRequest, { modelId: r.modelId });
    assert.equal(tree.modules[0].totalParams, 8);
    const k = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'parameter', name: 'fc.kernel' }, stats: true });
    assert.equal(k.stats?.mean, 3.5);
    assert.equal(k.stats?.max, 6);
    const b = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'parameter', name: 'fc.bias' }, stats: true });
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
    assert.deepEqual(r.inputs, [{ shape: [3, 5], dtype: 'float32', source: 'example', note: 'from the exampleInput export' }]);
    const s = await client.request(modelSummaryRequest, { modelId: r.modelId });
    assert.deepEqual(s.rows.find((row) => row.path === 'body')?.outputShape, [3, 7]);
    // exampleInput is ones: the input's statistics say so.
    const x = await client.request(tensorInspectRequest, { modelId: r.modelId, target: { kind: 'input', index: 0 }, stats: true });
    assert.deepEqual([x.stats?.min, x.stats?.max], [1, 1]);
  });
});

describe('bad input', () => {
  test('missing file', async () => {
    const err = await rejection(load(path.join(FIXTURES, 'doesNotExist.ts')));
    assert.equal(err.kind, 'fileNotFound');
    assert.match(err.message, /doesNotExist\.ts/);
  });

  test('syntax error with file:line:column', async () => {
    const file = path.join(FIXTURES, 'syntaxError.js');
    const err = await rejection(load(file));
    assert.equal(err.kind, 'syntaxError');
    // "  const model = tf.sequential(;" — the ';' is the 31st character of line 5.
    assert.deepEqual(err.location, { file, line: 5, column: 31 });
    assert.match(err.message, /syntaxError\.js:5:31/);
  });

  test('a file exporting no model says what it does export', async () => {
    const err = await rejection(load(path.join(FIXTURES, 'noModel.ts')));
    assert.equal(err.kind, 'noModel');
    assert.ok(err.candidates?.includes('learningRate (number)'), JSON.stringify(err.candidates));
    assert.ok(err.candidates?.includes('Helper (class)'), JSON.stringify(err.candidates));
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

  test('a model factory that throws: message and the user’s own lines (source-mapped)', async () => {
    const file = path.join(FIXTURES, 'throwsInFactory.ts');
    const err = await rejection(load(file));
    assert.equal(err.kind, 'userCodeError');
    assert.match(err.message, /units must be at most 4, got 16/);
    assert.equal(err.location?.file, file);
    assert.equal(err.location?.line, 5);
    assert.ok(err.userStack?.some((f) => f.file === file && f.line === 10), JSON.stringify(err.userStack));
  });

  test('a custom layer that throws in call(): message, its line and the layer', async () => {
    const file = path.join(FIXTURES, 'customLayerThrows.ts');
    const err = await rejection(load(file));
    assert.equal(err.kind, 'userCodeError');
    assert.match(err.message, /Scale wants 3 features, got 5/);
    assert.equal(err.layer, 'scale');
    assert.deepEqual([err.location?.file, err.location?.line], [file, 8]);
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
    assert.ok(logs.some((l) => /stray async error from user code/.test(l.message)), 'uncaught error logged');
    assert.ok(logs.some((l) => /stray rejection from user code/.test(l.message)), 'rejection logged');
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
      const { runId } = await client.request(trainStartRequest, { file: path.join(FIXTURES, 'trainForever.ts') });
      const deadline = Date.now() + REQUEST_TIMEOUT_MS;
      while (!progress.some((p) => p.runId === runId && p.state === 'running') && Date.now() < deadline) await sleep(20);
      // No modelId: the hook goes on the model being trained, and fires inside fit.
      const hook = await client.request(hookAttachRequest, { path: 'fc', kind: 'forward', intervalMs: 0 });
      const events: HookEvent[] = [];
      const hookSub = client.onNotification(hookEventNotification, (e) => events.push(e));
      while (events.length < 3 && Date.now() < deadline) await sleep(20);
      await client.request(hookDetachRequest, { hookId: hook.hookId });
      hookSub.dispose();
      assert.ok(events.length >= 3, 'hook events during fit');
      assert.deepEqual(events[0].tensor.shape, [8, 1], 'batches of 8');
      assert.equal(typeof events[0].step, 'number');
      const res = await client.request(trainStopRequest, { runId }, { timeoutMs: REQUEST_TIMEOUT_MS });
      assert.equal(res.stopped, true);
      await sleep(SETTLE_MS);
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
    assert.ok(Object.prototype.hasOwnProperty.call(layer, 'call'), 'still patched while a listener remains');
    removeB();
    assert.equal((layer as unknown as { call: unknown }).call, original);
    assert.equal(Object.prototype.hasOwnProperty.call(layer, 'call'), false);
  });
});
