// Runs a model file's `train(model, { epochs })` export with progress. The model's own `fit` is
// wrapped so progress callbacks ride along whatever callbacks the user passes, and so a stop
// request (model.stopTraining) survives fit resetting it at the start of each call.
import { performance } from 'node:perf_hooks';
import type * as tfTypes from '@tensorflow/tfjs';
import { TRAIN_PROGRESS_INTERVAL_MS, TRAIN_STOP_TIMEOUT_MS } from '../../protocol/defaults';
import type { TrainDiagnosis, TrainProgress, TrainStartParams } from '../../protocol/messages';
import type { Tf } from './backend';
import { RunDiagnostics } from './diagnosis';
import { EngineFailure, fail, messageOf } from './engineError';
import type { ModelSession } from './modelSession';
import { userCodeFailure } from './userCode';

/** Loss points per notification; denser histories are sampled evenly. */
export const TRAIN_LOSS_MAX_POINTS = 200;
const DEFAULT_FIT_BATCH_SIZE = 32;

type FitArgs = tfTypes.ModelFitArgs;
type Callbacks = FitArgs['callbacks'];

export interface TrainRun {
  id: string;
  session: ModelSession;
  done: Promise<void>;
  stopRequested: boolean;
  step: number;
  state: TrainProgress['state'];
  /** What the run measured so far (train/diagnose). */
  diagnose(): TrainDiagnosis;
}

function sample(points: [number, number][]): [number, number][] {
  if (points.length <= TRAIN_LOSS_MAX_POINTS) return points;
  const stride = points.length / TRAIN_LOSS_MAX_POINTS;
  const out: [number, number][] = [];
  for (let i = 0; i < TRAIN_LOSS_MAX_POINTS; i++) out.push(points[Math.floor(i * stride)]);
  out[out.length - 1] = points[points.length - 1];
  return out;
}

function numSamples(x: unknown): number | null {
  const first = Array.isArray(x)
    ? x[0]
    : x && typeof x === 'object' && !('shape' in x)
      ? Object.values(x)[0]
      : x;
  const shape = (first as { shape?: number[] } | undefined)?.shape;
  return shape && shape.length ? shape[0] : null;
}

function learningRate(model: tfTypes.LayersModel): number | null {
  const lr = (model.optimizer as unknown as { learningRate?: unknown } | undefined)?.learningRate;
  return typeof lr === 'number' ? lr : null;
}

