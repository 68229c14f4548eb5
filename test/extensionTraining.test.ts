// The editor's training logic without an editor: folding progress, the texts shown, the curve
// decimation, the error and finding links, and which files get a "Run Training" lens.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import type { TrainDiagnosis, TrainHistograms, TrainProgress } from '../src/protocol/messages';
import { formatDuration, progressText } from '../src/client/trainingText';
import {
  decimate,
  statusText,
  TrainingRun,
  trainingEntryLine,
} from '../src/extension/trainingModel';

const ROOT = path.resolve(__dirname, '..');

function progress(over: Partial<TrainProgress>): TrainProgress {
  return {
    runId: 'r1',
    state: 'running',
    step: 0,
    epoch: null,
    totalSteps: null,
    totalEpochs: null,
    stepsPerSec: null,
    etaSec: null,
    loss: [],
    ...over,
  };
}

describe('decimate', () => {
  test('short curves are kept whole', () => {
    const pts: [number, number][] = [
      [1, 3],
      [2, 2],
      [3, 1],
    ];
    assert.deepEqual(decimate(pts, 10), pts);
  });

  test('keeps first, last and each bucket’s extremes, so a spike survives', () => {
    // 1002 points: a flat 1.0 with one spike of 50 at step 500 and a dip of 0.1 at step 700.
    const pts: [number, number][] = Array.from({ length: 1002 }, (_, i) => [i + 1, 1]);
    pts[499] = [500, 50];
    pts[699] = [700, 0.1];
    const out = decimate(pts, 100);
    assert.ok(out.length <= 100, `${out.length} points`);
    assert.deepEqual(out[0], [1, 1]);
    assert.deepEqual(out.at(-1), [1002, 1]);
    assert.ok(
      out.some((p) => p[0] === 500 && p[1] === 50),
      'the spike is drawn',
    );
    assert.ok(
      out.some((p) => p[0] === 700 && p[1] === 0.1),
      'the dip is drawn',
    );
    // Step order is kept.
    for (let i = 1; i < out.length; i++) assert.ok(out[i][0] > out[i - 1][0]);
  });

  test('a NaN loss is never dropped', () => {
    const pts: [number, number][] = Array.from({ length: 500 }, (_, i) => [i + 1, 1 / (i + 1)]);
    pts[250] = [251, NaN];
    assert.ok(decimate(pts, 50).some((p) => Number.isNaN(p[1])));
  });
});

describe('texts', () => {
  test('progress text has epoch, step, rate, ETA and loss when known', () => {
    // 100 steps an epoch: 1200 steps done is 12 epochs done, while the 13th is in progress.
    const p = progress({
      step: 1200,
      totalSteps: 5000,
      epoch: 13,
      totalEpochs: 50,
      stepsPerSec: 41.2,
      etaSec: 92,
    });
    assert.equal(
      progressText(p, 0.09314),
      'epoch 12/50 · step 1200/5000 · 41 steps/s · ETA 1:32 · loss 0.0931',
    );
    assert.equal(
      progressText(progress({ step: 7, stepsPerSec: 0.5 }), null),
      'step 7 · 2.0 s/step',
    );
    assert.equal(
      progressText(
        progress({ step: 9, totalSteps: 90, stepsPerSec: 3, etaSec: 27, state: 'stopped' }),
        1,
      ),
      'step 9/90 · loss 1.0000',
    );
  });

  test('status bar text', () => {
    assert.equal(statusText(progress({ step: 1200 }), 0.0931), '$(pulse) step 1200 · loss 0.0931');
    assert.equal(
      statusText(progress({ step: 30, state: 'stopped' }), 0.5),
      '$(debug-stop) step 30 · loss 0.5000 · stopped',
    );
    assert.match(statusText(undefined, null), /starting/);
  });

  test('durations', () => {
    assert.equal(formatDuration(59.6), '1:00');
    assert.equal(formatDuration(3725), '1:02:05');
  });
});

