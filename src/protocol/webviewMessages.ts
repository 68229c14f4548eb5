// Messages between the extension and its webview panels. Both sides import these types; the
// extension still validates every message a webview sends (src/extension/webviewMessages.ts),
// because a webview renders text that came from user code.
import type {
  DiagnosisFinding,
  ParameterHistogram,
  ProfileResult,
  StepBreakdown,
  SummaryResult,
  TensorInspectResult,
  TrainProgress,
} from './messages';
import type {
  CpuInfo,
  EngineKind,
  GpuInfo,
  Histogram,
  HookKind,
  InputSpec,
  TensorStats,
} from './types';

/** What a webview may ask of the extension. None carries a command, a file path or code. */
export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'restartEngine' }
  | { type: 'showLog' }
  | { type: 'copySummary' }
  | { type: 'revealModule'; path: string }
  | { type: 'exportTrace' }
  | { type: 'openOpSource'; index: number }
  | { type: 'detachHook'; hookId: string }
  | { type: 'stopTraining' };

/** The six Model Lens panels; each has one webview bundle, `dist/webview/<kind>Panel.js`. */
export type PanelKind = 'summary' | 'tensor' | 'ops' | 'hooks' | 'training' | 'system';

/** What each panel draws: the extension posts it whole, the webview renders it. */
export interface PanelStates {
  summary: SummaryPanelState;
  tensor: TensorPanelState;
  ops: OpsPanelState;
  hooks: HooksPanelState;
  training: TrainingPanelState;
  system: SystemPanelState;
}

/** Panels that also take deltas (appended samples, changed hooks). */
export interface PanelPatches {
  hooks: { hooks: HookView[] };
  system: SystemPanelPatch;
}

export interface SummaryPanelState {
  modelName: string;
  file: string;
  kind: EngineKind;
  inputs: InputSpec[];
  /** Absent until the summary's forward pass has run (or when it failed). */
  summary?: SummaryResult;
}

export type TensorPanelState = TensorInspectResult & { modelName: string };

export interface OpsPanelState {
  modelName: string;
  kind: EngineKind;
  profile: ProfileResult;
  canExport: boolean;
}

export interface HooksPanelState {
  modelName?: string;
  hooks: HookView[];
}

/** What the extension posts to a webview: a whole state, a patch of it, or the engine's health. */
export type HostMessage =
  | { type: 'state'; state: unknown }
  | { type: 'patch'; state: unknown }
  | { type: 'engine'; crashed: boolean; message?: string };

// ---- System panel state (src/extension/systemPanel.ts → webview/systemPanel.ts) -----------------

/** One GPU's moving figures at one tick: what the chart draws. */
export interface GpuSample {
  index: number;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number | null;
  utilizationPct: number | null;
}

export interface SystemSample {
  /** Increases by one per sample, so a webview can tell which samples it already has. */
  seq: number;
  /** Milliseconds since the epoch. */
  time: number;
  gpus: GpuSample[];
}

export interface EngineProcess {
  kind: EngineKind;
  pid: number;
  /** Default device the engine reported (`cuda:0`, `cpu`, `wasm`). */
  device?: string;
}

/** The memory part of the System panel: three figures with their explanations, or why not. */
export interface MemorySection {
  /** Plain sentence when there is nothing to break down. */
  message?: string;
  figures?: Array<{ key: string; label: string; bytes: number | null; explanation: string }>;
  /** nvidia-smi's figure for the engine's process alone, when known. */
  processBytes?: number | null;
  gpuIndex?: number;
  engine?: EngineProcess;
}

/** A GPU as the System panel lists it: the protocol's facts plus the architecture name. */
export interface GpuRow extends GpuInfo {
  architecture: string | null;
}

/** Everything the System webview draws. */
export interface SystemPanelState {
  cpu: CpuInfo | null;
  cpuError?: string;
  gpuStatus: { state: string; reason?: string };
  gpus: GpuRow[];
  samples: SystemSample[];
  historyCapacity: number;
  memory: MemorySection;
}

/** A delta: `samples` are appended; the other fields replace the previous ones. */
export type SystemPanelPatch = Partial<Omit<SystemPanelState, 'samples' | 'historyCapacity'>> & {
  samples?: SystemSample[];
};

// ---- Training panel state (src/extension/training.ts → webview/trainingPanel.ts) -------------

/** A finding as the panel shows it: the sentence, and its source once (not twice) when known. */
export interface FindingView {
  severity: DiagnosisFinding['severity'];
  message: string;
  /** `file.py:57` for the link; the full path stays in the extension. */
  where?: string;
  /** Index into the run's list of source locations (what a click sends back). */
  sourceIndex?: number;
}

/** Everything the Training panel draws . */
export interface TrainingPanelState {
  file: string;
  fileName: string;
  engine: EngineKind;
  runId: string | null;
  state: TrainProgress['state'];
  step: number;
  epoch: number | null;
  totalSteps: number | null;
  totalEpochs: number | null;
  progress: string;
  fraction: number | null;
  elapsed: string;
  lr: number | null;
  training: boolean | null;
  gradEnabled: boolean | null;
  modelId: string | null;
  /** Decimated for drawing; `pointCount` is how many the run holds. */
  loss: [number, number][];
  pointCount: number;
  /** Validation loss [step, value], decimated like `loss`; empty when none was reported. */
  evalLoss: [number, number][];
  lastLoss: number | null;
  minLoss: [number, number] | null;
  error: { message: string; where?: string; sourceIndex?: number; hint?: string } | null;
  warnings: string[];
  diagnosis: {
    device: string;
    steps: number;
    stepMs: number;
    batchSize: number | null;
    breakdown: StepBreakdown | null;
    findings: FindingView[];
  } | null;
  /** The latest `train/histograms`: per-parameter weight and gradient summaries at `step`. */
  histograms: { step: number; params: ParameterHistogram[]; omitted: number } | null;
  /** False where the engine sends no weight/gradient histograms (capabilities.histograms). */
  histogramsSupported: boolean;
  /** The latest snapshots, oldest first (the last one is `histograms`), for the offset view. */
  histogramHistory: { step: number; params: ParameterHistogram[] }[];
}

// ---- Hooks panel state (src/extension/hookStore.ts → webview/hooksPanel.ts) ------------------

export interface HookView {
  hookId: string;
  path: string;
  kind: HookKind;
  /** Events received by the extension for this hook. */
  events: number;
  /** The module call the latest event came from (events are throttled, so this grows faster). */
  lastCall: number;
  step?: number;
  shape?: number[];
  dtype?: string;
  /** Mean and std of the latest events, oldest first. */
  history: { call: number; mean: number | null; std: number | null }[];
  latest?: TensorStats;
  histogram?: Histogram;
  /** The latest histograms, oldest first, for the offset view (the last one is `histogram`). */
  histograms?: { call: number; step?: number; histogram: Histogram }[];
  /** Events whose tensor held a NaN / an Inf, and the first call where one was seen. */
  nanEvents: number;
  infEvents: number;
  firstNonFiniteCall?: number;
  attached: boolean;
}
