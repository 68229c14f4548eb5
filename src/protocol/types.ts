// Data shapes shared by every engine and every client. A PyTorch engine must be able to fill
// these faithfully, so they speak PyTorch's vocabulary (named_modules paths, strides in
// elements, storage offsets, devices); the TensorFlow.js engine maps onto the same words.

/** Bumped on any incompatible change; engines refuse a client with another major. */
export const PROTOCOL_VERSION = '1.0';

export type EngineKind = 'tfjs' | 'pytorch';

/** A place in a source file. Lines and columns are 1-based, as editors and tracebacks show them. */
export interface SourceLocation {
  file: string;
  line: number;
  column?: number;
  /** The function or class the line belongs to, when known. */
  function?: string;
}

export interface RuntimeVersion {
  name: string;
  version: string;
}

/** Every hook kind, in the order a UI lists them. */
export const HOOK_KINDS = ['forward', 'forwardPre', 'backward'] as const;

export type HookKind = (typeof HOOK_KINDS)[number];

export interface EngineCapabilities {
  tree: boolean;
  summary: boolean;
  tensorInspect: boolean;
  profile: boolean;
  /** Writes a Chrome trace (`{"traceEvents": [...]}`) when `profile/run` gets `traceFile`. */
  trace: boolean;
  hooks: HookKind[];
  /**
   * Hooks can be attached to the root module (path ""). False where the framework never calls
   * the root's own forward (TF.js predict and fit); hook/attach on "" then fails `unsupported`.
   */
  rootHooks: boolean;
  train: boolean;
  /** A training run sends `train/histograms` (weights and gradients) when asked to. */
  histograms: boolean;
  /**
   * `real`: strides and storage offsets are the framework's own (PyTorch).
   * `rowMajor`: the framework has no strides; they are the row-major strides of a contiguous
   * tensor, which is what TF.js tensors always are.
   */
  strides: 'real' | 'rowMajor';
  /** Per-op backward timings are available. */
  backwardTimings: boolean;
}

export interface EngineInfo {
  kind: EngineKind;
  /** Version of the engine code itself. */
  version: string;
  /** e.g. node 20.1, @tensorflow/tfjs 4.22.0 / python 3.11.2, torch 1.13.1. */
  runtimes: RuntimeVersion[];
  /** tfjs: tensorflow (tfjs-node), tensorflow-gpu, wasm, cpu. pytorch: cpu, cuda, mps. */
  backend: string;
  /** Why this backend: which better ones were tried and why they failed. */
  backendNotes: string[];
  /** Default device new tensors land on: `cpu`, `cuda:0`, `wasm`... */
  device: string;
  capabilities: EngineCapabilities;
  pid: number;
  /** Interpreter or runtime executable, e.g. /usr/bin/python3. */
  executable?: string;
}

export type DType = string; // float32, float16, bfloat16, int64, int32, bool, complex64, ...

/** Why a tensor is or is not contiguous, in terms a user can act on. */
export interface Contiguity {
  contiguous: boolean;
  /**
   * First dimension i (0-based) where `stride[i] == stride[i+1] * size[i+1]` fails (size-1
   * dimensions skipped, as PyTorch does), or where the last stride is not 1 (then
   * `shape.length - 1`). Null when contiguous.
   */
  breaksAt: number | null;
  /** One sentence, e.g. "dim 0 has stride 1 but dim 1 needs 1·4=4 (permuted)". */
  reason: string;
  /** torch memory format when it is not the default: channels_last, channels_last_3d. */
  memoryFormat?: string;
}

export interface StorageInfo {
  /** Stable within one engine session: equal ids mean the same storage. */
  id: string;
  /** Bytes of the whole storage (may exceed the tensor's own bytes for views). */
  bytes: number;
  /** Other named tensors (parameter/buffer names, `output:<path>`, `input:<i>`) on this storage. */
  sharedWith: string[];
}

