// What any Model Lens engine must answer, checked against every engine for real: the same
// expectations, the same hand-computed figures, one fixture per engine with the same structure
// (test/fixtures/conformance/README.md).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EngineClient, EngineError } from '../src/client/engineClient';
import { TRAIN_STOP_TIMEOUT_MS } from '../src/protocol/defaults';
import { ERROR_CODE_OF_KIND, type EngineErrorKind } from '../src/protocol/errors';
import {
  hookAttachRequest,
  hookDetachRequest,
  hookEventNotification,
  initializeRequest,
  modelForwardRequest,
  modelLoadRequest,
  modelSummaryRequest,
  modelTreeRequest,
  profileRunRequest,
  systemInfoRequest,
  tensorInspectRequest,
  trainDiagnoseRequest,
  trainHistogramsNotification,
  trainProgressNotification,
  trainStartRequest,
  trainStopRequest,
  type HookEvent,
  type ModelTreeResult,
  type SummaryResult,
  type TrainHistograms,
  type TrainProgress,
} from '../src/protocol/messages';
import { PROTOCOL_VERSION, type ModuleNode, type TensorInfo } from '../src/protocol/types';
import { describeForEngines, ROOT, type EngineUnderTest } from './engines';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'conformance');
/** Time allowed for a request that builds a model or runs a few forwards on a loaded 2-core box. */
const REQUEST_TIMEOUT_MS = 120_000;
/** Short on purpose: the hang fixture must be stopped by the client, not waited out. */
const HANG_TIMEOUT_MS = 5_000;
/** A 30-epoch run of the iris example finishes in well under this on a loaded 2-core box. */
const RUN_TIMEOUT_MS = 120_000;
const TRAIN_EPOCHS = 30;

function fixture(e: EngineUnderTest, name: string): string {
  return path.join(FIXTURES, e.kind === 'tfjs' ? 'tfjs' : 'torch', name + e.ext);
}

/** Line of the first occurrence of `marker` in `file`, 1-based, read from the file itself. */
function lineOf(file: string, marker: string): number {
  const i = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .findIndex((l) => l.includes(marker));
  assert.ok(i >= 0, `${marker} not in ${file}`);
  return i + 1;
}

function rowMajor(shape: number[]): number[] {
  const stride = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = acc;
    acc *= shape[i];
  }
  return stride;
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Facts every TensorInfo must satisfy whatever the engine. */
function checkTensor(t: TensorInfo, what: string): void {
  assert.equal(t.numel, numel(t.shape), `${what}: numel`);
  assert.equal(t.bytes, t.numel * t.elementSize, `${what}: bytes = numel × element size`);
  assert.equal(t.stride.length, t.shape.length, `${what}: one stride per dimension`);
  if (t.contiguous) {
    // Strides of size-1 dimensions are free in PyTorch; compare the others.
    const expected = rowMajor(t.shape);
    t.shape.forEach((s, i) => {
      if (s > 1)
        assert.equal(
          t.stride[i],
          expected[i],
          `${what}: contiguous tensor has row-major stride in dim ${i}`,
        );
    });
    assert.equal(t.contiguity.breaksAt, null, `${what}: contiguous tensors break nowhere`);
    assert.equal(t.view.wouldFail, false, `${what}: view(-1) works on a contiguous tensor`);
    assert.equal(t.view.copyBytes, 0, `${what}: nothing to copy`);
  }
  assert.equal(typeof t.contiguity.reason, 'string');
  assert.ok(t.contiguity.reason.length > 0, `${what}: contiguity says why`);
}

/** Every error an engine sends carries the one code of its kind (src/protocol/errors.ts). */
function isEngineError(kind: EngineErrorKind, messageIncludes?: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof EngineError, `expected an EngineError, got ${String(err)}`);
    assert.equal(err.data.kind, kind, err.message);
    assert.equal(
      err.code,
      ERROR_CODE_OF_KIND[kind],
      `${kind} is sent with code ${ERROR_CODE_OF_KIND[kind]}`,
    );
    if (messageIncludes) assert.ok(err.message.includes(messageIncludes), err.message);
    return true;
  };
}

/**
 * SummaryRow.macs (src/protocol/types.ts): a container shows the sum over the leaves below it,
 * so the root's row equals the total; totalBytes is torchinfo's total size.
 */
