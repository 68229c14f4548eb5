// End-to-end: Model Lens in a real VS Code (code-server + Chromium), driven like a user would —
// palette, tree, context menu, webviews — on the bundled iris MLP, in TensorFlow.js and PyTorch.
// Screenshots of every step land in test-output/e2e/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, ensureCodeServerInstalled, markedPids } from './codeServer';
import { ensureBuilt, openSession } from './harness';
import type { Session } from './harness';
import type { Workbench } from './workbench';

const EXAMPLES = process.env.MODEL_LENS_E2E_EXAMPLES ?? path.join(REPO_ROOT, 'examples');
const SUITE_TIMEOUT_MS = 5 * 60_000;
const SCENARIO_TIMEOUT_MS = 4 * 60_000;
const INSPECT_TIMEOUT_MS = 90_000; // first inspect starts an engine and loads tfjs or torch
const FORWARD_TIMEOUT_MS = 60_000;
/** How long we watch a detached hook for events that must not come. */
const QUIET_WINDOW_MS = 3_000;
/** setStatusBarMessage() in runForward lasts 5 s; a repeat must not be mistaken for the first. */
// The message stays 5 s; a loaded machine can take much longer to repaint the status bar.
const FORWARD_MESSAGE_GONE_MS = 30_000;

/**
 * The iris MLP of both examples: 4 inputs → 10 hidden → 3 classes. Parameters by hand:
 * hidden 4·10 + 10 = 50, output 10·3 + 3 = 33, total 83.
 */
interface Expected {
  file: string;
  /** Module paths in tree order, root first (""), as the example file names its layers. */
  paths: string[];
  params: Record<string, number>;
}

const TFJS: Expected = {
  file: 'iris_mlp.ts',
  paths: ['', 'hidden', 'output'],
  params: { '': 83, hidden: 50, output: 33 },
};

const PYTORCH: Expected = {
  file: 'iris_mlp.py',
  paths: ['', 'fc1', 'act', 'fc2'],
  params: { '': 83, fc1: 50, act: 0, fc2: 33 },
};

const rowLabel = (p: string): string => (p === '' ? 'Module (root)' : `Module ${p}`);

/** Command lines of the engine processes (TF.js bundle or Python package) this run started. */
function engineProcesses(runId: string): string[] {
  return markedPids(runId)
    .map((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        return '';
      }
    })
    .filter((cmd) => /dist\/engine\.js|model_lens_engine/.test(cmd));
}

/** Counts hook events shown in the Hooks panel for `modulePath`; null while it has no row. */
async function hookEventCount(wb: Workbench, modulePath: string): Promise<number | null> {
  const selector = `[data-hook-path="${modulePath}"] .event-count`;
  const frame = await wb.webviewFrameWith(selector);
  const text = await frame.locator(selector).first().innerText();
  const n = Number(text.replace(/[^\d]/g, ''));
  return Number.isFinite(n) && text.trim() !== '' ? n : null;
}

async function runForward(wb: Workbench): Promise<void> {
  await wb.waitFor(
    'the previous forward message to clear',
    () => wb.statusBarText('forward pass'),
    (t) => t === null,
    FORWARD_MESSAGE_GONE_MS,
  );
  await wb.runCommand('Model Lens: Run Forward Pass');
  await wb.waitFor(
    'the forward pass to finish',
    () => wb.statusBarText('forward pass'),
    (t) => t !== null,
    FORWARD_TIMEOUT_MS,
  );
}

