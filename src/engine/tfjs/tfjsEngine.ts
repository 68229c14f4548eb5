// Every protocol request of the TF.js engine, independent of the transport (main.ts wires it to
// JSON-RPC over stdio; tests and benches can drive it in-process).
import * as os from 'node:os';
import * as path from 'node:path';
import { collectSystemReport } from '../../system/systemReport';
import { performance } from 'node:perf_hooks';
import type * as tfTypes from '@tensorflow/tfjs';
import type {
  ForwardParams,
  ForwardResult,
  HookAttachParams,
  HookAttachResult,
  HookDetachParams,
  HookDetachResult,
  HookEvent,
  InitializeParams,
  InitializeResult,
  ModelLoadParams,
  ModelLoadResult,
  ModelRef,
  ModelTreeResult,
  ProfileParams,
  ProfileResult,
  SummaryParams,
  SummaryResult,
  SystemInfoResult,
  TensorInspectParams,
  TensorInspectResult,
  TrainDiagnosis,
  TrainProgress,
  TrainStartParams,
  TrainStartResult,
} from '../../protocol/messages';
import { TRAIN_STOP_TIMEOUT_MS } from '../../protocol/defaults';
import { PROTOCOL_VERSION } from '../../protocol/types';
import type { EngineInfo, InputSpec } from '../../protocol/types';
import { getTf, selectBackend } from './backend';
import type { Tf } from './backend';
import { addCallListener, tensorsOf } from './callInterceptor';
import { fail } from './engineError';
import { HookManager } from './hooks';
import { askedInputs, checkDtype, describeIds, idRanges } from './inputSynthesis';
import { buildLayerIndex, classNameOf, parameterInfos } from './layerTree';
import { requireWeights } from './modelJson';
import { loadModelFile } from './modelLoader';
import type { LoadedGraph, LoadedModel } from './modelLoader';
import { forwardBackward, makeInputs, predict, predictNamingLayer } from './modelSession';
import type { ModelSession } from './modelSession';
import { graphInputs, graphParameterInfos, newGraphSession } from './graphModel';
import type { GraphSession } from './graphModel';
import {
  attachGraphHook,
  graphForward,
  graphInspect,
  graphProfile,
  graphSummary,
  graphUnsupported,
} from './graphRun';
import {
  PROFILE_DEFAULT_STEPS,
  PROFILE_DEFAULT_WARMUP,
  PROFILE_MAX_STEPS,
  runProfile,
} from './profiler';
import { runSummary } from './summary';
import { tensorInfo, tensorStats } from './tensorFacts';
import { startTrainRun, stopTrainRun } from './training';
import { readSourceLines } from './userCode';
import type { TrainRun } from './training';

export const ENGINE_VERSION = '0.1.0';
export const FORWARD_MAX_STEPS = 1000;
const WEIGHTS_MISSING_SUMMARY =
  'Weights are missing: shapes and counts come from the topology; output values mean nothing.';

export interface EngineEvents {
  hookEvent(e: HookEvent): void;
  trainProgress(p: TrainProgress): void;
  /** The end-of-run diagnosis, sent just before the final progress. */
  trainDiagnosis?(d: TrainDiagnosis): void;
}

export class TfjsEngine {
  private trusted = false;
  private info: EngineInfo | null = null;
  private readonly models = new Map<string, ModelSession>();
  private readonly graphs = new Map<string, GraphSession>();
  private readonly runs = new Map<string, TrainRun>();
  private activeRun: TrainRun | null = null;
  private nextModel = 1;
  private nextRun = 1;
  readonly hooks: HookManager;

  constructor(private readonly events: EngineEvents) {
    this.hooks = new HookManager(
      () => getTf(),
      (e) => this.events.hookEvent(e),
      () => this.activeRun?.step,
    );
  }

  get tf(): Tf {
    return getTf();
  }

  /** The run currently training, so output can be tagged with its runId. */
  get activeRunId(): string | undefined {
    return this.activeRun?.id;
  }