export interface ViewCheck {
  /** Would `t.view(-1)` raise? */
  wouldFail: boolean;
  /** The framework's own message when it would. */
  error?: string;
  /** Bytes `reshape(-1)` / `contiguous()` would copy (0 when they return a view). */
  copyBytes: number;
}

export interface TensorInfo {
  shape: number[];
  dtype: DType;
  device: string;
  /** In elements, not bytes (PyTorch convention). */
  stride: number[];
  storageOffset: number;
  contiguous: boolean;
  contiguity: Contiguity;
  numel: number;
  /** numel × element size. */
  bytes: number;
  elementSize: number;
  /** True when the framework has no strides and these are row-major by construction (TF.js). */
  strideSynthetic: boolean;
  storage?: StorageInfo;
  /** Name of the tensor this one is a view of (`input:0`, `output:fc1`, a parameter name). */
  viewOf?: string;
  view: ViewCheck;
  requiresGrad?: boolean;
}

export interface TensorStats {
  numel: number;
  mean: number | null;
  std: number | null;
  min: number | null;
  max: number | null;
  nanCount: number;
  infCount: number;
  zeroCount?: number;
}

export interface Histogram {
  /** Range of finite values; `counts.length` equal-width bins between them. */
  min: number;
  max: number;
  counts: number[];
}

export interface ParameterInfo {
  /** Dotted name as named_parameters() gives it: `fc1.weight`. */
  name: string;
  /** Path of the module that owns it (`fc1`). */
  module: string;
  tensor: TensorInfo;
  requiresGrad: boolean;
  /** Other names of the same parameter object (shared or tied weights). */
  aliases: string[];
}

export interface BufferInfo {
  name: string;
  module: string;
  tensor: TensorInfo;
  /** Saved in state_dict (torch `persistent`). */
  persistent: boolean;
  aliases: string[];
}

export interface ModuleSource {
  /** Where the module's class (or layer factory) is defined. */
  definition?: SourceLocation;
  /** The line in the parent that created this instance, e.g. `self.fc1 = nn.Linear(...)`. */
  creation?: SourceLocation;
}

export interface ModuleNode {
  /** named_modules() path; the root is "". */
  path: string;
  /** Last path segment ("" for the root). */
  name: string;
  /** Class name: Linear, Conv2d, Dense, Sequential... */
  type: string;
  depth: number;
  /** Path of the parent; null for the root. */
  parent: string | null;
  /** Paths of direct children (named_children order). */
  children: string[];
  /** Other paths at which the same module object is registered. */
  aliases: string[];
  /** torch `training` flag; TF.js has no eval mode and reports true. */
  training: boolean;
  /** Parameters registered directly on this module (recurse=False). */
  ownParams: number;
  /** Parameters in this module and all below, each shared parameter counted once. */
  totalParams: number;
  trainableParams: number;
  /** Every parameter below has requires_grad=False (or trainable=false). */
  frozen: boolean;
  isLeaf: boolean;
  source?: ModuleSource;
  /** Pruned weights below (torch.nn.utils.prune): parameters the masks keep, torchinfo's count. */
  effectiveParams?: number;
  /** Packed weights of dynamically quantized layers below (no nn.Parameter holds them). */
  packedParams?: number;
  /** A TorchScript module: its type is the class it was scripted from. */
  scripted?: boolean;
  /** Root only: what wrapped the model (torch.compile, DataParallel...); the tree is the inner module's. */
  wrapper?: string;
}

export interface ModelCandidate {
  name: string;
  /** class: an nn.Module subclass; instance: a module-level object; export: a JS export. */
  kind: 'class' | 'instance' | 'function' | 'export' | 'file';
  location?: SourceLocation;
  /** Constructor arguments without defaults, when that is why it cannot be built. */
  requiredArgs?: string[];
}

