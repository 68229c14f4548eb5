"""The protocol's main shapes as TypedDicts, written from src/protocol/*.ts (the source of truth).

Hand-written next to the generated protocol.py; scripts/lint.js type-checks them with mypy.
Keys that are optional in TypeScript live in a `total=False` base class.
"""

# typing has TypedDict and Literal since Python 3.8: nothing outside the stdlib is needed.
from typing import Dict, List, Literal, Optional, TypedDict, Union

HookKind = Literal["forward", "forwardPre", "backward"]


class _SourceLocationOptional(TypedDict, total=False):
    column: int
    function: str


class SourceLocation(_SourceLocationOptional):
    file: str
    line: int


class _EngineErrorDataOptional(TypedDict, total=False):
    location: SourceLocation
    layer: str
    expected: str
    got: str
    candidates: List[str]
    userStack: List[SourceLocation]
    hint: str
    rank: int  # distributed runs: the rank whose failure ended the job


class EngineErrorData(_EngineErrorDataOptional):
    kind: str  # one of protocol.ENGINE_ERROR_KINDS


class RuntimeVersion(TypedDict):
    name: str
    version: str


class EngineCapabilities(TypedDict):
    tree: bool
    summary: bool
    tensorInspect: bool
    profile: bool
    trace: bool
    hooks: List[HookKind]
    rootHooks: bool
    train: bool
    histograms: bool
    strides: Literal["real", "rowMajor"]
    backwardTimings: bool


class _EngineInfoOptional(TypedDict, total=False):
    executable: str


class EngineInfo(_EngineInfoOptional):
    kind: Literal["tfjs", "pytorch"]
    version: str
    runtimes: List[RuntimeVersion]
    backend: str
    backendNotes: List[str]
    device: str
    capabilities: EngineCapabilities
    pid: int


class _InitializeParamsOptional(TypedDict, total=False):
    backend: str
    cwd: str


class InitializeParams(_InitializeParamsOptional):
    protocolVersion: str
    clientName: str
    clientVersion: str
    trusted: bool


class InitializeResult(TypedDict):
    protocolVersion: str
    engine: EngineInfo


class _SummaryRowOptional(TypedDict, total=False):
    output: Dict[str, object]  # TensorInfo
    ownParams: int
    totalParams: int
    note: str
    executedMacs: int
    storedParams: int
    packedParams: int
    outputType: str
    calls: int


class SummaryRow(_SummaryRowOptional):
    path: str
    type: str
    depth: int
    isLeaf: bool
    outputShape: Union[List[int], List[List[int]], None]
    params: int
    trainableParams: int
    macs: int
    paramBytes: int
    aliases: List[str]
    ran: bool


class FrameworkCounts(TypedDict):
    params: int
    nonTrainableParams: int
    note: str


class UncountedOp(TypedDict):
    name: str
    calls: int


class _SummaryTotalsOptional(TypedDict, total=False):
    frameworkCounts: FrameworkCounts
    leafOutputBytes: int
    executedMacs: int
    executedMacsMethod: str
    uncountedOps: List[UncountedOp]
    storedParams: int
    packedParams: int


class SummaryTotals(_SummaryTotalsOptional):
    params: int
    trainableParams: int
    nonTrainableParams: int
    macs: int
    paramBytes: int
    bufferBytes: int
    inputBytes: int
    forwardBackwardBytes: int
    totalBytes: int


class TrainStopResult(TypedDict):
    stopped: bool


class _TrainProgressOptional(TypedDict, total=False):
    evalLoss: List[List[float]]
    lr: Optional[float]
    training: bool
    gradEnabled: bool
    modelId: str
    error: Dict[str, object]  # EngineErrorData & {message}
    warnings: List[str]
    # Distributed runs (python/model_lens_engine/distributed): every rank's line, the world size
    # and the loss spread over ranks.
    ranks: List[Dict[str, object]]  # RankProgress
    worldSize: Optional[int]
    lossSpread: Dict[str, float]  # LossSpread: {step, min, max}


class TrainProgress(_TrainProgressOptional):
    runId: str
    state: Literal["starting", "running", "done", "stopped", "failed"]
    step: int
    epoch: Optional[int]
    totalSteps: Optional[int]
    totalEpochs: Optional[int]
    stepsPerSec: Optional[float]
    etaSec: Optional[float]
    loss: List[List[float]]


class TorchDevice(TypedDict):
    index: int
    name: Optional[str]
    totalBytes: Optional[int]
    computeCapability: Optional[str]
    allocatedBytes: int
    reservedBytes: int


class _TorchInfoOptional(TypedDict, total=False):
    hipBuild: Optional[str]
    cudnnVersion: Optional[int]
    cudaInitialized: bool
    cudaUnavailableReason: str


class TorchInfo(_TorchInfoOptional):
    version: str
    cudaBuild: Optional[str]
    cudaAvailable: bool
    deviceCount: int
    devices: List[TorchDevice]
