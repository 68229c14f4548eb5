// Picks the fastest TF.js backend that actually works here and says why the better ones did not.
// tfjs-node(-gpu) bring their own copy of tfjs, so when one loads, *its* tf instance is the one
// every other module (and user code) must use: `getTf()` is the single source of truth.
import * as bundledTf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { registerWasmGradients } from './wasmGradients';

export type Tf = typeof bundledTf;

export interface BackendChoice {
  /** tfjs backend name as tf.getBackend() reports it: tensorflow, wasm, cpu. */
  backend: string;
  /** What the engine reports: tensorflow-gpu, tensorflow, wasm, cpu. */
  label: string;
  notes: string[];
  device: string;
}

let current: Tf = bundledTf;

export function getTf(): Tf {
  return current;
}

const WASM_FILE = 'tfjs-backend-wasm-simd.wasm';

/** dist/wasm/ next to the bundle, or the package's own dist/ when running from source. */
export function findWasmDir(): string | null {
  const candidates = [path.join(__dirname, 'wasm')];
  try {
    candidates.push(
      path.join(
        path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')),
        'dist',
      ),
    );
  } catch {
    // Not resolvable from the bundle's folder: only dist/wasm can work.
  }
  candidates.push(
    path.join(
      __dirname,
      '..',
      '..',
      '..',
      'node_modules',
      '@tensorflow',
      'tfjs-backend-wasm',
      'dist',
    ),
  );
  for (const dir of candidates) {
    if (
      fs.existsSync(path.join(dir, WASM_FILE)) ||
      fs.existsSync(path.join(dir, 'tfjs-backend-wasm.wasm'))
    )
      return dir;
  }
  return null;
}

function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0];
}

/**
 * The emscripten glue of tfjs-backend-wasm adds process handlers that re-throw every uncaught
 * error, which turns any stray user rejection into a silent engine death. Remove what it added.
 */
function withoutNewProcessHandlers<T>(fn: () => Promise<T>): Promise<T> {
  const before = {
    uncaughtException: new Set<unknown>(process.listeners('uncaughtException')),
    unhandledRejection: new Set<unknown>(process.listeners('unhandledRejection')),
  };
  const strip = (): void => {
    for (const ev of ['uncaughtException', 'unhandledRejection'] as const) {
      for (const l of process.listeners(ev as 'uncaughtException') as ((
        ...a: unknown[]
      ) => void)[]) {
        if (!before[ev].has(l)) process.removeListener(ev, l);
      }
    }
  };
  return fn().finally(strip);
}

async function tryNative(pkg: string, notes: string[]): Promise<Tf | null> {
  try {
    // Optional native packages are external to the bundle and resolved at run time.
    const mod = require(pkg) as Tf;
    const ok = await mod.setBackend('tensorflow');
    if (!ok) {
      notes.push(`${pkg}: loaded but setBackend('tensorflow') returned false`);
      return null;
    }
    await mod.ready();
    return mod;
  } catch (err) {
    notes.push(`${pkg}: ${errorText(err)}`);
    return null;
  }
}

async function tryWasm(notes: string[]): Promise<boolean> {
  try {
    const dir = findWasmDir();
    if (!dir) {
      notes.push('wasm: the .wasm binaries were found neither in dist/wasm nor in node_modules');
      return false;
    }
    const wasm =
      require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(dir + path.sep);
    const ok = await withoutNewProcessHandlers(async () => {
      const set = await bundledTf.setBackend('wasm');
      if (set) await bundledTf.ready();
      return set;
    });
    if (!ok) {
      notes.push(`wasm: setBackend('wasm') returned false (binaries in ${dir})`);
      return false;
    }
    registerWasmGradients(bundledTf);
    return true;
  } catch (err) {
    notes.push(`wasm: ${errorText(err)}`);
    return false;
  }
}

/** `requested`: auto | tensorflow | wasm | cpu. */
export async function selectBackend(requested = 'auto'): Promise<BackendChoice> {
  const notes: string[] = [];
  const want = requested || 'auto';
  if (!['auto', 'tensorflow', 'wasm', 'cpu'].includes(want)) {
    throw new Error(`unknown tfjs backend '${want}' (use auto, tensorflow, wasm or cpu)`);
  }
  if (want === 'auto' || want === 'tensorflow') {
    for (const [pkg, label] of [
      ['@tensorflow/tfjs-node-gpu', 'tensorflow-gpu'],
      ['@tensorflow/tfjs-node', 'tensorflow'],
    ] as const) {
      const mod = await tryNative(pkg, notes);
      if (mod) {
        current = mod;
        return {
          backend: 'tensorflow',
          label,
          notes,
          device: label === 'tensorflow-gpu' ? 'gpu:0' : 'cpu',
        };
      }
    }
    if (want === 'tensorflow')
      notes.push('tensorflow backend requested but unavailable; falling back');
  }
  current = bundledTf;
  if (want !== 'cpu' && (await tryWasm(notes))) {
    return { backend: 'wasm', label: 'wasm', notes, device: 'wasm' };
  }
  if (want === 'wasm') notes.push('wasm backend requested but unavailable; falling back to cpu');
  const ok = await bundledTf.setBackend('cpu');
  if (!ok) throw new Error(`setBackend('cpu') returned false; notes: ${notes.join('; ')}`);
  await bundledTf.ready();
  return { backend: 'cpu', label: 'cpu', notes, device: 'cpu' };
}