export interface InputSpec {
  shape: number[];
  dtype: DType;
  /** Where the shape came from. */
  source: 'request' | 'example' | 'inferred' | 'model';
  /** e.g. "inferred from fc1 (Linear, in_features=4) with batch 1". */
  note?: string;
  /** Passed as this keyword argument of forward(); positional when absent. */
  name?: string;
}

/** One model input a request asks for. */
export interface InputRequest {
  shape: number[];
  /** Default: int64 for a model whose first layer is an Embedding, else float32. */
  dtype?: DType;
  /** Keyword argument of forward() (input_ids, attention_mask...); positional when absent. */
  name?: string;
}

/** An op that ran without a multiply-add formula, and how often. */
export interface UncountedOp {
  name: string;
  calls: number;
}

export interface SummaryRow {
  path: string;
  type: string;
  depth: number;
  isLeaf: boolean;
  /** Output shape of the module's last call; several for tuple outputs; null if it never ran. */
  outputShape: number[] | number[][] | null;
  output?: TensorInfo;
  /** Own-or-total following torchinfo: totals for containers, own for leaves. */
  params: number;
  /** Parameters of this module alone and of its whole subtree (both, for every row). */
  ownParams?: number;
  totalParams?: number;
  trainableParams: number;
  /**
   * Multiply-accumulates of one forward pass, every call counted. A leaf follows torchinfo 1.8's
   * rule: Conv — (weight + bias elements) × batch × output positions; Linear/Dense — (weight +
   * bias elements) × every output dim but the last; any other layer with parameters (BatchNorm,
   * LayerNorm, Embedding...) — its parameters × batch; a leaf without parameters — 0. A container
   * shows the sum over the leaves below it, as `params` does (and as torchinfo prints a container
   * at its max depth), so the root's row equals `SummaryTotals.macs`.
   */
  macs: number;
  paramBytes: number;
  aliases: string[];
  /** Forward hooks fired for this module. False with `note` when a fused path skipped it. */
  ran: boolean;
  note?: string;
  /** Multiply-adds of the aten ops that ran inside this module (children included). */
  executedMacs?: number;
  /** Pruned: parameters stored (weight_orig), where `params` counts the effective ones. */
  storedParams?: number;
  /** Packed weights of a dynamically quantized layer. */
  packedParams?: number;
  /** Python type of an output that is not a tensor or a plain tuple/list (ModelOutput, Normal...). */
  outputType?: string;
  /**
   * Calls of the module in the summary's forward pass (a block applied twice: 2). `outputShape` is
   * the last call's, `macs` counts every call.
   */
  calls?: number;
}

export interface SummaryTotals {
  params: number;
  trainableParams: number;
  nonTrainableParams: number;
  macs: number;
  paramBytes: number;
  bufferBytes: number;
  inputBytes: number;
  /**
   * torchinfo's "Forward/backward pass size": output bytes of the leaves that have parameters
   * (every call), ×2 for the gradients. Leaves without parameters (ReLU, Dropout) are not in it.
   */
  forwardBackwardBytes: number;
  /**
   * torchinfo's "Estimated Total Size": inputBytes + forwardBackwardBytes + paramBytes. Buffers
   * are not in it (torchinfo leaves them out too); they are reported in `bufferBytes`.
   */
  totalBytes: number;
  /**
   * The framework's own count where it differs from ours (tfjs's countParams() includes the
   * BatchNorm moving statistics we list as buffers), with the sentence that says so.
   */
  frameworkCounts?: FrameworkCounts;
  /** Every output tensor of every leaf call, once (parameter-free layers too). */
  leafOutputBytes?: number;
  /** Multiply-adds of the aten ops that ran (matmul, conv, attention...), beside torchinfo's `macs`. */
  executedMacs?: number;
  /** Where the executed formulas come from (torch.utils.flop_counter, own formulas). */
  executedMacsMethod?: string;
  /** Ops that ran and have no multiply-add formula (not counted in executedMacs). */
  uncountedOps?: UncountedOp[];
  /** Pruned: parameters stored, where `params` counts the effective ones. */
  storedParams?: number;
  /** Packed weights of dynamically quantized layers. */
  packedParams?: number;
}

