// Turns a model file into a tf.LayersModel: picks the export (instance or factory), or loads a
// saved model.json through an fs-backed IOHandler (tfjs's own file:// handler needs tfjs-node).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import type { DType, InputSpec, ModelCandidate, SourceLocation } from '../../protocol/types';
import type { Tf } from './backend';
import { namingFailedLayer } from './applyTracker';
import { EngineFailure, fail, messageOf } from './engineError';
import { askedInputs, checkDtype, describeIds, idRanges } from './inputSynthesis';
import { missingWeightsWarning, readModelJson } from './modelJson';
import { importUserFile, readSourceLines, SCRIPT_EXTENSIONS, userCodeFailure } from './userCode';

/** Longest tfjs error text quoted in a load failure. */
const MESSAGE_MAX_CHARS = 300;
/** Exports with a meaning of their own, never model candidates. */
const RESERVED_EXPORTS = new Set([
  'train',
  'inputShape',
  'inputShapes',
  'exampleInput',
  '__esModule',
]);

export interface LoadedModel {
  kind: 'layers';
  model: tfTypes.LayersModel;
  name: string;
  candidates: ModelCandidate[];
  exports: Record<string, unknown>;
  inputs: InputSpec[];
  warnings: string[];
  location?: SourceLocation;
  /** Tensors from an `exampleInput` export, when the file has one. */
  example?: tfTypes.Tensor[];
  /** Weight shards a model.json lists that are not on disk. */
  weightsMissing: string[];
}

export interface LoadedGraph {
  kind: 'graph';
  file: string;
  model: tfTypes.GraphModel;
  topology: { node?: { name: string; op: string; input?: string[] }[] };
  weightsMissing: string[];
  warnings: string[];
}

/** First line of a tfjs message, without the model config some of them append. */
export function shortMessage(err: unknown): string {
  const line = messageOf(err)
    .split('\n')[0]
    .replace(/ This may be due to.*$/, '')
    .replace(/[{[].{120,}$/s, '…');
  return line.length > MESSAGE_MAX_CHARS ? `${line.slice(0, MESSAGE_MAX_CHARS)}…` : line;
}

async function loadModelJsonFile(
  tf: Tf,
  file: string,
  params: object,
): Promise<(LoadedModel & { file: string }) | LoadedGraph> {
  const mj = readModelJson(file);
  const warnings = [...mj.warnings];
  if (mj.weightsMissing.length) warnings.push(missingWeightsWarning(file, mj.weightsMissing));
  const location = { file, line: 1 };
  if (mj.format === 'graph-model') {
    let model: tfTypes.GraphModel;
    try {
      model = await tf.loadGraphModel(tf.io.fromMemory(mj.artifacts));
    } catch (err) {
      const why = shortMessage(err);
      const msg = `${file}: tfjs could not load this graph model: ${why}`;
      return fail('userCodeError', msg, { location });
    }
    const topology = mj.artifacts.modelTopology as LoadedGraph['topology'];
    return { kind: 'graph', file, model, topology, weightsMissing: mj.weightsMissing, warnings };
  }
  let model: tfTypes.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory(mj.artifacts));
  } catch (err) {
    if (err instanceof EngineFailure) throw err;
    if (mj.warnings.some((w) => /Keras 3/.test(w))) {
      const tfjs = `tfjs ${tf.version?.tfjs ?? ''}`.trim();
      const why = shortMessage(err);
      const msg = `${file} is a Keras 3 export that ${tfjs} cannot read even translated: ${why}`;
      return fail('unsupported', msg, {
        location,
        hint:
          'Save the model with tf_keras (Keras 2), e.g. TF_USE_LEGACY_KERAS=1, then run ' +
          'tensorflowjs_converter again.',
      });
    }
    const why = shortMessage(err);
    return fail('userCodeError', `${file}: could not load the layers model: ${why}`, { location });
  }
  const candidates: ModelCandidate[] = [{ name: path.basename(file), kind: 'file', location }];
  return {
    kind: 'layers',
    file,
    model,
    name: model.name,
    candidates,
    exports: {},
    inputs: requestedInputs(model, {}, undefined, params, file),
    warnings,
    weightsMissing: mj.weightsMissing,
  };
}

export function isLayersModel(v: unknown): v is tfTypes.LayersModel {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as tfTypes.LayersModel).predict === 'function' &&
    Array.isArray((v as tfTypes.LayersModel).layers) &&
    Array.isArray((v as tfTypes.LayersModel).inputs)
  );
}

function isClass(fn: unknown): boolean {
  return typeof fn === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'function') return isClass(v) ? 'class' : 'function';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

function exportLocation(file: string, name: string): SourceLocation | undefined {
  const lines = readSourceLines(file);
  const re =
    name === 'default'
      ? /export\s+default\b/
      : new RegExp(
          `export\\s+(?:async\\s+)?(?:const|let|var|function\\*?|class)\\s+${name}\\b|exports\\.${name}\\s*=`,
        );
  const i = lines.findIndex((l) => re.test(l));
  return i >= 0 ? { file, line: i + 1 } : undefined;
}

