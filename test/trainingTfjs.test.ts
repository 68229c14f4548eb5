// Training the TF.js iris twin (examples/iris_train.ts) for real: through the CLI's `run --json`,
// and through the engine client the way the editor drives it (the trained model's tree, a hook
// attached without a modelId mid-run, train/stop keeping the partial curve).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EngineClient } from '../src/client/engineClient';
import {
  hookAttachRequest,
  hookEventNotification,
  modelTreeRequest,
  outputNotification,
  trainProgressNotification,
  trainStartRequest,
  trainStopRequest,
  type HookEvent,
  type OutputEvent,
  type TrainProgress,
} from '../src/protocol/messages';
import { cli, processAlive, ROOT, waitUntil, type RunJson } from './cliProcess';

const IRIS = path.join(ROOT, 'examples', 'iris_train.ts');
const EPOCHS = 30;
/** iris_train.ts trains full batch on 120 of the 150 flowers: one step per epoch. */
const STEPS_PER_EPOCH = 1;
/** Three equally likely classes: cross-entropy of an untrained softmax is near ln 3 = 1.0986. */
const UNTRAINED_LOSS = Math.log(3);
const EVENT_TIMEOUT_MS = 120_000;
const REQUEST_TIMEOUT_MS = 120_000;

function mean(points: [number, number][]): number {
  return points.reduce((s, p) => s + p[1], 0) / points.length;
}

describe('TF.js training of examples/iris_train.ts', () => {
  test(`model-lens run --epochs ${EPOCHS} --json: every step, a falling loss, exit 0`, async () => {
    const r = await cli(['run', IRIS, '--epochs', String(EPOCHS), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.state, 'done');
    assert.equal(doc.steps, EPOCHS * STEPS_PER_EPOCH);
    assert.equal(doc.epochs, EPOCHS, '1-based epoch of the last progress');
    assert.equal(doc.totalEpochs, EPOCHS);
    // Few steps: the engine sends every one, numbered 1..N.
    assert.deepEqual(
      doc.loss.map((p) => p[0]),
      Array.from({ length: EPOCHS * STEPS_PER_EPOCH }, (_, i) => i + 1),
    );
    assert.ok(
      Math.abs(doc.loss[0][1] - UNTRAINED_LOSS) < 0.5,
      `first loss ${doc.loss[0][1]} is near ln 3`,
    );
    const tenth = Math.floor(doc.loss.length / 10);
    assert.ok(
      mean(doc.loss.slice(-tenth)) < 0.8 * mean(doc.loss.slice(0, tenth)),
      'the loss falls',
    );
    // The script's own prints went to stderr, leaving stdout to the JSON document.
    assert.match(r.stderr, /epoch 0 loss \d/);
    assert.match(r.stderr, /test accuracy 0\.\d{3}/);
  });

  describe('through the engine client', () => {
    let client: EngineClient;

    before(async () => {
      client = await EngineClient.start({
        kind: 'tfjs',
        cwd: path.dirname(IRIS),
        trusted: true,
        backend: 'cpu',
      });
    });

    after(async () => {
      const pid = client?.pid;
      await client?.dispose();
      if (pid) assert.equal(processAlive(pid), false, 'engine gone after dispose');
    });

    test('the trained model has a tree, takes a hook without modelId, and stops with its partial curve', async () => {
      const progress: TrainProgress[] = [];
      const events: HookEvent[] = [];
      const output: OutputEvent[] = [];
      const subs = [
        client.onNotification(trainProgressNotification, (p) => progress.push(p)),
        client.onNotification(hookEventNotification, (e) => events.push(e)),
        client.onNotification(outputNotification, (o) => output.push(o)),
      ];
      try {
        const { runId } = await client.request(
          trainStartRequest,
          { file: IRIS, epochs: 1_000_000 },
          { timeoutMs: REQUEST_TIMEOUT_MS },
        );
        await waitUntil(
          'a running progress with a modelId',
          () => progress.some((p) => p.runId === runId && p.state === 'running' && p.modelId),
          EVENT_TIMEOUT_MS,
        );
        const modelId = progress.find((p) => p.modelId)!.modelId!;

        // The editor loads the Modules tree for that modelId: 4·10+10 = 50 and 10·3+3 = 33 parameters.
        const tree = await client.request(modelTreeRequest, { modelId });
        const params = Object.fromEntries(tree.modules.map((m) => [m.path, m.totalParams]));
        assert.deepEqual(params, { '': 83, hidden: 50, output: 33 });

        // No modelId: the hook goes on the model being trained.
        const { hookId } = await client.request(hookAttachRequest, {
          path: 'hidden',
          kind: 'forward',
          intervalMs: 50,
        });
        await waitUntil(
          'hook events from the training run',
          () => events.some((e) => e.hookId === hookId),
          EVENT_TIMEOUT_MS,
        );
        const ev = events.find((e) => e.hookId === hookId)!;
        assert.deepEqual(
          ev.tensor.shape,
          [120, 10],
          'full batch of 120 through the 10 hidden units',
        );
        assert.equal(typeof ev.step, 'number', 'events during a run carry the step');

        const stop = await client.request(
          trainStopRequest,
          { runId },
          { timeoutMs: REQUEST_TIMEOUT_MS },
        );
        assert.equal(stop.stopped, true);
        const last = progress.filter((p) => p.runId === runId).at(-1)!;
        assert.equal(last.state, 'stopped');
        const points = progress.filter((p) => p.runId === runId).flatMap((p) => p.loss);
        assert.ok(
          points.length > 0 && points.length <= last.step,
          `partial curve of ${points.length} points for ${last.step} steps`,
        );
        assert.ok(
          output.some((o) => o.runId === runId && /epoch 0 loss/.test(o.text)),
          'the script output is tagged with the run',
        );
      } finally {
        for (const s of subs) s.dispose();
      }
    });

    test('a NaN loss gets the PyTorch engine’s warning, once, naming the step', async () => {
      const progress: TrainProgress[] = [];
      const sub = client.onNotification(trainProgressNotification, (p) => progress.push(p));
      try {
        const file = path.join(ROOT, 'test', 'fixtures', 'tfjs', 'trainNaN.ts');
        const timeout = { timeoutMs: REQUEST_TIMEOUT_MS };
        const { runId } = await client.request(trainStartRequest, { file }, timeout);
        const done = (): boolean => progress.some((p) => p.runId === runId && p.state === 'done');
        await waitUntil('the run ends', done, EVENT_TIMEOUT_MS);
        const warnings = progress.filter((p) => p.runId === runId).flatMap((p) => p.warnings ?? []);
        // 4 samples in one batch of 4: the first step already sees the NaN input.
        assert.deepEqual(
          warnings.filter((w) => /loss became/.test(w)),
          [
            "The loss became NaN at step 1; the model's weights are probably ruined from " +
              'there on (check the learning rate, the inputs and log/divide operations).',
          ],
        );
      } finally {
        sub.dispose();
      }
    });
  });
});
