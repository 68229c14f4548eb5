// Not a test: what Model Lens's instrumentation costs on top of plain TF.js, how the wasm backend
// compares with the cpu backend, and how long the engine takes to start. Ratios, one run:
//   node --import tsx bench/tfjsOverhead.ts            (OMP_NUM_THREADS=1 recommended)
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { EngineClient } from '../src/client/engineClient';
import { modelLoadRequest } from '../src/protocol/messages';
import { TfjsEngine } from '../src/engine/tfjs/tfjsEngine';
import { PROTOCOL_VERSION } from '../src/protocol/types';

const ROOT = path.resolve(__dirname, '..');
const MODELS = [
  { name: 'iris MLP', file: path.join(ROOT, 'examples', 'iris_mlp.ts'), batch: 16, reps: 200 },
  { name: 'small CNN', file: path.join(ROOT, 'examples', 'small_cnn.ts'), batch: 8, reps: 10 },
];
const STARTUP_REPS = 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Times several variants in interleaved rounds (A B C A B C ...) so drifting machine load hits
 * them alike; returns each variant's median in ms.
 */
async function timeInterleaved(
  reps: number,
  variants: Record<string, () => unknown | Promise<unknown>>,
): Promise<Record<string, number>> {
  const times: Record<string, number[]> = {};
  for (const [k, fn] of Object.entries(variants)) {
    await fn();
    times[k] = [];
  }
  for (let i = 0; i < reps; i++) {
    for (const [k, fn] of Object.entries(variants)) {
      const t = performance.now();
      await fn();
      times[k].push(performance.now() - t);
    }
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
}

interface Row {
  model: string;
  backend: string;
  predictMs: number;
  engineForwardRatio: number;
  hookedForwardRatio: number;
  throttledHookRatio: number;
  inspectRatio: number;
  profileForwardRatio: number;
  trainOnBatchMs: number;
  profileTrainRatio: number;
}

async function measure(backend: 'wasm' | 'cpu'): Promise<Row[]> {
  const engine = new TfjsEngine({ hookEvent: () => undefined, trainProgress: () => undefined });
  await engine.initialize({
    protocolVersion: PROTOCOL_VERSION,
    clientName: 'bench',
    clientVersion: '0',
    trusted: true,
    backend,
  });
  const rows: Row[] = [];
  for (const m of MODELS) {
    const reps = backend === 'cpu' ? Math.max(3, Math.floor(m.reps / 10)) : m.reps;
    const mod = (await import(m.file)) as {
      createModel: () => tf.LayersModel;
      inputShape: number[];
    };
    const plain = mod.createModel();
    const shape = [m.batch, ...mod.inputShape.slice(1)];
    const x = tf.randomNormal(shape);
    const y = tf.oneHot(tf.zeros([m.batch], 'int32'), (plain.outputs[0].shape[1] as number) ?? 1);
    const { modelId } = await engine.loadModel({ file: m.file, inputShapes: [shape] });
    const firstLayer = engine.tree({ modelId }).modules[1].path;
    // Kernels run eagerly on wasm and cpu, so predict's time is the compute (the engine reads nothing back either).
    const predict = (): void => tf.tidy(() => void plain.predict(x));
    const forward = (): unknown => engine.forward({ modelId, steps: 1 });
    const base = await timeInterleaved(reps, {
      predict,
      forward,
      inspect: () =>
        engine.inspect({ modelId, target: { kind: 'output', path: firstLayer }, stats: true }),
    });
    const every = engine.attachHook({ modelId, path: firstLayer, kind: 'forward', intervalMs: 0 });
    const hooked = await timeInterleaved(reps, { predict, forward });
    engine.detachHook({ hookId: every.hookId });
    const throttledHook = engine.attachHook({ modelId, path: firstLayer, kind: 'forward' });
    const throttled = await timeInterleaved(reps, { predict, forward });
    engine.detachHook({ hookId: throttledHook.hookId });
    const trainReps = Math.max(3, Math.floor(reps / 4));
    const train = await timeInterleaved(trainReps, {
      predict,
      train: () => plain.trainOnBatch(x, y),
    });
    // tf.profile runs its steps back to back, so its baseline is timed right before it.
    const profF = await engine.profile({ modelId, steps: reps, warmup: 1, mode: 'forward' });
    const profT = await engine.profile({ modelId, steps: trainReps, warmup: 1, mode: 'train' });
    rows.push({
      model: m.name,
      backend,
      predictMs: base.predict,
      engineForwardRatio: base.forward / base.predict,
      hookedForwardRatio: hooked.forward / hooked.predict,
      throttledHookRatio: throttled.forward / throttled.predict,
      inspectRatio: base.inspect / base.predict,
      profileForwardRatio: profF.stepMs / train.predict,
      trainOnBatchMs: train.train,
      profileTrainRatio: profT.stepMs / train.train,
    });
    x.dispose();
    y.dispose();
  }
  await engine.shutdown();
  return rows;
}

async function startup(): Promise<{ startMs: number; firstLoadMs: number }> {
  const starts: number[] = [];
  const loads: number[] = [];
  for (let i = 0; i < STARTUP_REPS; i++) {
    const t0 = performance.now();
    const c = await EngineClient.start({ kind: 'tfjs', cwd: ROOT, trusted: true });
    const t1 = performance.now();
    await c.request(modelLoadRequest, { file: MODELS[0].file });
    const t2 = performance.now();
    await c.dispose();
    starts.push(t1 - t0);
    loads.push(t2 - t1);
  }
  return { startMs: median(starts), firstLoadMs: median(loads) };
}

async function main(): Promise<void> {
  const wasm = await measure('wasm');
  const cpu = await measure('cpu');
  const f = (n: number, d = 2): string => n.toFixed(d);
  console.log(
    '\nInstrumentation overhead (× plain predict / trainOnBatch of the same model, medians)',
  );
  console.log(
    'model      backend  predict ms  engine fwd  +hook every call  +hook throttled  inspect  profile fwd  trainOnBatch ms  profile train',
  );
  for (const r of [...wasm, ...cpu]) {
    console.log(
      `${r.model.padEnd(10)} ${r.backend.padEnd(8)} ${f(r.predictMs, 3).padStart(10)}  ${f(r.engineForwardRatio).padStart(10)}  ${f(r.hookedForwardRatio).padStart(16)}  ${f(r.throttledHookRatio).padStart(15)}  ${f(r.inspectRatio).padStart(7)}  ${f(r.profileForwardRatio).padStart(11)}  ${f(r.trainOnBatchMs, 3).padStart(15)}  ${f(r.profileTrainRatio).padStart(13)}`,
    );
  }
  console.log('\nwasm vs cpu backend (cpu time / wasm time)');
  console.log('model      predict  trainOnBatch');
  for (const w of wasm) {
    const c = cpu.find((r) => r.model === w.model)!;
    console.log(
      `${w.model.padEnd(10)} ${f(c.predictMs / w.predictMs, 1).padStart(7)}  ${f(c.trainOnBatchMs / w.trainOnBatchMs, 1).padStart(12)}`,
    );
  }
  const s = await startup();
  console.log(
    `\nengine start-up (spawn + initialize, median of ${STARTUP_REPS}): ${f(s.startMs, 0)} ms; first model/load (iris, esbuild): ${f(s.firstLoadMs, 0)} ms`,
  );
  console.log(
    '(+hook: a forward hook with stats + histogram on the first layer, at every call and at the default HOOK_STATS_INTERVAL_MS)',
  );
  console.log(
    '(profile ratios include tf.profile and per-layer timing; "profile train" is forward+backward without an optimizer step, against a full trainOnBatch)',
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