describe('TrainingRun', () => {
  test('folds progress: every point once, in order, state and modelId from the latest', () => {
    const run = new TrainingRun('/w/train.py', 'pytorch', 0);
    run.add(progress({ state: 'starting' }), 0);
    run.add(
      progress({
        step: 2,
        loss: [
          [1, 2.0],
          [2, 1.5],
        ],
        modelId: 'm1',
      }),
      100,
    );
    // A repeated point (sampling kept the last one) is not added twice.
    run.add(
      progress({
        step: 4,
        loss: [
          [2, 1.5],
          [3, 1.2],
          [4, 1.0],
        ],
      }),
      200,
    );
    assert.deepEqual(run.loss, [
      [1, 2.0],
      [2, 1.5],
      [3, 1.2],
      [4, 1.0],
    ]);
    assert.equal(run.state, 'running');
    assert.equal(run.finished, false);
    run.runId = 'r1';
    assert.equal(
      run.add(progress({ runId: 'r2', step: 99 })),
      false,
      "another run's progress is ignored",
    );
    run.add(progress({ state: 'stopped', step: 5, loss: [[5, 0.9]] }), 61_000);
    const s = run.panelState(61_000);
    assert.equal(s.state, 'stopped');
    assert.equal(s.pointCount, 5);
    assert.deepEqual(s.minLoss, [5, 0.9]);
    assert.equal(s.elapsed, '1:01');
    assert.equal(s.fileName, 'train.py');
  });

  test('a failed run links to the user frame; findings link to their lines by index', () => {
    const run = new TrainingRun('/w/train.py', 'pytorch');
    run.runId = 'r1';
    run.add(
      progress({
        state: 'failed',
        step: 3,
        error: {
          kind: 'userCodeError',
          message: 'RuntimeError: boom',
          userStack: [
            { file: '/w/train.py', line: 80 },
            { file: '/w/model.py', line: 12 },
          ],
        },
      }),
    );
    const diag: TrainDiagnosis = {
      runId: 'r1',
      steps: 3,
      device: 'cpu',
      batchSize: 32,
      stepMs: 2.5,
      opsPerStep: null,
      avgOpUs: null,
      hostToDevice: { count: 0, bytes: 0 },
      deviceToHost: { count: 0, bytes: 0 },
      syncs: [],
      breakdown: null,
      findings: [
        {
          severity: 'warning',
          message: '`loss.item()` forces a sync every step',
          source: { file: '/w/train.py', line: 57 },
        },
        { severity: 'info', message: 'Batch size 32 on cpu.' },
      ],
    };
    run.setDiagnosis(diag);
    const s = run.panelState();
    assert.equal(s.error?.where, 'model.py:12', 'innermost user frame');
    assert.equal(run.sources[s.error!.sourceIndex!].file, '/w/model.py');
    const f = s.diagnosis!.findings;
    assert.equal(f[0].where, 'train.py:57');
    assert.equal(run.sources[f[0].sourceIndex!].line, 57);
    assert.equal(f[1].sourceIndex, undefined);
    // Asking again hands out the same indices, not new ones.
    run.panelState();
    assert.equal(run.sources.length, 2);
  });

  test('keeps the latest weight/gradient histograms and shows them in the panel state', () => {
    // A 2×2 weight [1, 2, 3, 4] (mean 2.5, population std √1.25) in 2 bins over [1, 4]: 2 and 2.
    const snapshot = (step: number, runId = 'r1', omitted?: number): TrainHistograms => ({
      runId,
      step,
      omitted,
      params: [
        {
          name: 'fc.weight',
          shape: [2, 2],
          weight: {
            stats: {
              numel: 4,
              mean: 2.5,
              std: Math.sqrt(1.25),
              min: 1,
              max: 4,
              nanCount: 0,
              infCount: 0,
            },
            histogram: { min: 1, max: 4, counts: [2, 2] },
          },
          grad: {
            stats: {
              numel: 4,
              mean: null,
              std: null,
              min: null,
              max: null,
              nanCount: 4,
              infCount: 0,
            },
            histogram: { min: 0, max: 0, counts: [0, 0] },
          },
        },
      ],
    });
    const run = new TrainingRun('/w/train.py', 'pytorch');
    assert.equal(run.panelState().histograms, null, 'none before the first snapshot');
    run.runId = 'r1';
    assert.equal(run.setHistograms(snapshot(100)), true);
    assert.equal(run.setHistograms(snapshot(200, 'r1', 3)), true);
    assert.equal(
      run.setHistograms(snapshot(150)),
      false,
      'an older snapshot does not replace a newer one',
    );
    assert.equal(run.setHistograms(snapshot(300, 'r2')), false, 'another run’s');
    const s = run.panelState();
    assert.equal(s.histograms?.step, 200);
    assert.equal(s.histograms?.omitted, 3);
    const p = s.histograms!.params[0];
    assert.equal(p.name, 'fc.weight');
    assert.deepEqual(p.shape, [2, 2]);
    assert.deepEqual(p.weight.histogram.counts, [2, 2]);
    assert.equal(p.weight.stats.std, Math.sqrt(1.25));
    assert.equal(p.grad?.stats.nanCount, 4, 'NaN counts reach the panel');
    run.setHistograms(snapshot(250));
    assert.equal(run.panelState().histograms?.omitted, 0);
  });

  test('a start failure is a failed run with its message', () => {
    const run = new TrainingRun('/w/t.ts', 'tfjs');
    run.fail(
      "/w/t.ts has no 'train' export",
      { file: '/w/t.ts', line: 1 },
      'export async function train(model) {}',
    );
    const s = run.panelState();
    assert.equal(s.state, 'failed');
    assert.equal(s.error?.where, 't.ts:1');
    assert.match(s.error!.hint!, /export async function train/);
  });
});

