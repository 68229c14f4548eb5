// Small inline-SVG charts. Sizes are in the SVG's own units; CSS scales them to the panel.
import { h, svg, formatNumber } from './dom';
import type { Histogram } from '../src/protocol/types';

const SPARK_W = 240;
const SPARK_H = 48;

/** Mean as a line inside a mean ± std band, oldest point on the left. */
export function sparkline(points: { mean: number | null; std: number | null }[], label: string): SVGSVGElement {
  const chart = svg('svg', { viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, class: 'sparkline', role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
  const valid = points.map((p, i) => ({ i, mean: p.mean, std: p.std ?? 0 })).filter((p): p is { i: number; mean: number; std: number } => p.mean !== null && Number.isFinite(p.mean));
  if (valid.length === 0) return chart;
  let lo = Math.min(...valid.map((p) => p.mean - p.std));
  let hi = Math.max(...valid.map((p) => p.mean + p.std));
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return chart;
  if (hi - lo < 1e-12) {
    lo -= 1;
    hi += 1;
  }
  const n = Math.max(points.length - 1, 1);
  const x = (i: number) => (points.length === 1 ? SPARK_W / 2 : (i / n) * SPARK_W).toFixed(1);
  const y = (v: number) => (SPARK_H - 2 - ((v - lo) / (hi - lo)) * (SPARK_H - 4)).toFixed(1);
  const upper = valid.map((p) => `${x(p.i)},${y(p.mean + p.std)}`);
  const lower = valid.map((p) => `${x(p.i)},${y(p.mean - p.std)}`).reverse();
  chart.append(
    svg('polygon', { class: 'band', points: [...upper, ...lower].join(' ') }),
    svg('polyline', { class: 'mean', points: valid.map((p) => `${x(p.i)},${y(p.mean)}`).join(' ') }),
    // The latest value as a dot, so a single event still shows.
    svg('circle', { class: 'last', cx: x(valid[valid.length - 1].i), cy: y(valid[valid.length - 1].mean), r: 2.5 }),
    svg('title', null, `${label}: range ${formatNumber(lo)} … ${formatNumber(hi)}`),
  );
  return chart;
}

const HIST_W = 240;
const HIST_H = 60;

export function histogram(hist: Histogram, label: string): HTMLElement {
  const chart = svg('svg', { viewBox: `0 0 ${HIST_W} ${HIST_H}`, class: 'histogram', role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
  const max = Math.max(1, ...hist.counts);
  const w = HIST_W / Math.max(hist.counts.length, 1);
  const width = (w * 0.9).toFixed(2);
  hist.counts.forEach((c, i) => {
    const bh = (c / max) * (HIST_H - 2);
    const lo = hist.min + ((hist.max - hist.min) * i) / hist.counts.length;
    const hi = hist.min + ((hist.max - hist.min) * (i + 1)) / hist.counts.length;
    chart.append(
      svg(
        'rect',
        { x: (i * w).toFixed(2), y: (HIST_H - bh).toFixed(2), width, height: bh.toFixed(2), class: 'bar' },
        svg('title', null, `${formatNumber(lo)} … ${formatNumber(hi)}: ${c}`),
      ),
    );
  });
  return h('figure', { class: 'histogram-figure' }, chart, h('figcaption', null, `${formatNumber(hist.min)}`, h('span', null, label), `${formatNumber(hist.max)}`));
}

/** A horizontal bar for tables; width set through CSSOM, which the CSP allows. */
export function bar(fraction: number, title?: string): HTMLElement {
  const fill = h('span', { class: 'bar-fill' });
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return h('span', { class: 'bar', title }, fill);
}
