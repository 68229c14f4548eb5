// Nothing orphaned, nothing hung: the real CLI and both real engines, with a model that loops
// forever in user code (after forking a child) while the client goes away without cleaning up;
// a CLI that always exits; and all user output reaching the user, uncorrupted.
// Processes are checked by process group and parent pid in /proc, never by name.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  cli,
  cliRun,
  childrenOf,
  frame,
  groupMembers,
  initializeFrame,
  killGroup,
  pgidOf,
  ROOT,
  startRawEngine,
  TEST_PYTHON,
  waitFor,
  type EngineKind,
} from './processes';

/** Starting an engine imports torch or tfjs on a loaded machine; every wait ends when its condition holds. */
const START_TIMEOUT_MS = 180_000;
/** The watchdogs check every 0.5 s and give a busy main thread 2 s after the input ends. */
const GONE_TIMEOUT_MS = 30_000;

const MODELS: Record<EngineKind, { file: string; text: string }> = {
  pytorch: {
    file: 'hang_model.py',
    text: `import os
import subprocess
from torch import nn


class Hang(nn.Module):
    def __init__(self):
        super().__init__()
        child = subprocess.Popen(["sleep", "600"])  # forked by user code: must go with the engine
        with open(os.environ["MODEL_LENS_TEST_MARKER"], "w") as f:
            f.write(str(child.pid))
        while True:  # LOOPS_HERE
            pass
`,
  },
  tfjs: {
    file: 'hangModel.ts',
    text: `import * as fs from 'node:fs';
import { spawn } from 'node:child_process';

export function createModel(): never {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' }); // must go with the engine
  fs.writeFileSync(process.env.MODEL_LENS_TEST_MARKER!, String(child.pid));
  for (;;) {
    // LOOPS_HERE: the main thread never returns to the event loop
  }
}
`,
  },
};

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-reliability-'));
  for (const m of Object.values(MODELS)) fs.writeFileSync(path.join(dir, m.file), m.text);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Starts the CLI on the looping model; resolves once user code runs, with the engine's pids. */
async function cliInUserCode(kind: EngineKind, marker: string) {
  const run = cli(
    [
      'inspect',
      path.join(dir, MODELS[kind].file),
      ...(kind === 'pytorch' && TEST_PYTHON ? ['--python', TEST_PYTHON] : []),
    ],
    { MODEL_LENS_TEST_MARKER: marker },
  );
  const sleeper = await waitFor(
    `${kind} user code to run (${run.stderr()})`,
    START_TIMEOUT_MS,
    () =>
      fs.existsSync(marker) && fs.readFileSync(marker, 'utf8')
        ? Number(fs.readFileSync(marker, 'utf8'))
        : undefined,
  );
  const [engine] = childrenOf(run.child.pid!);
  assert.ok(engine, 'the CLI has an engine child');
  assert.equal(pgidOf(engine), engine, 'the engine leads its own process group');
  // (The TF.js engine's group also holds esbuild's service process.)
  for (const pid of [engine, sleeper])
    assert.ok(groupMembers(engine).includes(pid), `${pid} in group ${engine}`);
  return { run, engine, sleeper };
}

