// Model Lens: Training — the run's state and progress, a loss curve with axes, learning rate,
// train/eval and grad state, the error with a link to the user's line, and the diagnosis.
import { MeanStdChart, RidgeChart } from './charts';
import { bar } from './meter';
import { emaSmooth } from './chartData';
import { formatNumber, h } from './dom';
import { axis, Chart, xAxis, CHART_HEIGHT_PX, withAlpha, type uPlot } from './plot';
import { app, post, savedState, saveState, startPanel } from './host';
import type { ParameterHistogram, StepBreakdown, ValueSummary } from '../src/protocol/messages';
import type { FindingView, TrainingPanelState } from '../src/protocol/webviewMessages';

type TrainingState = TrainingPanelState;
type Breakdown = StepBreakdown;

interface ViewPrefs {
  logScale: boolean;
  /** TensorBoard's smoothing weight, 0 (raw) to 0.99. */
  smoothing: number;
  /** Parameter whose histograms are drawn over time. */
  param?: string;
}

const MAX_SMOOTHING = 0.99;
const DEFAULT_SMOOTHING = 0.6;

let prefs: ViewPrefs = {
  logScale: false,
  smoothing: DEFAULT_SMOOTHING,
  ...savedState<ViewPrefs>(),
};
let current: TrainingState | null = null;

function setPrefs(next: Partial<ViewPrefs>): void {
  prefs = { ...prefs, ...next };
  saveState(prefs);
}

/** Both curves on one step axis: [steps, train, train smoothed, eval, eval smoothed]. */
function lossData(s: TrainingState): uPlot.AlignedData {
  const byStep = new Map<number, [number | null, number | null]>();
  for (const [step, v] of s.loss) byStep.set(step, [v, null]);
  for (const [step, v] of s.evalLoss) byStep.set(step, [byStep.get(step)?.[0] ?? null, v]);
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  const usable = (v: number | null | undefined) =>
    v === null || v === undefined || !Number.isFinite(v) || (prefs.logScale && v <= 0) ? null : v;
  const train = steps.map((k) => usable(byStep.get(k)![0]));
  const evalv = steps.map((k) => usable(byStep.get(k)![1]));
  // Smooth each series over its own points, not over the gaps the other series leaves.
  const smooth = (vs: (number | null)[]) => {
    const idx = vs.flatMap((v, i) => (v === null ? [] : [i]));
    const sm = emaSmooth(
      idx.map((i) => vs[i]),
      prefs.smoothing,
    );
    const out: (number | null)[] = vs.map(() => null);
    idx.forEach((i, j) => (out[i] = sm[j]));
    return out;
  };
  // Without eval points the legend shows no eval rows (the options leave those series out).
  return s.evalLoss.length
    ? [steps, train, smooth(train), evalv, smooth(evalv)]
    : [steps, train, smooth(train)];
}

/**
 * The loss curve (uPlot): raw values faint, the smoothed curve strong, as TensorBoard draws them;
 * eval loss in a second colour; hover shows the step and every value; drag zooms, double click
 * resets. Kept across updates, so a zoom survives new points.
 */
let lossChart: Chart | undefined;
let lossBox: HTMLElement | undefined;
let lossHasEval = false;

function lossFigure(state: TrainingState): HTMLElement {
  if (!lossBox || !lossChart) {
    lossBox = h('div', { id: 'loss-chart', class: 'loss-chart' });
    lossChart = new Chart(lossBox, {
      data: () => (current ? lossData(current) : [[], [], []]),
      options: (theme, width) => {
        const raw = (c: string) => withAlpha(c, 0.3);
        const v = (_u: uPlot, x: number | null) => (x === null ? '--' : formatNumber(x));
        const hasEval = (current?.evalLoss.length ?? 0) > 0;
        return {
          width,
          height: CHART_HEIGHT_PX,
          legend: { show: true, live: true },
          cursor: { drag: { x: true, y: false }, focus: { prox: 16 } },
          focus: { alpha: 0.4 },
          scales: { x: { time: false }, y: prefs.logScale ? { distr: 3 } : {} },
          axes: [
            xAxis(theme, 'step', { values: (_u, ticks) => ticks.map(formatStep) }),
            axis(theme, { label: prefs.logScale ? 'loss (log)' : 'loss', labelSize: 18, size: 60 }),
          ],
          series: [
            { label: 'step', value: (_u, x) => (x === null ? '--' : String(x)) },
            {
              label: 'train',
              stroke: raw(theme.series[0]),
              width: 1,
              value: v,
              spanGaps: true,
              points: { show: false },
            },
            {
              label: 'train (smoothed)',
              stroke: theme.series[0],
              width: 2,
              value: v,
              spanGaps: true,
              points: { show: false },
            },
            ...(hasEval
              ? [
                  {
                    label: 'eval',
                    stroke: raw(theme.series[1]),
                    width: 1,
                    value: v,
                    spanGaps: true,
                    points: { show: true },
                  },
                  {
                    label: 'eval (smoothed)',
                    stroke: theme.series[1],
                    width: 2,
                    value: v,
                    spanGaps: true,
                    points: { show: false },
                  },
                ]
              : []),
          ],
        };
      },
    });
    lossHasEval = state.evalLoss.length > 0;
  } else if (state.evalLoss.length > 0 !== lossHasEval) {
    // The first eval point adds two series: that needs new options.
    lossHasEval = state.evalLoss.length > 0;
    lossChart.build();
  } else lossChart.update();
  lossBox.dataset.points = String(state.pointCount);
  lossBox.dataset.drawn = String(state.loss.length);
  lossBox.setAttribute('role', 'img');
  lossBox.setAttribute('aria-label', `loss curve, ${state.pointCount} points`);
  if (!state.loss.length) {
    lossBox.dataset.empty =
      state.state === 'starting' ? 'waiting for the first step…' : 'no loss reported';
  } else delete lossBox.dataset.empty;
  return lossBox;
}

