// Not a test: what it costs to look at a saved TF.js model with Model Lens instead of loading it
// yourself. One run, ratios:
//   engine  = start the engine process + model/load + model/tree + model/summary + exit
//   plain   = a node process that imports tfjs, sets up wasm, loadGraphModel/loadLayersModel,
//             predict once, exit
// on a MobileNet v1 1.0/224 graph model (tfjs-converter layout, as MoveNet and MobileNet are
// published), the same network as a layers model.json, and the Teachable Machine image model.
//   OMP_NUM_THREADS=1 node --import tsx bench/tfjsModelsOverhead.ts
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { EngineClient } from '../src/client/engineClient';
import { modelLoadRequest, modelSummaryRequest, modelTreeRequest } from '../src/protocol/messages';
import { findWasmDir } from '../src/engine/tfjs/backend';
import { writeGraphModel } from '../test/graphModelWriter';

const ROOT = path.resolve(__dirname, '..');
const REPS = 3;
/** The engine's own limit is for a loaded box; a bench should never wait that long. */
const REQUEST_TIMEOUT_MS = 300_000;

// Fixtures are user model files that tsc does not compile; tsx loads them here.
const { mobilenetV1 } = require('../test/fixtures/tfjsModels/mobilenet') as {
  mobilenetV1: (alpha: number, size: number, classes: number) => tf.Sequential;
};
const teachable = require('../test/fixtures/tfjsModels/teachableMachine') as {
  model: () => tf.Sequential;
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function saveLayers(model: tf.LayersModel, dir: string): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(a.weightData as ArrayBuffer));
      const manifest = [{ paths: ['weights.bin'], weights: a.weightSpecs }];
      fs.writeFileSync(
        path.join(dir, 'model.json'),
        JSON.stringify({
          format: 'layers-model',
          modelTopology: a.modelTopology,
          weightsManifest: manifest,
        }),
      );
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return path.join(dir, 'model.json');
}

/** What a user would write: load the model from disk and predict once on the wasm backend. */
function plainScript(dir: string): string {
  const file = path.join(dir, 'plain.js');
  const nm = path.join(ROOT, 'node_modules');
  fs.writeFileSync(
    file,
    `
const fs = require('fs'), path = require('path');
const tf = require(${JSON.stringify(path.join(nm, '@tensorflow/tfjs'))});
const wasm = require(${JSON.stringify(path.join(nm, '@tensorflow/tfjs-backend-wasm'))});
(async () => {
  wasm.setWasmPaths(${JSON.stringify(findWasmDir() + path.sep)});
  if (!(await tf.setBackend('wasm'))) throw new Error('no wasm');
  const file = process.argv[2];
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  const g = json.weightsManifest[0];
  const shard = fs.readFileSync(path.join(path.dirname(file), g.paths[0]));
  const weightData = new Uint8Array(shard).buffer;
  const topology = json.modelTopology;
  const io = tf.io.fromMemory({ modelTopology: topology, weightSpecs: g.weights, weightData });
  const graph = json.format === 'graph-model';
  const model = graph ? await tf.loadGraphModel(io) : await tf.loadLayersModel(io);
  const shape = model.inputs[0].shape.map((d) => (d == null || d < 0 ? 1 : d));
  const y = model.predict(tf.randomNormal(shape));
  (Array.isArray(y) ? y[0] : y).dataSync();
})().catch((e) => { console.error(e); process.exit(1); });
`,
  );
  return file;
}

async function engineRun(file: string): Promise<{ ms: number; params: number }> {
  const t0 = performance.now();
  const client = await EngineClient.start({ kind: 'tfjs', cwd: path.dirname(file), trusted: true });
  let params = 0;
  try {
    const { modelId } = await client.request(
      modelLoadRequest,
      { file },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
    await client.request(modelTreeRequest, { modelId }, { timeoutMs: REQUEST_TIMEOUT_MS });
    params = (
      await client.request(modelSummaryRequest, { modelId }, { timeoutMs: REQUEST_TIMEOUT_MS })
    ).totals.params;
  } finally {
    await client.dispose();
  }
  return { ms: performance.now() - t0, params };
}

function plainRun(script: string, file: string): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [script, file], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  if (r.status !== 0) throw new Error(`plain load of ${file} failed: ${r.stderr}`);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-bench-models-'));
  try {
    const mobilenet = mobilenetV1(1.0, 224, 1000);
    const models = [
      {
        name: 'MobileNet v1 1.0/224 graph model',
        file: writeGraphModel(mobilenet, path.join(dir, 'graph')),
      },
      {
        name: 'MobileNet v1 1.0/224 layers model',
        file: await saveLayers(mobilenet, path.join(dir, 'layers')),
      },
      {
        name: 'Teachable Machine image (layers)',
        file: await saveLayers(teachable.model(), path.join(dir, 'tm')),
      },
    ];
    const script = plainScript(dir);
    console.log(
      'Engine start + load + tree + summary vs a plain load + predict, ' +
        `medians of ${REPS}, interleaved:`,
    );
    console.log(['model', 'params', 'plain ms', 'engine ms', 'ratio'].join('\t'));
    for (const m of models) {
      const plain: number[] = [];
      const engine: number[] = [];
      let params = 0;
      for (let i = 0; i < REPS; i++) {
        plain.push(plainRun(script, m.file));
        const r = await engineRun(m.file);
        params = r.params;
        engine.push(r.ms);
      }
      const p = median(plain);
      const e = median(engine);
      console.log(
        [
          m.name,
          params.toLocaleString('en-US'),
          p.toFixed(0),
          e.toFixed(0),
          (e / p).toFixed(2),
        ].join('\t'),
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