for (const kind of ['pytorch', 'tfjs'] as EngineKind[]) {
  describe(`${kind} engine: the client goes away while user code loops`, () => {
    test('the CLI is SIGKILLed: the engine and what it forked exit by themselves', async () => {
      const marker = path.join(dir, `${kind}-sigkill`);
      const { run, engine } = await cliInUserCode(kind, marker);
      try {
        run.child.kill('SIGKILL');
        await run.exited;
        await waitFor(
          `process group ${engine} to be empty`,
          GONE_TIMEOUT_MS,
          () => groupMembers(engine).length === 0,
        );
        assert.deepEqual(childrenOf(engine), []);
      } finally {
        killGroup(engine);
      }
    });

    test('the terminal closes (SIGHUP): the CLI exits 129 and stops the engine group', async () => {
      const marker = path.join(dir, `${kind}-sighup`);
      const { run, engine } = await cliInUserCode(kind, marker);
      try {
        run.child.kill('SIGHUP');
        const exit = await run.exited;
        assert.equal(exit.code, 129, run.stderr());
        await waitFor(
          `process group ${engine} to be empty`,
          GONE_TIMEOUT_MS,
          () => groupMembers(engine).length === 0,
        );
      } finally {
        killGroup(engine);
      }
    });

    test('the protocol input closes: the engine exits and says why on stderr', async () => {
      const marker = path.join(dir, `${kind}-eof`);
      const engine = startRawEngine(kind, { MODEL_LENS_TEST_MARKER: marker });
      const pid = engine.child.pid!;
      try {
        engine.input.write(initializeFrame(1, dir));
        await engine.response(1, START_TIMEOUT_MS);
        engine.input.write(
          frame({
            jsonrpc: '2.0',
            id: 2,
            method: 'model/load',
            params: { file: path.join(dir, MODELS[kind].file) },
          }),
        );
        const sleeper = await waitFor('user code to run', START_TIMEOUT_MS, () =>
          fs.existsSync(marker) && fs.readFileSync(marker, 'utf8')
            ? Number(fs.readFileSync(marker, 'utf8'))
            : undefined,
        );
        for (const p of [pid, sleeper])
          assert.ok(groupMembers(pid).includes(p), `${p} in group ${pid}`);
        engine.input.end();
        await engine.exited;
        await waitFor(
          `process group ${pid} to be empty`,
          GONE_TIMEOUT_MS,
          () => groupMembers(pid).length === 0,
        );
        assert.match(engine.stderr(), /closed the engine's input while user code was running/);
      } finally {
        killGroup(pid);
      }
    });
  });
}

const pythonArgs = TEST_PYTHON ? ['--python', TEST_PYTHON] : [];
/** Lines a flood test prints: 10 MB, enough for hundreds of batches, quick on a loaded machine. */
const FLOOD_LINES = 100_000;

describe('the CLI always exits, and what user code writes reaches its user', () => {
  test('tfjs: an engine that dies in the middle of a frame: the CLI exits 1 naming the file', async () => {
    const file = path.join(dir, 'halfFrame.ts');
    fs.writeFileSync(
      file,
      `import * as fs from 'node:fs';
fs.writeSync(3, 'Content-Length: 100\\r\\n\\r\\n{"jsonrpc":"2.0","met'); // half a frame on the protocol socket
process.kill(process.pid, 'SIGKILL');
`,
    );
    const r = await cliRun(['inspect', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(
      r.stderr.includes(`the engine was killed by SIGKILL while running ${file}`),
      r.stderr,
    );
  });

  test('tfjs: writes to fd 1 that bypass process.stdout (fs.writeSync, a child inheriting stdout)', async () => {
    const file = path.join(dir, 'rawWrites.ts');
    fs.writeFileSync(
      file,
      `import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
fs.writeSync(1, 'Content-Length: 5\\r\\n\\r\\nraw bytes on fd 1\\n');
spawnSync(process.execPath, ['-e', 'process.stdout.write("from a child that inherits stdout\\\\n")'], { stdio: 'inherit' });
fs.writeSync(2, 'raw bytes on fd 2\\n');
console.error('console.error from the model');
export const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] });
`,
    );
    const r = await cliRun(['inspect', file, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).modules[1].params, 3);
    for (const text of [
      'raw bytes on fd 1',
      'from a child that inherits stdout',
      'raw bytes on fd 2',
      'console.error from the model',
    ]) {
      assert.ok(r.stderr.includes(text), `${text} in: ${r.stderr}`);
    }
  });

  test('tfjs: a console.log flood arrives whole and does not starve the answer', async () => {
    const file = path.join(dir, 'flood.ts');
    fs.writeFileSync(
      file,
      `import * as tf from '@tensorflow/tfjs';
for (let i = 0; i < ${FLOOD_LINES}; i++) console.log('line ' + i + ' ' + 'x'.repeat(90));
export const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] });
`,
    );
    const r = await cliRun(['inspect', file, '--json']);
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    assert.equal(JSON.parse(r.stdout).modules[1].params, 3);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('line '));
    assert.equal(lines.length, FLOOD_LINES);
    assert.equal(lines.at(-1), `line ${FLOOD_LINES - 1} ${'x'.repeat(90)}`);
  });

  test('pytorch: stderr prints, warnings and raw fd-2 writes reach the CLI user; a print flood arrives whole', async () => {
    const file = path.join(dir, 'noisy_model.py');
    fs.writeFileSync(
      file,
      `import os
import sys
import warnings
from torch import nn

for i in range(${FLOOD_LINES}):
    print("line %d %s" % (i, "x" * 90))
print("to sys.stderr from the model", file=sys.stderr)
warnings.warn("a warning from the model")
os.write(2, b"raw bytes on fd 2 from the model\\n")
os.write(1, b"raw bytes on fd 1 from the model\\n")


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 1)

    def forward(self, x):
        return self.l(x)
`,
    );
    const r = await cliRun(['inspect', file, '--json', '--input', '1,2', ...pythonArgs]);
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    assert.equal(JSON.parse(r.stdout).modules[0].params, 3);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('line '));
    assert.equal(lines.length, FLOOD_LINES);
    for (const text of [
      'to sys.stderr from the model',
      'UserWarning: a warning from the model',
      'raw bytes on fd 2 from the model',
      'raw bytes on fd 1 from the model',
    ]) {
      assert.ok(r.stderr.includes(text), `${text} in: ${r.stderr.slice(-2000)}`);
    }
  });
});

describe('model-lens run: the terminal closes during a training run', () => {
  const FIXTURES: Record<EngineKind, string> = {
    pytorch: path.join(ROOT, 'test', 'fixtures', 'torch', 'train_forever.py'),
    tfjs: path.join(ROOT, 'test', 'fixtures', 'tfjs', 'trainForever.ts'),
  };
  for (const kind of ['pytorch', 'tfjs'] as EngineKind[]) {
    test(`${kind}: SIGHUP ends the run, the CLI exits 129, no engine process is left`, async () => {
      const run = cli(['run', FIXTURES[kind], ...(kind === 'pytorch' ? pythonArgs : [])], {});
      let engine: number | undefined;
      try {
        engine = await waitFor('the engine', START_TIMEOUT_MS, () => childrenOf(run.child.pid!)[0]);
        // Progress on stderr means the script is training.
        await waitFor(`training progress (${run.stderr()})`, START_TIMEOUT_MS, () =>
          /step/i.test(run.stderr()),
        );
        run.child.kill('SIGHUP');
        const exit = await run.exited;
        assert.equal(exit.code, 129, run.stderr());
        const pgid = engine;
        await waitFor(
          `process group ${pgid} to be empty`,
          GONE_TIMEOUT_MS,
          () => groupMembers(pgid).length === 0,
        );
      } finally {
        run.child.kill('SIGKILL');
        killGroup(engine);
      }
    });
  }
});
