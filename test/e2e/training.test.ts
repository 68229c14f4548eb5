// End-to-end: "Model Lens: Run Training" in a real VS Code (code-server + Chromium) on the iris
// training scripts, TF.js and PyTorch: progress in the status bar, the live loss curve in the
// Training panel, the trained model in the Modules view, a hook attached mid-run streaming into
// the Hooks panel, then Stop Training leaving the partial curve. Screenshots land in
// test-output/e2e/training-*.png.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, ensureCodeServerInstalled, markedPids } from './codeServer';
import { ensureBuilt, openSession, outputChannelLog } from './harness';
import type { Session } from './harness';
import type { Workbench } from './workbench';

const SUITE_TIMEOUT_MS = 10 * 60_000;
const SCENARIO_TIMEOUT_MS = 4 * 60_000;
/** Starting the engine (tfjs load, or `import torch`) and the script's first steps, on a loaded box. */
const FIRST_PROGRESS_TIMEOUT_MS = 120_000;
const STEP_TIMEOUT_MS = 60_000;
const TORCH_PYTHON = '/usr/bin/python3';
/** Epochs in the workspace copies: far more than the scenario lasts, so the run is stopped. */
const LONG_EPOCHS = 1_000_000;

interface Scenario {
  prefix: string;
  file: string;
  /** A leaf module of the iris MLP as the script names it, for the hook. */
  hooked: string;
}

/** A 2-rank DDP script (gloo on the CPU), for "Run Training (N processes)". */
const DDP_FILE = 'ddp_train.py';

/** A TF.js script whose own code throws in its third epoch (the line is marked THROW_LINE). */
const FAILING_FILE = 'throwsMidRun.ts';

const TFJS: Scenario = { prefix: 'tfjs', file: 'iris_train.ts', hooked: 'hidden' };
const PYTORCH: Scenario = { prefix: 'pytorch', file: 'iris_train.py', hooked: 'fc1' };

/**
 * A workspace with copies of the example scripts whose default epoch count is LONG_EPOCHS (the
 * palette command runs a script as it is), and the iris data beside them.
 */
function makeWorkspace(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-train-ws-'));
  const examples = path.join(REPO_ROOT, 'examples');
  fs.mkdirSync(path.join(dir, 'data'));
  fs.copyFileSync(path.join(examples, 'data', 'iris.csv'), path.join(dir, 'data', 'iris.csv'));
  const ts = fs.readFileSync(path.join(examples, 'iris_train.ts'), 'utf8');
  const tsLong = ts.replace(
    /const DEFAULT_EPOCHS = \d+;/,
    `const DEFAULT_EPOCHS = ${LONG_EPOCHS};`,
  );
  assert.notEqual(tsLong, ts, 'iris_train.ts has a DEFAULT_EPOCHS constant');
  fs.writeFileSync(path.join(dir, TFJS.file), tsLong);
  fs.copyFileSync(
    path.join(REPO_ROOT, 'test', 'fixtures', 'training', FAILING_FILE),
    path.join(dir, FAILING_FILE),
  );
  const pyFile = path.join(examples, PYTORCH.file);
  const py = fs.readFileSync(pyFile, 'utf8');
  const pyLong = py.replace(/else 1000\b/, `else ${LONG_EPOCHS}`);
  assert.notEqual(pyLong, py, 'iris_train.py defaults to 1000 epochs');
  fs.writeFileSync(path.join(dir, PYTORCH.file), pyLong);
  fs.copyFileSync(path.join(examples, DDP_FILE), path.join(dir, DDP_FILE));
  return dir;
}

const rowLabel = (p: string): string => (p === '' ? 'Module (root)' : `Module ${p}`);

/** The step number in the training status bar item (`$(pulse) step 1200 · loss 0.0931`), or null. */
async function statusStep(wb: Workbench): Promise<number | null> {
  const text = await wb.statusBarText('loss');
  const m = text ? /step (\d+)/.exec(text) : null;
  return m ? Number(m[1]) : null;
}

