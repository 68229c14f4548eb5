// A training run as the editor shows it: the whole loss curve, the latest progress, the
// diagnosis, and the texts for the notification, the status bar and the Training panel.
// No `vscode` import here: unit tests run this without an editor.
import type {
  DiagnosisFinding,
  TrainDiagnosis,
  TrainHistograms,
  TrainProgress,
} from '../protocol/messages';
import type { EngineKind, SourceLocation } from '../protocol/types';
import {
  formatDuration,
  formatLoss,
  isFinalState,
  progressText,
  type RunState,
} from '../client/trainingText';
import type { FindingView, TrainingPanelState } from '../protocol/webviewMessages';
import { RunRecord } from '../client/runRecord';

/** Points the panel draws at most; the run keeps every point it was sent. uPlot draws 2,000
 * points in well under a frame, and the EMA smoothing wants the curve's detail. */
export const CHART_MAX_POINTS = 2_000;
/** Histogram snapshots kept for the offset view (each is ~30 bins × parameters × 2). */
export const HISTOGRAM_SNAPSHOTS = 16;

/**
 * At most `max` points that keep the curve's shape: the range is cut into buckets and each keeps
 * its lowest and highest point (in step order), so a loss spike is never averaged away.
 */
export function decimate(points: readonly [number, number][], max: number): [number, number][] {
  if (points.length <= max || max < 4) return points.slice();
  const buckets = Math.floor((max - 2) / 2);
  const inner = points.length - 2;
  const out: [number, number][] = [points[0]];
  for (let b = 0; b < buckets; b++) {
    const from = 1 + Math.floor((b * inner) / buckets);
    const to = 1 + Math.floor(((b + 1) * inner) / buckets);
    if (to <= from) continue;
    let lo = from;
    let hi = from;
    for (let i = from; i < to; i++) {
      const v = points[i][1];
      // NaN/Inf losses are worth seeing: they win the bucket.
      if (!Number.isFinite(v)) {
        lo = i;
        break;
      }
      if (v < points[lo][1]) lo = i;
      if (v > points[hi][1]) hi = i;
    }
    if (lo === hi) out.push(points[lo]);
    else if (lo < hi) out.push(points[lo], points[hi]);
    else out.push(points[hi], points[lo]);
  }
  out.push(points[points.length - 1]);
  return out;
}

/** The status bar item during a run: `$(pulse) step 1200 · loss 0.0931`. */
export function statusText(p: TrainProgress | undefined, loss: number | null): string {
  if (!p || (p.state === 'starting' && p.step === 0)) return '$(sync~spin) training: starting';
  const icon =
    p.state === 'failed'
      ? '$(error)'
      : p.state === 'stopped'
        ? '$(debug-stop)'
        : p.state === 'done'
          ? '$(check)'
          : '$(pulse)';
  const when = isFinalState(p.state) ? ` · ${p.state}` : '';
  return `${icon} step ${p.step}${loss !== null ? ` · loss ${formatLoss(loss)}` : ''}${when}`;
}

/** Fraction of the run done, when the engine knows the total. */
export function fractionDone(p: TrainProgress): number | null {
  if (p.totalSteps) return Math.max(0, Math.min(1, p.step / p.totalSteps));
  if (p.totalEpochs && p.epoch !== null)
    return Math.max(0, Math.min(1, (p.epoch - 1) / p.totalEpochs));
  return null;
}

export function shortLocation(loc: SourceLocation): string {
  const base = loc.file.split(/[\\/]/).pop() ?? loc.file;
  return `${base}:${loc.line}`;
}

/**
 * One training run, folded from the engine's notifications: the CLI's RunRecord (the same fold of
 * progress, loss and diagnosis) plus what only the panel needs.
 */
export class TrainingRun extends RunRecord {
  /** Validation loss, for engines and scripts that report it. */
  readonly evalLoss: [number, number][] = [];
  /** The latest weight/gradient histograms. */
  histograms: TrainHistograms | undefined;
  /** The last HISTOGRAM_SNAPSHOTS snapshots, oldest first, for the offset view. */
  readonly histogramHistory: TrainHistograms[] = [];
  /** Places the panel may link to; the webview only ever sends back an index into this. */
  readonly sources: SourceLocation[] = [];
  /** Set when starting the run failed before the engine reported any progress. */
  startError: { message: string; location?: SourceLocation; hint?: string } | undefined;
  /** The user asked to stop (the state becomes `stopped` when the engine confirms). */
  stopRequested = false;
  /** The engine's capabilities.histograms: false where it never sends train/histograms. */
  histogramsSupported = true;

  constructor(
    readonly file: string,
    readonly engine: EngineKind,
    now = Date.now(),
  ) {
    super(now);
  }

  override get state(): RunState {
    if (this.startError) return 'failed';
    return super.state;
  }

  get finished(): boolean {
    return isFinalState(this.state);
  }

  get lastLoss(): number | null {
    return this.finalLoss;
  }