export interface FrameworkCounts {
  params: number;
  nonTrainableParams: number;
  note: string;
}

/** Totals over all timed steps of a `profile/run` (divide by `steps` for per-step figures). */
export interface OpStat {
  /** aten::addmm, MatMul, Conv2D... */
  name: string;
  calls: number;
  totalMs: number;
  /** Time not spent in child ops. Equal to totalMs where ops do not nest. */
  selfMs: number;
  /** Distinct input shape lists seen, most frequent first (capped). */
  inputShapes: number[][][];
  inputStrides?: number[][][];
  /** Innermost frame in the user's files that issued it. */
  source?: SourceLocation;
  phase?: 'forward' | 'backward' | 'optimizer' | 'other';
}

/** Totals over all timed steps, like OpStat. */
export interface ModuleTiming {
  path: string;
  type: string;
  calls: number;
  forwardMs: number;
  backwardMs?: number;
}

export interface MemoryInfo {
  /** Resident set size of the engine process. */
  rssBytes: number;
  /** torch.cuda allocator figures, when CUDA is in use. */
  torchAllocatedBytes?: number;
  torchReservedBytes?: number;
  torchMaxAllocatedBytes?: number;
  /** tf.memory() */
  tfjsBytes?: number;
  tfjsTensors?: number;
}

export interface CpuInfo {
  model: string;
  arch: string;
  physicalCores: number;
  logicalCores: number;
  speedMHz: number | null;
  speedMaxMHz: number | null;
  loadPct?: number | null;
}

export interface GpuInfo {
  index: number;
  name: string;
  uuid?: string;
  memoryTotalMiB: number | null;
  memoryUsedMiB: number | null;
  utilizationPct: number | null;
  temperatureC: number | null;
  powerW?: number | null;
  powerLimitW?: number | null;
  computeCapability: string | null;
  driverVersion: string | null;
  cudaVersion?: string | null;
  /** MIG mode enabled on this GPU. */
  mig?: boolean;
}

/** One CUDA device as torch sees it (`torch.cuda.get_device_properties`, allocator figures). */
export interface TorchDevice {
  index: number;
  name: string | null;
  totalBytes: number | null;
  computeCapability: string | null;
  /** `torch.cuda.memory_allocated(i)`: 0 until CUDA is initialised. */
  allocatedBytes: number;
  /** `torch.cuda.memory_reserved(i)`: what the caching allocator holds from the driver. */
  reservedBytes: number;
}

/** torch's own view of CUDA, next to nvidia-smi's: the first check when "my GPU is not used". */
export interface TorchInfo {
  /** `torch.__version__` */
  version: string;
  /** `torch.version.cuda`: the CUDA the wheel was built with; null for a CPU-only build. */
  cudaBuild: string | null;
  /** `torch.version.hip` on ROCm builds. */
  hipBuild?: string | null;
  cudnnVersion?: number | null;
  /** `torch.cuda.is_available()` */
  cudaAvailable: boolean;
  /** `torch.cuda.device_count()` when CUDA is available, else 0. */
  deviceCount: number;
  devices: TorchDevice[];
  /** Whether this engine process has initialised CUDA (a context exists), when available. */
  cudaInitialized?: boolean;
  /** Why `cudaAvailable` is false: a CPU-only build, or torch's own warning about the driver. */
  cudaUnavailableReason?: string;
}

export interface TrainProgressStats {
  /** Optimizer steps taken so far (tfjs: batches). */
  step: number;
  /** The epoch in progress, 1-based; null when the engine cannot tell. */
  epoch: number | null;
  totalSteps: number | null;
  totalEpochs: number | null;
  stepsPerSec: number | null;
  etaSec: number | null;
}
