// --input with dtypes and keyword names, and the summary's size and mult-add lines, through the
// real CLI and PyTorch engine on every interpreter the tests use (torch 1.13 and 2.x).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { inputParams } from '../src/cli/main';
import { parseInput } from '../src/cli/inputCheck';
import { cli, ROOT } from './cliProcess';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'torch');
const PYTHONS = (process.env.MODEL_LENS_TEST_PYTHONS ?? '/usr/bin/python3')
  .split(path.delimiter)
  .filter(Boolean);

describe('--input NAME=SHAPE:DTYPE', () => {
  test('parses shape, dtype and keyword name', () => {
    assert.deepEqual(parseInput('1,128:int64'), { shape: [1, 128], dtype: 'int64' });
    assert.deepEqual(parseInput('input_ids=1,128:int64'), {
      shape: [1, 128],
      dtype: 'int64',
      name: 'input_ids',
    });
    assert.deepEqual(parseInput('pixel_values=1x3x32x32'), {
      shape: [1, 3, 32, 32],
      name: 'pixel_values',
    });
    assert.deepEqual(parseInput('2,16'), { shape: [2, 16] });
    assert.throws(() => parseInput('1-2=3,4'), /not a forward\(\) argument name/);
    assert.throws(() => parseInput('3,4:int 64'), /not a dtype/);
    assert.throws(() => parseInput('x=3,-4'), /positive integers/);
  });

  test('plain shapes stay inputShapes (every engine reads them); a dtype or name adds inputs', () => {
    assert.deepEqual(inputParams(['1,4', '2,3']), {
      inputShapes: [
        [1, 4],
        [2, 3],
      ],
    });
    assert.deepEqual(inputParams(['a=1,4:int64']), {
      inputShapes: [[1, 4]],
      inputs: [{ shape: [1, 4], dtype: 'int64', name: 'a' }],
    });
    assert.deepEqual(inputParams(undefined), {});
  });

  for (const python of PYTHONS) {
    test(`keyword inputs reach forward() (${python})`, async () => {
      const file = path.join(FIXTURES, 'token_model.py');
      const r = await cli([
        'inspect',
        file,
        '--python',
        python,
        '--json',
        '--input',
        'input_ids=2,7:int64',
        '--input',
        'attention_mask=2,7:float32',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      assert.deepEqual(
        doc.model.inputs.map((i: { name: string; dtype: string }) => [i.name, i.dtype]),
        [
          ['input_ids', 'int64'],
          ['attention_mask', 'float32'],
        ],
      );
      const embed = doc.modules.find((m: { path: string }) => m.path === 'embed');
      assert.deepEqual(embed.outputShape, [2, 7, 16]);
      // A plain shape for an Embedding-first model is token ids, not floats.
      const plain = await cli(['inspect', file, '--python', python, '--json', '--input', '2,16']);
      assert.equal(plain.code, 0, plain.stderr);
      assert.equal(JSON.parse(plain.stdout).model.inputs[0].dtype, 'int64');
    });

    test(`resnet18 at 1×3×64×64: torchinfo's Forward/backward pass size, executed mult-adds beside (${python})`, async () => {
      const r = await cli([
        'inspect',
        path.join(FIXTURES, 'resnet18_model.py'),
        '--python',
        python,
      ]);
      assert.equal(r.code, 0, r.stderr);
      // torchinfo 1.8.0 prints 3.25 for resnet18 at 1×3×64×64 (2 × output bytes of layers with parameters).
      assert.match(r.stdout, /^Forward\/backward pass size \(MB\): 3\.25$/m);
      assert.match(r.stdout, /^Total mult-adds \(M\): 148\.57$/m);
      assert.match(r.stdout, /^Executed mult-adds \(M\): 148\.\d\d {2}\(aten ops that ran/m);
      assert.match(r.stdout, /not counted \(no formula\): aten\.native_batch_norm ×20/);
      assert.match(r.stdout, /^All leaf layers' outputs \(MB\): \d+\.\d\d$/m);
    });
  }
});
