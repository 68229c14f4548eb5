// `model-lens run` as a user runs it: the real bin script, real engines, exit codes, output
// pass-through, Ctrl-C and the engine process it must not leave behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import type { TrainProgress } from '../src/protocol/messages';
import { RunRecord } from '../src/client/runRecord';
import { formatRunSummary, parseRunArgs, progressBar } from '../src/cli/runCommand';
import {
  childProcesses,
  cli,
  lineOf,
  processAlive,
  ROOT,
  startCli,
  waitUntil,
  type RunJson,
} from './cliProcess';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'training');
const IRIS_TS = path.join(ROOT, 'examples', 'iris_train.ts');
const IRIS_PY = path.join(ROOT, 'examples', 'iris_train.py');
const ENGINE_CMD = /dist\/engine\.js|model_lens_engine/;
/** The brief's promise: Ctrl-C ends the CLI within this, engine shut down included. */
const CTRL_C_EXIT_MS = 2_000;
/** Long enough to still be running when the test interrupts it. */
const LONG_EPOCHS = 100_000;
const FIRST_PROGRESS_TIMEOUT_MS = 180_000;
/** tqdm is in the torch2 venv (via transformers); the torch 1.13 interpreter has none. */
const TORCH2_PYTHON = path.join(ROOT, '.cache', 'venvs', 'torch2', 'bin', 'python');
const TTY_COLUMNS = 100;
const TTY_ROWS = 30;

/** Runs the CLI with a pseudo-terminal as its stdout and stderr (Python's pty, stdlib). */
const PTY_HARNESS = `
import fcntl, os, pty, struct, sys, termios
cols, rows, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.execvp(cmd[0], cmd)
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
`;

/** The screen a terminal shows after `raw`: \r, \n, erase-line and cursor-up are applied. */
function screen(raw: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i];
    if (ch === '\x1b') {
      const m = /^\x1b\[(\d*)([A-Za-z])/.exec(raw.slice(i, i + 8));
      if (m) {
        if (m[2] === 'K') lines[row] = m[1] === '2' ? [] : lines[row].slice(0, col);
        else if (m[2] === 'A') row = Math.max(0, row - Number(m[1] || 1));
        i += m[0].length - 1;
        continue;
      }
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') lines[++row] ??= [];
    else {
      while (lines[row].length < col) lines[row].push(' ');
      lines[row][col++] = ch;
    }
  }
  return lines.map((l) => l.join('').trimEnd());
}

/** Sends SIGINT once the run is training, and checks the exit code, the delay and the engine. */
async function interruptMidRun(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const p = startCli(args);
  const pid = p.child.pid!;
  let engines: number[] = [];
  await waitUntil(
    'the first progress or script output',
    () => {
      if (engines.length === 0) engines = childProcesses(pid, ENGINE_CMD);
      return engines.length > 0 && /progress:|epoch \d+/.test(p.stderr() + p.stdout());
    },
    FIRST_PROGRESS_TIMEOUT_MS,
  );
  assert.equal(engines.length, 1, 'the CLI started one engine');
  const sentAt = Date.now();
  p.child.kill('SIGINT');
  const r = await p.done;
  const took = Date.now() - sentAt;
  assert.equal(r.code, 130, `exit code after Ctrl-C; stderr:\n${r.stderr}`);
  assert.ok(took <= CTRL_C_EXIT_MS, `the CLI took ${took} ms to exit after Ctrl-C`);
  // The engine runs in its own process group; once the CLI is gone it must be gone too.
  await waitUntil(`engine ${engines[0]} to exit`, () => !processAlive(engines[0]), 1_000).catch(
    () => undefined,
  );
  assert.equal(processAlive(engines[0]), false, `engine pid ${engines[0]} outlived the CLI`);
  return r;
}

