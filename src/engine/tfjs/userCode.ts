// Runs the user's model file inside the engine: transpile.ts joins it and its local imports into
// one CJS module (packages stay external and resolve from the user's folder), imports of tfjs get
// the engine's own tf instance, and stack frames in the generated code are mapped back to the
// user's lines through the source map it emits.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Module, { SourceMap } from 'node:module';
import type { SourceLocation } from '../../protocol/types';
import { EngineFailure, fail, messageOf } from './engineError';
import type { Tf } from './backend';
import { TranspileError, transpileModelFile } from '../transpile';

/** These resolve to the engine's tf so a model folder needs nothing installed. */
const TF_SHIMS = new Set([
  '@tensorflow/tfjs',
  '@tensorflow/tfjs-core',
  '@tensorflow/tfjs-layers',
  '@tensorflow/tfjs-converter',
  '@tensorflow/tfjs-data',
  '@tensorflow/tfjs-node',
  '@tensorflow/tfjs-node-gpu',
]);

export const SCRIPT_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts', '.jsx', '.tsx'];

/** Frames kept in a userStack (innermost last). */
const USER_STACK_MAX_FRAMES = 8;

interface MappedFile {
  map: SourceMap;
  dir: string;
}

/** Generated filename → its source map; a file loaded twice replaces its entry. */
const maps = new Map<string, MappedFile>();

/** The model file and its local imports as one CommonJS module (src/engine/transpile.ts). */
function compile(file: string): { code: string; map: string } {
  try {
    return transpileModelFile(file);
  } catch (err) {
    if (!(err instanceof TranspileError)) throw err;
    return fail(err.kind, err.message, {
      location: err.location,
      hint:
        err.kind === 'importError'
          ? 'Check the import path; packages are resolved from the model file’s folder.'
          : undefined,
    });
  }
}

interface ModuleInternals {
  _compile(code: string, filename: string): void;
  filename: string;
  paths: string[];
  exports: Record<string, unknown>;
  require(id: string): unknown;
}

/** Imports a model file (never as a main script) and returns its exports. */
export function importUserFile(file: string, tf: Tf): Record<string, unknown> {
  const { code, map } = compile(file);
  // The generated module runs under the user's own filename so __dirname, __filename and
  // relative requires behave as in the user's folder; frames in it are mapped below.
  if (map) maps.set(file, { map: new SourceMap(JSON.parse(map)), dir: path.dirname(file) });
  const ModuleCtor = Module as unknown as {
    new (id: string, parent?: unknown): ModuleInternals;
    _nodeModulePaths(dir: string): string[];
  };
  const mod = new ModuleCtor(file, module);
  mod.filename = file;
  mod.paths = ModuleCtor._nodeModulePaths(path.dirname(file));
  const plainRequire = mod.require.bind(mod);
  mod.require = (id: string): unknown => (TF_SHIMS.has(id) ? tf : plainRequire(id));
  try {
    mod._compile(code, file);
  } catch (err) {
    throw userCodeFailure(err, 'importing', file);
  }
  return mod.exports;
}

/** The transpiled-code frame → the user's original line, when it is one of our files. */
function mapFrame(file: string, line: number, column: number): SourceLocation | null {
  const entry = maps.get(file);
  if (!entry) return null;
  const hit = entry.map.findEntry(line - 1, column - 1) as {
    originalSource?: string;
    originalLine?: number;
    originalColumn?: number;
  };
  if (hit.originalSource === undefined || hit.originalLine === undefined) return null;
  const src = hit.originalSource.startsWith('file://')
    ? new URL(hit.originalSource).pathname
    : path.resolve(entry.dir, hit.originalSource);
  return { file: src, line: hit.originalLine + 1, column: (hit.originalColumn ?? 0) + 1 };
}

const FRAME_RE = /^\s*at (?:(.*?) \()?(?:file:\/\/)?(.+?):(\d+):(\d+)\)?$/;

/** Frames of the error that are in user files, innermost last (as tracebacks read). */
export function userFrames(err: unknown): SourceLocation[] {
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  const frames: SourceLocation[] = [];
  for (const line of stack.split('\n')) {
    const m = FRAME_RE.exec(line);
    if (!m) continue;
    const loc = mapFrame(m[2], Number(m[3]), Number(m[4]));
    if (!loc || loc.file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    const fn = m[1]?.replace(/^(async |new )/, '');
    if (fn && fn !== '<anonymous>' && !fn.startsWith('Object.<anonymous>')) loc.function = fn;
    frames.push(loc);
  }
  return frames.reverse().slice(-USER_STACK_MAX_FRAMES);
}

/** Replaces generated positions in a stack text by the user's own lines. */
export function mapStackText(stack: string): string {
  return stack
    .split('\n')
    .map((line) => {
      const m = FRAME_RE.exec(line);
      if (!m) return line;
      const loc = mapFrame(m[2], Number(m[3]), Number(m[4]));
      if (!loc) return line;
      return `    at ${m[1] ? `${m[1]} (` : ''}${loc.file}:${loc.line}:${loc.column}${m[1] ? ')' : ''}`;
    })
    .join('\n');
}

const SHAPE_RE = /expected (\S+) to have shape \[([^\]]*)\] but got array with shape \[([^\]]*)\]/;
/** Shape errors as tfjs words them (user code's own messages are left as userCodeError). */
const TFJS_SHAPE_ERROR_RE =
  /Error when checking|does not match the shape of the rest|Operands could not be broadcast|Incompatible shapes|must match|shapes? .* and .* (?:must|are)|rank-?\d+ .*expected|expected rank/i;
const LAYER_INCOMPATIBLE_RE = /(?:incompatible with layer|Layer) ([\w./-]+)[:,]? (.*)/;

/** Classifies an error thrown by user code or by tfjs while running it. */
export function userCodeFailure(err: unknown, doing: string, file?: string): EngineFailure {
  if (err instanceof EngineFailure) return err;
  const message = messageOf(err);
  const userStack = userFrames(err);
  const location = userStack[userStack.length - 1];
  const shape = SHAPE_RE.exec(message);
  if (shape) {
    const layer = shape[1].replace(/_input$/, '');
    return new EngineFailure(
      `Input shape does not fit ${layer}: expected [${shape[2]}], got [${shape[3]}]`,
      {
        kind: 'shapeMismatch',
        layer,
        expected: `[${shape[2]}]`,
        got: `[${shape[3]}]`,
        location,
        userStack,
        hint: 'Pass inputShapes matching the model input (batch dimension first), or export `inputShape`.',
      },
    );
  }
  const incompatible = /incompatible with layer/.test(message)
    ? LAYER_INCOMPATIBLE_RE.exec(message)
    : null;
  if (incompatible || TFJS_SHAPE_ERROR_RE.test(message)) {
    return new EngineFailure(message, {
      kind: 'shapeMismatch',
      layer: incompatible?.[1],
      location,
      userStack,
    });
  }
  if (/Cannot find module/.test(message)) {
    return new EngineFailure(message.split('\n')[0], {
      kind: 'importError',
      location,
      userStack,
      hint: 'Install the package in the model file’s folder (tfjs itself needs nothing installed).',
    });
  }
  const where = location ? ` (${location.file}:${location.line})` : file ? ` (${file})` : '';
  return new EngineFailure(`Error while ${doing}: ${message}${where}`, {
    kind: 'userCodeError',
    location,
    userStack,
  });
}

export function readSourceLines(file: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}
