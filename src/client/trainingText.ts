// Text for a training run's progress, shared by the CLI's progress bar and the editor's
// notification, status bar and Training panel. Pure functions over protocol types.
import type { TrainProgress } from '../protocol/messages';

export type RunState = TrainProgress['state'];

export function isFinalState(state: RunState): boolean {
  return state === 'done' || state === 'stopped' || state === 'failed';
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export function formatLoss(v: number | null | undefined): string {
  if (v === null || v === undefined) return '--';
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e5 || a < 1e-3) ? v.toExponential(3) : v.toFixed(4);
}

export function formatRate(stepsPerSec: number | null | undefined): string | null {
  if (!stepsPerSec) return null;
  if (stepsPerSec >= 10) return `${stepsPerSec.toFixed(0)} steps/s`;
  if (stepsPerSec >= 1) return `${stepsPerSec.toFixed(1)} steps/s`;
  return `${(1 / stepsPerSec).toFixed(1)} s/step`;
}

/**
 * Epochs completed, the same kind of count as `step` (steps completed), so the two never
 * disagree ("epoch 518 · step 517" was the epoch in progress next to the steps done). From the
 * steps when the engine knows how many make an epoch; else the epoch in progress minus one.
 */
export function epochsDone(p: TrainProgress): number | null {
  if (p.epoch === null) return null;
  if (p.state === 'done') return p.totalEpochs ?? p.epoch;
  if (p.totalSteps && p.totalEpochs) {
    // The small epsilon keeps 0.1 * 30 steps from flooring to 2.
    return Math.min(p.totalEpochs, Math.floor((p.step * p.totalEpochs) / p.totalSteps + 1e-9));
  }
  return Math.max(0, p.epoch - 1);
}

/**
 * "epoch 12/50 · step 1200/5000 · 41 steps/s · ETA 1:32 · loss 0.0931" (parts that are known):
 * both counts are of what has completed.
 */
export function progressText(p: TrainProgress, loss: number | null): string {
  const parts: string[] = [];
  const epochs = epochsDone(p);
  if (epochs !== null) parts.push(`epoch ${epochs}${p.totalEpochs ? `/${p.totalEpochs}` : ''}`);
  parts.push(`step ${p.step}${p.totalSteps ? `/${p.totalSteps}` : ''}`);
  // Speed and time left describe a run in progress, not one that has ended.
  if (!isFinalState(p.state)) {
    const rate = formatRate(p.stepsPerSec);
    if (rate) parts.push(rate);
    if (p.etaSec !== null && p.totalSteps) parts.push(`ETA ${formatDuration(p.etaSec)}`);
  }
  if (loss !== null) parts.push(`loss ${formatLoss(loss)}`);
  return parts.join(' · ');
}