  async initialize(p: InitializeParams): Promise<InitializeResult> {
    // The handshake itself runs no user code, so an untrusted workspace still gets engine facts;
    // every request that would run the user's file checks `trusted` instead.
    this.trusted = p.trusted;
    const major = (v: string): string => v.split('.')[0];
    if (p.protocolVersion && major(p.protocolVersion) !== major(PROTOCOL_VERSION)) {
      fail(
        'unsupported',
        `Protocol ${p.protocolVersion} is not compatible with this engine (${PROTOCOL_VERSION})`,
      );
    }
    if (p.cwd) process.chdir(p.cwd);
    let choice;
    try {
      choice = await selectBackend(p.backend ?? 'auto');
    } catch (err) {
      return fail('runtimeMissing', err instanceof Error ? err.message : String(err));
    }
    const tf = this.tf;
    this.info = {
      kind: 'tfjs',
      version: ENGINE_VERSION,
      runtimes: [
        { name: 'node', version: process.versions.node },
        { name: '@tensorflow/tfjs', version: tf.version?.tfjs ?? 'unknown' },
      ],
      backend: choice.label,
      backendNotes: choice.notes,
      device: choice.device,
      capabilities: {
        tree: true,
        summary: true,
        tensorInspect: true,
        profile: true,
        trace: true,
        hooks: ['forward', 'forwardPre', 'backward'],
        rootHooks: false,
        train: true,
        histograms: false,
        strides: 'rowMajor',
        backwardTimings: true,
      },
      pid: process.pid,
      executable: process.execPath,
    };
    return { protocolVersion: PROTOCOL_VERSION, engine: this.info };
  }

  private get device(): string {
    return this.info?.device ?? 'cpu';
  }

  private requireInit(): void {
    if (!this.info) fail('badRequest', 'engine/initialize must come first');
  }

  private session(ref: { modelId?: string }): ModelSession {
    this.requireInit();
    const id = ref.modelId;
    const s = id ? this.models.get(id) : this.activeRun?.session;
    if (!s) {
      fail(
        'notLoaded',
        id ? `No model '${id}' is loaded` : 'No modelId given and no training run is active',
        {
          candidates: [...this.models.keys()],
        },
      );
    }
    return s;
  }

  private async makeSession(
    file: string,
    model: string | undefined,
    params: object = {},
  ): Promise<
    { graph: GraphSession; loaded: LoadedGraph } | { s: ModelSession; loaded: LoadedModel }
  > {
    const loaded = await loadModelFile(this.tf, file, model, params);
    const id = `m${this.nextModel++}`;
    if (loaded.kind === 'graph') {
      const names = loaded.model.inputs.map((i) => i.name);
      const { shapes, dtypes } = askedInputs(params, names, loaded.file);
      return { graph: newGraphSession(id, loaded, this.device, shapes, dtypes), loaded };
    }
    const s: ModelSession = {
      id,
      file: loaded.file,
      name: loaded.name,
      type: classNameOf(loaded.model as unknown as tfTypes.layers.Layer),
      model: loaded.model,
      index: buildLayerIndex(loaded.model),
      inputs: loaded.inputs,
      idRanges: idRanges(loaded.model),
      example: loaded.example,
      exports: loaded.exports,
      candidates: loaded.candidates,
      location: loaded.location,
      device: this.device,
      weightsMissing: loaded.weightsMissing,
    };
    if (s.location) s.index.modules[0].source = { creation: s.location };
    addCreationLines(s);
    return { s, loaded };
  }

  /** The graph-model session `ref` names, if it names one. */
  private graph(ref: { modelId?: string }): GraphSession | undefined {
    this.requireInit();
    return ref.modelId ? this.graphs.get(ref.modelId) : undefined;
  }

  /** "Loading again replaces the previous model" (a model being trained stays). */
  private replaceModels(): void {
    for (const old of [...this.models.values()]) {
      if (this.activeRun?.session === old) continue;
      this.hooks.detachModel(old.id);
      this.models.delete(old.id);
    }
    for (const old of [...this.graphs.values()]) {
      this.hooks.detachModel(old.id);
      old.model.dispose();
      this.graphs.delete(old.id);
    }
  }

