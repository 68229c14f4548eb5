// The engines a suite runs against: the TF.js engine, and the PyTorch engine once per
// interpreter under test. A suite written with describeForEngines holds every engine to the
// same expectations (the conformance suite is the model); new engine-spawning suites use it
// instead of hand-rolled loops.
import * as path from 'node:path';
import { describe } from 'node:test';
import type { EngineKind } from '../src/protocol/types';

export const ROOT = path.resolve(__dirname, '..');

export interface EngineUnderTest {
  kind: EngineKind;
  /** Extension of this engine's model files: `.ts` or `.py`. */
  ext: string;
  /** The iris MLP example for this engine. */
  iris: string;
  /** The iris training script (PyTorch: run as __main__; tfjs: its `train` export). */
  irisTrain: string;
  /** PyTorch: the interpreter (one per torch version under test); default discovery when absent. */
  python?: string;
  label: string;
}

/**
 * Interpreters the PyTorch engine is tested under: `npm test` passes one per torch version
 * (Debian's 1.13 and the 2.13 venv) in MODEL_LENS_TEST_PYTHONS; run alone, a suite uses the
 * engine's own interpreter discovery.
 */
export const TEST_PYTHONS = (process.env.MODEL_LENS_TEST_PYTHONS ?? '')
  .split(path.delimiter)
  .filter(Boolean);

export const ENGINES: readonly EngineUnderTest[] = [
  {
    kind: 'tfjs',
    ext: '.ts',
    iris: path.join(ROOT, 'examples', 'iris_mlp.ts'),
    irisTrain: path.join(ROOT, 'examples', 'iris_train.ts'),
    label: 'tfjs engine',
  },
  ...(TEST_PYTHONS.length ? TEST_PYTHONS : [undefined]).map((python): EngineUnderTest => ({
    kind: 'pytorch',
    ext: '.py',
    iris: path.join(ROOT, 'examples', 'iris_mlp.py'),
    irisTrain: path.join(ROOT, 'examples', 'iris_train.py'),
    python,
    label: python ? `pytorch engine (${python})` : 'pytorch engine',
  })),
];

/** One `describe` per engine under test, titled `<title>: <engine label>`. */
export function describeForEngines(title: string, body: (engine: EngineUnderTest) => void): void {
  for (const engine of ENGINES) describe(`${title}: ${engine.label}`, () => body(engine));
}
