// The CLI as a user runs it: the real bin script, real engines, exit codes and output.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { formatProfile } from '../src/client/textFormat';
import { cli, ROOT } from './cliProcess';

describe('model-lens CLI', () => {
  test('usage errors exit 2 and print the usage', async () => {
    for (const args of [
      [],
      ['frobnicate'],
      ['inspect'],
      ['inspect', 'examples/iris_mlp.ts', '--steps', 'x', '--bogus'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `model-lens ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /Usage:/);
    }
    const bad = await cli(['inspect', 'examples/iris_mlp.ts', '--input', '1,-3']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--input 1,-3/);
  });

  test('--help exits 0', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /model-lens inspect FILE/);
  });

  test('a missing file exits 1 and names it', async () => {
    const r = await cli(['inspect', 'examples/nope.ts']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /examples\/nope\.ts: no such file/);
  });

  for (const file of ['examples/iris_mlp.ts', 'examples/iris_mlp.py']) {
    test(`inspect ${file}: torchinfo-style table with the hand-computed total`, async () => {
      const r = await cli(['inspect', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Layer \(type \(var_name\):depth-idx\)\s+Output Shape\s+Param #/);
      assert.match(r.stdout, /^Total params: 83$/m);
      assert.match(r.stdout, /^Trainable params: 83$/m);
      assert.match(r.stdout, /^Non-trainable params: 0$/m);
      assert.match(r.stdout, /^Params size \(MB\): 0\.00$/m);
    });

    test(`inspect ${file} --json: the documented document`, async () => {
      const r = await cli(['inspect', file, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.engine, file.endsWith('.py') ? 'pytorch' : 'tfjs');
      assert.equal(typeof doc.backend, 'string');
      assert.equal(doc.modules[0].path, '');
      assert.equal(doc.modules[0].depth, 0);
      for (const m of doc.modules) {
        for (const key of [
          'path',
          'type',
          'depth',
          'params',
          'trainableParams',
          'outputShape',
          'output',
          'aliases',
          'macs',
        ]) {
          assert.ok(key in m, `module ${m.path} has ${key}`);
        }
      }
      const leaves = doc.modules.filter(
        (m: { params: number; path: string }) => m.params > 0 && m.path !== '',
      );
      assert.deepEqual(
        leaves.map((m: { params: number }) => m.params),
        [50, 33],
      );
      const out = doc.modules[0].output;
      assert.deepEqual(Object.keys(out).sort(), [
        'contiguous',
        'device',
        'dtype',
        'shape',
        'storageOffset',
        'stride',
      ]);
      assert.equal(doc.totals.params, 83);
      assert.equal(doc.totals.nonTrainableParams, 0);
      assert.equal(doc.totals.paramBytes, 83 * 4);
      assert.equal(doc.parameters.length, 4);
    });

    test(`inspect ${file} --input 1,5: exit 1 naming the layer, expected and got`, async () => {
      const r = await cli(['inspect', file, '--input', '1,5']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^error: /);
      assert.match(r.stderr, /5/);
      assert.match(r.stderr, /4/);
      assert.doesNotMatch(r.stderr, /^\s+at .*\(.*engine\.js:\d+/m, 'no bare engine stack trace');
    });
  }

  test('profile --json --trace writes a Perfetto-readable trace', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-cli-'));
    const trace = path.join(dir, 'out.json');
    const r = await cli([
      'profile',
      'examples/iris_mlp.ts',
      '--steps',
      '3',
      '--json',
      '--trace',
      trace,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.ok(doc.ops.length > 0);
    for (const op of doc.ops)
      for (const k of ['name', 'calls', 'totalMs', 'selfMs', 'inputShapes']) assert.ok(k in op, k);
    assert.ok(doc.modules.length > 0);
    assert.ok(doc.stepMs > 0);
    const t = JSON.parse(fs.readFileSync(trace, 'utf8'));
    assert.ok(Array.isArray(t.traceEvents) && t.traceEvents.length > 0);
  });

  test('a syntax error exits 1 with file:line', async () => {
    const file = path.join('test', 'fixtures', 'conformance', 'tfjs', 'syntaxError.ts');
    const r = await cli(['inspect', file]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${path.resolve(ROOT, file)}:4`), r.stderr);
  });

  test('a configured interpreter that does not exist is reported, and the search goes on', async () => {
    const r = await cli(['inspect', 'examples/iris_mlp.py', '--python', '/nonexistent/python3']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Total params: 83$/m);
  });

  test('system --json: CPU facts and a GPU list', async () => {
    const r = await cli(['system', '--json'], {
      PATH: path.dirname(process.execPath) + ':/usr/bin:/bin',
    });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.cpu.logicalCores, os.cpus().length);
    assert.ok(doc.cpu.physicalCores >= 1 && doc.cpu.physicalCores <= doc.cpu.logicalCores);
    assert.equal(typeof doc.cpu.model, 'string');
    assert.equal(doc.cpu.arch, os.arch() === 'x64' ? 'x64' : os.arch());
    assert.ok(Array.isArray(doc.gpus));
  });
});