describe('Run Training lens', () => {
  test('the bundled examples', () => {
    const py = fs.readFileSync(path.join(ROOT, 'examples', 'iris_train.py'), 'utf8');
    const pyLine = py.split('\n').findIndex((l) => l.startsWith('if __name__'));
    assert.equal(trainingEntryLine('iris_train.py', py), pyLine);
    const ts = fs.readFileSync(path.join(ROOT, 'examples', 'iris_train.ts'), 'utf8');
    const tsLine = ts.split('\n').findIndex((l) => l.startsWith('export async function train'));
    assert.equal(trainingEntryLine('iris_train.ts', ts), tsLine);
    // iris_mlp.py also trains when run as a script.
    const mlp = fs.readFileSync(path.join(ROOT, 'examples', 'iris_mlp.py'), 'utf8');
    assert.equal(
      trainingEntryLine('iris_mlp.py', mlp),
      mlp.split('\n').findIndex((l) => l.startsWith('if __name__')),
    );
  });

  test('python: __main__ alone is not enough', () => {
    assert.equal(
      trainingEntryLine('a.py', 'print(1)\nif __name__ == "__main__":\n    print(2)\n'),
      null,
    );
    assert.equal(
      trainingEntryLine(
        'a.py',
        'def go():\n    loss.backward()\n\nif __name__ == "__main__":\n    go()\n',
      ),
      3,
    );
    assert.equal(
      trainingEntryLine(
        'a.py',
        "opt = make()\noptimizer.step()\nif __name__ == '__main__':\n  pass\n",
      ),
      2,
    );
  });

  test('typescript: a train export, in its usual spellings', () => {
    assert.equal(
      trainingEntryLine('m.ts', 'const a = 1;\nexport async function train(model) {}\n'),
      1,
    );
    assert.equal(trainingEntryLine('m.js', 'export const train = async (m) => {};\n'), 0);
    assert.equal(trainingEntryLine('m.js', 'exports.train = function () {};\n'), 0);
    assert.equal(
      trainingEntryLine('m.ts', 'export function trainer() {}\nfunction train() {}\n'),
      null,
    );
  });
});
