// The PyTorch engine reads method names, error codes, the protocol version and shared defaults
// from a file generated from src/protocol/. Generating it again here and comparing catches a
// protocol change that was not carried over (rust-analyzer's lsp_ext.ts check works the same way).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as ts from 'typescript';
import { PYTHON_PROTOCOL_FILE, renderPythonProtocol } from '../scripts/genPythonProtocol';
import { ENGINE_ERROR_KINDS, ERROR_CODE_OF_KIND, ErrorCodes } from '../src/protocol/errors';

const ROOT = path.resolve(__dirname, '..');

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

/** Properties of every exported interface in src/protocol/, inherited ones included. */
function protocolInterfaces(): Map<string, { required: string[]; optional: string[] }> {
  const dir = path.join(ROOT, 'src', 'protocol');
  const files = ['types.ts', 'messages.ts', 'errors.ts'].map((f) => path.join(dir, f));
  const program = ts.createProgram(files, { strict: true, noEmit: true });
  const checker = program.getTypeChecker();
  const out = new Map<string, { required: string[]; optional: string[] }>();
  for (const file of files) {
    const source = program.getSourceFile(file)!;
    ts.forEachChild(source, (node) => {
      if (!ts.isInterfaceDeclaration(node)) return;
      const type = checker.getTypeAtLocation(node.name);
      const required: string[] = [];
      const optional: string[] = [];
      for (const p of checker.getPropertiesOfType(type)) {
        (p.flags & ts.SymbolFlags.Optional ? optional : required).push(p.name);
      }
      out.set(node.name.text, { required: required.sort(), optional: optional.sort() });
    });
  }
  return out;
}

test('the Python TypedDicts have the keys of the TypeScript interfaces they mirror', () => {
  const script = [
    'import json, sys, typing',
    'sys.path.insert(0, sys.argv[1])',
    'from model_lens_engine import protocol_types as t',
    'out = {}',
    'for name, v in vars(t).items():',
    '    if name.startswith("_") or not (isinstance(v, type) and issubclass(v, dict)):',
    '        continue',
    '    out[name] = {"required": sorted(v.__required_keys__), "optional": sorted(v.__optional_keys__)}',
    'print(json.dumps(out))',
  ].join('\n');
  // Any Python 3.9+ will do: protocol_types.py needs nothing but the standard library.
  const python = 'python3';
  const typedDicts = JSON.parse(
    execFileSync(python, ['-c', script, path.join(ROOT, 'python')], { encoding: 'utf8' }),
  ) as Record<string, { required: string[]; optional: string[] }>;
  const interfaces = protocolInterfaces();
  assert.ok(Object.keys(typedDicts).length >= 10, 'the TypedDicts were read');
  for (const [name, keys] of Object.entries(typedDicts)) {
    const iface = interfaces.get(name);
    assert.ok(iface, `protocol_types.${name} mirrors no interface in src/protocol/`);
    assert.deepEqual(keys, iface, `protocol_types.${name} vs the TypeScript interface ${name}`);
  }
});