function lossControls(): HTMLElement {
  const value = h('span', { class: 'mono', id: 'smoothing-value' }, prefs.smoothing.toFixed(2));
  const slider = h('input', {
    type: 'range',
    id: 'smoothing',
    min: 0,
    max: MAX_SMOOTHING,
    step: 0.01,
    value: prefs.smoothing,
    'aria-label': 'smoothing',
    oninput: (e: Event) => {
      setPrefs({ smoothing: Number((e.target as HTMLInputElement).value) });
      value.textContent = prefs.smoothing.toFixed(2);
      lossChart?.update();
    },
  });
  const log = h('input', {
    type: 'checkbox',
    id: 'log-scale',
    checked: prefs.logScale,
    onchange: (e: Event) => {
      setPrefs({ logScale: (e.target as HTMLInputElement).checked });
      // A new y distribution needs new options.
      lossChart?.build();
    },
  });
  return h(
    'div',
    { class: 'chart-controls' },
    h('label', null, 'Smoothing ', slider, ' ', value),
    h('label', null, log, ' log scale'),
    h('span', { class: 'muted' }, 'drag to zoom, double-click to reset'),
  );
}

function lossCaption(s: TrainingState): string {
  if (!s.loss.length)
    return s.state === 'starting' ? 'waiting for the first step…' : 'no loss reported';
  const drawn = s.loss.length < s.pointCount ? ` (${s.loss.length} drawn)` : '';
  const evals = s.evalLoss.length ? ` · ${s.evalLoss.length} eval points` : '';
  return `loss per step · ${s.pointCount} point${s.pointCount === 1 ? '' : 's'}${drawn}${evals}`;
}

function formatStep(v: number): string {
  return v >= 1e6
    ? `${(v / 1e6).toFixed(v % 1e6 === 0 ? 0 : 1)}M`
    : v >= 1e4
      ? `${(v / 1e3).toFixed(v % 1e3 === 0 ? 0 : 1)}k`
      : String(v);
}

function sourceLink(where: string | undefined, index: number | undefined): HTMLElement | string {
  if (!where) return '';
  if (index === undefined) return h('span', { class: 'mono' }, where);
  return h(
    'a',
    {
      href: '#',
      class: 'mono source-link',
      onclick: (e: Event) => (e.preventDefault(), post({ type: 'openOpSource', index })),
    },
    where,
  );
}

const STATE_TEXT: Record<TrainingState['state'], string> = {
  starting: 'starting',
  running: 'running',
  done: 'done',
  stopped: 'stopped',
  failed: 'failed',
};

function lowest(min: [number, number] | null): string {
  return min ? ` (lowest ${formatNumber(min[1])} at step ${min[0]})` : '';
}

function factsTable(s: TrainingState): HTMLElement {
  const rows: [string, Node | string][] = [
    ['Step', `${s.step}${s.totalSteps ? ` of ${s.totalSteps}` : ''}`],
    ['Epoch', s.epoch === null ? '--' : `${s.epoch}${s.totalEpochs ? ` of ${s.totalEpochs}` : ''}`],
    ['Elapsed', s.elapsed],
    ['Loss', s.lastLoss === null ? '--' : `${formatNumber(s.lastLoss)}${lowest(s.minLoss)}`],
    ['Learning rate', s.lr === null ? 'unknown' : formatNumber(s.lr)],
    ['Mode', s.training === null ? 'unknown' : s.training ? 'train' : 'eval (model.eval())'],
    [
      'Gradients',
      s.gradEnabled === null ? 'unknown' : s.gradEnabled ? 'enabled' : 'disabled (no_grad)',
    ],
    ['Engine', `${s.engine}${s.runId ? ` · run ${s.runId}` : ''}`],
  ];
  return h(
    'table',
    { class: 'facts', id: 'training-facts' },
    h(
      'tbody',
      null,
      ...rows.map(([k, v]) => h('tr', null, h('th', null, k), h('td', { 'data-fact': k }, v))),
    ),
  );
}