describe('model-lens run: text', () => {
  const p = (over: Partial<TrainProgress>): TrainProgress => ({
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
  });

  test('arguments after -- go to the script untouched', () => {
    const o = parseRunArgs(['train.ts', '--epochs', '3', '--', '--lr', '0.1', 'x']);
    assert.ok(o !== 'help');
    assert.equal(o.epochs, 3);
    assert.deepEqual(o.args, ['--lr', '0.1', 'x']);
  });

  test('the terminal progress bar', () => {
    // 250 of 1000 steps is 25%: 6 of 24 bar cells.
    // 100 steps an epoch: 250 steps done is 2 epochs done (the third is in progress).
    const line = progressBar(
      p({ step: 250, totalSteps: 1000, epoch: 3, totalEpochs: 10, stepsPerSec: 50, etaSec: 15 }),
      0.25,
      200,
    );
    assert.equal(
      line,
      '[######..................]  25% epoch 2/10 · step 250/1000 · 50 steps/s · ETA 0:15 · loss 0.2500',
    );
    // One step an epoch, sampled between epoch 518's start and its step: 517 of each are done.
    assert.match(
      progressBar(p({ step: 517, totalSteps: 1000, epoch: 518, totalEpochs: 1000 }), null, 200),
      /epoch 517\/1000 · step 517\/1000/,
    );
    assert.ok(
      progressBar(p({ step: 250, totalSteps: 1000 }), null, 30).length < 30,
      'fits a narrow terminal',
    );
  });

  test('the summary names the state, steps, loss range and findings', () => {
    const r = new RunRecord();
    r.runId = 'r1';
    r.add(
      p({
        step: 2,
        loss: [
          [1, 2.0],
          [2, 0.5],
        ],
      }),
    );
    r.add(p({ state: 'done', step: 3, epoch: 1, stepsPerSec: 2, loss: [[3, 1.0]] }));
    r.diagnosis = {
      runId: 'r1',
      steps: 3,
      device: 'cpu',
      batchSize: 8,
      stepMs: 1.5,
      opsPerStep: null,
      avgOpUs: null,
      hostToDevice: { count: 0, bytes: 0 },
      deviceToHost: { count: 0, bytes: 0 },
      syncs: [],
      breakdown: null,
      findings: [
        {
          severity: 'warning',
          message: 'loss.item() syncs every step',
          source: { file: '/w/t.py', line: 9 },
        },
      ],
    };
    const text = formatRunSummary(r);
    // One clock per figure: the CLI's wall time says it includes start-up; the per-step time
    // and its rate are the engine's, over the same steps.
    assert.match(text, /^Training done: 3 steps, 1 epoch in 0:0\d wall, start-up included\n/);
    assert.match(
      text,
      /Diagnosis: 3 steps on cpu, 1\.50 ms\/step \(667 steps\/s\), wall clock, mean of steps 2–3 \(step 1 is warm-up\), batch 8/,
    );
    assert.match(text, /Loss: 2\.0000 at step 1 → 1\.0000 at step 3 \(lowest 0\.5000 at step 2\)/);
    assert.match(text, /warning: loss\.item\(\) syncs every step \(\/w\/t\.py:9\)/);
  });

  test('a stopped run counts the epochs it completed, as it counts steps', () => {
    const r = new RunRecord();
    r.runId = 'r1';
    // Ctrl-C during epoch 8760 of a one-step-per-epoch loop, after 8759 steps.
    r.add(
      p({
        state: 'stopped',
        step: 8759,
        epoch: 8760,
        totalEpochs: 20000,
        totalSteps: 20000,
        lr: 0.1,
        training: true,
        gradEnabled: true,
      }),
    );
    const text = formatRunSummary(r);
    assert.match(text, /^Training stopped: 8759 steps, 8759 epochs in /);
    assert.match(text, /Model as last seen: train mode, grad on, lr 0\.1/);
    assert.deepEqual(
      (({ epochs, training, gradEnabled, lr }) => ({ epochs, training, gradEnabled, lr }))(
        r.json() as RunJson & { training: boolean; gradEnabled: boolean; lr: number },
      ),
      { epochs: 8759, training: true, gradEnabled: true, lr: 0.1 },
    );
  });
});

