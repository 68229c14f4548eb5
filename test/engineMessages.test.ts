// What the user reads when a model crashes, exits, loops or asks too much: the real CLI and
// both real engines, with model files written at test time. Also the timeout policy, the
// --input checks that run before an engine starts, and defence in depth.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EngineClient, type EngineError } from '../src/client/engineClient';
import { privateTempFile } from '../src/client/privateTemp';
import { modelLoadRequest, systemInfoRequest } from '../src/protocol/messages';
import { BIN, cliRun, ROOT, TEST_PYTHON } from './processes';

const pythonArgs = TEST_PYTHON ? ['--python', TEST_PYTHON] : [];

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-messages-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

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