/** Model instances and zero-argument functions; a default export equal to a named one is dropped. */
export function findCandidates(file: string, exports: Record<string, unknown>): ModelCandidate[] {
  const out: ModelCandidate[] = [];
  for (const [name, value] of Object.entries(exports)) {
    if (RESERVED_EXPORTS.has(name)) continue;
    if (
      name === 'default' &&
      Object.entries(exports).some(([n, v]) => n !== 'default' && v === value)
    )
      continue;
    if (isLayersModel(value)) {
      out.push({ name, kind: 'instance', location: exportLocation(file, name) });
    } else if (typeof value === 'function' && !isClass(value)) {
      const c: ModelCandidate = { name, kind: 'function', location: exportLocation(file, name) };
      if (value.length > 0) c.requiredArgs = [`${value.length} argument(s)`];
      out.push(c);
    }
  }
  // esbuild's CJS output lists exports alphabetically; users think in source order.
  return out.sort((x, y) => (x.location?.line ?? Infinity) - (y.location?.line ?? Infinity));
}

async function build(
  file: string,
  exports: Record<string, unknown>,
  cand: ModelCandidate,
): Promise<tfTypes.LayersModel> {
  const value = exports[cand.name];
  if (isLayersModel(value)) return value;
  if (cand.requiredArgs) {
    return fail(
      'constructorArgs',
      `Export '${cand.name}' takes ${cand.requiredArgs[0]}; the engine calls model factories without arguments`,
      {
        location: cand.location,
        candidates: [cand.name],
        hint: 'Export a zero-argument function that returns the model, or the model itself.',
      },
    );
  }
  let made: unknown;
  try {
    made = await (value as () => unknown)();
  } catch (err) {
    throw userCodeFailure(err, `calling ${cand.name}()`, file);
  }
  if (!isLayersModel(made)) {
    return fail(
      'noModel',
      `Export '${cand.name}()' returned ${describe(made)}, not a tf.LayersModel`,
      {
        location: cand.location,
        candidates: [cand.name],
      },
    );
  }
  return made;
}

function shapeFromExport(v: unknown, rank: number, name: string): number[] | null {
  if (!Array.isArray(v) || !v.every((d) => d === null || typeof d === 'number')) return null;
  const dims = (v as (number | null)[]).map((d) => (d === null || d < 0 ? 1 : d));
  if (dims.length === rank) return dims;
  if (dims.length === rank - 1) return [1, ...dims];
  fail(
    'shapeMismatch',
    `Export '${name}' has ${dims.length} dims but the model input has rank ${rank}`,
    {
      expected: `${rank} dims (batch first) or ${rank - 1} (without batch)`,
      got: JSON.stringify(v),
    },
  );
}

/** Shapes the engine feeds the model: request > example/inputShape export > the model's own. */
export function resolveInputs(
  model: tfTypes.LayersModel,
  exports: Record<string, unknown>,
  requested: number[][] | undefined,
  example: tfTypes.Tensor[] | undefined,
  dtypes?: (DType | null)[],
): InputSpec[] {
  const specs = resolveShapes(model, exports, requested, example);
  const ranges = idRanges(model);
  if (dtypes && dtypes.length !== specs.length) {
    const n = `${specs.length} input(s) but ${dtypes.length} dtype(s)`;
    fail('shapeMismatch', `The model has ${n} were given`, {
      expected: `${specs.length} dtypes`,
      got: `${dtypes.length}`,
    });
  }
  return specs.map((spec, i) => {
    const asked = dtypes?.[i];
    const withDtype = asked ? { ...spec, dtype: checkDtype(asked, `input ${i}`) } : spec;
    return describeIds(withDtype, ranges[i]);
  });
}

function resolveShapes(
  model: tfTypes.LayersModel,
  exports: Record<string, unknown>,
  requested: number[][] | undefined,
  example: tfTypes.Tensor[] | undefined,
): InputSpec[] {
  const modelShapes = model.inputs.map((t) => t.shape);
  if (requested) {
    if (requested.length !== modelShapes.length) {
      fail(
        'shapeMismatch',
        `The model has ${modelShapes.length} input(s) but ${requested.length} shape(s) were given`,
        {
          expected: `${modelShapes.length} shapes`,
          got: `${requested.length}`,
        },
      );
    }
    return requested.map((shape, i) => ({
      shape,
      dtype: model.inputs[i].dtype,
      source: 'request',
    }));
  }
  if (example) {
    return example.map((t) => ({
      shape: t.shape,
      dtype: t.dtype,
      source: 'example',
      note: 'from the exampleInput export',
    }));
  }
  const declared = exports.inputShapes ?? exports.inputShape;
  if (declared !== undefined) {
    const list =
      Array.isArray(declared) && Array.isArray(declared[0]) ? (declared as unknown[]) : [declared];
    return modelShapes.map((s, i) => {
      const shape = shapeFromExport(
        list[i],
        s.length,
        exports.inputShapes ? 'inputShapes' : 'inputShape',
      );
      if (!shape)
        fail(
          'badRequest',
          `Export inputShape must be an array of numbers, got ${JSON.stringify(list[i])}`,
        );
      return {
        shape,
        dtype: model.inputs[i].dtype,
        source: 'example',
        note: 'from the inputShape export',
      };
    });
  }
  return modelShapes.map((s, i) => ({
    shape: s.map((d) => (d === null ? 1 : d)),
    dtype: model.inputs[i].dtype,
    source: 'model',
    note: `from ${model.inputs[i].name} (${JSON.stringify(s)}) with unknown dimensions set to 1`,
  }));
}

