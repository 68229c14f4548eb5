// The charts' data shaping (webview/chartData.ts): TensorBoard's smoothing and the offset view's
// common grid. Pure functions; the drawing itself is checked in a real VS Code (test/e2e).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { binCenters, binEdges, emaSmooth, ridgeGrid } from '../webview/chartData';

test("emaSmooth is TensorBoard's debiased EMA", () => {
  // TensorBoard (vz_line_chart2/line-chart.ts, resmoothDataset): last = last*w + (1-w)*v;
  // smoothed = last / (1 - w^n). Worked by hand for w = 0.5 over 1, 2, 3:
  // n=1: last 0.5, /0.5 = 1; n=2: last 1.25, /0.75 = 5/3; n=3: last 2.125, /0.875 = 17/7.
  const got = emaSmooth([1, 2, 3], 0.5);
  assert.deepEqual(
    got.map((v) => Number(v!.toFixed(12))),
    [1, Number((5 / 3).toFixed(12)), Number((17 / 7).toFixed(12))],
  );
});

test('emaSmooth leaves a constant curve alone, weight 0 is the raw curve, gaps pass through', () => {
  assert.deepEqual(
    emaSmooth([2, 2, 2, 2], 0.9).map((v) => Number(v!.toFixed(9))),
    [2, 2, 2, 2],
  );
  assert.deepEqual(emaSmooth([3, 1, 4], 0), [3, 1, 4]);
  const withGap = emaSmooth([1, null, Number.NaN, 1], 0.6);
  assert.equal(withGap[1], null);
  assert.ok(Number.isNaN(withGap[2]));
  assert.equal(Number(withGap[3]!.toFixed(12)), 1);
});

test('bins are vertical bars: one edge more than counts, centres between them', () => {
  const hist = { min: -1, max: 1, counts: [1, 2, 3, 4] };
  assert.deepEqual(binEdges(hist), [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(binCenters(hist), [-0.75, -0.25, 0.25, 0.75]);
});

test('ridgeGrid puts histograms of different ranges on one axis, each scaled to height 1', () => {
  const a = { min: 0, max: 1, counts: [10, 0] };
  const b = { min: 1, max: 3, counts: [0, 5] };
  const { x, ys } = ridgeGrid([a, b], 7);
  assert.deepEqual(x, [0, 0.5, 1, 1.5, 2, 2.5, 3]);
  // a: first bin [0, 0.5) full, the rest of its range empty, 0 outside it.
  assert.deepEqual(ys[0], [1, 0, 0, 0, 0, 0, 0]);
  // b: second bin [2, 3] full.
  assert.deepEqual(ys[1], [0, 0, 0, 0, 1, 1, 1]);
});

test('ridgeGrid draws a histogram of one repeated value as a spike', () => {
  const { ys } = ridgeGrid([{ min: 0, max: 0, counts: [7] }], 5);
  assert.equal(ys[0].filter((v) => v > 0).length, 1);
});