async function trainingAttr(wb: Workbench, selector: string, attr: string): Promise<string | null> {
  const frame = await wb.webviewFrameWith(selector);
  return frame.locator(selector).first().getAttribute(attr);
}

async function hookEventCount(wb: Workbench, modulePath: string): Promise<number | null> {
  const selector = `[data-hook-path="${modulePath}"] .event-count`;
  const frame = await wb.webviewFrameWith(selector);
  const text = await frame.locator(selector).first().innerText();
  const n = Number(text.replace(/[^\d]/g, ''));
  return Number.isFinite(n) && text.trim() !== '' ? n : null;
}

async function trainingScenario(session: Session, sc: Scenario): Promise<void> {
  const wb = session.wb;

  await wb.step('open', async () => {
    await wb.runCommand('View: Close All Editors');
    await wb.openFile(sc.file);
  });

  const firstStep = await wb.step(
    'run-training',
    async () => {
      await wb.runCommand('Model Lens: Run Training');
      return wb.waitFor(
        'a training step in the status bar',
        () => statusStep(wb),
        (n) => n !== null && n > 0,
        FIRST_PROGRESS_TIMEOUT_MS,
      );
    },
    FIRST_PROGRESS_TIMEOUT_MS + 10_000,
  );

  await wb.step(
    'progress-moves',
    async () => {
      await wb.waitFor(
        'the status bar step to advance',
        () => statusStep(wb),
        (n) => n !== null && n > firstStep!,
        STEP_TIMEOUT_MS,
      );
      const toast = await wb.notifications();
      assert.ok(
        toast.some((t) => /step \d+/.test(t)),
        `a progress notification with the step: ${JSON.stringify(toast)}`,
      );
    },
    STEP_TIMEOUT_MS + 10_000,
  );

  await wb.step(
    'loss-curve',
    async () => {
      const points = await wb.waitFor(
        'the loss curve to have points',
        async () => Number(await trainingAttr(wb, '#loss-chart', 'data-points')),
        (n) => n >= 5,
        STEP_TIMEOUT_MS,
      );
      const frame = await wb.webviewFrameWith('#loss-chart .u-over');
      assert.equal(await trainingAttr(wb, '#training-state', 'data-state'), 'running');
      // Hover the middle of the curve: the legend names the step and the raw and smoothed loss there.
      const over = frame.locator('#loss-chart .u-over');
      const box = await over.boundingBox();
      assert.ok(box, 'the loss chart has a plot area');
      await over.hover({ position: { x: box.width / 2, y: box.height / 2 } });
      const legend = await wb.waitFor(
        'hover values in the legend',
        async () => frame.locator('#loss-chart .u-legend').innerText(),
        (t) => /step\s*:?\s*\d+/.test(t),
      );
      assert.match(
        legend,
        /train\s*:?\s*-?\d/,
        `the raw loss at the hovered step (${points} points): ${legend}`,
      );
      assert.match(legend, /train \(smoothed\)\s*:?\s*-?\d/);
    },
    STEP_TIMEOUT_MS + 10_000,
  );

  await wb.step(
    'trained-model-tree',
    async () => {
      await wb.showContainer('Model Lens');
      await wb
        .treeRow(rowLabel(sc.hooked), 'Modules')
        .waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    },
    STEP_TIMEOUT_MS + 10_000,
  );

  await wb.step(
    'hook-mid-run',
    async () => {
      await wb.contextMenu(wb.treeRow(rowLabel(sc.hooked), 'Modules'), 'Attach Forward Hook');
      await wb.webviewFrameWith(`[data-hook-path="${sc.hooked}"]`, STEP_TIMEOUT_MS);
      // No forward pass is asked for: the events come from the training run itself.
      const first = await wb.waitFor(
        `hook events on ${sc.hooked}`,
        () => hookEventCount(wb, sc.hooked),
        (n) => n !== null && n > 0,
        STEP_TIMEOUT_MS,
      );
      await wb.waitFor(
        'more hook events',
        () => hookEventCount(wb, sc.hooked),
        (n) => n !== null && n > first!,
        STEP_TIMEOUT_MS,
      );
      const frame = await wb.webviewFrameWith(`[data-hook-path="${sc.hooked}"] .stats`);
      assert.match(
        await frame.locator(`[data-hook-path="${sc.hooked}"] .stats`).first().innerText(),
        /step \d+/,
        'events carry the training step',
      );
    },
    2 * STEP_TIMEOUT_MS + 10_000,
  );

  await wb.step(
    'stop',
    async () => {
      if (sc.file.endsWith('.py')) {
        // The Training panel's own Stop button (the TF.js scenario uses the command).
        await wb.runCommand('Model Lens: Show Training');
        const frame = await wb.webviewFrameWith('#stop-training');
        await frame.locator('#stop-training').first().click();
      } else {
        await wb.runCommand('Model Lens: Stop Training');
      }
      // The final state stays in the status bar for a while after the run.
      await wb.waitFor(
        'the status bar to say stopped',
        () => wb.statusBarText('stopped'),
        (t) => t !== null,
        STEP_TIMEOUT_MS,
      );
      // The Hooks panel opened over the Training panel; a hidden webview has no page to read.
      await wb.runCommand('Model Lens: Show Training');
      await wb.waitFor(
        'the Training panel to say stopped',
        () => trainingAttr(wb, '#training-state', 'data-state'),
        (s) => s === 'stopped',
        STEP_TIMEOUT_MS,
      );
      const points = Number(await trainingAttr(wb, '#loss-chart', 'data-points'));
      assert.ok(points >= 5, `the partial curve is kept (${points} points)`);
      const errors = (await wb.notifications()).filter((n) => /error|failed/i.test(n));
      assert.deepEqual(errors, [], 'no error notification');
    },
    STEP_TIMEOUT_MS + 10_000,
  );

  await wb.step('diagnosis', async () => {
    const frame = await wb.webviewFrameWith('#diagnosis');
    if (sc.prefix === 'pytorch') {
      // The PyTorch engine measures the run; its findings are sentences with numbers.
      await wb.waitFor(
        'diagnosis findings',
        () => frame.locator('#diagnosis li.finding').count(),
        (n) => n > 0,
        STEP_TIMEOUT_MS,
      );
      assert.match(await frame.locator('#diagnosis').innerText(), /steps on cpu/);
    }
    await frame.locator('#diagnosis').scrollIntoViewIfNeeded();
  });

  const log = outputChannelLog(session.server.userDataDir);
  assert.match(
    log,
    /\[training\] run \S+ stopped after \d+ steps/,
    'the output channel records the run',
  );
  assert.match(
    log,
    sc.prefix === 'tfjs' ? /\[tfjs stdout\] epoch 0 loss/ : /\[pytorch stdout\] epoch 0 loss/,
    "the script's own output is in the channel",
  );
}