function checkSummaryRules(summary: SummaryResult): void {
  const leaves = summary.rows.filter((r) => r.isLeaf);
  for (const row of summary.rows.filter((r) => !r.isLeaf)) {
    const below = leaves.filter((l) => row.path === '' || l.path.startsWith(row.path + '.'));
    const sum = below.reduce((a, l) => a + l.macs, 0);
    assert.equal(row.macs, sum, `${row.path || '(root)'}: macs = sum over the leaves below`);
  }
  assert.equal(
    summary.rows.find((r) => r.path === '')!.macs,
    summary.totals.macs,
    'root row = total',
  );
  const t = summary.totals;
  assert.equal(
    t.totalBytes,
    t.inputBytes + t.forwardBackwardBytes + t.paramBytes,
    "torchinfo's total size",
  );
}

/** Structural invariants of a module tree in named_modules vocabulary. */
function checkTree(tree: ModelTreeResult): Map<string, ModuleNode> {
  const byPath = new Map(tree.modules.map((m) => [m.path, m]));
  assert.equal(byPath.size, tree.modules.length, 'each module listed once');
  const root = byPath.get('');
  assert.ok(root, 'root path is ""');
  assert.equal(root.parent, null);
  assert.equal(root.depth, 0);
  for (const m of tree.modules) {
    if (m.path === '') continue;
    assert.ok(m.parent !== null && byPath.has(m.parent), `${m.path}: parent exists`);
    const parent = byPath.get(m.parent)!;
    assert.ok(
      parent.children.includes(m.path),
      `${m.path}: listed among ${m.parent || '(root)'}'s children`,
    );
    assert.equal(m.depth, parent.depth + 1, `${m.path}: depth`);
    assert.equal(
      m.path,
      m.parent === '' ? m.name : `${m.parent}.${m.name}`,
      `${m.path}: dotted path`,
    );
    assert.equal(m.isLeaf, m.children.length === 0, `${m.path}: leaf iff no children`);
    for (const a of m.aliases)
      assert.ok(!byPath.has(a), `${m.path}: alias ${a} is not listed as a module of its own`);
  }
  for (const p of tree.parameters) {
    checkTensor(p.tensor, p.name);
    assert.ok(byPath.has(p.module), `${p.name}: owner ${p.module} exists`);
  }
  for (const b of tree.buffers) checkTensor(b.tensor, b.name);
  return byPath;
}

