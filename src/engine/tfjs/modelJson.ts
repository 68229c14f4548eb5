// Reads a model.json and its weight shards from disk (tfjs's own file:// handler needs
// tfjs-node). Shards must be regular files inside the model's folder and no larger than the
// manifest declares; a model.json whose shards are all absent still loads for its structure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { fail, messageOf } from './engineError';
import { isKeras3Topology, keras3ToKeras2 } from './keras3';

export type ModelJsonFormat = 'layers-model' | 'graph-model';

/** Bytes per stored element, by dtype and by quantization dtype. */
const STORED_BYTES: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  uint8: 1,
  uint16: 2,
  float16: 2,
  int8: 1,
  int16: 2,
};

export interface ModelJsonFile {
  format: ModelJsonFormat;
  json: tfTypes.io.ModelJSON;
  /** The artifacts tfjs loads; weights are zeros when `weightsMissing`. */
  artifacts: tfTypes.io.ModelArtifacts;
  /** Shards listed in the manifest that are not on disk (then all weights are placeholders). */
  weightsMissing: string[];
  warnings: string[];
}

function declaredBytes(specs: tfTypes.io.WeightsManifestEntry[]): number {
  let total = 0;
  for (const w of specs) {
    const dtype = w.quantization?.dtype ?? w.dtype;
    const size = STORED_BYTES[dtype];
    // String weights have no fixed size; no other cap than the file's own.
    if (size === undefined) return Infinity;
    total += size * w.shape.reduce((a, b) => a * b, 1);
  }
  return total;
}

/** `p` from the manifest, resolved inside `dir`; anything else is refused with the reason. */
export function shardPath(file: string, p: string): string {
  const dir = path.dirname(file);
  const refuse = (why: string): never =>
    fail(
      'badRequest',
      `${file}: weight path '${p}' ${why}; weight files must lie in the model's folder ${dir}`,
      {
        location: { file, line: 1 },
        got: p,
      },
    );
  if (path.isAbsolute(p) || /^[a-z][a-z0-9+.-]*:/i.test(p)) refuse('is absolute');
  const resolved = path.resolve(dir, p);
  const rel = path.relative(dir, resolved);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) refuse('leaves the folder');
  if (fs.existsSync(resolved)) {
    const realDir = fs.realpathSync(dir);
    const real = fs.realpathSync(resolved);
    const realRel = path.relative(realDir, real);
    if (realRel.startsWith('..') || path.isAbsolute(realRel))
      refuse(`is a link to ${real}, outside the folder`);
    if (!fs.statSync(real).isFile()) refuse('is not a regular file');
  }
  return resolved;
}

/** Reads at most `cap` bytes; a longer file is refused, never read to its end. */
function readCapped(file: string, shard: string, cap: number): Buffer {
  const size = fs.statSync(shard).size;
  if (size > cap) {
    fail(
      'badRequest',
      `${file}: weight file ${shard} has ${size} bytes, more than the ${cap} its manifest declares`,
      {
        location: { file, line: 1 },
        expected: `at most ${cap} bytes`,
        got: `${size} bytes`,
      },
    );
  }
  const fd = fs.openSync(shard, 'r');
  try {
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    fs.closeSync(fd);
  }
}

export function readModelJson(file: string): ModelJsonFile {
  let json: tfTypes.io.ModelJSON;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as tfTypes.io.ModelJSON;
  } catch (err) {
    return fail('syntaxError', `${file}: not valid JSON: ${messageOf(err)}`, {
      location: { file, line: 1 },
    });
  }
  const topo = json?.modelTopology as Record<string, unknown> | undefined;
  if (!topo || typeof topo !== 'object') {
    return fail('noModel', `${file} has no modelTopology: not a TF.js model.json`, {
      location: { file, line: 1 },
    });
  }
  const isGraph = json.format === 'graph-model' || Array.isArray((topo as { node?: unknown }).node);
  const format: ModelJsonFormat = isGraph ? 'graph-model' : 'layers-model';
  const warnings: string[] = [];
  let modelTopology: object = topo;
  if (!isGraph && isKeras3Topology(topo)) {
    modelTopology = keras3ToKeras2(file, topo);
    warnings.push(
      `${path.basename(file)} is a Keras 3 export; its config was translated to the ` +
        'Keras 2 layout tfjs 4 reads.',
    );
  }
  const specs: tfTypes.io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  const missing: string[] = [];
  for (const group of json.weightsManifest ?? []) {
    specs.push(...group.weights);
    let budget = declaredBytes(group.weights);
    for (const p of group.paths) {
      const shard = shardPath(file, p);
      if (!fs.existsSync(shard)) {
        missing.push(shard);
        continue;
      }
      const buf = readCapped(file, shard, budget);
      budget -= buf.length;
      buffers.push(buf);
    }
  }
  let weightData: ArrayBuffer;
  if (missing.length) {
    // Structure, shapes and counts follow from the topology; values are placeholders (zeros).
    const bytes = specs.reduce(
      (a, w) => a + (STORED_BYTES[w.dtype] ?? 4) * w.shape.reduce((x, y) => x * y, 1),
      0,
    );
    weightData = new ArrayBuffer(bytes);
    const unquantized = specs.map((w) => ({ name: w.name, shape: w.shape, dtype: w.dtype }));
    specs.length = 0;
    specs.push(...unquantized);
  } else {
    const all = Buffer.concat(buffers);
    weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  }
  const artifacts: tfTypes.io.ModelArtifacts = {
    modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    modelInitializer: json.modelInitializer,
    weightSpecs: specs,
    weightData,
  };
  return { format, json, artifacts, weightsMissing: missing, warnings };
}

export function missingWeightsWarning(file: string, missing: string[]): string {
  const names = missing.map((m) => path.basename(m)).join(', ');
  return (
    `Weights missing: ${names} listed in ${path.basename(file)} ` +
    `${missing.length === 1 ? 'is' : 'are'} not on disk. ` +
    'Structure, shapes and parameter counts come from the topology; running needs the weight files.'
  );
}

/** Running, profiling and reading values need the real weights; structure does not. */
export function requireWeights(s: { file: string; weightsMissing: string[] }, what: string): void {
  if (!s.weightsMissing.length) return;
  const names = s.weightsMissing.map((m) => path.basename(m)).join(', ');
  fail(
    'fileNotFound',
    `${what} needs the weights of ${s.file}, and ${names} ` +
      `${s.weightsMissing.length === 1 ? 'is' : 'are'} missing`,
    {
      location: { file: s.file, line: 1 },
      hint: `Put the weight files listed in weightsManifest next to ${path.basename(s.file)}.`,
    },
  );
}