export function startTrainRun(
  tf: Tf,
  id: string,
  s: ModelSession,
  params: TrainStartParams,
  notify: (p: TrainProgress) => void,
  setActive: (run: TrainRun | null) => void,
  notifyDiagnosis: (d: TrainDiagnosis) => void = () => undefined,
): TrainRun {
  const trainFn = s.exports.train;
  if (typeof trainFn !== 'function') {
    fail('unsupported', `${s.file} has no 'train' export`, {
      location: { file: s.file, line: 1 },
      candidates: Object.keys(s.exports),
      hint: 'export async function train(model, { epochs }) { await model.fit(xs, ys, { epochs }); }',
    });
  }
  const model = s.model;
  const diag = new RunDiagnostics(tf, id, s.device, s.file, () => run.step);
  const run: TrainRun = {
    id,
    session: s,
    done: Promise.resolve(),
    stopRequested: false,
    step: 0,
    state: 'starting',
    diagnose: () => diag.snapshot(run.step),
  };
  const started = performance.now();
  let epoch: number | null = null;
  let totalSteps: number | null = null;
  let totalEpochs: number | null = params.epochs ?? null;
  let pending: [number, number][] = [];
  let lastSent = 0;
  /** Warnings not yet sent; the first non-finite loss adds one (as the PyTorch engine does). */
  let unsent: string[] = [];
  let nanStep: number | null = null;

  const progress = (state: TrainProgress['state'], extra: Partial<TrainProgress> = {}): void => {
    run.state = state;
    const elapsed = (performance.now() - started) / 1000;
    const stepsPerSec = run.step > 0 && elapsed > 0 ? run.step / elapsed : null;
    notify({
      runId: id,
      state,
      step: run.step,
      epoch,
      totalSteps,
      totalEpochs,
      stepsPerSec,
      etaSec: stepsPerSec && totalSteps ? Math.max(0, (totalSteps - run.step) / stepsPerSec) : null,
      loss: sample(pending),
      lr: learningRate(model),
      training: true,
      gradEnabled: true,
      modelId: s.id,
      ...extra,
      ...(unsent.length || extra.warnings
        ? { warnings: [...unsent, ...(extra.warnings ?? [])] }
        : {}),
    });
    unsent = [];
    pending = [];
    lastSent = performance.now();
  };

  const ours = new tf.CustomCallback({
    onBatchBegin: async () => diag.batchBegin(),
    onEpochBegin: async (e: number) => {
      // TrainProgress.epoch is the 1-based epoch in progress, as the PyTorch engine reports it.
      epoch = e + 1;
    },
    onBatchEnd: async (_b: number, logs?: tfTypes.Logs) => {
      diag.batchEnd();
      run.step++;
      const loss = logs?.loss;
      if (typeof loss === 'number') pending.push([run.step, loss]);
      if (run.stopRequested) model.stopTraining = true;
      if (typeof loss === 'number' && !Number.isFinite(loss) && nanStep === null) {
        nanStep = run.step;
        unsent.push(
          `The loss became ${loss} at step ${run.step}; the model's weights are probably ` +
            'ruined from there on ' +
            '(check the learning rate, the inputs and log/divide operations).',
        );
        progress('running');
      } else if (performance.now() - lastSent >= TRAIN_PROGRESS_INTERVAL_MS) progress('running');
    },
  });

  const toCallbackList = (cbs: Callbacks): unknown[] => {
    const list = cbs == null ? [] : Array.isArray(cbs) ? cbs : [cbs];
    // fit takes either callback objects or plain {onBatchEnd...} records, never a mix.
    return list.map((c) =>
      typeof (c as { setParams?: unknown }).setParams === 'function'
        ? c
        : new tf.CustomCallback(c as never),
    );
  };

  const originalFit = model.fit;
  const hadOwnFit = Object.prototype.hasOwnProperty.call(model, 'fit');
  model.fit = async function fitWithProgress(this: tfTypes.LayersModel, x, y, args: FitArgs = {}) {
    if (run.stopRequested) return new tf.History();
    const epochs = params.epochs ?? args.epochs ?? 1;
    const initial = args.initialEpoch ?? 0;
    const n = numSamples(x);
    const batch = args.batchSize ?? DEFAULT_FIT_BATCH_SIZE;
    const valSplit = args.validationSplit ?? 0;
    totalEpochs = epochs;
    diag.batchSize = n !== null ? Math.min(batch, Math.floor(n * (1 - valSplit))) : batch;
    if (n !== null) {
      const perEpoch = Math.ceil(Math.floor(n * (1 - valSplit)) / batch);
      totalSteps = run.step + (epochs - initial) * perEpoch;
    }
    return originalFit.call(this, x, y, {
      ...args,
      epochs,
      callbacks: [...toCallbackList(args.callbacks), ours] as never,
    });
  };

  // The last diagnosis goes out before the final progress, so a client that stops listening at
  // 'done' already has it.
  const finish = (state: TrainProgress['state'], extra: Partial<TrainProgress> = {}): void => {
    diag.uninstall();
    try {
      notifyDiagnosis(diag.snapshot(run.step));
    } catch {
      // The run's outcome matters more than its diagnosis.
    }
    progress(state, extra);
  };

  progress('starting');
  diag.install();
  setActive(run);
  run.done = (async () => {
    try {
      await (trainFn as (m: tfTypes.LayersModel, o: { epochs?: number; tf: Tf }) => unknown)(
        model,
        {
          epochs: params.epochs,
          tf,
        },
      );
      if (pending.length === 0 && run.step === 0) {
        finish(run.stopRequested ? 'stopped' : 'done', {
          warnings: ['The train export never called model.fit, so no per-step progress was seen.'],
        });
      } else finish(run.stopRequested ? 'stopped' : 'done');
    } catch (err) {
      const failure = err instanceof EngineFailure ? err : userCodeFailure(err, 'training', s.file);
      finish('failed', { error: { ...failure.data, message: messageOf(failure) } });
    } finally {
      diag.uninstall();
      if (hadOwnFit) model.fit = originalFit;
      else delete (model as { fit?: unknown }).fit;
      setActive(null);
    }
  })();
  return run;
}

export async function stopTrainRun(run: TrainRun): Promise<boolean> {
  run.stopRequested = true;
  run.session.model.stopTraining = true;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), TRAIN_STOP_TIMEOUT_MS);
  });
  const stopped = await Promise.race([run.done.then(() => true), timedOut]);
  clearTimeout(timer);
  return stopped;
}