describeForEngines('conformance', (engine) => {
  let client: EngineClient;
  const events: HookEvent[] = [];

  before(async () => {
    client = await EngineClient.start({
      kind: engine.kind,
      cwd: ROOT,
      trusted: true,
      python: engine.python,
      env: { OMP_NUM_THREADS: '1' },
    });
    client.onNotification(hookEventNotification, (e) => events.push(e));
  });
  after(async () => {
    await client?.dispose();
  });

  test('engine/initialize reports kind, backend, versions and capabilities', () => {
    const info = client.info;
    assert.equal(info.kind, engine.kind);
    assert.ok(info.backend.length > 0);
    assert.ok(info.runtimes.length >= 2, 'language runtime and framework versions');
    for (const r of info.runtimes) assert.match(r.version, /^\d+\.\d+/, `${r.name} version`);
    assert.equal(typeof info.pid, 'number');
    assert.equal(info.pid, client.pid, 'the pid is the engine process the client started');
    assert.ok(info.capabilities.tree && info.capabilities.summary && info.capabilities.profile);
    assert.ok(['real', 'rowMajor'].includes(info.capabilities.strides));
    assert.ok(info.capabilities.hooks.includes('forward'));
  });

  test('iris MLP 4→10→3: tree, parameters and totals (4·10+10 + 10·3+3 = 83)', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: engine.iris },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    assert.equal(loaded.file, engine.iris);
    assert.equal(loaded.inputs.length, 1);
    assert.equal(loaded.inputs[0].shape.at(-1), 4, 'four iris features');
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    const byPath = checkTree(tree);
    assert.equal(byPath.get('')!.totalParams, 83);
    const leavesWithParams = tree.modules
      .filter((m) => m.isLeaf && m.totalParams > 0)
      .map((m) => m.totalParams);
    assert.deepEqual(leavesWithParams, [50, 33]);
    assert.deepEqual(
      tree.parameters.map((p) => p.tensor.numel).sort((a, b) => a - b),
      [3, 10, 30, 40],
      'weights 4×10 and 10×3, biases 10 and 3',
    );
    for (const p of tree.parameters) {
      assert.equal(p.tensor.dtype, 'float32');
      assert.equal(p.requiresGrad, true);
    }

    const summary = await client.request(
      modelSummaryRequest,
      { modelId: loaded.modelId },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const batch = summary.inputs[0].shape[0];
    assert.equal(summary.totals.params, 83);
    assert.equal(summary.totals.trainableParams, 83);
    assert.equal(summary.totals.nonTrainableParams, 0);
    // torchinfo's rule for Linear/Dense: (weight + bias elements) × every output dim but the last.
    assert.equal(summary.totals.macs, 83 * batch);
    assert.equal(summary.totals.paramBytes, 83 * 4);
    // torchinfo's forward/backward size (104 bytes at batch 1 from torchinfo.summary itself):
    // the 10 + 3 float outputs of the two Linear/Dense layers, ×2; the ReLU has no parameters.
    assert.equal(summary.totals.forwardBackwardBytes, 2 * (10 + 3) * 4 * batch);
    const rootRow = summary.rows.find((r) => r.path === '');
    assert.deepEqual(rootRow?.outputShape, [batch, 3]);
    checkSummaryRules(summary);
    for (const r of summary.rows.filter((r) => r.isLeaf && r.output))
      checkTensor(r.output!, `output of ${r.path}`);
  });

  test('a module registered at two paths is one node with an alias, counted once (130 params)', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: fixture(engine, 'shared') },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    const byPath = checkTree(tree);
    const shared = tree.modules.filter((m) => m.aliases.length > 0);
    assert.equal(shared.length, 1, 'exactly one shared module');
    assert.equal(shared[0].aliases.length, 1);
    assert.equal(shared[0].totalParams, 72, 'the shared 8→8 layer');
    assert.equal(byPath.get('')!.totalParams, 40 + 72 + 18);
    assert.equal(
      tree.parameters.reduce((s, p) => s + p.tensor.numel, 0),
      130,
      'each parameter listed once',
    );
    const summary = await client.request(
      modelSummaryRequest,
      { modelId: loaded.modelId },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    assert.equal(summary.totals.params, 130);
    // The shared layer runs twice (inside `sub`, then directly): its row says so, shows the last
    // call's shape and counts both calls' mult-adds, (64 + 8) × batch each (torchinfo's rule).
    const batch = summary.inputs[0].shape[0];
    const row = summary.rows.find((r) => r.path === shared[0].path);
    assert.equal(row?.calls, 2, 'called twice');
    assert.deepEqual(row?.outputShape, [batch, 8]);
    assert.equal(row?.macs, 2 * 72 * batch);
  });

  test('BatchNorm running statistics are buffers; a frozen layer keeps parameters without grad', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: fixture(engine, 'bnfrozen') },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    checkTree(tree);
    const bnBuffers = tree.buffers.filter((b) => b.tensor.numel === 4);
    assert.ok(bnBuffers.length >= 2, 'running mean and variance of 4 channels');
    const bnPath = bnBuffers[0].module;
    assert.ok(bnBuffers.every((b) => b.module === bnPath));
    assert.equal(
      tree.parameters.filter((p) => p.module === bnPath).reduce((s, p) => s + p.tensor.numel, 0),
      8,
      'BatchNorm weight/gamma and bias/beta',
    );
    const frozen = tree.parameters.filter((p) => !p.requiresGrad);
    assert.equal(
      frozen.reduce((s, p) => s + p.tensor.numel, 0),
      10,
      'the 4→2 head',
    );
    const head = tree.modules.find((m) => m.path === frozen[0].module)!;
    assert.equal(head.frozen, true);
    assert.equal(head.trainableParams, 0);

    const summary = await client.request(
      modelSummaryRequest,
      { modelId: loaded.modelId },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    assert.equal(summary.totals.params, 130);
    assert.equal(summary.totals.trainableParams, 120);
    assert.equal(summary.totals.nonTrainableParams, 10);
    assert.ok(summary.totals.bufferBytes >= 2 * 4 * 4, 'two float32 vectors of 4');
    const batch = summary.inputs[0].shape[0];
    // Conv: (weight + bias elements) × batch × output positions; input 8×8, kernel 3 → 6×6.
    const convMacs = 112 * batch * 36;
    const convRow = summary.rows.find((r) => r.isLeaf && r.params === 112)!;
    assert.equal(convRow.macs, convMacs);
    // BatchNorm: torchinfo's rule for a layer with parameters that is neither Linear nor Conv,
    // (gamma + beta elements) × batch.
    assert.equal(summary.rows.find((r) => r.path === bnPath)!.macs, 8 * batch);
    checkSummaryRules(summary);
    assert.ok(summary.totals.bufferBytes > 0, 'buffers are reported, outside totalBytes');
  });

  test('tensor/inspect agrees with the tree for a parameter', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: engine.iris },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    const p = tree.parameters.find((x) => x.tensor.numel === 40)!;
    const r = await client.request(tensorInspectRequest, {
      modelId: loaded.modelId,
      target: { kind: 'parameter', name: p.name },
      stats: true,
      histogramBins: 8,
    });
    assert.equal(r.name, p.name);
    assert.deepEqual(r.tensor.shape, p.tensor.shape);
    assert.deepEqual(r.tensor.stride, p.tensor.stride);
    assert.equal(r.stats?.numel, 40);
    assert.equal(r.stats?.nanCount, 0);
    assert.ok(r.stats!.min! <= r.stats!.mean! && r.stats!.mean! <= r.stats!.max!);
    assert.equal(r.histogram?.counts.length, 8);
    assert.equal(
      r.histogram!.counts.reduce((a, b) => a + b, 0),
      40,
    );
    await assert.rejects(
      client.request(tensorInspectRequest, {
        modelId: loaded.modelId,
        target: { kind: 'parameter', name: 'no.such.weight' },
      }),
      isEngineError('unknownPath', 'no.such.weight'),
    );
  });

  test('profile/run: per-op and per-module timings and a Chrome trace', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: engine.iris },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const traceFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ml-trace-')), 'trace.json');
    const steps = 3;
    const result = await client.request(
      profileRunRequest,
      { modelId: loaded.modelId, steps, warmup: 1, traceFile },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    assert.equal(result.steps, steps);
    assert.ok(result.stepMs > 0);
    assert.ok(result.ops.length > 0);
    for (const op of result.ops) {
      assert.ok(!op.name.endsWith('__op'), `${op.name}: wrapper records are dropped`);
      assert.ok(
        op.calls >= 1 && op.totalMs >= 0 && op.selfMs >= 0 && op.selfMs <= op.totalMs + 1e-6,
        op.name,
      );
    }
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    const leaves = tree.modules.filter((m) => m.isLeaf && m.totalParams > 0).map((m) => m.path);
    for (const leaf of leaves) {
      const t = result.modules.find((m) => m.path === leaf);
      assert.ok(t, `timing for ${leaf}`);
      assert.equal(t.calls, steps, `${leaf} ran once per timed step`);
    }
    const trace = JSON.parse(fs.readFileSync(traceFile, 'utf8'));
    assert.ok(Array.isArray(trace.traceEvents) && trace.traceEvents.length > 0);
    for (const ev of trace.traceEvents.filter((e: { ph: string }) => e.ph === 'X')) {
      assert.equal(typeof ev.name, 'string');
      assert.ok(Number.isFinite(ev.ts) && Number.isFinite(ev.dur) && ev.dur >= 0);
    }
  });

  test('hooks: events arrive after attach and stop after detach', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: engine.iris },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    const summary = await client.request(
      modelSummaryRequest,
      { modelId: loaded.modelId },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const leaf = tree.modules.find((m) => m.isLeaf && m.totalParams === 50)!;
    const { hookId } = await client.request(hookAttachRequest, {
      modelId: loaded.modelId,
      path: leaf.path,
      kind: 'forward',
      intervalMs: 0,
    });
    events.length = 0;
    await client.request(
      modelForwardRequest,
      { modelId: loaded.modelId, steps: 3 },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    // Notifications sent before the response are delivered before it, in order.
    const mine = events.filter((e) => e.hookId === hookId);
    assert.ok(mine.length >= 1, 'at least one event');
    const expectedShape = summary.rows.find((r) => r.path === leaf.path)!.outputShape;
    for (const e of mine) {
      assert.equal(e.path, leaf.path);
      assert.equal(e.kind, 'forward');
      assert.deepEqual(e.tensor.shape, expectedShape);
      assert.ok(Number.isFinite(e.stats.mean) && Number.isFinite(e.stats.std));
      assert.equal(e.stats.nanCount, 0);
      assert.ok(e.stats.min! <= e.stats.max!);
    }
    const detached = await client.request(hookDetachRequest, { hookId });
    assert.equal(detached.detached, 1);
    assert.equal(detached.remaining, 0);
    events.length = 0;
    await client.request(
      modelForwardRequest,
      { modelId: loaded.modelId, steps: 2 },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    assert.equal(events.length, 0, 'no events after detach');
    await assert.rejects(
      client.request(hookAttachRequest, {
        modelId: loaded.modelId,
        path: 'no.such.layer',
        kind: 'forward',
      }),
      isEngineError('unknownPath', 'no.such.layer'),
    );
  });

  test('system/info reports CPU and the engine memory', async () => {
    const info = await client.request(systemInfoRequest, undefined);
    assert.ok(info.memory.rssBytes > 1e6);
    assert.ok(Array.isArray(info.gpus));
    assert.equal(info.cpu?.logicalCores, os.cpus().length);
  });

  test('engine/initialize answers the protocol version the client speaks and refuses another major', async () => {
    const params = { clientName: 'conformance', clientVersion: '0', trusted: true, cwd: ROOT };
    await assert.rejects(
      client.request(initializeRequest, { ...params, protocolVersion: '99.0' }),
      isEngineError('unsupported'),
    );
    const again = await client.request(initializeRequest, {
      ...params,
      protocolVersion: PROTOCOL_VERSION,
    });
    assert.equal(again.protocolVersion, PROTOCOL_VERSION);
    assert.equal(again.engine.kind, engine.kind);
  });

  test('a malformed request is badRequest with one code (-32602) in both engines', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: engine.iris },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
    const leaf = tree.modules.find((m) => m.isLeaf && m.totalParams === 50)!;
    await assert.rejects(
      // A kind no engine has: what a client with a newer protocol, or a typo, would send.
      client.request(hookAttachRequest, {
        modelId: loaded.modelId,
        path: leaf.path,
        kind: 'sideways' as 'forward',
      }),
      isEngineError('badRequest'),
    );
  });

  test('a hook on the root module works where capabilities.rootHooks says so, else unsupported', async () => {
    const loaded = await client.request(
      modelLoadRequest,
      { file: engine.iris },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const attach = client.request(hookAttachRequest, {
      modelId: loaded.modelId,
      path: '',
      kind: 'forward',
      intervalMs: 0,
    });
    if (!client.info.capabilities.rootHooks) {
      await assert.rejects(attach, isEngineError('unsupported'));
      return;
    }
    const { hookId } = await attach;
    events.length = 0;
    await client.request(
      modelForwardRequest,
      { modelId: loaded.modelId, steps: 1 },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    const mine = events.filter((e) => e.hookId === hookId);
    assert.ok(mine.length >= 1, 'the root hook fired');
    assert.equal(mine[0].path, '');
    assert.equal(mine[0].tensor.shape.at(-1), 3, 'the root output: three iris classes');
    await client.request(hookDetachRequest, { hookId });
  });

  describe('train/*', () => {
    const progress: TrainProgress[] = [];
    const histograms: TrainHistograms[] = [];
    before(() => {
      client.onNotification(trainProgressNotification, (p) => progress.push(p));
      client.onNotification(trainHistogramsNotification, (h) => histograms.push(h));
    });
    const startParams = (epochs: number) =>
      engine.kind === 'tfjs'
        ? { file: engine.irisTrain, epochs, histogramEverySteps: 10, histogramMinIntervalMs: 0 }
        : {
            file: engine.irisTrain,
            args: [String(epochs)],
            histogramEverySteps: 10,
            histogramMinIntervalMs: 0,
          };
    const of = (runId: string) => progress.filter((p) => p.runId === runId);
    const settled = (runId: string) =>
      waitFor(
        `run ${runId} to end`,
        () => of(runId).some((p) => ['done', 'stopped', 'failed'].includes(p.state)),
        RUN_TIMEOUT_MS,
      );

    test('a run goes starting → running → done, with histograms exactly where capabilities.histograms', async () => {
      const { runId } = await client.request(trainStartRequest, startParams(TRAIN_EPOCHS), {
        timeoutMs: REQUEST_TIMEOUT_MS,
      });
      await settled(runId);
      const states = of(runId).map((p) => p.state);
      assert.equal(states[0], 'starting');
      assert.equal(states.at(-1), 'done', JSON.stringify(of(runId).at(-1)?.error));
      assert.ok(of(runId).at(-1)!.step > 0, 'steps were counted');
      const mine = histograms.filter((h) => h.runId === runId);
      if (client.info.capabilities.histograms) assert.ok(mine.length >= 1, 'train/histograms sent');
      else
        assert.equal(mine.length, 0, 'no train/histograms from an engine without the capability');
      const diagnosis = await client.request(
        trainDiagnoseRequest,
        { runId },
        { timeoutMs: REQUEST_TIMEOUT_MS },
      );
      assert.equal(diagnosis.runId, runId);
      assert.ok(diagnosis.steps > 0);
      // Already ended: this request stopped nothing.
      assert.deepEqual(await client.request(trainStopRequest, { runId }), { stopped: false });
    });

    test('train/stop ends a running run within TRAIN_STOP_TIMEOUT_MS; a second start meanwhile is badRequest', async () => {
      const { runId } = await client.request(trainStartRequest, startParams(1_000_000), {
        timeoutMs: REQUEST_TIMEOUT_MS,
      });
      await waitFor(
        'a running progress',
        () => of(runId).some((p) => p.state === 'running'),
        RUN_TIMEOUT_MS,
      );
      await assert.rejects(
        client.request(trainStartRequest, startParams(1), { timeoutMs: REQUEST_TIMEOUT_MS }),
        isEngineError('badRequest'),
      );
      const stop = await client.request(
        trainStopRequest,
        { runId },
        { timeoutMs: TRAIN_STOP_TIMEOUT_MS + REQUEST_TIMEOUT_MS },
      );
      assert.deepEqual(stop, { stopped: true });
      await settled(runId);
      assert.equal(of(runId).at(-1)!.state, 'stopped');
    });

    test('train/stop and train/diagnose of a run that does not exist: notLoaded', async () => {
      await assert.rejects(
        client.request(trainStopRequest, { runId: 'no-such-run' }),
        isEngineError('notLoaded'),
      );
      await assert.rejects(
        client.request(trainDiagnoseRequest, { runId: 'no-such-run' }),
        isEngineError('notLoaded'),
      );
    });
  });

  describe('bad input ends in a specific error and the engine stays usable', () => {
    async function expectError(
      file: string,
      check: (e: EngineError) => void,
      extra: { inputShapes?: number[][] } = {},
    ) {
      let caught: unknown;
      try {
        const loaded = await client.request(
          modelLoadRequest,
          { file, ...extra },
          { timeoutMs: REQUEST_TIMEOUT_MS },
        );
        await client.request(
          modelSummaryRequest,
          { modelId: loaded.modelId },
          { timeoutMs: REQUEST_TIMEOUT_MS },
        );
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof EngineError, `expected an EngineError, got ${String(caught)}`);
      assert.equal(
        caught.code,
        ERROR_CODE_OF_KIND[caught.data.kind],
        `code of ${caught.data.kind}`,
      );
      check(caught);
      // Still alive and useful afterwards.
      const ok = await client.request(
        modelLoadRequest,
        { file: engine.iris },
        { timeoutMs: REQUEST_TIMEOUT_MS },
      );
      assert.ok(ok.modelId);
    }

    test('missing file', async () => {
      const file = path.join(FIXTURES, 'does-not-exist' + engine.ext);
      await expectError(file, (e) => {
        assert.equal(e.data.kind, 'fileNotFound');
        assert.ok(e.message.includes('does-not-exist'));
      });
    });

    test('syntax error names file and line', async () => {
      const file = fixture(engine, 'syntaxError');
      await expectError(file, (e) => {
        assert.equal(e.data.kind, 'syntaxError');
        assert.equal(e.data.location?.file, file);
        assert.equal(e.data.location?.line, 4);
      });
    });

    test('a file with no model says what it defines', async () => {
      await expectError(fixture(engine, 'noModel'), (e) => {
        assert.equal(e.data.kind, 'noModel');
        assert.ok(e.message.includes('helper'), `mentions what the file defines: ${e.message}`);
      });
    });

    test('an input shape that does not fit: loads, then the summary names the layer, expected and got', async () => {
      // model/load never runs the model (src/protocol/messages.ts modelLoadRequest).
      const loaded = await client.request(
        modelLoadRequest,
        { file: engine.iris, inputShapes: [[1, 5]] },
        { timeoutMs: REQUEST_TIMEOUT_MS },
      );
      const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId });
      const first = tree.modules.find((m) => m.isLeaf && m.totalParams === 50)!;
      await assert.rejects(
        client.request(
          modelSummaryRequest,
          { modelId: loaded.modelId },
          { timeoutMs: REQUEST_TIMEOUT_MS },
        ),
        (e: unknown) => {
          isEngineError('shapeMismatch')(e);
          const err = e as EngineError;
          assert.equal(err.data.layer, first.path, 'names the first layer');
          assert.ok(
            err.data.expected?.includes('4'),
            `expected mentions 4 features: ${err.data.expected}`,
          );
          assert.ok(err.data.got?.includes('5'), `got mentions 5: ${err.data.got}`);
          return true;
        },
      );
      // The same model with a shape that fits still summarizes.
      const ok = await client.request(
        modelSummaryRequest,
        { modelId: loaded.modelId, inputShapes: [[2, 4]] },
        { timeoutMs: REQUEST_TIMEOUT_MS },
      );
      assert.equal(ok.totals.params, 83);
    });

    test('a model that throws points at the user line', async () => {
      const file = fixture(engine, 'throws');
      await expectError(file, (e) => {
        assert.equal(e.data.kind, 'userCodeError');
        assert.ok(e.message.includes('boom: this layer always fails'));
        const frames = [e.data.location, ...(e.data.userStack ?? [])].filter(Boolean);
        assert.ok(
          frames.some((f) => f!.file === file && f!.line === lineOf(file, 'THROWS_HERE')),
          `a frame at ${file}:${lineOf(file, 'THROWS_HERE')} in ${JSON.stringify(frames)}`,
        );
      });
    });
  });

  test('a model that never returns: the request times out, the engine is stopped, no orphan', async () => {
    const hung = await EngineClient.start({
      kind: engine.kind,
      cwd: ROOT,
      trusted: true,
      python: engine.python,
      env: { OMP_NUM_THREADS: '1' },
    });
    const pid = hung.pid!;
    await assert.rejects(
      hung.request(
        modelLoadRequest,
        { file: fixture(engine, 'hang') },
        { timeoutMs: HANG_TIMEOUT_MS },
      ),
      (err: EngineError) => err.data.kind === 'timeout' && err.message.includes('model/load'),
    );
    const exit = await new Promise<{ reason: string }>((resolve) => hung.onExit(resolve));
    assert.equal(exit.reason, 'killedAfterTimeout');
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'engine process is gone');
    await assert.rejects(
      hung.request(systemInfoRequest, undefined),
      (err: EngineError) => err.data.kind === 'engineCrashed',
    );
  });

  test('an engine that dies mid-request is reported as a crash with its exit', async () => {
    const victim = await EngineClient.start({
      kind: engine.kind,
      cwd: ROOT,
      trusted: true,
      python: engine.python,
      env: { OMP_NUM_THREADS: '1' },
    });
    const pending = victim.request(
      modelLoadRequest,
      { file: fixture(engine, 'hang') },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    setTimeout(() => process.kill(victim.pid!, 'SIGKILL'), 500);
    await assert.rejects(
      pending,
      (err: EngineError) => err.data.kind === 'engineCrashed' && /SIGKILL/.test(err.message),
    );
  });

  test('an untrusted workspace runs no user code', async () => {
    const untrusted = await EngineClient.start({
      kind: engine.kind,
      cwd: ROOT,
      trusted: false,
      python: engine.python,
      env: { OMP_NUM_THREADS: '1' },
    });
    try {
      await assert.rejects(
        untrusted.request(
          modelLoadRequest,
          { file: engine.iris },
          { timeoutMs: REQUEST_TIMEOUT_MS },
        ),
        isEngineError('untrusted'),
      );
    } finally {
      await untrusted.dispose();
    }
  });
});

/** Polls `check` until true; notifications arrive on the event loop, so the wait must yield. */
async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
