// Every request and notification between a client (extension or CLI) and an engine.
// Method names are `<domain>/<verb>`. Engines in any language implement exactly these.
import { NotificationType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type {
  BufferInfo,
  CpuInfo,
  EngineInfo,
  GpuInfo,
  Histogram,
  HookKind,
  InputRequest,
  InputSpec,
  MemoryInfo,
  TorchInfo,
  ModelCandidate,
  ModuleNode,
  ModuleTiming,
  OpStat,
  ParameterInfo,
  SourceLocation,
  SummaryRow,
  SummaryTotals,
  TensorInfo,
  TensorStats,
  TrainProgressStats,
} from './types';
import type { EngineErrorData } from './errors';

// ---- engine ----------------------------------------------------------------------------------

export interface InitializeParams {
  protocolVersion: string;
  clientName: string;
  clientVersion: string;
  /** Engines refuse to run user code unless the workspace is trusted. */
  trusted: boolean;
  /** tfjs: `auto` | `tensorflow` | `wasm` | `cpu`; pytorch: `auto` | `cpu` | `cuda` | `cuda:N` | `mps`. */
  backend?: string;
  /** Folder user code runs in (its cwd, first entry of its import path). */
  cwd?: string;
}

export interface InitializeResult {
  protocolVersion: string;
  engine: EngineInfo;
}

/** Handshake: the engine reports kind, backend, versions and capabilities. */
export const initializeRequest = new RequestType<
  InitializeParams,
  InitializeResult,
  EngineErrorData
>('engine/initialize');

/** Ask the engine to release everything and exit after answering. */
export const shutdownRequest = new RequestType0<null, EngineErrorData>('engine/shutdown');

// ---- model -----------------------------------------------------------------------------------

export interface ModelLoadParams {
  file: string;
  /** Class, instance or export name; omitted when the file has one candidate. */
  model?: string;
  /** One shape per model input; omitted to use the file's example input or infer one. */
  inputShapes?: number[][];
  /**
   * Inputs with dtype and keyword name; wins over `inputShapes`. Names are keyword arguments of
   * forward() (PyTorch); a TF.js model's inputs are matched by its input names.
   */
  inputs?: InputRequest[];
  /**
   * "meta": build the model on torch's meta device (torch 2.x): shapes, parameters and mult-adds
   * with no weight memory. The PyTorch engine also falls back to it when the weights do not fit.
   */
  device?: 'meta';
}

export interface ModelLoadResult {
  /** Handle for the other model/ requests. Loading again replaces the previous model. */
  modelId: string;
  file: string;
  /** Name of the chosen candidate. */
  name: string;
  /** Class of the root module (Sequential, Net, LayersModel...). */
  type: string;
  candidates: ModelCandidate[];
  inputs: InputSpec[];
  /** Things the user should know that are not errors (e.g. an inferred input shape). */
  warnings: string[];
  location?: SourceLocation;
  /** Built on the meta device: no weights, no values (asked for, or the weights did not fit). */
  meta?: boolean;
}

/**
 * Import (never run as `__main__`) a model file and build the chosen model. Loading never runs
 * the model's forward: it rejects only inputs that contradict what the model declares (the number
 * of inputs, their rank). An input shape that does not fit a layer fails the first request that
 * runs the model (model/summary, model/forward, profile/run) with kind `shapeMismatch`, naming
 * the layer in `layer`; the loaded model stays usable with other shapes.
 */
export const modelLoadRequest = new RequestType<ModelLoadParams, ModelLoadResult, EngineErrorData>(
  'model/load',
);

export interface ModelRef {
  modelId: string;
}

export interface ModelTreeResult {
  /** Every module once, in named_modules order; shared instances once, their other paths in `aliases`. */
  modules: ModuleNode[];
  parameters: ParameterInfo[];
  buffers: BufferInfo[];
}

/** The module tree with parameters and buffers of a loaded model. */
export const modelTreeRequest = new RequestType<ModelRef, ModelTreeResult, EngineErrorData>(
  'model/tree',
);

export interface SummaryParams extends ModelRef {
  /** Overrides the load-time input shapes for this summary. */
  inputShapes?: number[][];
  /** Overrides the load-time inputs with dtype and keyword name (both engines). */
  inputs?: InputRequest[];
}

export interface SummaryResult {
  rows: SummaryRow[];
  totals: SummaryTotals;
  inputs: InputSpec[];
  warnings: string[];
}

/** torchinfo-style summary from one forward pass without gradients. */
export const modelSummaryRequest = new RequestType<SummaryParams, SummaryResult, EngineErrorData>(
  'model/summary',
);

export interface ForwardParams extends ModelRef {
  steps?: number;
  /** Also run backward on the sum of the outputs, so backward hooks fire. */
  backward?: boolean;
}

export interface ForwardResult {
  steps: number;
  outputShapes: number[][];
  stepMs: number;
}

/** Run the model on its example input (hooks fire); nothing is recorded unless hooks are attached. */
export const modelForwardRequest = new RequestType<ForwardParams, ForwardResult, EngineErrorData>(
  'model/forward',
);

// ---- tensors ---------------------------------------------------------------------------------

export type TensorTarget =
  | { kind: 'parameter' | 'buffer'; name: string }
  | { kind: 'output'; path: string; index?: number }
  | { kind: 'input'; index: number };

export interface TensorInspectParams extends ModelRef {
  target: TensorTarget;
  /** Compute value statistics and a histogram too (reads the whole tensor). */
  stats?: boolean;
  histogramBins?: number;
}

export interface TensorInspectResult {
  /** `fc1.weight`, `output:fc1`, `input:0`. */
  name: string;
  tensor: TensorInfo;
  stats?: TensorStats;
  histogram?: Histogram;
}

/** Shape, strides, contiguity and why, storage sharing and view() safety of one tensor. */
export const tensorInspectRequest = new RequestType<
  TensorInspectParams,
  TensorInspectResult,
  EngineErrorData
>('tensor/inspect');

// ---- profiling -------------------------------------------------------------------------------

export interface ProfileParams extends ModelRef {
  /** Timed steps after warm-up. */
  steps?: number;
  warmup?: number;
  /** forward: inference only; train: forward + backward (+ optimizer step where the engine has one). */
  mode?: 'forward' | 'train';
  /** Absolute path; the engine writes a Chrome trace there. */
  traceFile?: string;
}

export interface ProfileResult {
  ops: OpStat[];
  modules: ModuleTiming[];
  /** Median wall time of one instrumented step. */
  stepMs: number;
  steps: number;
  /** What did the timing: `tf.profile`, `TorchDispatchMode`, `torch.profiler`, `cuda events`. */
  method: string;
  traceFile?: string;
  warnings: string[];
}

/** Per-op and per-module timings over a few steps. */
export const profileRunRequest = new RequestType<ProfileParams, ProfileResult, EngineErrorData>(
  'profile/run',
);

// ---- hooks -----------------------------------------------------------------------------------

export interface HookAttachParams {
  /** Omitted for the module being trained by the active run. */
  modelId?: string;
  path: string;
  kind: HookKind;
  /** Minimum time between two events of this hook (engine default HOOK_STATS_INTERVAL_MS). */
  intervalMs?: number;
  histogramBins?: number;
  /** Distributed runs: attach on this rank only; omitted, on every rank (one hook id). */
  rank?: number;
}

export interface HookAttachResult {
  hookId: string;
  /** Distributed runs: the ranks the hook is attached on. */
  ranks?: number[];
}

/**
 * Attach a hook on a module path; events stream as `hook/event`. Takes effect at the next call.
 * The root ("") only where `capabilities.rootHooks`; elsewhere it fails with kind `unsupported`.
 */
export const hookAttachRequest = new RequestType<
  HookAttachParams,
  HookAttachResult,
  EngineErrorData
>('hook/attach');

export interface HookDetachParams {
  /** One hook; omitted with `all` to remove every hook. */
  hookId?: string;
  all?: boolean;
}

export interface HookDetachResult {
  detached: number;
  /** Hooks still attached anywhere in the engine after this (0 after `all`). */
  remaining: number;
}

/** Remove hooks at once; no event for them is sent after the response. */
export const hookDetachRequest = new RequestType<
  HookDetachParams,
  HookDetachResult,
  EngineErrorData
>('hook/detach');

export interface HookEvent {
  hookId: string;
  path: string;
  kind: HookKind;
  /** Calls of this module seen since the hook was attached (events are throttled, so gaps are normal). */
  call: number;
  /** Training step when a run is active. */
  step?: number;
  /** Distributed runs: the rank whose module this is. */
  rank?: number;
  /** ms since the Unix epoch. */
  time: number;
  /** Which output (or grad) of a tuple this is; 0 for single tensors. */
  index: number;
  tensor: Pick<TensorInfo, 'shape' | 'dtype' | 'device' | 'stride' | 'contiguous'>;
  stats: TensorStats;
  histogram?: Histogram;
  /** Where in the user's code the module was called from. */
  source?: SourceLocation;
}

/** Statistics of a hooked tensor, throttled per hook. */
export const hookEventNotification = new NotificationType<HookEvent>('hook/event');

// ---- training --------------------------------------------------------------------------------

export interface TrainStartParams {
  file: string;
  /** tfjs: export name of the model; pytorch script mode ignores it. */
  model?: string;
  /** `sys.argv[1:]` for a script. */
  args?: string[];
  /** tfjs: override epochs of the `train` export / fit. */
  epochs?: number;
  /**
   * Send `train/histograms` after every N-th optimizer step and at the end; 0 disables
   * (default DEFAULT_HISTOGRAM_EVERY_STEPS). Only engines with `capabilities.histograms` send them.
   */
  histogramEverySteps?: number;
  /** ...but no sooner than this after the previous one (DEFAULT_HISTOGRAM_MIN_INTERVAL_MS), so tiny fast models stay cheap. */
  histogramMinIntervalMs?: number;
  /** pytorch: run the script on every rank of a torch.distributed.run job instead of once. */
  distributed?: DistributedLaunch;
}

/** How torch.distributed.run (`torchrun`) launches a distributed run. */
export interface DistributedLaunch {
  /** `--nproc_per_node`. */
  nprocPerNode?: number;
  /** Any other launcher options, as typed after `torchrun` (`--nnodes 2 --rdzv-endpoint ...`). */
  launcherArgs?: string[];
}

/** One rank's line in a distributed run's progress. */
export interface RankProgress {
  rank: number;
  state: TrainProgress['state'];
  step: number;
  /** The rank's latest loss. */
  loss: number | null;
  stepMs?: number;
}

/** The loss over ranks at the latest step every rank reported a loss for. */
export interface LossSpread {
  step: number;
  min: number;
  max: number;
}

export interface TrainStartResult {
  runId: string;
}

/** Run the file's training (script as `__main__`, or the tfjs `train` export) with progress. */
export const trainStartRequest = new RequestType<
  TrainStartParams,
  TrainStartResult,
  EngineErrorData
>('train/start');

export interface TrainStopParams {
  runId: string;
}

export interface TrainStopResult {
  stopped: boolean;
}

/**
 * Stop a run. `stopped` is true when this request ended it, false when it had already ended; a
 * run that has not stopped after TRAIN_STOP_TIMEOUT_MS fails the request with kind `timeout`.
 */
export const trainStopRequest = new RequestType<TrainStopParams, TrainStopResult, EngineErrorData>(
  'train/stop',
);

export interface TrainProgress extends TrainProgressStats {
  runId: string;
  state: 'starting' | 'running' | 'done' | 'stopped' | 'failed';
  /** Loss values since the previous notification: [step, value] pairs (sampled). */
  loss: [number, number][];
  /** Validation loss since the previous notification, [step, value], when the run reports one. */
  evalLoss?: [number, number][];
  lr?: number | null;
  /** Training mode and grad state as last seen. */
  training?: boolean;
  gradEnabled?: boolean;
  /** Set once the model the script trains is first called. */
  modelId?: string;
  error?: EngineErrorData & { message: string };
  warnings?: string[];
  /** Distributed runs: step, loss etc. above are rank 0's; every rank's are here. */
  ranks?: RankProgress[];
  worldSize?: number | null;
  lossSpread?: LossSpread;
}

/** Throttled progress of a training run. */
export const trainProgressNotification = new NotificationType<TrainProgress>('train/progress');

export interface ValueSummary {
  /** Exact, over every value. */
  stats: TensorStats;
  histogram: Histogram;
  /** Set when the histogram was counted over this many evenly spaced values and scaled to `stats.numel`. */
  sampled?: number;
}

export interface ParameterHistogram {
  /** Dotted name as named_parameters() gives it: `fc1.weight`. */
  name: string;
  shape: number[];
  weight: ValueSummary;
  /** Absent when the parameter has no gradient at that step. */
  grad?: ValueSummary;
}

export interface TrainHistograms {
  runId: string;
  /** Optimizer steps done when they were taken (right after that step). */
  step: number;
  params: ParameterHistogram[];
  /** Trainable parameters left out by the per-notification cap. */
  omitted?: number;
}

/** Weight and gradient statistics + histograms of the trained model's parameters, every N steps and at the end. */
export const trainHistogramsNotification = new NotificationType<TrainHistograms>(
  'train/histograms',
);

export interface SyncPoint {
  /** What forced the host to wait for the device: `.item()`, `.cpu()`, `.tolist()`, `.numpy()`, `print(tensor)`... */
  kind: 'item' | 'cpu' | 'tolist' | 'numpy' | 'print' | 'other';
  /** The user's line that caused it. */
  source?: SourceLocation;
  count: number;
  /** Time spent waiting in it (0 on CPU, where no sync is needed). */
  totalMs: number;
}

export interface TransferStats {
  count: number;
  bytes: number;
}

/** Per-step averages, in ms. */
export interface StepBreakdown {
  dataMs: number;
  forwardMs: number;
  backwardMs: number;
  optimizerMs: number;
  otherMs: number;
}

export interface DiagnosisFinding {
  severity: 'info' | 'warning' | 'error';
  /** A plain sentence with numbers: "`loss.item()` at train.py:57 forces a device sync every step: 18% of step time". */
  message: string;
  source?: SourceLocation;
}

/** Measured facts about where a training run's time goes. */
export interface TrainDiagnosis {
  runId: string;
  steps: number;
  device: string;
  batchSize: number | null;
  stepMs: number;
  opsPerStep: number | null;
  avgOpUs: number | null;
  hostToDevice: TransferStats;
  deviceToHost: TransferStats;
  syncs: SyncPoint[];
  breakdown: StepBreakdown | null;
  findings: DiagnosisFinding[];
  /** Distributed runs: the figures above are rank 0's; every rank's are here. */
  ranks?: RankDiagnosis[];
}

/** Time one rank spent in one collective at one source line. */
export interface CollectiveSite {
  /** The torch.distributed op: `all_reduce` (DDP's gradient buckets included), `broadcast`, `barrier`, ... */
  op: string;
  count: number;
  /** From call to completion, over the whole run. */
  totalMs: number;
  /** Per step, after the first step. */
  msPerStep: number;
  /** The user's line (for DDP's gradient all-reduce, the `backward()` call). */
  source?: SourceLocation;
}

export interface RankDiagnosis {
  rank: number;
  state: TrainProgress['state'];
  steps: number;
  stepMs: number | null;
  breakdown: StepBreakdown | null;
  /** Time per step in collectives (all sites), after the first step. */
  waitMsPerStep: number;
  collectives: CollectiveSite[];
  host?: string;
  pid?: number;
  localRank?: number;
  groupRank?: number;
  /** Where the rank uses CUDA: its device and memory (torch's allocator). */
  gpu?: RankGpu;
}

export interface RankGpu {
  /** torch's name for it: `cuda:0` is the first visible device. */
  device: string;
  /** nvidia-smi's index, through CUDA_VISIBLE_DEVICES (absent when that lists UUIDs). */
  index?: number;
  /** CUDA_VISIBLE_DEVICES's entry when it is a GPU or MIG UUID. */
  uuid?: string;
  allocatedBytes: number;
  peakBytes: number;
}

/** Diagnosis of a run so far (also sent as `train/diagnosis` when the run ends). */
export const trainDiagnoseRequest = new RequestType<
  TrainStopParams,
  TrainDiagnosis,
  EngineErrorData
>('train/diagnose');

/** Diagnosis snapshot, sent periodically during a run and once at its end. */
export const trainDiagnosisNotification = new NotificationType<TrainDiagnosis>('train/diagnosis');

export interface OutputEvent {
  runId?: string;
  /** Distributed runs: the rank that printed it. */
  rank?: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

/** What user code printed (the engine keeps its own stdout for the protocol). */
export const outputNotification = new NotificationType<OutputEvent>('output');

// ---- system ----------------------------------------------------------------------------------

export interface SystemInfoResult {
  cpu: CpuInfo | null;
  gpus: GpuInfo[];
  /** Why `gpus` is empty (no driver, nvidia-smi failing), when it is. */
  gpuError?: string;
  memory: MemoryInfo;
  /** PyTorch engine: torch's own view of CUDA (version, build, is_available, devices). */
  torch?: TorchInfo;
}

/** Facts about the engine's machine and its own memory use. */
export const systemInfoRequest = new RequestType0<SystemInfoResult, EngineErrorData>('system/info');

// ---- log -------------------------------------------------------------------------------------

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface LogMessage {
  level: LogLevel;
  message: string;
  source?: SourceLocation;
}

/** Engine log line for the output channel. */
export const logNotification = new NotificationType<LogMessage>('log');
