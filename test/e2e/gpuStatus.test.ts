// End-to-end: the GPU status bar item and the System panel in a real VS Code (code-server +
// Chromium). The harness starts code-server with this process's environment, so each scenario
// sets PATH before starting it (see openWithPath):
// once with no nvidia-smi anywhere on it, once with the fake H100 nvidia-smi of
// test/fixtures/nvidia-smi/bin/h100 in front. Screenshots land in test-output/e2e/gpu-*.png.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { REPO_ROOT, ensureCodeServerInstalled, markedPids } from './codeServer';
import { ensureBuilt, openSession, outputChannelLog } from './harness';
import type { Session } from './harness';

const SUITE_TIMEOUT_MS = 5 * 60_000;
const SCENARIO_TIMEOUT_MS = 3 * 60_000;
/** Activation, the status bar's start delay (2 s) and nvidia-smi's first answer, on a loaded box. */
const STATUS_TIMEOUT_MS = 60_000;
/** How long we watch for an error notification that must not come. */
const QUIET_WINDOW_MS = 4_000;
/** First inspect starts the engine and imports torch. */
const ENGINE_TIMEOUT_MS = 90_000;
const TORCH_PYTHON = '/usr/bin/python3';
const FAKE_H100_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'nvidia-smi', 'bin', 'h100');

/** A throwaway workspace with one Python file: opening it activates Model Lens (onLanguage:python). */
function makeWorkspace(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-gpu-ws-'));
  fs.writeFileSync(
    path.join(dir, 'gpu_probe.py'),
    '# Opening this file activates Model Lens.\nx = 1\n',
  );
  return dir;
}

/** PATH without any directory holding an nvidia-smi, so "no driver" holds even on a GPU box. */
function pathWithoutNvidiaSmi(): string {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((d) => d !== '' && !fs.existsSync(path.join(d, 'nvidia-smi')))
    .join(path.delimiter);
}

/**
 * Starts code-server with PATH set for it and its extension host, then restores ours. The VS Code
 * server otherwise replaces the extension host's environment with a login shell's (`bash -il`,
 * whose /etc/profile resets PATH); it skips that when VSCODE_CLI=1, as for a server started from
 * a terminal.
 */