  /** Folds one notification; returns false for another run's. */
  override add(p: TrainProgress, now = Date.now()): boolean {
    if (!super.add(p, now)) return false;
    for (const point of p.evalLoss ?? []) {
      const prev = this.evalLoss[this.evalLoss.length - 1];
      if (!prev || point[0] > prev[0]) this.evalLoss.push(point);
    }
    return true;
  }

  /** Keeps the newest snapshot; returns false for another run's or an older one. */
  setHistograms(h: TrainHistograms): boolean {
    if (this.runId !== undefined && h.runId !== this.runId) return false;
    if (this.histograms && this.histograms.runId === h.runId && h.step < this.histograms.step)
      return false;
    this.histograms = h;
    const last = this.histogramHistory[this.histogramHistory.length - 1];
    if (last && last.step === h.step) this.histogramHistory.pop();
    this.histogramHistory.push(h);
    if (this.histogramHistory.length > HISTOGRAM_SNAPSHOTS) this.histogramHistory.shift();
    return true;
  }

  fail(message: string, location?: SourceLocation, hint?: string, now = Date.now()): void {
    this.startError = { message, location, hint };
    this.endedAt ??= now;
  }

  /** Where the run failed: the engine's location, else the innermost user frame. */
  errorLocation(): SourceLocation | undefined {
    if (this.startError) return this.startError.location;
    const e = this.last?.error;
    return e?.location ?? e?.userStack?.[e.userStack.length - 1];
  }

  private sourceIndex(loc: SourceLocation | undefined): number | undefined {
    if (!loc) return undefined;
    const i = this.sources.findIndex(
      (s) => s.file === loc.file && s.line === loc.line && s.column === loc.column,
    );
    if (i >= 0) return i;
    this.sources.push(loc);
    return this.sources.length - 1;
  }

  panelState(now = Date.now()): TrainingPanelState {
    const p = this.last;
    let min: [number, number] | null = null;
    for (const pt of this.loss) if (Number.isFinite(pt[1]) && (!min || pt[1] < min[1])) min = pt;
    const errLoc = this.errorLocation();
    const message = this.startError?.message ?? p?.error?.message;
    const d = this.diagnosis;
    return {
      file: this.file,
      fileName: this.file.split(/[\\/]/).pop() ?? this.file,
      engine: this.engine,
      runId: this.runId ?? null,
      state: this.state,
      step: p?.step ?? 0,
      epoch: p?.epoch ?? null,
      totalSteps: p?.totalSteps ?? null,
      totalEpochs: p?.totalEpochs ?? null,
      progress: p ? progressText(p, this.lastLoss) : 'starting…',
      fraction: p ? fractionDone(p) : null,
      elapsed: formatDuration(((this.endedAt ?? now) - this.startedAt) / 1000),
      lr: p?.lr ?? null,
      training: p?.training ?? null,
      gradEnabled: p?.gradEnabled ?? null,
      modelId: p?.modelId ?? null,
      loss: decimate(this.loss, CHART_MAX_POINTS),
      pointCount: this.loss.length,
      evalLoss: decimate(this.evalLoss, CHART_MAX_POINTS),
      lastLoss: this.lastLoss,
      minLoss: min,
      error:
        this.state === 'failed' && message
          ? {
              message,
              where: errLoc ? shortLocation(errLoc) : undefined,
              sourceIndex: this.sourceIndex(errLoc),
              hint: this.startError?.hint ?? p?.error?.hint,
            }
          : null,
      warnings: [...this.warnings],
      diagnosis: d
        ? {
            device: d.device,
            steps: d.steps,
            stepMs: d.stepMs,
            batchSize: d.batchSize,
            breakdown: d.breakdown,
            findings: d.findings.map((f) => ({
              severity: f.severity,
              message: f.message,
              where: f.source ? shortLocation(f.source) : undefined,
              sourceIndex: this.sourceIndex(f.source),
            })),
          }
        : null,
      histograms: this.histograms
        ? {
            step: this.histograms.step,
            params: this.histograms.params,
            omitted: this.histograms.omitted ?? 0,
          }
        : null,
      histogramHistory: this.histogramHistory.map((h) => ({ step: h.step, params: h.params })),
      histogramsSupported: this.histogramsSupported,
    };
  }
}

/** Where a file looks like a training script, for the "Run Training" CodeLens; null if it does not. */
export function trainingEntryLine(fileName: string, text: string): number | null {
  const lines = text.split('\n');
  if (/\.py$/i.test(fileName)) {
    // A script that trains when run: a __main__ block, and backward/optimizer steps somewhere.
    const main = lines.findIndex((l) => /^if\s+__name__\s*==\s*['"]__main__['"]\s*:/.test(l));
    if (main < 0) return null;
    return /\.backward\(|optimi[sz]er\.step\(/.test(text) ? main : null;
  }
  if (/\.[cm]?[jt]sx?$/i.test(fileName)) {
    const i = lines.findIndex(
      (l) =>
        /^\s*export\s+(?:async\s+function\s*\*?\s*|function\s*\*?\s*|(?:const|let|var)\s+)train\b/.test(
          l,
        ) || /^\s*exports\.train\s*=/.test(l),
    );
    return i >= 0 ? i : null;
  }
  return null;
}