/** The inputs a request asks for (shapes, dtypes, names), else the file's or the model's own. */
function requestedInputs(
  model: tfTypes.LayersModel,
  exports: Record<string, unknown>,
  example: tfTypes.Tensor[] | undefined,
  params: object,
  file: string,
): InputSpec[] {
  const { shapes, dtypes } = askedInputs(params, model.inputNames, file);
  return resolveInputs(model, exports, shapes, shapes ? undefined : example, dtypes);
}

async function exampleTensors(
  tf: Tf,
  exports: Record<string, unknown>,
  file: string,
): Promise<tfTypes.Tensor[] | undefined> {
  let v = exports.exampleInput;
  if (v === undefined) return undefined;
  try {
    if (typeof v === 'function') v = await (v as () => unknown)();
  } catch (err) {
    throw userCodeFailure(err, 'calling exampleInput()', file);
  }
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((t) => t instanceof tf.Tensor)) {
    fail(
      'badRequest',
      'Export exampleInput must be a tf.Tensor, an array of them, or a function returning one',
      {
        location: exportLocation(file, 'exampleInput'),
      },
    );
  }
  return list as tfTypes.Tensor[];
}

export async function loadModelFile(
  tf: Tf,
  fileParam: string,
  modelName: string | undefined,
  params: object = {},
): Promise<(LoadedModel & { file: string }) | LoadedGraph> {
  const file = path.resolve(fileParam);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    fail('fileNotFound', `No such model file: ${file}`, {
      hint: 'Give a .js, .mjs, .ts file or a model.json.',
    });
  }
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return loadModelJsonFile(tf, file, params);
  if (!SCRIPT_EXTENSIONS.includes(ext)) {
    fail('unsupported', `Cannot load ${ext || 'extension-less'} files as TF.js models: ${file}`, {
      hint: `Use one of ${SCRIPT_EXTENSIONS.join(' ')} or a model.json.`,
    });
  }
  const exports = await namingFailedLayer(tf, () => importUserFile(file, tf));
  const candidates = findCandidates(file, exports);
  let chosen: ModelCandidate | undefined;
  if (modelName) {
    chosen = candidates.find((c) => c.name === modelName);
    if (!chosen) {
      fail('noModel', `${file} has no model export named '${modelName}'`, {
        candidates: candidates.map((c) => c.name),
        location: { file, line: 1 },
      });
    }
  } else {
    const callable = candidates.filter((c) => !c.requiredArgs);
    if (callable.length === 1) chosen = callable[0];
    else if (callable.length === 0) {
      const what = Object.entries(exports)
        .filter(([n]) => n !== '__esModule')
        .map(([n, v]) => `${n} (${describe(v)})`);
      fail(
        'noModel',
        `${file} exports no tf.LayersModel or function returning one` +
          (what.length ? `; it exports: ${what.join(', ')}` : '; it exports nothing'),
        {
          candidates: what,
          location: { file, line: 1 },
          hint: 'export const model = tf.sequential(...) or export function createModel() { ... }',
        },
      );
    } else {
      fail(
        'ambiguousModel',
        `${file} has several model candidates: ${callable.map((c) => c.name).join(', ')}; pick one`,
        {
          candidates: callable.map((c) => c.name),
          location: callable[0].location ?? { file, line: 1 },
        },
      );
    }
  }
  const model = await namingFailedLayer(tf, () => build(file, exports, chosen));
  const example = await exampleTensors(tf, exports, file);
  const warnings: string[] = [];
  const inputs = requestedInputs(model, exports, example, params, file);
  if (
    inputs.some((i) => i.source === 'model') &&
    model.inputs.some((t) => t.shape.slice(1).includes(null))
  ) {
    warnings.push(
      'Some input dimensions are unknown and were set to 1; export inputShape for real sizes.',
    );
  }
  return {
    kind: 'layers',
    file,
    model,
    name: chosen.name,
    candidates,
    exports,
    inputs,
    warnings,
    location: chosen.location,
    example,
    weightsMissing: [],
  };
}
