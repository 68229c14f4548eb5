// Pure data shaping for the charts (no DOM): smoothing, bins, the offset view's common grid.
// Unit-tested in test/chartData.test.ts.
import type { Histogram } from '../src/protocol/types';

/**
 * TensorBoard's smoothing: an exponential moving average with weight `w` in [0, 1), debiased so
 * the first points are not pulled towards zero (tensorboard/.../vz_line_chart2 `resmoothDataset`).
 * Non-finite values pass through unsmoothed and do not enter the average.
 */
export function emaSmooth(values: readonly (number | null)[], w: number): (number | null)[] {
  if (!(w > 0)) return [...values];
  let last = 0;
  let n = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return v;
    last = last * w + (1 - w) * v;
    n++;
    const debias = w === 1 ? 1 : 1 - w ** n;
    return last / debias;
  });
}

/** Bin edges of a histogram: `counts.length + 1` values from min to max. */
export function binEdges(hist: Histogram): number[] {
  const n = hist.counts.length;
  const width = n ? (hist.max - hist.min) / n : 0;
  return Array.from({ length: n + 1 }, (_, i) => hist.min + i * width);
}

/** Bin centres, the x of each bar. A histogram of one repeated value has one bin of zero width. */
export function binCenters(hist: Histogram): number[] {
  const e = binEdges(hist);
  return hist.counts.map((_, i) => (e[i] + e[i + 1]) / 2);
}

/** Points per ridge in the offset view. */
export const RIDGE_GRID_POINTS = 64;

/**
 * Histograms taken at different times have different ranges; the offset view draws them over
 * one x axis, so each is re-binned onto a common grid spanning all of them. A grid point takes
 * the count density (count per unit of x) of the bin it falls in, 0 outside the histogram's
 * range. Each ridge is scaled to a height of 1: the view compares shapes and ranges, and one
 * tall spike (a ReLU's zeros) would otherwise flatten every other ridge.
 */
export function ridgeGrid(
  hists: readonly Histogram[],
  points = RIDGE_GRID_POINTS,
): { x: number[]; ys: number[][] } {
  if (!hists.length) return { x: [], ys: [] };
  let lo = Math.min(...hists.map((h) => h.min));
  let hi = Math.max(...hists.map((h) => h.max));
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const x = Array.from({ length: points }, (_, i) => lo + ((hi - lo) * i) / (points - 1));
  const dens = hists.map((h) => {
    const n = h.counts.length;
    const width = h.max > h.min ? (h.max - h.min) / n : 0;
    return x.map((v) => {
      if (!n) return 0;
      if (width === 0) {
        // All values equal: one spike at the grid point nearest to it.
        const step = (hi - lo) / (points - 1);
        return Math.abs(v - h.min) <= step / 2 ? h.counts.reduce((a, b) => a + b, 0) : 0;
      }
      if (v < h.min || v > h.max) return 0;
      const i = Math.min(n - 1, Math.floor((v - h.min) / width));
      return h.counts[i] / width;
    });
  });
  return {
    x,
    ys: dens.map((d) => {
      const top = Math.max(...d);
      return top > 0 ? d.map((v) => v / top) : d;
    }),
  };
}
