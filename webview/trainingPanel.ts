// Model Lens: Training — the run's state and progress, a loss curve with axes, learning rate,
// train/eval and grad state, the error with a link to the user's line, and the diagnosis.
import { bar } from './charts';
import { formatNumber, h, svg } from './dom';
import { app, post, savedState, saveState, startPanel } from './host';
import type { ParameterHistogram, StepBreakdown, ValueSummary } from '../src/protocol/messages';
import type { FindingView, TrainingPanelState } from '../src/protocol/webviewMessages';

type TrainingState = TrainingPanelState;
type Breakdown = StepBreakdown;

interface ViewPrefs {
  logScale: boolean;
}

// Chart geometry in SVG units; CSS scales the whole chart to the panel width.
const CHART_W = 640;
const CHART_H = 240;
const PAD_LEFT = 62;
const PAD_RIGHT = 14;
const PAD_TOP = 10;
const PAD_BOTTOM = 30;
const TARGET_TICKS = 5;
// Inline histogram in a parameter row, in SVG units.
const MINI_HIST_W = 80;
const MINI_HIST_H = 18;

let prefs: ViewPrefs = { logScale: false, ...savedState<ViewPrefs>() };
let current: TrainingState | null = null;

/** CSSOM styles: allowed by the panel's CSP, unlike style attributes in markup. */
function styled<E extends HTMLElement | SVGElement>(el: E, style: Record<string, string>): E {
  for (const [k, v] of Object.entries(style)) el.style.setProperty(k, v);
  return el;
}

/** Round tick values 1, 2 or 5 × 10^k covering [lo, hi]. */
function niceTicks(lo: number, hi: number, target: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Tick labels with as many decimals as the tick spacing needs, and no more. */
function formatTick(v: number, ticks: number[]): string {
  if (prefs.logScale) return v >= 1e5 || v < 1e-3 ? v.toExponential(0) : String(Number(v.toPrecision(3)));
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : Math.abs(v);
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-4)) return v.toExponential(1);
  const decimals = step > 0 ? Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9))) : 0;
  return v.toFixed(decimals);
}

function formatStep(v: number): string {
  return v >= 1e6 ? `${(v / 1e6).toFixed(v % 1e6 === 0 ? 0 : 1)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(v % 1e3 === 0 ? 0 : 1)}k` : String(v);
}