  private requireTrust(): void {
    if (!this.trusted) {
      fail('untrusted', 'The workspace is not trusted: Model Lens runs no model code in it', {
        hint: 'Trust the workspace (Workspaces: Manage Workspace Trust) to load models.',
      });
    }
  }

  async loadModel(p: ModelLoadParams): Promise<ModelLoadResult> {
    this.requireTrust();
    this.requireInit();
    // Loading never runs the model (src/protocol/messages.ts): a shape that does not fit a layer
    // fails the first request that runs it, naming the layer.
    const made = await this.makeSession(p.file, p.model, p);
    if ('graph' in made) {
      const g = made.graph;
      this.replaceModels();
      this.graphs.set(g.id, g);
      const location = { file: g.file, line: 1 };
      return {
        modelId: g.id,
        file: g.file,
        name: g.name,
        type: g.type,
        candidates: [{ name: path.basename(g.file), kind: 'file', location }],
        inputs: g.inputs,
        warnings: made.loaded.warnings,
      };
    }
    const { s, loaded } = made;
    this.replaceModels();
    this.models.set(s.id, s);
    return {
      modelId: s.id,
      file: s.file,
      name: s.name,
      type: s.type,
      candidates: s.candidates,
      inputs: s.inputs,
      warnings: loaded.warnings,
      location: s.location,
    };
  }

  tree(p: ModelRef): ModelTreeResult {
    const g = this.graph(p);
    if (g) return { modules: g.index.modules, ...graphParameterInfos(g) };
    const s = this.session(p);
    return { modules: s.index.modules, ...parameterInfos(s.index, s.device) };
  }

  async summary(p: SummaryParams): Promise<SummaryResult> {
    const g = this.graph(p);
    if (g) {
      const { shapes, dtypes } = askedInputs(
        p,
        g.model.inputs.map((i) => i.name),
        g.file,
      );
      const asked = shapes ?? g.inputs.map((i) => i.shape);
      const specs = shapes || dtypes ? graphInputs(g.model, asked, dtypes) : g.inputs;
      return graphSummary(this.tf, g, specs);
    }
    const s = this.session(p);
    const specs = summarySpecs(s, p);
    let result;
    try {
      result = runSummary(this.tf, s, specs);
    } catch (err) {
      // Run once more with the layers named, so a shape that does not fit says where.
      this.tf.tidy(() => void predictNamingLayer(s, makeInputs(this.tf, s, specs)));
      throw err;
    }
    const { rows, totals } = result;
    const warnings = s.weightsMissing.length ? [WEIGHTS_MISSING_SUMMARY] : [];
    return { rows, totals, inputs: specs, warnings };
  }

  async forward(p: ForwardParams): Promise<ForwardResult> {
    const steps = Math.max(1, Math.min(FORWARD_MAX_STEPS, p.steps ?? 1));
    const g = this.graph(p);
    if (g) {
      if (p.backward) graphUnsupported('A backward pass', g);
      return { steps, ...(await graphForward(this.tf, g, steps)) };
    }
    const s = this.session(p);
    requireWeights(s, 'Running the model');
    let outputShapes: number[][] = [];
    const start = performance.now();
    for (let i = 0; i < steps; i++) {
      this.tf.tidy(() => {
        const xs = makeInputs(this.tf, s);
        if (p.backward)
          forwardBackward(this.tf, s, xs, (outs) => (outputShapes = outs.map((o) => [...o.shape])));
        else outputShapes = predictNamingLayer(s, xs).map((t) => [...t.shape]);
      });
    }
    return { steps, outputShapes, stepMs: (performance.now() - start) / steps };
  }

