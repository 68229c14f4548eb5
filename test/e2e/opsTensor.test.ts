// End-to-end: the Ops and Tensor panels in a real VS Code, as a user gets to them. Ops: profile
// resnet18 (torchvision, random weights) from the palette, sort the table, jump from an op to its
// source line, export the Chrome trace through the save dialog. Tensor: inspect the output of a
// module that returns a permuted view and read why it is not contiguous — strides checked against
// torch's own stride() and is_contiguous() for the same op. Screenshots in test-output/e2e/.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, ensureCodeServerInstalled, markedPids } from './codeServer';
import { ensureBuilt, openSession } from './harness';
import type { Session } from './harness';

const SUITE_TIMEOUT_MS = 6 * 60_000;
const SCENARIO_TIMEOUT_MS = 4 * 60_000;
/** Starting torch and timing resnet18's steps on a busy 2-core machine. */
const PROFILE_TIMEOUT_MS = 150_000;
const INSPECT_TIMEOUT_MS = 90_000;
const WORKSPACE = path.join(REPO_ROOT, 'test', 'e2e', 'workspace');
/** The interpreter the engine picks here (no modelLens.pythonPath; python3 on PATH lacks torch). */
const PYTHON = process.env.MODEL_LENS_E2E_PYTHON ?? '/usr/bin/python3';

/** torch's own answer for permuted.py's `perm`: [1, 6] → unflatten → permute(0, 2, 1). */
function torchPermuted(): { shape: number[]; stride: number[]; contiguous: boolean } {
  const code = [
    'import json, torch',
    'y = torch.nn.Unflatten(1, (2, 3))(torch.nn.Linear(4, 6)(torch.randn(1, 4))).permute(0, 2, 1)',
    'print(json.dumps({"shape": list(y.shape), "stride": list(y.stride()),',
    '                  "contiguous": y.is_contiguous()}))',
  ].join('\n');
  return JSON.parse(execFileSync(PYTHON, ['-c', code], { encoding: 'utf8' }));
}