async function irisScenario(session: Session, expected: Expected): Promise<void> {
  const wb = session.wb;
  const hooked = expected.paths[1];

  await wb.step('open-file', async () => {
    // Each scenario starts from a clean editor area, whatever the previous one left open.
    await wb.runCommand('View: Close All Editors');
    await wb.openFile(expected.file);
  });

  await wb.step(
    'inspect',
    async () => {
      await wb.runCommand('Model Lens: Inspect Current File');
      await wb.showContainer('Model Lens');
      await wb
        .treeRow(rowLabel(expected.paths[1]), 'Modules')
        .waitFor({ state: 'visible', timeout: INSPECT_TIMEOUT_MS });
      // The same probe proves, in the untrusted scenario, that no engine started there.
      const engine = expected.file.endsWith('.py') ? /model_lens_engine/ : /dist\/engine\.js/;
      assert.ok(
        engineProcesses(session.server.runId).some((cmd) => engine.test(cmd)),
        'the engine process is running',
      );
    },
    INSPECT_TIMEOUT_MS + 10_000,
  );

  await wb.step('modules-tree', async () => {
    const labels = await wb.treeRowLabels('Module ', wb.tree('Modules'));
    assert.deepEqual(labels, expected.paths.map(rowLabel), 'Modules tree rows');
    for (const [p, params] of Object.entries(expected.params)) {
      // The description alone: the row's innerText runs the label into it with no space
      // ("createModel83 params" while the shape is not known yet), which broke a word boundary.
      const text = await wb
        .treeRow(rowLabel(p), 'Modules')
        .locator('.label-description')
        .first()
        .innerText();
      assert.match(
        text,
        new RegExp(`(^|\\D)${params} params\\b`),
        `tree row of ${rowLabel(p)}: ${text}`,
      );
    }
  });

  await wb.step('summary', async () => {
    await wb.runCommand('Model Lens: Show Summary');
    const frame = await wb.webviewFrameWith('#totals');
    await wb.waitFor(
      'the summary totals',
      () => frame.locator('#totals').innerText(),
      (t) => /Total params: 83\b/.test(t),
    );
    const rows = await frame
      .locator('tr[data-path]')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-path')));
    for (const p of expected.paths.slice(1))
      assert.ok(rows.includes(p), `summary has a row for ${p}: ${JSON.stringify(rows)}`);
  });

  await wb.step('attach-hook', async () => {
    await wb.showContainer('Model Lens');
    await wb.contextMenu(wb.treeRow(rowLabel(hooked), 'Modules'), 'Attach Forward Hook');
    await wb.webviewFrameWith(`[data-hook-path="${hooked}"]`);
  });

  const afterFirst = await wb.step(
    'forward-hooked',
    async () => {
      await runForward(wb);
      return wb.waitFor(
        `hook events on ${hooked}`,
        () => hookEventCount(wb, hooked),
        (n) => n !== null && n > 0,
        FORWARD_TIMEOUT_MS,
      );
    },
    FORWARD_TIMEOUT_MS * 2,
  );
  assert.ok(afterFirst !== null && afterFirst > 0);

  const afterDetach = await wb.step('detach', async () => {
    await wb.showContainer('Model Lens');
    await wb.contextMenu(wb.treeRow(rowLabel(hooked), 'Modules'), 'Detach Hooks');
    // The Hooks panel keeps a detached hook's card, marked detached, with its count frozen.
    const card = `[data-hook-path="${hooked}"].detached`;
    const frame = await wb.webviewFrameWith(card);
    assert.equal(await frame.locator(card).count(), 1, `one detached card for ${hooked}`);
    // Let any event already in flight arrive before taking the reference count.
    await new Promise((r) => setTimeout(r, 500));
    const count = await hookEventCount(wb, hooked);
    assert.ok(count !== null && count >= afterFirst, `the detached card keeps its count: ${count}`);
    return count;
  });

  await wb.step(
    'forward-detached',
    async () => {
      await runForward(wb);
      await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
      // The card must still be there (a missing panel or card is a failure, not "no events"), and
      // its count must not have moved: a higher count means the hook still fires.
      const now = await hookEventCount(wb, hooked);
      assert.equal(now, afterDetach, `events after detach: ${afterDetach} → ${now}`);
    },
    FORWARD_TIMEOUT_MS + QUIET_WINDOW_MS + 10_000,
  );
}

describe('Model Lens in a real VS Code', { timeout: SUITE_TIMEOUT_MS }, () => {
  let session: Session | undefined;

  before(async () => {
    ensureCodeServerInstalled();
    ensureBuilt();
    session = await openSession('iris', { folder: EXAMPLES });
  });

  after(async () => {
    await session?.close();
    // code-server, its extension host, the engines (own process groups) and Chromium all carry
    // the run's marker: none may outlive the session.
    if (session)
      assert.deepEqual(
        markedPids(session.server.runId),
        [],
        'processes left behind after teardown',
      );
  });

  it(
    'TensorFlow.js iris MLP: inspect, summary, hook, forward, detach',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      await irisScenario(session, TFJS);
    },
  );

  it(
    'PyTorch iris MLP: inspect, summary, hook, forward, detach',
    { timeout: SCENARIO_TIMEOUT_MS },
    async (t) => {
      assert.ok(session);
      await irisScenario(session, PYTORCH);
    },
  );
});

describe('Model Lens in an untrusted workspace', { timeout: SUITE_TIMEOUT_MS }, () => {
  let session: Session | undefined;

  before(async () => {
    ensureBuilt();
    session = await openSession('untrusted', { folder: EXAMPLES, workspaceTrust: true });
  });

  after(async () => {
    await session?.close();
    // code-server, its extension host, the engines (own process groups) and Chromium all carry
    // the run's marker: none may outlive the session.
    if (session)
      assert.deepEqual(
        markedPids(session.server.runId),
        [],
        'processes left behind after teardown',
      );
  });

  it('explains in its views why they are empty', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    assert.ok(session);
    const wb = session.wb;
    await wb.step('restricted-mode', async () => {
      // The trust prompt is a modal dialog; staying in Restricted Mode is what we test.
      const dialog = wb.page.locator('.monaco-dialog-box');
      await dialog.waitFor({ state: 'visible' });
      await dialog
        .locator('.monaco-button', { hasText: /don.t trust/i })
        .first()
        .click();
      await dialog.waitFor({ state: 'hidden' });
    });
    await wb.step('views-explain', async () => {
      await wb.showContainer('Model Lens');
      await wb
        .pane('Modules')
        .getByText('only works in a trusted workspace')
        .waitFor({ state: 'visible' });
      assert.equal(
        await wb.tree('Modules').locator('.monaco-list-row').count(),
        0,
        'no module rows in Restricted Mode',
      );
    });
    await wb.step('inspect-refused', async () => {
      await wb.openFile(TFJS.file);
      await wb.runCommand('Model Lens: Inspect Current File');
      await wb.waitFor(
        'a notification about trust',
        () => wb.notifications(),
        (ns) => ns.some((n) => /trusted workspace/.test(n)),
      );
      assert.equal(
        await wb.tree('Modules').locator('.monaco-list-row').count(),
        0,
        'no module rows after Inspect in Restricted Mode',
      );
      assert.deepEqual(
        engineProcesses(session!.server.runId),
        [],
        'an engine started in an untrusted workspace',
      );
    });
  });
});