describe('model-lens run', () => {
  test('usage errors exit 2 and print the run usage', async () => {
    for (const args of [
      ['run'],
      ['run', IRIS_TS, '--epochs', '0'],
      ['run', IRIS_TS, '--epochs', 'x'],
      ['run', IRIS_TS, '--bogus'],
      ['run', IRIS_TS, 'extra'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `model-lens ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /model-lens run FILE/);
    }
    const help = await cli(['--help']);
    assert.match(help.stdout, /model-lens run FILE \[--epochs N\] \[--json\] \[-- ARGS\.\.\.\]/);
  });

  test('a missing file exits 1 and names it', async () => {
    const r = await cli(['run', 'examples/nope_train.ts']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope_train\.ts: no such file/);
  });

  test('a file without a train export exits 1 and says what to export', async () => {
    // nestedShared.ts is a model file only.
    const none = await cli(['run', 'test/fixtures/tfjs/nestedShared.ts']);
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /no 'train' export/);
    assert.match(none.stderr, /nestedShared\.ts/);
  });

  test('a script that throws mid-run exits 1 naming its file and line, after a partial curve', async () => {
    const file = path.join(FIXTURES, 'throwsMidRun.ts');
    const throwLine = lineOf(file, 'THROW_LINE');
    const r = await cli(['run', file, '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(
      r.stderr.includes(`throwsMidRun.ts:${throwLine}`),
      `stderr names throwsMidRun.ts:${throwLine}:\n${r.stderr}`,
    );
    assert.match(r.stderr, /loss diverged at epoch 2/);
    assert.doesNotMatch(
      r.stderr,
      /at .*node_modules.*\n.*at .*node_modules/,
      'no raw library stack',
    );
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.state, 'failed');
    // 64 samples / batch 8 = 8 steps per epoch; the throw ends epoch index 2, so 3 epochs ran.
    assert.equal(doc.steps, 24);
    assert.equal(doc.loss.length, 24);
    assert.equal(doc.error?.location?.line, throwLine);
  });

  test('a script that fails before its first step exits 1, not 130', async () => {
    const file = path.join(FIXTURES, 'throwsAtOnce.ts');
    const r = await cli(['run', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`throwsAtOnce.ts:${lineOf(file, 'THROW_LINE')}`), r.stderr);
    assert.match(r.stdout, /Training failed: 0 steps/);
  });

  test("the script's stdout and stderr pass through; --json keeps stdout for the document", async () => {
    const file = path.join(FIXTURES, 'printsBoth.ts');
    const plain = await cli(['run', file]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /OUT: starting\n/);
    assert.match(plain.stdout, /OUT: finished\n/);
    assert.match(plain.stderr, /ERR: a warning from the script\n/);
    assert.doesNotMatch(plain.stdout, /ERR:/);
    assert.match(plain.stdout, /Training done: 2 steps, 2 epochs/);

    const json = await cli(['run', file, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as RunJson;
    assert.equal(doc.state, 'done');
    assert.match(json.stderr, /OUT: starting/);
  });

  test('Ctrl-C stops a long TF.js run: exit 130 within 2 s, a summary, no engine left', async () => {
    const r = await interruptMidRun([
      'run',
      'examples/iris_train.ts',
      '--epochs',
      String(LONG_EPOCHS),
    ]);
    assert.match(r.stdout, /Training stopped: \d+ steps/);
  });

  test('Ctrl-C with --json still prints the partial run', async () => {
    const r = await interruptMidRun([
      'run',
      'examples/iris_train.ts',
      '--epochs',
      String(LONG_EPOCHS),
      '--json',
    ]);
    const doc = JSON.parse(r.stdout) as RunJson;
    assert.equal(doc.state, 'stopped');
    assert.ok(doc.steps > 0 && doc.loss.length > 0, 'the partial curve is kept');
  });

  describe('PyTorch', () => {
    test('iris_train.py runs to the end with a falling loss', async (t) => {
      const r = await cli(['run', IRIS_PY, '--json', '--python', '/usr/bin/python3']);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout) as RunJson;
      assert.equal(doc.state, 'done');
      // The script's default: 1000 epochs, full batch, one optimizer step each.
      assert.equal(doc.steps, 1000);
      assert.equal(doc.epochs, 1000);
      // The script ends with model.eval(); the lr is its LEARNING_RATE.
      const last = doc as RunJson & { training: boolean; lr: number };
      assert.deepEqual([last.training, last.lr], [false, 0.1]);
      assert.ok(
        doc.diagnosis && doc.diagnosis.findings.length > 0,
        'the engine diagnosis is in the document',
      );
      assert.ok(doc.loss.length >= 2, 'a loss curve');
      const k = Math.max(1, Math.floor(doc.loss.length / 5));
      const mean = (pts: [number, number][]) => pts.reduce((s, p) => s + p[1], 0) / pts.length;
      assert.ok(mean(doc.loss.slice(-k)) < mean(doc.loss.slice(0, k)), 'the loss falls');
    });

    test('a script that raises mid-run exits 1 naming its file and line', async (t) => {
      const file = path.join(ROOT, 'test', 'fixtures', 'torch', 'train_raises.py');
      const raiseLine = lineOf(file, 'raise ValueError');
      const r = await cli(['run', file, '--python', '/usr/bin/python3']);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(
        r.stderr.includes(`train_raises.py:${raiseLine}`),
        `stderr names train_raises.py:${raiseLine}:\n${r.stderr}`,
      );
      assert.match(r.stderr, /bad batch at step 6/);
      // FAIL_AT_STEP = 6: five optimizer steps ran before the raise.
      assert.match(r.stdout, /Training failed: 5 steps/);
    });

    test('--epochs on a .py script is a usage error that says how to pass it', async () => {
      const r = await cli(['run', IRIS_PY, '--epochs', '5']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /--epochs applies to a TF\.js train export; .*iris_train\.py reads its own arguments: pass them after --, e\.g\. -- --epochs 5/,
      );
      const help = await cli(['run', '--help']);
      assert.match(help.stdout, /--epochs N\s+tfjs only: .*\n.*--epochs on a \.py is an error/);
    });

    test("the script runs in the caller's directory, on the main thread, with its folder first on sys.path", async () => {
      const file = path.join(ROOT, 'test', 'fixtures', 'torch', 'train_environment.py');
      const r = await cli(['run', file, '--python', '/usr/bin/python3']);
      assert.equal(r.code, 0, r.stderr);
      // cliProcess runs the CLI in ROOT.
      assert.match(r.stdout, new RegExp(`^cwd=${ROOT}$`, 'm'));
      assert.match(r.stdout, new RegExp(`^path0=${path.dirname(file)}$`, 'm'));
      assert.match(r.stdout, /^main=True$/m);
      assert.match(r.stdout, /^signals=1$/m);
    });

    test('on a terminal, tqdm draws full width and no line the script wrote is erased', async () => {
      const file = path.join(ROOT, 'test', 'fixtures', 'torch', 'train_tqdm.py');
      const child = spawn(
        'python3',
        [
          '-c',
          PTY_HARNESS,
          String(TTY_COLUMNS),
          String(TTY_ROWS),
          process.execPath,
          path.join(ROOT, 'bin', 'model-lens.js'),
          'run',
          file,
          '--python',
          TORCH2_PYTHON,
        ],
        {
          cwd: ROOT,
          env: { ...process.env, OMP_NUM_THREADS: '1' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let raw = '';
      child.stdout.on('data', (d) => (raw += d));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 0, raw);
      const shown = screen(raw);
      const bar = shown.findIndex((l) => /^train: 100%\|.*\| 30\/30 /.test(l));
      assert.ok(bar >= 0, `the final tqdm bar is on the screen:\n${shown.join('\n')}`);
      // tqdm sizes its bar to COLUMNS - 1; without a terminal it drew a 10-cell bar (~55 chars).
      assert.equal(shown[bar].length, TTY_COLUMNS - 1, shown[bar]);
      assert.equal(shown[bar + 1], 'after the bar');
      assert.ok(
        shown.some((l) => /^Training done: 30 steps/.test(l)),
        shown.join('\n'),
      );
    });

    test('Ctrl-C stops a PyTorch run: exit 130, no engine left', async (t) => {
      await interruptMidRun([
        'run',
        IRIS_PY,
        '--python',
        '/usr/bin/python3',
        '--',
        String(LONG_EPOCHS),
      ]);
    });
  });
});
