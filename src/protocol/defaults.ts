// Defaults and limits that both engines and every client must agree on. They are part of the
// protocol: an engine applies them when a request leaves the field out, and a client may rely
// on them (a stop that has not finished after TRAIN_STOP_TIMEOUT_MS will not finish). The
// PyTorch engine reads them from python/model_lens_engine/protocol.py, which
// scripts/genPythonProtocol.ts generates from this file (test/protocolDrift.test.ts fails when
// the two differ). Only plain number and string constants here: the generator copies each one.

/** `HookAttachParams.intervalMs` when omitted: minimum time between two events of one hook. */
export const HOOK_STATS_INTERVAL_MS = 250;

/** `histogramBins` of tensor/inspect and hook/attach when omitted. */
export const DEFAULT_HISTOGRAM_BINS = 30;

/** Default of `TrainStartParams.histogramEverySteps`. */
export const DEFAULT_HISTOGRAM_EVERY_STEPS = 100;

/** Default of `TrainStartParams.histogramMinIntervalMs`. */
export const DEFAULT_HISTOGRAM_MIN_INTERVAL_MS = 2_000;

/** `train/progress` is sent at most this often while a run is going. */
export const TRAIN_PROGRESS_INTERVAL_MS = 250;

/**
 * `train/stop` answers within this: the run has stopped, or the request fails with kind `timeout`
 * (user code would not let go: a C call that never returns, a swallowed exception). A client
 * should wait this long plus its own transport margin before it gives up on the engine.
 */
export const TRAIN_STOP_TIMEOUT_MS = 10_000;