/** The loss curve: a polyline in a frame with step (x) and loss (y) axes, linear or log. */
function lossChart(state: TrainingState): SVGSVGElement {
  const points = state.loss.filter((p) => Number.isFinite(p[1]) && (!prefs.logScale || p[1] > 0));
  const chart = svg('svg', {
    viewBox: `0 0 ${CHART_W} ${CHART_H}`,
    class: 'loss-chart',
    role: 'img',
    'aria-label': `loss curve, ${state.pointCount} points`,
    'data-points': state.pointCount,
    'data-drawn': points.length,
  });
  styled(chart, { width: '100%', 'max-width': '760px', height: 'auto', display: 'block' });
  const plotW = CHART_W - PAD_LEFT - PAD_RIGHT;
  const plotH = CHART_H - PAD_TOP - PAD_BOTTOM;
  const axisColor = 'var(--vscode-descriptionForeground)';
  const gridColor = 'var(--vscode-panel-border, rgba(128,128,128,0.35))';
  chart.append(
    styled(svg('rect', { x: PAD_LEFT, y: PAD_TOP, width: plotW, height: plotH, class: 'frame' }), { fill: 'none', stroke: gridColor }),
  );
  if (points.length === 0) {
    chart.append(
      styled(svg('text', { x: PAD_LEFT + plotW / 2, y: PAD_TOP + plotH / 2, 'text-anchor': 'middle', class: 'empty' }, state.state === 'starting' ? 'waiting for the first step…' : 'no loss reported'), {
        fill: axisColor,
        'font-size': '13px',
      }),
    );
    return chart;
  }
  const t = (v: number) => (prefs.logScale ? Math.log10(v) : v);
  let lo = Math.min(...points.map((p) => t(p[1])));
  let hi = Math.max(...points.map((p) => t(p[1])));
  if (hi - lo < 1e-12) {
    lo -= 0.5;
    hi += 0.5;
  }
  const x0 = points[0][0];
  const x1 = Math.max(points[points.length - 1][0], x0 + 1);
  const sx = (s: number) => PAD_LEFT + ((s - x0) / (x1 - x0)) * plotW;
  const sy = (v: number) => PAD_TOP + plotH - ((t(v) - lo) / (hi - lo)) * plotH;

  // y ticks: round values in linear scale, powers of ten (and 2×, 5×) in log scale.
  const yTicks = prefs.logScale
    ? niceTicks(Math.floor(lo), Math.ceil(hi), TARGET_TICKS).filter((e) => Number.isInteger(e) && e >= lo - 1e-9 && e <= hi + 1e-9).map((e) => 10 ** e)
    : niceTicks(lo, hi, TARGET_TICKS);
  for (const v of yTicks) {
    const y = sy(v);
    if (y < PAD_TOP - 0.5 || y > PAD_TOP + plotH + 0.5) continue;
    chart.append(
      styled(svg('line', { x1: PAD_LEFT, x2: PAD_LEFT + plotW, y1: y.toFixed(1), y2: y.toFixed(1), class: 'gridline' }), { stroke: gridColor, 'stroke-dasharray': '2 3' }),
      styled(svg('text', { x: PAD_LEFT - 6, y: (y + 4).toFixed(1), 'text-anchor': 'end', class: 'tick-y' }, formatTick(v, yTicks)), { fill: axisColor, 'font-size': '11px' }),
    );
  }
  for (const s of niceTicks(x0, x1, TARGET_TICKS).filter((s) => Number.isInteger(s))) {
    const x = sx(s);
    chart.append(
      styled(svg('line', { x1: x.toFixed(1), x2: x.toFixed(1), y1: PAD_TOP + plotH, y2: PAD_TOP + plotH + 4 }), { stroke: axisColor }),
      styled(svg('text', { x: x.toFixed(1), y: PAD_TOP + plotH + 17, 'text-anchor': 'middle', class: 'tick-x' }, formatStep(s)), { fill: axisColor, 'font-size': '11px' }),
    );
  }
  chart.append(
    styled(svg('text', { x: PAD_LEFT + plotW, y: CHART_H - 2, 'text-anchor': 'end' }, 'step'), { fill: axisColor, 'font-size': '11px' }),
    styled(svg('text', { x: 12, y: PAD_TOP + plotH / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${PAD_TOP + plotH / 2})` }, prefs.logScale ? 'loss (log)' : 'loss'), {
      fill: axisColor,
      'font-size': '11px',
    }),
    styled(svg('polyline', { class: 'loss-line', points: points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ') }), {
      fill: 'none',
      stroke: 'var(--vscode-charts-blue, var(--vscode-focusBorder))',
      'stroke-width': '1.5',
      'stroke-linejoin': 'round',
    }),
  );
  const last = points[points.length - 1];
  chart.append(
    styled(svg('circle', { cx: sx(last[0]).toFixed(1), cy: sy(last[1]).toFixed(1), r: 3, class: 'last' }), { fill: 'var(--vscode-charts-blue, var(--vscode-focusBorder))' }),
    svg('title', null, `loss ${formatNumber(last[1])} at step ${last[0]}`),
  );
  return chart;
}

function sourceLink(where: string | undefined, index: number | undefined): HTMLElement | string {
  if (!where) return '';
  if (index === undefined) return h('span', { class: 'mono' }, where);
  return h('a', { href: '#', class: 'mono source-link', onclick: (e: Event) => (e.preventDefault(), post({ type: 'openOpSource', index })) }, where);
}

const STATE_TEXT: Record<TrainingState['state'], string> = {
  starting: 'starting',
  running: 'running',
  done: 'done',
  stopped: 'stopped',
  failed: 'failed',
};

function factsTable(s: TrainingState): HTMLElement {
  const rows: [string, Node | string][] = [
    ['Step', `${s.step}${s.totalSteps ? ` of ${s.totalSteps}` : ''}`],
    ['Epoch', s.epoch === null ? '--' : `${s.epoch}${s.totalEpochs ? ` of ${s.totalEpochs}` : ''}`],
    ['Elapsed', s.elapsed],
    ['Loss', s.lastLoss === null ? '--' : `${formatNumber(s.lastLoss)}${s.minLoss ? ` (lowest ${formatNumber(s.minLoss[1])} at step ${s.minLoss[0]})` : ''}`],
    ['Learning rate', s.lr === null ? 'unknown' : formatNumber(s.lr)],
    ['Mode', s.training === null ? 'unknown' : s.training ? 'train' : 'eval (model.eval())'],
    ['Gradients', s.gradEnabled === null ? 'unknown' : s.gradEnabled ? 'enabled' : 'disabled (no_grad)'],
    ['Engine', `${s.engine}${s.runId ? ` · run ${s.runId}` : ''}`],
  ];
  return h('table', { class: 'facts', id: 'training-facts' }, h('tbody', null, ...rows.map(([k, v]) => h('tr', null, h('th', null, k), h('td', { 'data-fact': k }, v)))));
}

function diagnosisSection(s: TrainingState): HTMLElement {
  const d = s.diagnosis;
  const section = h('section', { id: 'diagnosis' }, h('h2', null, 'Diagnosis'));
  if (!d) {
    section.append(h('p', { class: 'muted' }, s.state === 'running' || s.state === 'starting' ? 'Measured while the run goes; the first figures come after a few steps.' : `The ${s.engine} engine gives no diagnosis for this run.`));
    return section;
  }
  const facts = [`${d.steps} steps on ${d.device}`, `${formatNumber(d.stepMs)} ms per step`];
  if (d.batchSize !== null) facts.push(`batch size ${d.batchSize}`);
  section.append(h('p', null, facts.join(' · ')));
  if (d.breakdown) {
    const b = d.breakdown;
    const parts: [string, number][] = [
      ['data', b.dataMs],
      ['forward', b.forwardMs],
      ['backward', b.backwardMs],
      ['optimizer', b.optimizerMs],
      ['other', b.otherMs],
    ];
    const total = parts.reduce((a, [, v]) => a + v, 0) || 1;
    section.append(
      h(
        'table',
        { class: 'facts breakdown' },
        h('tbody', null, ...parts.map(([k, v]) => h('tr', null, h('th', null, k), h('td', { class: 'num' }, `${formatNumber(v)} ms`), h('td', null, bar(v / total, `${((100 * v) / total).toFixed(0)}% of the step`))))),
      ),
    );
  }
  if (!d.findings.length) section.append(h('p', { class: 'muted' }, 'No findings.'));
  else {
    section.append(
      h(
        'ul',
        { class: 'findings' },
        ...d.findings.map((f) =>
          h(
            'li',
            { class: `finding ${f.severity}`, 'data-severity': f.severity },
            h('span', { class: 'badge' }, f.severity),
            ' ',
            h('span', { class: 'finding-message' }, f.message),
            f.where ? ' ' : '',
            sourceLink(f.where, f.sourceIndex),
          ),
        ),
      ),
    );
  }
  return section;
}

/** A row-sized histogram: one bar per bin, heights relative to the fullest bin. */
function miniHistogram(v: ValueSummary, label: string): SVGSVGElement {
  const { counts, min, max } = v.histogram;
  const chart = svg('svg', { viewBox: `0 0 ${MINI_HIST_W} ${MINI_HIST_H}`, class: 'mini-histogram', role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
  styled(chart, { width: `${MINI_HIST_W}px`, height: `${MINI_HIST_H}px`, display: 'inline-block', 'vertical-align': 'middle' });
  const top = Math.max(1, ...counts);
  const w = MINI_HIST_W / Math.max(counts.length, 1);
  counts.forEach((c, i) => {
    const bh = (c / top) * MINI_HIST_H;
    chart.append(styled(svg('rect', { x: (i * w).toFixed(2), y: (MINI_HIST_H - bh).toFixed(2), width: (w * 0.85).toFixed(2), height: bh.toFixed(2) }), { fill: 'var(--vscode-charts-blue, var(--vscode-focusBorder))' }));
  });
  const sampled = v.sampled ? ` (estimated from ${v.sampled} of ${v.stats.numel} values)` : '';
  chart.append(svg('title', null, `${label}: ${formatNumber(min)} … ${formatNumber(max)}, ${counts.length} bins${sampled}`));
  return chart;
}

/** `mean ± std`, the histogram, and the NaN/Inf count when there is one. */
function summaryCells(v: ValueSummary | undefined, label: string): HTMLElement[] {
  if (!v) return [h('td', { class: 'muted', colspan: 2 }, 'no gradient')];
  const s = v.stats;
  const bad = s.nanCount + s.infCount;
  return [
    h(
      'td',
      { class: 'num' },
      s.mean === null ? '--' : `${formatNumber(s.mean)} ± ${s.std === null ? '--' : formatNumber(s.std)}`,
      bad ? h('span', { class: 'warning', 'data-nonfinite': bad }, ` ⚠ ${s.nanCount} NaN, ${s.infCount} Inf`) : '',
    ),
    h('td', null, miniHistogram(v, label)),
  ];
}

function histogramsSection(s: TrainingState): HTMLElement | null {
  const hs = s.histograms;
  if (!hs) return null;
  const row = (p: ParameterHistogram) =>
    h(
      'tr',
      { 'data-param': p.name },
      h('th', { class: 'mono' }, p.name),
      h('td', { class: 'mono' }, `[${p.shape.join(', ')}]`),
      ...summaryCells(p.weight, `${p.name} weights`),
      ...summaryCells(p.grad, `${p.name} gradient`),
    );
  return h(
    'section',
    { id: 'histograms' },
    h('h2', null, `Weights and gradients at step ${hs.step}`),
    h(
      'table',
      { class: 'facts param-histograms' },
      h('thead', null, h('tr', null, h('th', null, 'parameter'), h('th', null, 'shape'), h('th', null, 'weight mean ± std'), h('th', null, 'weights'), h('th', null, 'grad mean ± std'), h('th', null, 'gradient'))),
      h('tbody', null, ...hs.params.map(row)),
    ),
    hs.omitted ? h('p', { class: 'muted' }, `${hs.omitted} more parameters not shown (the engine sends at most ${hs.params.length}).`) : '',
  );
}

function render(state: TrainingState | null): void {
  current = state;
  const root = app();
  if (!state) {
    root.replaceChildren(h('header', null, h('h1', null, 'Training')), h('p', { class: 'muted' }, 'No run yet. Open a training script and run "Model Lens: Run Training".'));
    return;
  }
  const stateBadge = h('span', { class: `badge state-${state.state}`, id: 'training-state', 'data-state': state.state }, STATE_TEXT[state.state]);
  const logToggle = h('label', { class: 'muted' }, h('input', {
    type: 'checkbox',
    id: 'log-scale',
    checked: prefs.logScale,
    onchange: (e: Event) => {
      prefs = { ...prefs, logScale: (e.target as HTMLInputElement).checked };
      saveState(prefs);
      if (current) render(current);
    },
  }), ' log scale');
  const out: (HTMLElement | SVGElement)[] = [
    h(
      'header',
      null,
      h('h1', null, `Training: ${state.fileName}`),
      stateBadge,
      h('span', { class: 'spacer' }),
      state.state === 'running' || state.state === 'starting'
        ? h('button', { type: 'button', id: 'stop-training', onclick: () => post({ type: 'stopTraining' }) }, 'Stop')
        : '',
      h('button', { type: 'button', onclick: () => post({ type: 'showLog' }) }, 'Show Output'),
    ),
    h('p', { id: 'training-progress' }, state.fraction !== null ? bar(state.fraction, `${Math.floor(state.fraction * 100)}%`) : '', state.fraction !== null ? ' ' : '', state.progress),
  ];
  if (state.state === 'stopped') out.push(h('p', { class: 'muted' }, `Stopped at step ${state.step}; the curve below is the run so far.`));
  if (state.error) {
    out.push(
      h(
        'section',
        { id: 'training-error', class: 'warn' },
        h('h2', null, 'Failed'),
        h('p', { class: 'error' }, state.error.message),
        state.error.where ? h('p', null, 'At ', sourceLink(state.error.where, state.error.sourceIndex)) : '',
        state.error.hint ? h('p', { class: 'muted' }, state.error.hint) : '',
      ),
    );
  }
  out.push(
    h(
      'figure',
      { id: 'loss-figure' },
      lossChart(state),
      h('figcaption', null, `loss per step · ${state.pointCount} point${state.pointCount === 1 ? '' : 's'}${state.loss.length < state.pointCount ? ` (${state.loss.length} drawn)` : ''} `, logToggle),
    ),
    factsTable(state),
  );
  for (const w of state.warnings) out.push(h('p', { class: 'warning' }, `⚠ ${w}`));
  const hist = histogramsSection(state);
  if (hist) out.push(hist);
  out.push(diagnosisSection(state));
  root.replaceChildren(...out);
}

startPanel<TrainingState>({ render });