describe('Ops and Tensor panels in a real VS Code', { timeout: SUITE_TIMEOUT_MS }, () => {
  let session: Session | undefined;
  let folder = '';

  before(async () => {
    ensureCodeServerInstalled();
    ensureBuilt();
    // A copy: the exported trace is written into the workspace.
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-e2e-ops-'));
    fs.cpSync(WORKSPACE, folder, { recursive: true });
    session = await openSession('ops', { folder });
  });

  after(async () => {
    await session?.close();
    if (session)
      assert.deepEqual(
        markedPids(session.server.runId),
        [],
        'processes left behind after teardown',
      );
    if (folder) fs.rmSync(folder, { recursive: true, force: true });
  });

  it(
    'profiles resnet18: sort, jump to source, export the trace',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      const wb = session.wb;
      const frame = await wb.step(
        'profile',
        async () => {
          await wb.runCommand('View: Close All Editors');
          await wb.openFile('convnet.py');
          await wb.runCommand('Model Lens: Profile Current File');
          const f = await wb.webviewFrameWith('#ops-table tbody tr', PROFILE_TIMEOUT_MS);
          // resnet18's time is in its convolutions, whatever the torch version names the op.
          const ops = await f
            .locator('#ops-table tbody tr')
            .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-op')));
          assert.ok(
            ops.some((op) => /conv/.test(op ?? '')),
            `a convolution op among ${JSON.stringify(ops)}`,
          );
          return f;
        },
        PROFILE_TIMEOUT_MS + 60_000,
      );

      const callsColumn = async (): Promise<number[]> =>
        (await frame.locator('#ops-table tbody tr td:nth-child(2)').allInnerTexts()).map((t) =>
          Number(t.replace(/[^\d]/g, '')),
        );
      await wb.step('sort', async () => {
        // A numeric column sorts descending on its first click, ascending on the second.
        await frame.locator('#ops-table th[data-sort="calls"]').click();
        await wb.waitFor(
          'descending calls',
          () => frame.locator('#ops-table th[data-sort="calls"]').getAttribute('aria-sort'),
          (s) => s === 'descending',
        );
        const down = await callsColumn();
        assert.deepEqual(
          down,
          [...down].sort((a, b) => b - a),
          `calls descending: ${down}`,
        );
        await frame.locator('#ops-table th[data-sort="calls"]').click();
        await wb.waitFor(
          'ascending calls',
          () => frame.locator('#ops-table th[data-sort="calls"]').getAttribute('aria-sort'),
          (s) => s === 'ascending',
        );
        const up = await callsColumn();
        assert.deepEqual(
          up,
          [...up].sort((a, b) => a - b),
          `calls ascending: ${up}`,
        );
        assert.ok(up[0] < up[up.length - 1], 'the ops differ in their call counts');
      });

      await wb.step('jump-to-source', async () => {
        const link = frame.locator('#ops-table tbody tr td:last-child a').first();
        const where = (await link.innerText()).trim();
        const m = /^(.+):(\d+)$/.exec(where);
        assert.ok(m, `a source link file:line, got ${where}`);
        await link.click();
        await wb.page
          .locator(`.tabs-container .tab.active[data-resource-name="${m[1]}"]`)
          .waitFor({ state: 'visible' });
        await wb.waitFor(
          `the cursor on line ${m[2]}`,
          () => wb.statusBarText('Ln '),
          (t) => t !== null && new RegExp(`^Ln ${m[2]},`).test(t),
        );
      });

      await wb.step(
        'export-trace',
        async () => {
          const ops = await wb.webviewFrameWith('#export-trace');
          await ops.locator('#export-trace').click();
          // code-server's save dialog is VS Code's simple file dialog: a path in a quick input.
          const dest = path.join(folder, 'resnet18-trace.json');
          const input = wb.page.locator('.quick-input-widget input');
          await input.waitFor({ state: 'visible' });
          // The dialog fills in its default (<workspace>/<model>-trace.json) a moment after it
          // opens, over anything typed before: the flake where our path was replaced by it.
          await wb.waitFor(
            'the default path',
            () => input.inputValue(),
            (v) => v.endsWith('-trace.json'),
          );
          await input.fill(dest);
          // The dialog re-lists the folder as the path changes (a progress bar while it does); an
          // Enter before it settles can be taken by the listing instead of the typed path.
          await wb.waitFor(
            'the save dialog to hold the path',
            () => input.inputValue(),
            (v) => v === dest,
          );
          const busy = wb.page.locator('.quick-input-widget .monaco-progress-container.active');
          await wb.waitFor(
            'the save dialog to settle',
            () => busy.count(),
            (n) => n === 0,
          );
          await wb.page.keyboard.press('Enter');
          await wb.page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
          // A copy of the profile's trace; a re-profile if that one is gone, hence the long wait.
          await wb.waitFor(
            'the trace file',
            async () => fs.existsSync(dest) && fs.statSync(dest).size > 0,
            (ok) => ok,
            PROFILE_TIMEOUT_MS,
          );
          const trace = JSON.parse(fs.readFileSync(dest, 'utf8')) as
            { traceEvents?: { name?: string }[] } | { name?: string }[];
          const events = Array.isArray(trace) ? trace : (trace.traceEvents ?? []);
          assert.ok(
            events.some((e) => /conv/.test(e.name ?? '')),
            `the Chrome trace has convolution events (${events.length} events)`,
          );
          await wb.waitFor(
            'the "trace written" notification',
            () => wb.notifications(),
            (ns) => ns.some((n) => n.includes('trace written')),
          );
        },
        PROFILE_TIMEOUT_MS + 30_000,
      );
    },
  );

  it(
    'inspects a permuted output and says why it is not contiguous',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      const wb = session.wb;
      const expected = torchPermuted();
      assert.equal(expected.contiguous, false);
      await wb.step(
        'inspect-permuted',
        async () => {
          await wb.runCommand('View: Close All Editors');
          await wb.openFile('permuted.py');
          await wb.runCommand('Model Lens: Inspect Current File');
          await wb.showContainer('Model Lens');
          await wb
            .treeRow('Module perm', 'Modules')
            .waitFor({ state: 'visible', timeout: INSPECT_TIMEOUT_MS });
        },
        INSPECT_TIMEOUT_MS + 10_000,
      );

      await wb.step('tensor-panel', async () => {
        await wb.contextMenu(wb.treeRow('Module perm', 'Modules'), 'Inspect Output Tensor');
        const frame = await wb.webviewFrameWith('#contiguity');
        const dims = frame.locator('#dims table.dims tbody tr');
        const row = async (i: number) =>
          (await dims.nth(i).locator('td').allInnerTexts()).map(Number);
        assert.deepEqual(await row(0), expected.shape, 'sizes as torch has them');
        assert.deepEqual(await row(1), expected.stride, "strides as torch's stride() gives them");
        const said = await frame.locator('#contiguity').innerText();
        assert.match(said, /Not contiguous: breaks at dim \d/);
        assert.equal(await frame.locator('#contiguity.warn').count(), 1);
        // view(-1) of a permuted tensor fails in torch; the panel says reshape copies instead.
        assert.match(await frame.locator('#view').innerText(), /view\(\) would fail/);
      });
    },
  );

  it(
    'lists a shared module under each of its names, in the tree and the summary',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      assert.ok(session);
      const wb = session.wb;
      await wb.step(
        'inspect-shared',
        async () => {
          await wb.runCommand('View: Close All Editors');
          await wb.openFile('shared.py');
          await wb.runCommand('Model Lens: Inspect Current File');
          await wb.showContainer('Model Lens');
          await wb
            .treeRow('Module layers', 'Modules')
            .waitFor({ state: 'visible', timeout: INSPECT_TIMEOUT_MS });
          // The views' title names the file they show.
          await wb
            .pane('Modules')
            .locator('.pane-header', { hasText: 'shared.py' })
            .waitFor({ state: 'visible' });
        },
        INSPECT_TIMEOUT_MS + 10_000,
      );

      await wb.step('tree-aliases', async () => {
        await wb.treeRow('Module layers', 'Modules').click();
        await wb.page.keyboard.press('ArrowRight');
        // torch lists layers[2] once, as layers.0; the tree names it as well, as a shared row.
        const alias = wb.treeRow('Module layers.2, shared with layers.0', 'Modules');
        await alias.waitFor({ state: 'visible' });
        assert.match(await alias.innerText(), /= layers\.0 \(shared\)/);
        // What matters first: output shape, then parameters, then the type.
        assert.match(
          await wb.treeRow('Module layers.1', 'Modules').innerText(),
          /\[1, 8\] · 72 params · Block/,
        );
      });

      await wb.step('summary-aliases', async () => {
        await wb.runCommand('Model Lens: Show Summary');
        const frame = await wb.webviewFrameWith('tr[data-alias="layers.2"]');
        assert.match(
          await frame.locator('tr[data-alias="layers.2"]').innerText(),
          /Block \(layers\.2\)/,
        );
        // Notes have a row of their own under their module, so long ones wrap inside the table.
        assert.match(
          await frame.locator('tr[data-alias="layers.2"] + tr.note-row').innerText(),
          /same module as layers\.0/,
        );
        const fits = await frame
          .locator('#summary-table')
          .evaluate((t) => t.scrollWidth <= (t.parentElement?.clientWidth ?? 0) + 1);
        assert.ok(fits, 'the summary table fits the panel');
        // It sits after layers.1's subtree, where torch registered it, and before head.
        const order = await frame
          .locator('tbody tr[data-path], tbody tr[data-alias]')
          .evaluateAll((trs) =>
            trs.map((tr) => tr.getAttribute('data-path') ?? tr.getAttribute('data-alias')),
          );
        assert.deepEqual(order, [
          '',
          'layers',
          'layers.0',
          'layers.0.lin',
          'layers.1',
          'layers.1.lin',
          'layers.2',
          'head',
        ]);
      });
    },
  );
});
