// One training run folded from the engine's notifications: the CLI's `run` and the extension's
// Training panel read the same record (the panel's TrainingRun adds what only it needs).
import type { TrainDiagnosis, TrainProgress } from '../protocol/messages';
import { epochsDone, isFinalState } from './trainingText';

/** Everything the progress and diagnosis notifications said about one run. */
export class RunRecord {
  runId: string | undefined;
  last: TrainProgress | undefined;
  /** Every loss point the engine sent, in step order, each step once. */
  readonly loss: [number, number][] = [];
  diagnosis: TrainDiagnosis | undefined;
  readonly warnings: string[] = [];
  readonly startedAt: number;
  endedAt: number | undefined;

  constructor(now = Date.now()) {
    this.startedAt = now;
  }

  /** Folds one progress notification; false (and nothing changes) for another run's. */
  add(p: TrainProgress, now = Date.now()): boolean {
    if (this.runId !== undefined && p.runId !== this.runId) return false;
    this.last = p;
    for (const point of p.loss) {
      const prev = this.loss[this.loss.length - 1];
      // Sampled batches can repeat the last point of the previous one; keep each step once.
      if (!prev || point[0] > prev[0]) this.loss.push(point);
    }
    for (const w of p.warnings ?? []) if (!this.warnings.includes(w)) this.warnings.push(w);
    if (isFinalState(p.state)) this.endedAt ??= now;
    return true;
  }

  /** Keeps a diagnosis snapshot; false for another run's. */
  setDiagnosis(d: TrainDiagnosis): boolean {
    if (this.runId !== undefined && d.runId !== this.runId) return false;
    this.diagnosis = d;
    return true;
  }

  get state(): TrainProgress['state'] {
    return this.last?.state ?? 'starting';
  }

  get seconds(): number {
    return ((this.endedAt ?? Date.now()) - this.startedAt) / 1000;
  }

  get finalLoss(): number | null {
    return this.loss.length ? this.loss[this.loss.length - 1][1] : null;
  }

  /** The `--json` document of `model-lens run`. */
  json(): object {
    return {
      runId: this.runId ?? null,
      state: this.state,
      steps: this.last?.step ?? 0,
      // Completed epochs, as `steps` counts completed steps.
      epochs: this.last ? epochsDone(this.last) : null,
      totalEpochs: this.last?.totalEpochs ?? null,
      // As last seen: model.train()/eval(), torch.is_grad_enabled() at its forward, the lr.
      training: this.last?.training ?? null,
      gradEnabled: this.last?.gradEnabled ?? null,
      lr: this.last?.lr ?? null,
      seconds: Number(this.seconds.toFixed(3)),
      loss: this.loss,
      diagnosis: this.diagnosis ?? null,
      ...(this.last?.error ? { error: this.last.error } : {}),
      // Distributed runs: one entry per rank, and rank 0's loss with the spread over ranks.
      ...(this.last?.ranks
        ? { ranks: this.last.ranks, worldSize: this.last.worldSize ?? null }
        : {}),
      ...(this.last?.lossSpread ? { lossSpread: this.last.lossSpread } : {}),
      warnings: this.warnings,
    };
  }
}
