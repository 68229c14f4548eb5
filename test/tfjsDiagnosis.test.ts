// train/diagnose on the real TF.js engine: a fixture that reads its loss back with dataSync()
// once per batch must show up as a sync site at that very line, counted once per batch.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EngineClient, EngineError } from '../src/client/engineClient';
import {
  trainDiagnoseRequest,
  trainDiagnosisNotification,
  trainProgressNotification,
  trainStartRequest,
  type TrainDiagnosis,
  type TrainProgress,
} from '../src/protocol/messages';
import { processAlive, ROOT, waitUntil } from './cliProcess';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'training', 'syncEveryBatch.ts');
const EPOCHS = 3;
/** The fixture fits 8 samples in batches of 2: 4 batches per epoch. */
const BATCHES = EPOCHS * Math.ceil(8 / 2);
const RUN_TIMEOUT_MS = 120_000;

/** 1-based line of the fixture's `loss.dataSync()`, found in its text. */
function syncLine(): number {
  const lines = fs.readFileSync(FIXTURE, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('loss.dataSync()'));
  assert.ok(i >= 0, 'the fixture has a loss.dataSync() line');
  return i + 1;
}

type Seen = { type: 'progress'; p: TrainProgress } | { type: 'diagnosis'; d: TrainDiagnosis };

describe('TF.js train/diagnose', () => {
  let client: EngineClient;
  const seen: Seen[] = [];

  before(async () => {
    client = await EngineClient.start({
      kind: 'tfjs',
      cwd: path.dirname(FIXTURE),
      trusted: true,
      backend: 'cpu',
    });
    client.onNotification(trainProgressNotification, (p) => seen.push({ type: 'progress', p }));
    client.onNotification(trainDiagnosisNotification, (d) => seen.push({ type: 'diagnosis', d }));
  });

  after(async () => {
    const pid = client?.pid;
    await client?.dispose();
    if (pid) assert.equal(processAlive(pid), false, 'engine gone after dispose');
  });

  async function runToEnd(): Promise<string> {
    const { runId } = await client.request(
      trainStartRequest,
      { file: FIXTURE, epochs: EPOCHS },
      { timeoutMs: RUN_TIMEOUT_MS },
    );
    await waitUntil(
      `run ${runId} ends`,
      () =>
        seen.some(
          (e) =>
            e.type === 'progress' &&
            e.p.runId === runId &&
            ['done', 'failed', 'stopped'].includes(e.p.state),
        ),
      RUN_TIMEOUT_MS,
    );
    return runId;
  }

  test('the per-batch dataSync() is found at its line, once per batch, and the diagnosis precedes the final progress', async () => {
    const line = syncLine();
    const runId = await runToEnd();
    const mine = seen.filter((e) => (e.type === 'progress' ? e.p.runId : e.d.runId) === runId);
    const last = mine.at(-1)!;
    assert.equal(last.type, 'progress');
    assert.equal(last.type === 'progress' && last.p.state, 'done', JSON.stringify(last));
    assert.equal(last.type === 'progress' && last.p.step, BATCHES);
    const finalDiagnosis = mine.map((e) => e.type).lastIndexOf('diagnosis');
    assert.ok(
      finalDiagnosis >= 0 && finalDiagnosis === mine.length - 2,
      'train/diagnosis comes just before the final train/progress',
    );

    const d = await client.request(trainDiagnoseRequest, { runId });
    assert.equal(d.runId, runId);
    assert.equal(d.steps, BATCHES);
    assert.equal(d.device, 'cpu');
    assert.equal(d.batchSize, 2);
    assert.equal(d.breakdown, null, 'no per-phase split is measured');
    assert.ok(d.stepMs > 0, `median batch ${d.stepMs} ms`);
    const site = d.syncs.find((s) => s.source?.file === FIXTURE && s.source.line === line);
    assert.ok(site, `a sync at ${FIXTURE}:${line} in ${JSON.stringify(d.syncs)}`);
    assert.equal(site.kind, 'item', 'a one-value read is item-like');
    assert.equal(site.count, BATCHES);
    assert.ok(d.deviceToHost.count >= BATCHES, 'every user read is a device→host read');
    assert.ok(
      d.hostToDevice.count >= BATCHES,
      'tf.scalar made a tensor from a JS value every batch',
    );
    const where = `syncEveryBatch.ts:${line}`;
    const finding = d.findings.find((f) => f.message.includes(where));
    assert.ok(finding, `a finding names ${where}: ${JSON.stringify(d.findings)}`);
    assert.match(
      finding.message,
      new RegExp(`loss\\.dataSync\\(\\) at .*every batch: ${BATCHES} calls`),
    );
    assert.ok(
      d.findings.some((f) => /cpu backend .*nothing leaves process memory/.test(f.message)),
    );
    // The notification carries the same counts as the answer after the run.
    const notified = mine[finalDiagnosis];
    assert.ok(notified.type === 'diagnosis');
    assert.deepEqual(notified.d.syncs, d.syncs);
  });

  test('a second run counts from zero and the first run stays untouched (patches removed)', async () => {
    const line = syncLine();
    const first = seen.find((e) => e.type === 'progress')!;
    const firstRunId = first.type === 'progress' ? first.p.runId : '';
    const before = await client.request(trainDiagnoseRequest, { runId: firstRunId });
    const runId = await runToEnd();
    assert.notEqual(runId, firstRunId);
    const d = await client.request(trainDiagnoseRequest, { runId });
    const site = d.syncs.find((s) => s.source?.file === FIXTURE && s.source.line === line);
    assert.equal(site?.count, BATCHES);
    const again = await client.request(trainDiagnoseRequest, { runId: firstRunId });
    assert.deepEqual(
      again.deviceToHost,
      before.deviceToHost,
      'the first run saw none of the second run’s reads',
    );
    assert.deepEqual(again.hostToDevice, before.hostToDevice);
  });

  test('an unknown runId is a clear notLoaded error (as train/stop says, in both engines)', async () => {
    await assert.rejects(
      client.request(trainDiagnoseRequest, { runId: 'r999' }),
      (err: EngineError) =>
        err instanceof EngineError && err.data.kind === 'notLoaded' && /r999/.test(err.message),
    );
  });
});