  async inspect(p: TensorInspectParams): Promise<TensorInspectResult> {
    const g = this.graph(p);
    if (g) return graphInspect(this.tf, g, p);
    const s = this.session(p);
    const bins = p.histogramBins;
    const t = p.target;
    if (t.kind === 'parameter' || t.kind === 'buffer') {
      const w = s.index.weightByName.get(t.name);
      if (!w || w.isBuffer !== (t.kind === 'buffer')) {
        fail('unknownPath', `No ${t.kind} named '${t.name}'`, {
          candidates: s.index.weights
            .filter((e) => e.isBuffer === (t.kind === 'buffer'))
            .map((e) => e.name),
        });
      }
      if (p.stats) requireWeights(s, 'Reading weight values');
      const v = w.variable.read();
      const info = tensorInfo(v.shape, v.dtype, s.device, v, w.isBuffer ? false : w.requiresGrad);
      return { name: w.name, tensor: info, ...(p.stats ? tensorStats(v, bins) : {}) };
    }
    if (t.kind === 'input') {
      const spec = s.inputs[t.index];
      if (!spec)
        fail('unknownPath', `The model has ${s.inputs.length} input(s); no input ${t.index}`);
      let res: TensorInspectResult | null = null;
      this.tf.tidy(() => {
        const x = makeInputs(this.tf, s)[t.index];
        res = {
          name: `input:${t.index}`,
          tensor: tensorInfo(x.shape, x.dtype, s.device, x),
          ...(p.stats ? tensorStats(x, bins) : {}),
        };
      });
      return res!;
    }
    const out = t as { kind: 'output'; path: string; index?: number };
    requireWeights(s, 'Reading outputs');
    const layer = s.index.layerAt.get(out.path);
    if (!layer)
      fail('unknownPath', `No module at path '${out.path}'`, {
        layer: out.path,
        candidates: s.index.modules.map((m) => m.path),
      });
    const isRoot = layer === (s.model as unknown as tfTypes.layers.Layer);
    let result: TensorInspectResult | null = null;
    const pick = (outs: tfTypes.Tensor[]): void => {
      const o = outs[out.index ?? 0];
      if (!o) return;
      result = {
        name: `output:${out.path}`,
        tensor: tensorInfo(o.shape, o.dtype, s.device, o),
        ...(p.stats ? tensorStats(o, bins) : {}),
      };
    };
    this.tf.tidy(() => {
      if (isRoot) {
        pick(predict(s, makeInputs(this.tf, s)));
        return;
      }
      // Read the layer's output inside its call: predict frees intermediates before returning.
      const remove = addCallListener(layer, { after: (_l, _i, _k, o) => pick(tensorsOf(o)) });
      try {
        predict(s, makeInputs(this.tf, s));
      } finally {
        remove();
      }
    });
    if (!result)
      fail(
        'unknownPath',
        `Module '${out.path}' produced no output ${out.index ?? 0} (was it called?)`,
        { layer: out.path },
      );
    return result;
  }

  profile(p: ProfileParams): Promise<ProfileResult> {
    const g = this.graph(p);
    if (g) {
      const steps = Math.max(1, Math.min(PROFILE_MAX_STEPS, p.steps ?? PROFILE_DEFAULT_STEPS));
      return graphProfile(this.tf, g, p, steps, Math.max(0, p.warmup ?? PROFILE_DEFAULT_WARMUP));
    }
    const s = this.session(p);
    requireWeights(s, 'Profiling');
    return runProfile(this.tf, s, p);
  }

  attachHook(p: HookAttachParams): HookAttachResult {
    const g = this.graph(p);
    if (g) return { hookId: attachGraphHook(this.hooks, g, p) };
    const s = this.session(p);
    return { hookId: this.hooks.attach(s, p) };
  }

  detachHook(p: HookDetachParams): HookDetachResult {
    return this.hooks.detach(p);
  }

  async startTrain(p: TrainStartParams): Promise<TrainStartResult> {
    this.requireTrust();
    this.requireInit();
    if (this.activeRun)
      fail('badRequest', `Run ${this.activeRun.id} is still training; stop it first`);
    const made = await this.makeSession(p.file, p.model);
    if ('graph' in made) return graphUnsupported('Training', made.graph);
    const { s } = made;
    this.models.set(s.id, s);
    const id = `r${this.nextRun++}`;
    const run = startTrainRun(
      this.tf,
      id,
      s,
      p,
      (e) => this.events.trainProgress(e),
      (r) => (this.activeRun = r),
      (d) => this.events.trainDiagnosis?.(d),
    );
    this.runs.set(id, run);
    return { runId: id };
  }

