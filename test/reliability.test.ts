// Nothing orphaned, nothing hung: the real CLI and both real engines, with a model that loops
// forever in user code (after forking a child) while the client goes away without cleaning up.
// Processes are checked by process group and parent pid in /proc, never by name.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EngineClient, type EngineError } from '../src/client/engineClient';
import { privateTempFile } from '../src/client/privateTemp';
import { modelLoadRequest, systemInfoRequest } from '../src/protocol/messages';
import {
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

const BIN = path.join(ROOT, 'bin', 'model-lens.js');
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

function cli(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, stderr: () => stderr };
}

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

/** Runs the CLI to its end; a CLI that never exits fails the test at the runner's timeout. */
async function cliRun(args: string[], env: Record<string, string> = {}) {
  const run = cli(args, env);
  let stdout = '';
  run.child.stdout.on('data', (d) => (stdout += d));
  const exit = await run.exited;
  return { ...exit, stdout, stderr: run.stderr() };
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

describe('labels: bad input is named before an engine starts', () => {
  // --python names no interpreter: had an engine been started, the error would say so instead.
  const noEngine = ['--python', '/nonexistent/python3'];

  test('an input too large to allocate: its size, not an allocator failure', async () => {
    const r = await cliRun([
      'inspect',
      path.join(ROOT, 'examples', 'iris_mlp.py'),
      '--input',
      '100000,100000',
      ...noEngine,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /input too large: --input 100000,100000 is 10,000,000,000 float32 elements, 40,000,000,000 bytes \(37\.3 GiB\)/,
    );
  });

  test('a bad shape is refused before the engine starts', async () => {
    for (const bad of ['1,-3', '1,x', '']) {
      const r = await cliRun([
        'inspect',
        path.join(ROOT, 'examples', 'iris_mlp.py'),
        '--input',
        bad,
        ...noEngine,
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(`--input ${bad}: a shape is positive integers`), r.stderr);
    }
  });

  test('a folder as the model file', async () => {
    const r = await cliRun(['inspect', dir, ...noEngine]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`${dir}: is a folder, not a model file`), r.stderr);
  });

  test('a bad --memory-limit is a usage error', async () => {
    const r = await cliRun([
      'inspect',
      path.join(ROOT, 'examples', 'iris_mlp.py'),
      '--memory-limit',
      '2GB',
      ...noEngine,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--memory-limit 2GB: expected megabytes/);
  });
});

/** The 1-based line of the first line of `text` that contains `marker`. */
function lineOf(text: string, marker: string): number {
  return text.split('\n').findIndex((l) => l.includes(marker)) + 1;
}

describe('crash, exit and timeout messages name the file and, where knowable, the line', () => {
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };

  test('pytorch: a segfault in user code (faulthandler gives the line)', async () => {
    const text = `import ctypes
from torch import nn

ctypes.string_at(0)  # SEGFAULT_HERE


class M(nn.Module):
    pass
`;
    const file = write('segfault_model.py', text);
    const r = await cliRun(['inspect', file, ...pythonArgs]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(
      r.stderr.includes(
        `crashed with a segmentation fault (SIGSEGV) while running ${file} (at ${file}:${lineOf(text, 'SEGFAULT_HERE')})`,
      ),
      r.stderr,
    );
    assert.match(r.stderr, /Fatal Python error: Segmentation fault/);
  });

  test('pytorch: a forward that never returns: the timeout says where it loops', async () => {
    const text = `from torch import nn


class Spin(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 2)

    def forward(self, x):
        n = 0
        while True:
            n += 1  # SPINS_HERE
`;
    const file = write('spin_model.py', text);
    const r = await cliRun(['inspect', file, '--input', '1,2', '--timeout', '4', ...pythonArgs]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /did not answer model\/(load|summary) within 4 s while running /);
    assert.ok(
      r.stderr.includes(
        `it was at ${file}:${lineOf(text, 'SPINS_HERE')} in forward; the engine was stopped`,
      ),
      r.stderr,
    );
    assert.doesNotMatch(r.stderr, /restarted on the next request/);
  });

  test('pytorch: os._exit in the model file names the file and the code', async () => {
    const file = write('exits_model.py', 'import os\n\nos._exit(7)\n');
    const r = await cliRun(['inspect', file, ...pythonArgs]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`the engine exited with code 7 while running ${file}`), r.stderr);
  });

  test('pytorch: over the memory limit: an out-of-memory error naming the file', async () => {
    const file = write(
      'hog_model.py',
      'hog = []\nwhile True:\n    hog.append(bytearray(64 * 2 ** 20))  # touched pages\n    hog[-1][::4096] = b"x" * len(hog[-1][::4096])\n',
    );
    const r = await cliRun(['inspect', file, '--memory-limit', '1500', ...pythonArgs]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /ran out of memory: it went over its memory limit of 1500 MB \(\d+ MB in use\)/,
    );
    assert.ok(r.stderr.includes(`running model/load of ${file}`), r.stderr);
  });

  test('tfjs: process.exit(3) in the model file names file and line', async () => {
    const text = `import * as tf from '@tensorflow/tfjs';
export const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] });
process.exit(3); // EXITS_HERE
`;
    const file = write('exits.ts', text);
    const r = await cliRun(['inspect', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(
      r.stderr.includes(
        `User code called process.exit(3) at ${file}:${lineOf(text, 'EXITS_HERE')}`,
      ),
      r.stderr,
    );
  });

  test('tfjs: a model over the JavaScript heap limit is reported as out of memory', async () => {
    const file = write(
      'heapHog.ts',
      'const hog: number[][] = [];\nfor (;;) hog.push(new Array(1e6).fill(1.5));\n',
    );
    const r = await cliRun(['inspect', file, '--memory-limit', '256']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ran out of memory/);
    assert.ok(r.stderr.includes(`while running ${file}`), r.stderr);
    // (V8's own abort text and native stack may precede it, as the engine's raw stderr.)
    const message = r.stderr.slice(r.stderr.lastIndexOf('error: model/load failed'));
    assert.ok(message.split('\n').length < 8, `a short message, not a native stack: ${message}`);
  });

  test('tfjs: a createModel that never returns: the timeout names the file', async () => {
    const file = write(
      'spin.ts',
      'export function createModel(): never {\n  for (;;) {\n    // spins\n  }\n}\n',
    );
    const r = await cliRun(['inspect', file, '--timeout', '3']);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(
      r.stderr.includes(`did not answer model/load within 3 s while running ${file}`),
      r.stderr,
    );
    assert.doesNotMatch(r.stderr, /restarted on the next request/);
  });
});

describe('per-request timeout policy', () => {
  test('reject fails only the request; kill (the default) stops the engine', async () => {
    const file = path.join(dir, 'spinPolicy.ts');
    fs.writeFileSync(
      file,
      'export function createModel(): never {\n  for (;;) {\n    // spins\n  }\n}\n',
    );
    const client = await EngineClient.start({
      kind: 'tfjs',
      cwd: dir,
      trusted: true,
      backend: 'cpu',
    });
    try {
      const load = client.request(modelLoadRequest, { file }, { timeoutMs: 6_000 });
      // A cheap poll queued behind the loop: it gives up, the engine stays.
      await assert.rejects(
        client.request(systemInfoRequest, undefined, { timeoutMs: 1_000, onTimeout: 'reject' }),
        (err: EngineError) =>
          err.data.kind === 'timeout' && /it is still running/.test(err.message),
      );
      assert.equal(client.alive, true);
      await assert.rejects(
        load,
        (err: EngineError) =>
          err.data.kind === 'timeout' && /the engine was stopped/.test(err.message),
      );
      assert.equal(client.alive, false);
    } finally {
      await client.dispose();
    }
  });
});

describe('defence in depth', () => {
  test('pytorch: a workspace json.py does not run before initialize (neutral start folder, -P)', async () => {
    const ws = fs.mkdtempSync(path.join(dir, 'ws-'));
    const marker = path.join(ws, 'shadowed');
    fs.writeFileSync(
      path.join(ws, 'json.py'),
      `open(${JSON.stringify(marker)}, "w").write("imported")\nraise SystemExit(9)\n`,
    );
    fs.writeFileSync(
      path.join(ws, 'small_model.py'),
      'from torch import nn\n\nmodel = nn.Linear(2, 1)\n',
    );
    const run = spawn(
      process.execPath,
      [BIN, 'inspect', path.join(ws, 'small_model.py'), '--input', '1,2', ...pythonArgs],
      {
        cwd: ws,
        env: { ...process.env, OMP_NUM_THREADS: '1' },
      },
    );
    let stderr = '';
    run.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => run.once('exit', resolve));
    assert.equal(code, 0, stderr);
    assert.equal(fs.existsSync(marker), false, 'the workspace json.py was never imported');
  });

  test('trace files go to a private folder (mode 0700, random name)', async () => {
    const file = privateTempFile('trace-pytorch.json');
    const folder = path.dirname(file);
    assert.equal(fs.statSync(folder).mode & 0o777, 0o700);
    assert.equal(fs.lstatSync(folder).isSymbolicLink(), false);
    assert.match(path.basename(folder), /^model-lens-.{6}$/);
    assert.equal(privateTempFile('x.json'), path.join(folder, 'x.json'));
    assert.equal(privateTempFile('../escape.json'), path.join(folder, 'escape.json'));
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
        await waitFor(`training progress (${run.stderr()})`, START_TIMEOUT_MS, () => /step/i.test(run.stderr()));
        run.child.kill('SIGHUP');
        const exit = await run.exited;
        assert.equal(exit.code, 129, run.stderr());
        const pgid = engine;
        await waitFor(`process group ${pgid} to be empty`, GONE_TIMEOUT_MS, () => groupMembers(pgid).length === 0);
      } finally {
        run.child.kill('SIGKILL');
        killGroup(engine);
      }
    });
  }
});