describe('profile text (issue #10)', () => {
  test('train mode tells forward and backward rows of one op apart', () => {
    const op = (phase: 'forward' | 'backward', shapes: number[][]) => ({
      name: 'aten::t',
      calls: 4,
      totalMs: 0.1,
      selfMs: 0.1,
      inputShapes: [shapes],
      phase,
    });
    const text = formatProfile(
      {
        ops: [op('forward', [[10, 4]]), op('backward', [[4, 10]])],
        modules: [],
        stepMs: 1,
        steps: 4,
        method: 'TorchDispatchMode; 1 warm-up step excluded',
        warnings: [],
      },
      10,
    );
    assert.match(text, /^Op\s+Phase\s+Calls/m);
    assert.match(text, /^aten::t\s+forward\s+4\s.*\[10,4\]$/m);
    assert.match(text, /^aten::t\s+backward\s+4\s.*\[4,10\]$/m);
    assert.match(text, /1 warm-up step excluded/);
  });
});

describe('inspect text: tensor layout (issue #10)', () => {
  test('a non-contiguous output is flagged with why', async () => {
    const r = await cli([
      'inspect',
      'test/fixtures/torch/permuted_output.py',
      '--python',
      '/usr/bin/python3',
    ]);
    assert.equal(r.code, 0, r.stderr);
    // x.permute(2, 0, 1) of a (2, 3, 4) tensor: shape (4, 2, 3), strides (1, 12, 4).
    assert.match(r.stdout, /Non-contiguous outputs/);
    assert.match(r.stdout, /^ {2}permute: stride \(1, 12, 4\): .*permuted or transposed/m);
    assert.doesNotMatch(r.stdout, /^ {2}scale: stride/m);
  });
});

describe('inspect text: the inferred input (issue #10)', () => {
  test('is said once, with the flag that changes it', async () => {
    const r = await cli([
      'inspect',
      'test/fixtures/torch/inferred_input.py',
      '--python',
      '/usr/bin/python3',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const about = r.stderr.split('\n').filter((l) => /input shape/i.test(l));
    assert.equal(about.length, 1, r.stderr);
    assert.match(about[0], /^note: input shape \[.*\] was inferred.*; pass --input to choose one$/);
    assert.doesNotMatch(r.stderr, /inputShapes/);
  });
});

describe('inspect --tensors (issue #10)', () => {
  test("prints each output tensor's layout facts", async () => {
    const r = await cli([
      'inspect',
      'test/fixtures/torch/permuted_output.py',
      '--python',
      '/usr/bin/python3',
      '--tensors',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split('\n').find((l) => l.startsWith('  permute: shape'));
    assert.ok(line, r.stdout);
    assert.match(
      line,
      /shape \(4, 2, 3\); stride \(1, 12, 4\); offset 0; not contiguous: .*permuted/,
    );
    // permute returns a view of scale's output: one storage.
    assert.match(line, /storage s\d+ shared with output:scale, output:\(root\)/);
    // torch's own message for x.view(-1) on a permuted tensor.
    assert.match(
      line,
      /view fails: view size is not compatible with input tensor's size and stride/,
    );
    assert.match(r.stdout, /^ {2}scale: .*; contiguous; .*view works$/m);
  });
});
