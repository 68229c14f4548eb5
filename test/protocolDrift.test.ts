// The PyTorch engine reads method names, error codes, the protocol version and shared defaults
// from a file generated from src/protocol/. Generating it again here and comparing catches a
// protocol change that was not carried over (rust-analyzer's lsp_ext.ts check works the same way).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { PYTHON_PROTOCOL_FILE, renderPythonProtocol } from '../scripts/genPythonProtocol';
import { ENGINE_ERROR_KINDS, ERROR_CODE_OF_KIND, ErrorCodes } from '../src/protocol/errors';

test('python/model_lens_engine/protocol.py is what src/protocol/ generates', () => {
  const committed = fs.readFileSync(PYTHON_PROTOCOL_FILE, 'utf8');
  assert.equal(
    committed,
    renderPythonProtocol(),
    'stale: run `node --import tsx scripts/genPythonProtocol.ts` and commit the result',
  );
});

test('the generated file carries every request, error kind and code', () => {
  const text = renderPythonProtocol();
  for (const method of ['engine/initialize', 'model/summary', 'train/stop', 'train/histograms']) {
    assert.ok(text.includes(`"${method}"`), method);
  }
  for (const kind of ENGINE_ERROR_KINDS) assert.ok(text.includes(`"${kind}": `), kind);
  assert.ok(text.includes(`BAD_REQUEST = ${ErrorCodes.badRequest}`));
  assert.equal(ERROR_CODE_OF_KIND.badRequest, ErrorCodes.badRequest);
});