function diagnosisSection(s: TrainingState): HTMLElement {
  const d = s.diagnosis;
  const section = h('section', { id: 'diagnosis' }, h('h2', null, 'Diagnosis'));
  if (!d) {
    section.append(
      h(
        'p',
        { class: 'muted' },
        s.state === 'running' || s.state === 'starting'
          ? 'Measured while the run goes; the first figures come after a few steps.'
          : `The ${s.engine} engine gives no diagnosis for this run.`,
      ),
    );
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
        h(
          'tbody',
          null,
          ...parts.map(([k, v]) =>
            h(
              'tr',
              null,
              h('th', null, k),
              h('td', { class: 'num' }, `${formatNumber(v)} ms`),
              h('td', null, bar(v / total, `${((100 * v) / total).toFixed(0)}% of the step`)),
            ),
          ),
        ),
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

/** `mean ± std`, the range, and the NaN/Inf count when there is one. */
function summaryCells(v: ValueSummary | undefined): HTMLElement[] {
  if (!v) return [h('td', { class: 'muted', colspan: 2 }, 'no gradient')];
  const s = v.stats;
  const bad = s.nanCount + s.infCount;
  const sampled = v.sampled ? ` (histogram from ${v.sampled} of ${s.numel} values)` : '';
  return [
    h(
      'td',
      { class: 'num', title: `${v.histogram.counts.length} bins${sampled}` },
      s.mean === null
        ? '--'
        : `${formatNumber(s.mean)} ± ${s.std === null ? '--' : formatNumber(s.std)}`,
      bad
        ? h(
            'span',
            { class: 'warning', 'data-nonfinite': bad },
            ` ⚠ ${s.nanCount} NaN, ${s.infCount} Inf`,
          )
        : '',
    ),
    h('td', { class: 'num muted' }, `${formatNumber(s.min)} … ${formatNumber(s.max)}`),
  ];
}

/** The selected parameter's weights and gradient over the kept snapshots. */
interface ParamCharts {
  param: string;
  weights: RidgeChart;
  grads: RidgeChart | null;
  means: MeanStdChart;
  box: HTMLElement;
}
let paramCharts: ParamCharts | undefined;

function selectedParam(s: TrainingState): string | undefined {
  const names = s.histograms?.params.map((p) => p.name) ?? [];
  return prefs.param && names.includes(prefs.param) ? prefs.param : names[0];
}

function paramSeries(s: TrainingState, name: string) {
  const snaps = s.histogramHistory.flatMap((snap) => {
    const p = snap.params.find((q) => q.name === name);
    return p ? [{ step: snap.step, p }] : [];
  });
  return {
    weights: snaps.map(({ step, p }) => ({ label: `step ${step}`, histogram: p.weight.histogram })),
    grads: snaps.flatMap(({ step, p }) =>
      p.grad ? [{ label: `step ${step}`, histogram: p.grad.histogram }] : [],
    ),
    means: snaps.map(({ step, p }) => ({
      x: step,
      mean: p.weight.stats.mean,
      std: p.weight.stats.std,
    })),
  };
}

function paramChartsFor(s: TrainingState, name: string): HTMLElement {
  const series = paramSeries(s, name);
  if (
    paramCharts &&
    paramCharts.param === name &&
    (paramCharts.grads !== null) === series.grads.length > 0
  ) {
    paramCharts.weights.set(series.weights);
    paramCharts.grads?.set(series.grads);
    paramCharts.means.set(series.means);
    return paramCharts.box;
  }
  for (const c of [paramCharts?.weights, paramCharts?.grads, paramCharts?.means])
    c?.chart.dispose();
  const wEl = h('div', { class: 'ridge-chart', id: 'weights-over-time' });
  const gEl = h('div', { class: 'ridge-chart', id: 'grads-over-time' });
  const mEl = h('div', { class: 'mean-std-chart', id: 'weight-mean-std' });
  const box = h(
    'div',
    { class: 'charts' },
    h(
      'figure',
      { class: 'wide' },
      wEl,
      h('figcaption', null, `${name}: weights over steps (offset view)`),
    ),
    series.grads.length
      ? h(
          'figure',
          { class: 'wide' },
          gEl,
          h('figcaption', null, `${name}: gradient over steps (offset view)`),
        )
      : '',
    h(
      'figure',
      { class: 'wide' },
      mEl,
      h('figcaption', null, `${name}: weight mean ± std per snapshot`),
    ),
  );
  paramCharts = {
    param: name,
    box,
    weights: new RidgeChart(wEl, series.weights, `${name} weights`),
    grads: series.grads.length ? new RidgeChart(gEl, series.grads, `${name} gradient`) : null,
    means: new MeanStdChart(mEl, series.means, 'step', `${name} weight mean ± std per step`),
  };
  return box;
}

function histogramsSection(s: TrainingState): HTMLElement | null {
  const hs = s.histograms;
  if (!hs) return null;
  const chosen = selectedParam(s);
  const row = (p: ParameterHistogram) =>
    h(
      'tr',
      {
        'data-param': p.name,
        class: p.name === chosen ? 'selected' : undefined,
        tabindex: 0,
        title: 'Show this parameter over time',
        onclick: () => {
          setPrefs({ param: p.name });
          if (current) render(current);
        },
      },
      h('th', { class: 'mono' }, p.name),
      h('td', { class: 'mono' }, `[${p.shape.join(', ')}]`),
      ...summaryCells(p.weight),
      ...summaryCells(p.grad),
    );
  return h(
    'section',
    { id: 'histograms' },
    h('h2', null, `Weights and gradients at step ${hs.step}`),
    h(
      'table',
      { class: 'facts param-histograms' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ...[
            'parameter',
            'shape',
            'weight mean ± std',
            'weight range',
            'grad mean ± std',
            'grad range',
          ].map((t) => h('th', null, t)),
        ),
      ),
      h('tbody', null, ...hs.params.map(row)),
    ),
    hs.omitted
      ? h(
          'p',
          { class: 'muted' },
          `${hs.omitted} more parameters not shown (the engine sends at most ${hs.params.length}).`,
        )
      : '',
    chosen ? paramChartsFor(s, chosen) : '',
  );
}

function render(state: TrainingState | null): void {
  current = state;
  const root = app();
  if (!state) {
    root.replaceChildren(
      h('header', null, h('h1', null, 'Training')),
      h(
        'p',
        { class: 'muted' },
        'No run yet. Open a training script and run "Model Lens: Run Training".',
      ),
    );
    return;
  }
  const stateBadge = h(
    'span',
    { class: `badge state-${state.state}`, id: 'training-state', 'data-state': state.state },
    STATE_TEXT[state.state],
  );
  const out: (HTMLElement | SVGElement)[] = [
    h(
      'header',
      null,
      h('h1', null, `Training: ${state.fileName}`),
      stateBadge,
      h('span', { class: 'spacer' }),
      state.state === 'running' || state.state === 'starting'
        ? h(
            'button',
            { type: 'button', id: 'stop-training', onclick: () => post({ type: 'stopTraining' }) },
            'Stop',
          )
        : '',
      h('button', { type: 'button', onclick: () => post({ type: 'showLog' }) }, 'Show Output'),
    ),
    h(
      'p',
      { id: 'training-progress' },
      state.fraction !== null ? bar(state.fraction, `${Math.floor(state.fraction * 100)}%`) : '',
      state.fraction !== null ? ' ' : '',
      state.progress,
    ),
  ];
  if (state.state === 'stopped')
    out.push(
      h(
        'p',
        { class: 'muted' },
        `Stopped at step ${state.step}; the curve below is the run so far.`,
      ),
    );
  if (state.error) {
    out.push(
      h(
        'section',
        { id: 'training-error', class: 'warn' },
        h('h2', null, 'Failed'),
        h('p', { class: 'error' }, state.error.message),
        state.error.where
          ? h('p', null, 'At ', sourceLink(state.error.where, state.error.sourceIndex))
          : '',
        state.error.hint ? h('p', { class: 'muted' }, state.error.hint) : '',
      ),
    );
  }
  out.push(
    h(
      'figure',
      { id: 'loss-figure' },
      lossControls(),
      lossFigure(state),
      h('figcaption', null, lossCaption(state)),
    ),
    factsTable(state),
  );
  for (const w of state.warnings) out.push(h('p', { class: 'warning' }, `⚠ ${w}`));
  const hist = histogramsSection(state);
  if (hist) out.push(hist);
  else if (!state.histogramsSupported) {
    out.push(
      h(
        'p',
        { class: 'note' },
        `The ${state.engine} engine sends no weight and gradient histograms; hook a layer to see its activations.`,
      ),
    );
  }
  out.push(diagnosisSection(state));
  root.replaceChildren(...out);
}

startPanel<TrainingState>({ render });
