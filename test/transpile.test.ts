// Model files through src/engine/transpile.ts (sucrase, pure JavaScript): a TypeScript model with
// local imports runs the same as TypeScript's own compiler makes it run, and errors point at the
// user's file and line. No native esbuild, so the same holds on macOS, Windows and Linux arm64.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import ts from 'typescript';
import { TranspileError, transpileModelFile } from '../src/engine/transpile';
import { importUserFile, userFrames } from '../src/engine/tfjs/userCode';
import type { Tf } from '../src/engine/tfjs/backend';

const FILES: Record<string, string> = {
  'model.ts': [
    "import { Dense, describeLayer } from './layers';",
    "import cfg from './config.json';",
    'export enum Mode { Train = 1, Eval = 2 }',
    'export const units: number = cfg.units;',
    'export const where = new URL(import.meta.url).pathname;',
    'export function build(mode: Mode = Mode.Train): string {',
    '  const d = new Dense<number>(units);',
    '  return `${describeLayer(d)} in mode ${Mode[mode]}`;',
    '}',
    'export function explode(): never {',
    "  return require('./layers').boom();",
    '}',
  ].join('\n'),
  'layers.ts': [
    'export interface Layer { units: number }',
    'export class Dense<T> implements Layer {',
    '  constructor(public units: number, private readonly tag?: T) {}',
    '}',
    'export const describeLayer = (l: Layer): string => `Dense(${l.units})`;',
    'export function boom(): never {',
    "  throw new Error('boom from layers');",
    '}',
  ].join('\n'),
  'config.json': '{ "units": 10 }',
  'broken.ts': "import { nothing } from './missing';\nexport const x = nothing;\n",
};

let dir = '';

/** What TypeScript's own compiler makes of the same files: transpileModule + a tiny loader. */
function runWithTypeScript(entry: string): Record<string, unknown> {
  const cache = new Map<string, { exports: Record<string, unknown> }>();
  const load = (file: string): Record<string, unknown> => {
    const hit = cache.get(file);
    if (hit) return hit.exports;
    const m = { exports: {} as Record<string, unknown> };
    cache.set(file, m);
    if (file.endsWith('.json')) return (m.exports = JSON.parse(fs.readFileSync(file, 'utf8')));
    const out = ts
      .transpileModule(fs.readFileSync(file, 'utf8'), {
        compilerOptions: {
          module: ts.ModuleKind.CommonJS,
          target: ts.ScriptTarget.ES2022,
          esModuleInterop: true,
        },
        fileName: file,
      })
      .outputText.replace(/\bimport\.meta\.url\b/g, JSON.stringify(`file://${file}`));
    const req = (id: string) =>
      load(
        require
          .resolve(path.resolve(path.dirname(file), id), { paths: [] })
          .replace(/\.js$/, '.ts'),
      );
    new Function('exports', 'require', 'module', out)(
      m.exports,
      (id: string) =>
        id.startsWith('.') ? req(id.endsWith('.json') ? id : `${id}.ts`) : require(id),
      m,
    );
    return m.exports;
  };
  return load(entry);
}

describe('model files transpiled in pure JavaScript', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-transpile-'));
    for (const [name, text] of Object.entries(FILES)) fs.writeFileSync(path.join(dir, name), text);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs a TypeScript model with local imports as TypeScript itself does', () => {
    const entry = path.join(dir, 'model.ts');
    const ours = importUserFile(entry, {} as Tf);
    const theirs = runWithTypeScript(entry);
    assert.equal((ours.build as () => string)(), (theirs.build as () => string)());
    assert.equal((ours.build as () => string)(), 'Dense(10) in mode Train');
    assert.equal(ours.units, theirs.units);
    assert.equal(ours.where, entry);
    assert.deepEqual(
      Object.keys(ours).sort(),
      Object.keys(theirs)
        .filter((k) => k !== '__esModule')
        .sort(),
    );
  });

  it("maps a throw in an imported file to that file's line", () => {
    const exports = importUserFile(path.join(dir, 'model.ts'), {} as Tf);
    let caught: unknown;
    try {
      (exports.explode as () => never)();
    } catch (err) {
      caught = err;
    }
    const frames = userFrames(caught);
    const inner = frames[frames.length - 1];
    assert.equal(inner?.file, path.join(dir, 'layers.ts'));
    assert.equal(inner?.line, 7);
    assert.ok(
      frames.some((f) => f.file === path.join(dir, 'model.ts') && f.line === 11),
      JSON.stringify(frames),
    );
  });

  it('names the file and line of a local import that does not exist', () => {
    assert.throws(
      () => transpileModelFile(path.join(dir, 'broken.ts')),
      (err: unknown) =>
        err instanceof TranspileError &&
        err.kind === 'importError' &&
        err.location?.line === 1 &&
        /Could not resolve "\.\/missing"/.test(err.message),
    );
  });

  it('puts a syntax error at its line and column, as TypeScript counts them', () => {
    const file = path.join(dir, 'syntax.ts');
    fs.writeFileSync(file, 'const a = 1;\nconst b = (;\n');
    const tsDiag = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
      reportDiagnostics: true,
      fileName: file,
    }).diagnostics?.[0];
    const tsPos = tsDiag?.file?.getLineAndCharacterOfPosition(tsDiag.start ?? 0);
    assert.throws(
      () => transpileModelFile(file),
      (err: unknown) =>
        err instanceof TranspileError &&
        err.kind === 'syntaxError' &&
        err.location?.line === (tsPos?.line ?? -1) + 1 &&
        err.location?.column === (tsPos?.character ?? -1) + 1,
    );
  });
});