async function openWithPath(
  prefix: string,
  folder: string,
  PATH: string,
  settings?: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<Session> {
  const vars = { PATH, VSCODE_CLI: '1', ...env };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await openSession(prefix, { folder, settings });
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/**
 * Status bar texts the h100 fixture can produce, worked by hand: memory.used is 1234 MiB at tick 0
 * and grows 16 MiB a tick; 1234/1024 = 1.205 → "1.2", reaching 1.25 GiB (1280 MiB) at tick 3 → "1.3"
 * and so on; memory.total 81559 MiB / 1024 = 79.647 → "79.6"; utilization.gpu 87 → "87%".
 */
function expectedH100Texts(ticks: number): Set<string> {
  const texts = new Set<string>();
  for (let k = 0; k <= ticks; k++)
    texts.add(`GPU ${((1234 + 16 * k) / 1024).toFixed(1)}/79.6 GiB · 87%`);
  return texts;
}

describe('GPU status bar and System panel in a real VS Code', { timeout: SUITE_TIMEOUT_MS }, () => {
  before(() => {
    ensureCodeServerInstalled();
    ensureBuilt();
  });

  it(
    'without nvidia-smi: a quiet "No GPU", no error notification, the reason in the System panel',
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      const folder = makeWorkspace();
      const session = await openWithPath('gpu-none', folder, pathWithoutNvidiaSmi());
      try {
        const { wb } = session;
        await wb.step('activate', async () => {
          await wb.openFile('gpu_probe.py');
        });
        await wb.step(
          'status-no-gpu',
          async () => {
            // "GPU …" is the item while nvidia-smi is first tried (the extension activates with the
            // file, no longer at start-up, so the test can see it); then it settles.
            const settled = (t: string | null) => t !== null && t !== 'GPU …';
            const text = await wb.waitFor(
              'the GPU status bar item',
              () => wb.statusBarText('GPU'),
              settled,
              STATUS_TIMEOUT_MS,
            );
            assert.equal(text, 'No GPU');
          },
          STATUS_TIMEOUT_MS + 5_000,
        );
        await wb.step('no-error-notification', async () => {
          await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
          const toasts = await wb.notifications();
          assert.deepEqual(
            toasts.filter((t) => /gpu|nvidia/i.test(t)),
            [],
            `notifications: ${JSON.stringify(toasts)}`,
          );
          // Nothing at all should pop up from merely having no GPU.
          assert.deepEqual(toasts, []);
        });
        await wb.step('tooltip-reason', async () => {
          await wb.page.locator('.statusbar-item:visible', { hasText: 'No GPU' }).first().hover();
          const hover = wb.page
            .locator('.monaco-hover:visible, .workbench-hover:visible', { hasText: 'not on PATH' })
            .first();
          await hover.waitFor({ state: 'visible' });
        });
        await wb.step('system-panel-no-gpu', async () => {
          await wb.page.locator('.statusbar-item:visible', { hasText: 'No GPU' }).first().click();
          const frame = await wb.webviewFrameWith('#gpu-none');
          const said = await frame.locator('#gpu-none').innerText();
          assert.match(said, /No NVIDIA GPU data: nvidia-smi is not on PATH/);
          const memory = await frame.locator('#memory-message').innerText();
          assert.match(
            memory,
            /^No NVIDIA GPU, so there is no CUDA memory to break down: nvidia-smi is not on PATH/,
          );
          assert.doesNotMatch(`${said} ${memory}`, /\)\)/, 'no nested parentheses');
          await frame.locator('#cpu-facts').waitFor({ state: 'visible' });
          const cpu = await frame.locator('#cpu-facts').innerText();
          // The host's own logical CPU count, from node, must appear as the panel's thread count.
          assert.match(cpu, new RegExp(`Logical threads\\s+${os.cpus().length}\\b`));
          // The load is measured within a second of opening, not left at "—" (it was on Linux).
          await wb.waitFor(
            'the CPU load',
            async () => frame.locator('#cpu-facts').innerText(),
            (t) => /Load\s+\d+ %/.test(t),
          );
        });
        const log = outputChannelLog(session.server.userDataDir);
        assert.match(log, /\[gpu\] GPU monitor unavailable: nvidia-smi is not on PATH/);
        assert.deepEqual(
          wb.consoleErrors.filter((e) => /systemPanel|Content Security Policy/i.test(e)),
          [],
        );
      } finally {
        await session.close();
        fs.rmSync(folder, { recursive: true, force: true });
        assert.deepEqual(
          markedPids(session.server.runId),
          [],
          'processes left behind after teardown',
        );
      }
    },
  );

  it(
    'with a fake H100 nvidia-smi: its figures in the status bar; a click opens the System panel',
    { timeout: SCENARIO_TIMEOUT_MS },
    async (t) => {
      const folder = makeWorkspace();
      fs.copyFileSync(
        path.join(REPO_ROOT, 'examples', 'iris_mlp.py'),
        path.join(folder, 'iris_mlp.py'),
      );
      fs.cpSync(path.join(REPO_ROOT, 'examples', 'data'), path.join(folder, 'data'), {
        recursive: true,
      });
      const session = await openWithPath(
        'gpu-h100',
        folder,
        `${FAKE_H100_DIR}${path.delimiter}${pathWithoutNvidiaSmi()}`,
        { 'modelLens.pythonPath': TORCH_PYTHON },
      );
      try {
        const { wb } = session;
        await wb.step('activate', async () => {
          await wb.openFile('gpu_probe.py');
        });
        const text = await wb.step(
          'status-h100',
          () =>
            wb.waitFor(
              'GPU figures in the status bar',
              () => wb.statusBarText('GiB'),
              (t) => t !== null,
              STATUS_TIMEOUT_MS,
            ),
          STATUS_TIMEOUT_MS + 5_000,
        );
        // At most a few minutes of 1 s ticks can have passed.
        assert.ok(
          expectedH100Texts(600).has(text ?? ''),
          `status bar says ${JSON.stringify(text)}`,
        );
        await wb.step('tooltip-gpus', async () => {
          await wb.page.locator('.statusbar-item:visible', { hasText: 'GiB' }).first().hover();
          const hover = wb.page
            .locator('.monaco-hover:visible, .workbench-hover:visible', {
              hasText: 'NVIDIA H100 80GB HBM3',
            })
            .first();
          await hover.waitFor({ state: 'visible' });
          const said = await hover.innerText();
          assert.match(said, /79\.6 GiB/);
          assert.match(said, /87%/);
          assert.match(said, /45 °C/);
        });
        await wb.step('click-opens-system', async () => {
          await wb.page.keyboard.press('Escape');
          await wb.page.locator('.statusbar-item:visible', { hasText: 'GiB' }).first().click();
          const frame = await wb.webviewFrameWith('#gpu-table .gpu-name');
          assert.equal(
            (await frame.locator('#gpu-table .gpu-name').first().innerText()).trim(),
            'NVIDIA H100 80GB HBM3',
          );
          const row = await frame.locator('#gpu-table tbody tr').first().innerText();
          // compute_cap 9.0 is Hopper; 81559 MiB = 79.6 GiB; the fixture's driver 550.54.15.
          assert.match(row, /9\.0 \(Hopper\)/);
          assert.match(row, /79\.6 GiB/);
          assert.match(row, /550\.54\.15/);
          // The chart fills in: wait for a second sample, then hover its latest one.
          await wb.waitFor(
            'chart samples',
            async () =>
              Number(await frame.locator('.gpu-chart').first().getAttribute('data-samples')),
            (n) => n >= 2,
          );
          const over = frame.locator('.gpu-chart .u-over').first();
          const box = await over.boundingBox();
          assert.ok(box, 'the GPU chart has a plot area');
          await over.hover({ position: { x: box.width - 2, y: box.height / 2 } });
          const legend = frame.locator('.gpu-chart .u-legend').first();
          await wb.waitFor(
            'the hovered utilization',
            async () => legend.innerText(),
            (t) => /utilization\s*:?\s*87 %/.test(t),
          );
          // The fixture's memory.used, 1234 MiB + 16 MiB a tick: 1.2x GiB in the first ticks.
          assert.match(await legend.innerText(), /memory used\s*:?\s*1\.\d\d GiB/);
          assert.match(
            await frame.locator('#memory-message').innerText(),
            /^No PyTorch engine is running/,
          );
        });
        {
          // A real PyTorch engine on this CPU-only box: the tooltip names its pid, and the panel asks
          // it (system/info) for torch.cuda figures and says plainly that there are none.
          const enginePid = await wb.step(
            'pytorch-engine',
            async () => {
              await wb.runCommand('View: Close All Editors');
              await wb.openFile('iris_mlp.py');
              await wb.runCommand('Model Lens: Inspect Current File');
              const log = await wb.waitFor(
                'the PyTorch engine',
                async () => outputChannelLog(session.server.userDataDir),
                (l) => /\[pytorch\] engine \S+ ready \(pid \d+\)/.test(l),
                ENGINE_TIMEOUT_MS,
              );
              return Number(/\[pytorch\] engine \S+ ready \(pid (\d+)\)/.exec(log)![1]);
            },
            ENGINE_TIMEOUT_MS + 30_000,
          );
          await wb.step(
            'tooltip-engine',
            async () => {
              await wb.page.keyboard.press('Escape');
              await wb.page.locator('.statusbar-item:visible', { hasText: 'GiB' }).first().hover();
              // The fake lists only its own parent (the extension host) as a compute process, not the engine.
              const line = `Model Lens pytorch engine (pid ${enginePid}): no GPU memory listed by nvidia-smi`;
              await wb.page
                .locator('.monaco-hover:visible, .workbench-hover:visible', { hasText: line })
                .first()
                .waitFor({ state: 'visible', timeout: STATUS_TIMEOUT_MS });
            },
            STATUS_TIMEOUT_MS + 5_000,
          );
          await wb.step(
            'system-panel-torch-cpu',
            async () => {
              await wb.page.keyboard.press('Escape');
              await wb.runCommand('Model Lens: Show System');
              const frame = await wb.webviewFrameWith('#memory-message');
              await wb.waitFor(
                'the PyTorch memory answer',
                () => frame.locator('#memory-message').innerText(),
                (t) => /has not used CUDA/.test(t),
                STATUS_TIMEOUT_MS,
              );
              assert.equal(
                await frame.locator('#memory-message').innerText(),
                'The PyTorch engine has not used CUDA (its device is cpu), so torch reports no CUDA memory.',
              );
            },
            STATUS_TIMEOUT_MS + 5_000,
          );
        }
        assert.deepEqual(await wb.notifications(), []);
      } finally {
        await session.close();
        fs.rmSync(folder, { recursive: true, force: true });
        assert.deepEqual(
          markedPids(session.server.runId),
          [],
          'processes left behind after teardown',
        );
      }
    },
  );

  it(
    'with modelLens.gpuStatusBar "hide": no item and no nvidia-smi; "show" starts it, "hide" stops it again',
    { timeout: SCENARIO_TIMEOUT_MS },
    async (t) => {
      const folder = makeWorkspace();
      const startsLog = path.join(folder, '.nvidia-smi-starts.log');
      fs.writeFileSync(startsLog, '');
      // Workspace settings, edited on disk as a user's editor would: VS Code watches the file. It
      // exists from the start, so every later write is a change to a watched file; the edit counter
      // makes each write differ in size as well as content.
      let edits = 0;
      const setMode = (mode: 'show' | 'hide') => {
        fs.mkdirSync(path.join(folder, '.vscode'), { recursive: true });
        // Written whole and renamed into place, so VS Code never reads a half-written file.
        const file = path.join(folder, '.vscode', 'settings.json');
        fs.writeFileSync(
          `${file}.tmp`,
          `// edit ${'#'.repeat(++edits)}\n${JSON.stringify({ 'modelLens.gpuStatusBar': mode }, null, 2)}\n`,
        );
        fs.renameSync(`${file}.tmp`, file);
      };
      setMode('hide');
      const session = await openWithPath(
        'gpu-hide',
        folder,
        `${FAKE_H100_DIR}${path.delimiter}${pathWithoutNvidiaSmi()}`,
        {},
        { FAKE_NVIDIA_SMI_LOG: startsLog },
      );
      /** Pids of the fake nvidia-smi children started so far (one line per start). */
      const starts = () =>
        fs
          .readFileSync(startsLog, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => Number(l.split(' ')[1]));
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      try {
        const { wb } = session;
        await wb.step(
          'activate',
          async () => {
            await wb.openFile('gpu_probe.py');
            await wb.waitFor(
              'activation',
              async () => outputChannelLog(session.server.userDataDir),
              (log) => /activated in/.test(log),
              STATUS_TIMEOUT_MS,
            );
          },
          STATUS_TIMEOUT_MS + 15_000,
        );
        await wb.step('hidden-no-spawn', async () => {
          // Longer than the status bar's start delay (2 s): had it started, nvidia-smi would be logged.
          await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
          assert.equal(await wb.statusBarText('GiB'), null);
          assert.equal(await wb.statusBarText('GPU'), null);
          assert.deepEqual(starts(), [], 'nvidia-smi was started while the GPU item is hidden');
        });
        await wb.step(
          'show',
          async () => {
            const t0 = Date.now();
            setMode('show');
            const text = await wb.waitFor(
              'GPU figures after "show"',
              () => wb.statusBarText('GiB'),
              (t) => t !== null,
              STATUS_TIMEOUT_MS,
            );
            assert.ok(
              expectedH100Texts(600).has(text ?? ''),
              `status bar says ${JSON.stringify(text)}`,
            );
            assert.ok(starts().length >= 1);
            t.diagnostic(`GPU figures shown ${Date.now() - t0} ms after the settings edit`);
          },
          STATUS_TIMEOUT_MS + 5_000,
        );
        await wb.step(
          'hide-again',
          async () => {
            const started = starts();
            const t0 = Date.now();
            setMode('hide');
            await wb.waitFor(
              'the GPU item to go',
              () => wb.statusBarText('GiB'),
              (t) => t === null,
              STATUS_TIMEOUT_MS,
            );
            t.diagnostic(`GPU item gone ${Date.now() - t0} ms after the settings edit`);
            await wb.waitFor(
              'every nvidia-smi child to exit',
              async () => started.filter(alive),
              (pids) => pids.length === 0,
            );
          },
          STATUS_TIMEOUT_MS + 20_000,
        );
        assert.deepEqual(await wb.notifications(), []);
      } finally {
        await session.close();
        fs.rmSync(folder, { recursive: true, force: true });
        assert.deepEqual(
          markedPids(session.server.runId),
          [],
          'processes left behind after teardown',
        );
      }
    },
  );
});
