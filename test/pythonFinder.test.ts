// Finding a Python that can host the PyTorch engine, with real interpreters on this machine.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { findPython, PythonNotFoundError } from '../src/client/pythonFinder';

/** A real Python 3 that cannot import torch: Debian's python3 without its site packages. */
function pythonWithoutTorch(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-py-'));
  const file = path.join(dir, 'python-no-torch');
  fs.writeFileSync(file, '#!/bin/sh\nexec /usr/bin/python3 -S "$@"\n', { mode: 0o755 });
  return file;
}

test('every interpreter tried is listed with why it failed', async () => {
  const noTorch = pythonWithoutTorch();
  const notExecutable = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ml-py-')), 'python');
  fs.writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 });
  await assert.rejects(
    findPython('/nonexistent/python3', noTorch, [notExecutable]),
    (err: unknown) => {
      assert.ok(err instanceof PythonNotFoundError);
      assert.deepEqual(
        err.probes.map((p) => [p.path, p.origin]),
        [
          ['/nonexistent/python3', 'configured'],
          [noTorch, 'Python extension'],
          [notExecutable, 'default'],
        ],
      );
      assert.match(err.message, /\/nonexistent\/python3 \(configured\): no such file/);
      assert.match(err.message, /has no torch \(ModuleNotFoundError: No module named 'torch'\)/);
      assert.match(err.message, /not executable/);
      assert.match(err.message, /modelLens\.pythonPath/);
      return true;
    },
  );
});

test('the first interpreter that imports torch wins, and the skipped ones are kept', async () => {
  const noTorch = pythonWithoutTorch();
  const found = await findPython(noTorch, undefined, ['/usr/bin/python3']);
  assert.equal(found.ok, true);
  assert.equal(found.path, '/usr/bin/python3');
  assert.match(found.torchVersion ?? '', /^\d+\.\d+/);
  assert.equal(found.skipped?.length, 1);
  assert.equal(found.skipped?.[0].path, noTorch);
});