async function failingScenario(session: Session): Promise<void> {
  const wb = session.wb;
  const throwLine =
    fs
      .readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'training', FAILING_FILE), 'utf8')
      .split('\n')
      .findIndex((l) => l.includes('THROW_LINE')) + 1;
  await wb.step('failing-open', async () => {
    await wb.runCommand('View: Close All Editors');
    await wb.openFile(FAILING_FILE);
  });
  await wb.step(
    'failing-run',
    async () => {
      await wb.runCommand('Model Lens: Run Training');
      await wb.waitFor(
        'the Training panel to say failed',
        () => trainingAttr(wb, '#training-state', 'data-state'),
        (s) => s === 'failed',
        FIRST_PROGRESS_TIMEOUT_MS,
      );
      const frame = await wb.webviewFrameWith('#training-error');
      const text = await frame.locator('#training-error').innerText();
      assert.match(text, /loss diverged at epoch 2/);
      assert.match(
        text,
        new RegExp(`${FAILING_FILE.replace('.', '\\.')}:${throwLine}\\b`),
        `the error names the user's line: ${text}`,
      );
      // The steps before the failure are still drawn.
      assert.ok(
        Number(await trainingAttr(wb, '#loss-chart', 'data-points')) > 0,
        'the partial curve is kept',
      );
    },
    FIRST_PROGRESS_TIMEOUT_MS + 10_000,
  );
  await wb.step('failing-go-to-line', async () => {
    const frame = await wb.webviewFrameWith('#training-error a.source-link');
    await frame.locator('#training-error a.source-link').first().click();
    await wb.waitFor(
      `the cursor on line ${throwLine}`,
      () =>
        wb.page
          .locator('.statusbar-item', { hasText: /^Ln \d+, Col \d+/ })
          .first()
          .innerText(),
      (t) => new RegExp(`^Ln ${throwLine},`).test(t.trim()),
    );
  });
}

