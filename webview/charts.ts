// The Hooks and Training panels' value charts, all uPlot (./plot.ts): a histogram with real
// vertical bins, the same histograms over time as TensorBoard's offset view, and mean ± std over
// events. Hover shows the figures under the cursor; drag zooms, double click resets.
import { axis, Chart, xAxis, CHART_HEIGHT_PX, uPlot, withAlpha } from './plot';
import { binCenters, binEdges, ridgeGrid } from './chartData';
import { formatNumber } from './dom';
import type { Histogram } from '../src/protocol/types';

const SMALL_CHART_HEIGHT_PX = 160;
/** Vertical distance between two ridges of the offset view, in units of the tallest ridge. */
const RIDGE_OFFSET = 0.35;

/** One histogram: a bar per bin, bin range and count under the cursor. */
export class HistogramChart {
  readonly chart: Chart;
  private hist: Histogram;

  constructor(el: HTMLElement, hist: Histogram, label: string) {
    this.hist = hist;
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', label);
    this.chart = new Chart(el, {
      data: () => [binCenters(this.hist), this.hist.counts],
      options: (theme, width) => ({
        width,
        height: SMALL_CHART_HEIGHT_PX,
        legend: { show: true, live: true },
        cursor: { drag: { x: true, y: false }, points: { show: false } },
        scales: {
          x: { time: false, range: () => this.xRange() },
          y: { range: (_u, _lo, hi) => [0, Math.max(1, hi)] },
        },
        axes: [xAxis(theme, label), axis(theme, { size: 50 })],
        series: [
          { label: 'bin', value: (_u, _v, _s, i) => (i === null ? '--' : this.binLabel(i)) },
          {
            label: 'count',
            stroke: theme.series[0],
            fill: withAlpha(theme.series[0], 0.6),
            paths: uPlot.paths.bars!({ size: [1, Infinity], align: 0, gap: 1 }),
            points: { show: false },
            value: (_u, v) => (v === null ? '--' : String(v)),
          },
        ],
      }),
    });
    el.dataset.bins = String(hist.counts.length);
  }

  set(hist: Histogram): void {
    this.hist = hist;
    this.chart.element.dataset.bins = String(hist.counts.length);
    this.chart.update();
  }

  private xRange(): [number, number] {
    const { min, max } = this.hist;
    return max > min ? [min, max] : [min - 0.5, max + 0.5];
  }

  private binLabel(i: number): string {
    const e = binEdges(this.hist);
    return `${formatNumber(e[i])} … ${formatNumber(e[i + 1])}`;
  }
}

/** A histogram at one moment, with what to call that moment (`call 12`, `step 300`). */
export interface TimedHistogram {
  label: string;
  histogram: Histogram;
}

/**
 * TensorBoard's offset view: the histograms over time as ridges, oldest at the back (top), the
 * latest in front; each ridge is filled with the background so the nearer ones hide the farther.
 */
export class RidgeChart {
  readonly chart: Chart;
  private items: TimedHistogram[];
  private grid: { x: number[]; ys: number[][] } = { x: [], ys: [] };

  constructor(el: HTMLElement, items: TimedHistogram[], label: string) {
    this.items = items;
    this.regrid();
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', `${label}, offset view`);
    this.chart = new Chart(el, this.spec(label));
    el.dataset.ridges = String(items.length);
  }

  set(items: TimedHistogram[]): void {
    const rebuild = items.length !== this.items.length;
    this.items = items;
    this.regrid();
    this.chart.element.dataset.ridges = String(items.length);
    // The number of series changes with the number of ridges: that needs new options.
    if (rebuild) this.chart.build();
    else this.chart.update();
  }

  private regrid(): void {
    this.grid = ridgeGrid(this.items.map((i) => i.histogram));
  }

  /** Ridge k (0 = oldest) sits this far above the front one. */
  private offset(k: number): number {
    return (this.items.length - 1 - k) * RIDGE_OFFSET;
  }

  private spec(label: string): ConstructorParameters<typeof Chart>[1] {
    return {
      data: () => [this.grid.x, ...this.grid.ys.map((ys, k) => ys.map((v) => v + this.offset(k)))],
      options: (theme, width) => {
        const n = this.items.length;
        const ridges: uPlot.Series[] = this.items.map((item, k) => ({
          label: item.label,
          // Older ridges fade; the latest has the accent colour.
          stroke:
            k === n - 1
              ? theme.series[0]
              : withAlpha(theme.series[0], 0.35 + (0.5 * k) / Math.max(1, n - 1)),
          fill: withAlpha(theme.background, 0.85),
          fillTo: () => this.offset(k),
          width: k === n - 1 ? 1.5 : 1,
          points: { show: false },
          value: (_u, v) => (v === null ? '--' : formatNumber(v - this.offset(k))),
        }));
        return {
          width,
          height: CHART_HEIGHT_PX,
          // The legend would list every ridge; the axis label and the hover title say enough.
          legend: { show: false },
          cursor: { drag: { x: true, y: false }, points: { show: false } },
          scales: {
            x: { time: false },
            y: { range: (_u, _lo, hi) => [0, Math.max(1, hi) + 0.05] },
          },
          axes: [
            xAxis(theme, `${label} — oldest at the back, latest in front`),
            // Ridge heights are relative; the left axis names the moments instead of counts.
            axis(theme, {
              size: 84,
              grid: { show: false },
              splits: () => this.items.map((_i, k) => this.offset(k)),
              values: () => this.items.map((i) => i.label),
            }),
          ],
          series: [{ label: 'value', value: (_u, v) => formatNumber(v) }, ...ridges],
        };
      },
    };
  }
}

/** A mean ± std band over events or steps, with the mean as a line. */
export interface MeanStdPoint {
  x: number;
  mean: number | null;
  std: number | null;
}

export class MeanStdChart {
  readonly chart: Chart;
  private points: MeanStdPoint[];

  constructor(el: HTMLElement, points: MeanStdPoint[], xLabel: string, label: string) {
    this.points = points;
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', label);
    this.chart = new Chart(el, {
      data: () => {
        const p = this.points;
        const mean = p.map((q) => q.mean);
        const up = p.map((q) => (q.mean === null ? null : q.mean + (q.std ?? 0)));
        const down = p.map((q) => (q.mean === null ? null : q.mean - (q.std ?? 0)));
        return [p.map((q) => q.x), mean, up, down];
      },
      options: (theme, width) => ({
        width,
        height: SMALL_CHART_HEIGHT_PX,
        legend: { show: true, live: true },
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: false } },
        axes: [xAxis(theme, xLabel), axis(theme, { size: 60 })],
        bands: [{ series: [2, 3], fill: withAlpha(theme.series[0], 0.2) }],
        series: [
          { label: xLabel },
          {
            label: 'mean',
            stroke: theme.series[0],
            width: 1.5,
            value: (_u, v) => formatNumber(v),
            points: { size: 5 },
          },
          {
            label: '+std',
            stroke: withAlpha(theme.series[0], 0.4),
            width: 1,
            value: (_u, v) => formatNumber(v),
            points: { show: false },
          },
          {
            label: '−std',
            stroke: withAlpha(theme.series[0], 0.4),
            width: 1,
            value: (_u, v) => formatNumber(v),
            points: { show: false },
          },
        ],
      }),
    });
    el.dataset.points = String(points.length);
  }

  set(points: MeanStdPoint[]): void {
    this.points = points;
    this.chart.element.dataset.points = String(points.length);
    this.chart.update();
  }
}