  async stopTrain(p: { runId: string }): Promise<{ stopped: boolean }> {
    const run = this.runs.get(p.runId);
    if (!run)
      fail('notLoaded', `No training run '${p.runId}'`, { candidates: [...this.runs.keys()] });
    // `stopped` says whether this request ended the run (src/protocol/messages.ts trainStopRequest).
    if (run.state === 'done' || run.state === 'failed' || run.state === 'stopped')
      return { stopped: false };
    if (!(await stopTrainRun(run))) {
      fail('timeout', `Run ${run.id} did not stop within ${TRAIN_STOP_TIMEOUT_MS / 1000} s`);
    }
    return { stopped: true };
  }

  diagnose(p: { runId: string }): TrainDiagnosis {
    const run = this.runs.get(p.runId);
    if (!run) {
      fail('notLoaded', `No training run '${p.runId}' to diagnose`, {
        candidates: [...this.runs.keys()],
        hint: 'Use the runId that train/start returned.',
      });
    }
    return run.diagnose();
  }

  /** CPU and GPU facts come from the same code as `model-lens system`; memory is this process's. */
  async systemInfo(): Promise<SystemInfoResult> {
    let tfMem: tfTypes.MemoryInfo | null = null;
    try {
      tfMem = this.info ? this.tf.memory() : null;
    } catch {
      tfMem = null;
    }
    const report = await collectSystemReport();
    const logical = report.cpu.logicalCores || 1;
    return {
      cpu: { ...report.cpu, loadPct: Math.min(100, (os.loadavg()[0] / logical) * 100) },
      gpus: report.gpus,
      ...(report.gpuError ? { gpuError: report.gpuError } : {}),
      memory: {
        rssBytes: process.memoryUsage().rss,
        ...(tfMem ? { tfjsBytes: tfMem.numBytes, tfjsTensors: tfMem.numTensors } : {}),
      },
    };
  }

  async shutdown(): Promise<void> {
    for (const run of this.runs.values()) {
      if (run.state === 'running' || run.state === 'starting') await stopTrainRun(run);
    }
    this.hooks.detach({ all: true });
    this.models.clear();
    for (const g of this.graphs.values()) g.model.dispose();
    this.graphs.clear();
  }
}

/** The load-time inputs, with this request's shapes and dtypes where it gives them. */
function summarySpecs(s: ModelSession, p: SummaryParams): InputSpec[] {
  const asked = askedInputs(p, s.model.inputNames, s.file);
  if (!asked.shapes && !asked.dtypes) return s.inputs;
  const n = asked.shapes?.length ?? asked.dtypes?.length ?? 0;
  if (n !== s.inputs.length) {
    fail('shapeMismatch', `The model has ${s.inputs.length} input(s) but ${n} were given`, {
      expected: `${s.inputs.length} inputs`,
      got: `${n}`,
    });
  }
  return s.inputs.map((spec, i) => {
    const dtype = asked.dtypes?.[i];
    const next: InputSpec = {
      shape: asked.shapes?.[i] ?? spec.shape,
      dtype: dtype ? checkDtype(dtype, `input ${i}`) : spec.dtype,
      source: 'request',
    };
    return describeIds(next, s.idRanges[i]);
  });
}

/**
 * TF.js layers carry no creation site; a layer given an explicit name is found by that name
 * quoted in the model file, which is where it was created in practice.
 */
function addCreationLines(s: ModelSession): void {
  const lines = readSourceLines(s.file);
  if (!lines.length) return;
  for (const node of s.index.modules) {
    if (!node.name) continue;
    const quoted = [`'${node.name}'`, `"${node.name}"`, `\`${node.name}\``];
    const i = lines.findIndex((l) => quoted.some((q) => l.includes(q)));
    if (i >= 0)
      node.source = {
        ...node.source,
        creation: { file: s.file, line: i + 1, column: lines[i].search(/\S/) + 1 },
      };
  }
}
