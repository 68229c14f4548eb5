// Turns a model file and the local files it imports into one CommonJS module the engine can run,
// with pure JavaScript: sucrase strips TypeScript and JSX and rewrites import/export to require.
// No native binary (esbuild was one, linux-x64 only in the package), so `.ts` models load on
// macOS, Windows and Linux arm64 alike. Packages stay external and resolve from the user's folder.
//
// Sucrase keeps every line where it was, so the joined module maps back to the user's files with
// one index source map: a section per file, at the line where that file's code starts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { transform, type Transform } from 'sucrase';
import type { SourceLocation } from '../protocol/types';

/** Extensions run as scripts; other local imports (.json, .node) node loads itself. */
const SCRIPT_EXTENSIONS = ['.ts', '.tsx', '.mts', '.cts', '.js', '.jsx', '.mjs', '.cjs'];
/** A model with more local files than this is not a model file: stop before a runaway walk. */
const MAX_LOCAL_FILES = 500;
/** `require("./x")` / `require('/abs/x')` after sucrase's import transform. */
const LOCAL_REQUIRE_RE = /\brequire\((['"])((?:\.{1,2}|\/|[A-Za-z]:[\\/])[^'"]*)\1\)/g;

export interface TranspiledModule {
  code: string;
  /** An index source map (version 3 with sections), as JSON. */
  map: string;
}

/** A file that cannot be transpiled or a local import that names no file. */
export class TranspileError extends Error {
  constructor(
    message: string,
    readonly kind: 'syntaxError' | 'importError',
    readonly location: SourceLocation | undefined,
  ) {
    super(message);
  }
}

function transformsFor(file: string): Transform[] {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.tsx') return ['typescript', 'jsx', 'imports'];
  if (ext === '.ts' || ext === '.mts' || ext === '.cts') return ['typescript', 'imports'];
  if (ext === '.jsx') return ['jsx', 'imports'];
  return ['imports'];
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Node's resolution of a relative path, plus TypeScript's `./x.js` meaning x.ts. */
export function resolveLocal(fromFile: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(fromFile), specifier);
  const candidates = [base, ...SCRIPT_EXTENSIONS.map((e) => base + e), base + '.json'];
  const js = /\.([cm]?)js$/.exec(base);
  if (js)
    candidates.push(
      ...['.ts', '.tsx'].map((e) => base.slice(0, -js[0].length) + (js[1] ? `.${js[1]}ts` : e)),
    );
  candidates.push(...SCRIPT_EXTENSIONS.map((e) => path.join(base, `index${e}`)));
  return candidates.find(isFile);
}

interface Transpiled {
  file: string;
  code: string;
  map: object;
}

function transpileOne(file: string): Transpiled {
  const source = fs.readFileSync(file, 'utf8');
  try {
    const out = transform(source, {
      transforms: transformsFor(file),
      filePath: file,
      sourceMapOptions: { compiledFilename: file },
      // Keep modern syntax (node 20 runs it); only types, JSX and modules are rewritten.
      disableESTransforms: true,
      production: true,
    });
    // import.meta.url has no CommonJS equivalent: each file gets its own, same line.
    const code = out.code.replace(/\bimport\.meta\.url\b/g, '__modelLensImportMetaUrl');
    return { file, code, map: out.sourceMap as object };
  } catch (err) {
    // sucrase's loc: line and column both 1-based.
    const loc = (err as { loc?: { line: number; column: number } }).loc;
    const location = loc ? { file, line: loc.line, column: loc.column } : { file, line: 1 };
    const text =
      err instanceof Error
        ? err.message.replace(/^Error transforming [^:]*: /, '').replace(/ \(\d+:\d+\)$/, '')
        : String(err);
    throw new TranspileError(
      `${file}:${location.line}${loc ? `:${location.column}` : ''}: ${text}`,
      'syntaxError',
      location,
    );
  }
}

/** The line (1-based) of `index` in `text`. */
function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** The entry and every local script it reaches, transpiled, local requires made absolute. */
function collect(entry: string): Transpiled[] {
  const seen = new Map<string, Transpiled>();
  const queue = [path.resolve(entry)];
  while (queue.length) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    if (seen.size >= MAX_LOCAL_FILES)
      throw new TranspileError(
        `${entry}: imports more than ${MAX_LOCAL_FILES} local files`,
        'importError',
        { file: entry, line: 1 },
      );
    const t = transpileOne(file);
    t.code = t.code.replace(
      LOCAL_REQUIRE_RE,
      (match: string, _q: string, spec: string, offset: number) => {
        const target = resolveLocal(file, spec);
        if (!target) {
          const line = lineAt(t.code, offset);
          throw new TranspileError(`${file}:${line}: Could not resolve "${spec}"`, 'importError', {
            file,
            line,
          });
        }
        // Same length of line: only this call changes, and it stays on its line.
        if (!SCRIPT_EXTENSIONS.includes(path.extname(target).toLowerCase()))
          return `require(${JSON.stringify(target)})`;
        queue.push(target);
        return `__modelLensRequire(${JSON.stringify(target)})`;
      },
    );
    seen.set(file, t);
  }
  return [...seen.values()];
}

/**
 * One CommonJS module: a small loader on the first line, each local file as a function (its code
 * starting on a line of its own), then the entry's exports as this module's. Runs under the
 * entry's filename, so packages resolve from the user's folder.
 */
export function transpileModelFile(entry: string): TranspiledModule {
  const files = collect(entry);
  // The loader is one line: the files' sections start at known lines below it.
  const loader = [
    'var __modelLensFiles = {}, __modelLensCache = {};',
    'function __modelLensRequire(f) {',
    'var c = __modelLensCache[f]; if (c) return c.exports;',
    'var m = __modelLensCache[f] = { exports: {} };',
    '__modelLensFiles[f].call(m.exports, m.exports, require, m, f, require("path").dirname(f));',
    'return m.exports; }',
  ].join(' ');
  const lines: string[] = [loader];
  const sections: object[] = [];
  for (const t of files) {
    const url = pathToFileURL(t.file).href;
    lines.push(
      `__modelLensFiles[${JSON.stringify(t.file)}] = ` +
        'function (exports, require, module, __filename, __dirname) { ' +
        `var __modelLensImportMetaUrl = ${JSON.stringify(url)};`,
    );
    sections.push({ offset: { line: lines.length, column: 0 }, map: t.map });
    lines.push(...t.code.split('\n'), '};');
  }
  lines.push(`module.exports = __modelLensRequire(${JSON.stringify(files[0].file)});`);
  return { code: lines.join('\n'), map: JSON.stringify({ version: 3, sections }) };
}