/**
 * "Run Training (N processes)": N asked in an input box, the script run on 2 ranks through
 * torch.distributed.run, the Training panel reaching `done` with the collectives in its findings.
 */
async function distributedScenario(session: Session): Promise<void> {
  const wb = session.wb;
  await wb.step('ddp-open', async () => {
    await wb.runCommand('View: Close All Editors');
    await wb.openFile(DDP_FILE);
  });
  await wb.step(
    'ddp-run',
    async () => {
      await wb.runCommand('Model Lens: Run Training (N processes)');
      const box = wb.page.locator('.quick-input-widget input');
      await box.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
      await box.fill('2');
      await wb.page.keyboard.press('Enter');
      await wb.waitFor(
        'the Training panel to say done',
        () => trainingAttr(wb, '#training-state', 'data-state'),
        (st) => st === 'done',
        FIRST_PROGRESS_TIMEOUT_MS,
      );
    },
    FIRST_PROGRESS_TIMEOUT_MS + 10_000,
  );
  await wb.step('ddp-findings', async () => {
    const frame = await wb.webviewFrameWith('#diagnosis');
    const text = await wb.waitFor(
      'a finding about the collectives',
      () => frame.locator('#diagnosis').innerText(),
      (t) => /all_reduce/.test(t),
      STEP_TIMEOUT_MS,
    );
    assert.match(text, /rank 0/);
  });
}

describe('Model Lens training in a real VS Code', { timeout: SUITE_TIMEOUT_MS }, () => {
  let session: Session | undefined;
  let workspace: string | undefined;

  before(async () => {
    ensureCodeServerInstalled();
    ensureBuilt();
    workspace = makeWorkspace();
    session = await openSession('training', {
      folder: workspace,
      settings: { 'modelLens.pythonPath': TORCH_PYTHON },
    });
  });

  after(async () => {
    await session?.close();
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
    if (session)
      assert.deepEqual(
        markedPids(session.server.runId),
        [],
        'processes left behind after teardown',
      );
  });

  /** A scenario that failed mid-run must not leave its run going into the next one. */
  async function stopLeftoverRun(): Promise<void> {
    await session?.wb.runCommand('Model Lens: Stop Training').catch(() => undefined);
  }

  it(
    'TensorFlow.js: run, watch, hook mid-run, stop',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      await trainingScenario(session, TFJS).catch(async (err) => {
        await stopLeftoverRun();
        throw err;
      });
    },
  );

  it('PyTorch: run, watch, hook mid-run, stop', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    assert.ok(session && workspace);
    await trainingScenario(session, PYTORCH).catch(async (err) => {
      await stopLeftoverRun();
      throw err;
    });
  });

  it(
    'PyTorch: Run Training (N processes) on 2 ranks',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      await distributedScenario(session).catch(async (err) => {
        await stopLeftoverRun();
        throw err;
      });
    },
  );

  it(
    'TensorFlow.js: a script that throws shows the error at its line',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      await failingScenario(session);
    },
  );
});
