// Model Lens: Hooks — a live card per hook: event count, mean ± std over events, the latest
// histogram and the histograms over time (offset view).
import { HistogramChart, MeanStdChart, RidgeChart } from './charts';
import { formatCount, formatShape } from '../src/shared/format';
import { formatNumber, h } from './dom';
import { app, post, startPanel } from './host';
import type { HooksPanelState, HookView, PanelPatches } from '../src/protocol/webviewMessages';

type HooksState = HooksPanelState;

const cards = new Map<string, HTMLElement>();
let list: HTMLElement | undefined;

function render(state: HooksState | null): void {
  const root = app();
  cards.clear();
  for (const c of cardCharts.values())
    for (const chart of [c.meanStd, c.histogram, c.ridges]) chart?.chart.dispose();
  cardCharts.clear();
  list = h('div', { id: 'hooks' });
  root.replaceChildren(
    h(
      'header',
      null,
      h('h1', null, `Hooks${state?.modelName ? `: ${state.modelName}` : ''}`),
      h(
        'span',
        { class: 'muted' },
        'Run a forward pass (Model Lens: Run Forward Pass) or train to see events.',
      ),
    ),
    list,
  );
  const hooks = state?.hooks ?? [];
  if (!hooks.length)
    list.append(
      h('p', { class: 'muted empty' }, 'No hooks. Attach one from a module in the Modules view.'),
    );
  for (const hook of hooks) upsert(hook);
}

function patch(p: PanelPatches['hooks']): void {
  if (!list) render({ hooks: [] });
  for (const hook of p.hooks) upsert(hook);
}

/** The charts of one card, kept across events so a zoom survives the next event. */
interface CardCharts {
  meanStd?: MeanStdChart;
  histogram?: HistogramChart;
  ridges?: RidgeChart;
  box: HTMLElement;
}
const cardCharts = new Map<string, CardCharts>();

function upsert(hook: HookView): void {
  list?.querySelector('.empty')?.remove();
  let card = cards.get(hook.hookId);
  if (!card) {
    card = h('section', {
      class: 'hook',
      'data-hook-path': hook.path,
      'data-hook-kind': hook.kind,
      'data-hook-id': hook.hookId,
    });
    cards.set(hook.hookId, card);
    cardCharts.set(hook.hookId, { box: h('div', { class: 'charts' }) });
    list?.append(card);
  }
  card.classList.toggle('detached', !hook.attached);
  const charts = cardCharts.get(hook.hookId)!;
  card.replaceChildren(...cardText(hook), charts.box);
  updateCharts(hook, charts);
}

function momentLabel(s: { call: number; step?: number }): string {
  return s.step !== undefined ? `step ${s.step}` : `call ${s.call}`;
}

function updateCharts(hook: HookView, c: CardCharts): void {
  if (!hook.latest) return;
  const name = hook.path || 'root';
  const points = hook.history.map((p) => ({ x: p.call, mean: p.mean, std: p.std }));
  if (!c.meanStd) {
    const el = h('div', { class: 'mean-std-chart' });
    c.box.append(h('figure', null, el, h('figcaption', { class: 'mean-std-caption' })));
    c.meanStd = new MeanStdChart(el, points, 'call', `mean ± std of ${name} per event`);
  } else c.meanStd.set(points);
  const caption = c.box.querySelector('.mean-std-caption');
  caption?.replaceChildren(
    hook.history.length < 2
      ? `mean ± std: ${hook.history.length} event so far; run more forward passes (or train) to see it move`
      : `mean ± std over the last ${hook.history.length} events`,
  );
  if (hook.histogram) {
    const label = `${name} values, latest (${momentLabel({ call: hook.lastCall, step: hook.step })})`;
    if (!c.histogram) {
      const el = h('div', { class: 'histogram-chart' });
      c.box.append(h('figure', null, el, h('figcaption', null, 'latest histogram')));
      c.histogram = new HistogramChart(el, hook.histogram, label);
    } else c.histogram.set(hook.histogram);
  }
  const snaps = hook.histograms ?? [];
  if (snaps.length >= 2) {
    const items = snaps.map((s) => ({ label: momentLabel(s), histogram: s.histogram }));
    if (!c.ridges) {
      const el = h('div', { class: 'ridge-chart' });
      c.box.append(
        h(
          'figure',
          { class: 'wide' },
          el,
          h('figcaption', null, 'histograms over time (offset view)'),
        ),
      );
      c.ridges = new RidgeChart(el, items, `${name} values`);
    } else c.ridges.set(items);
  }
}

function cardText(hook: HookView): HTMLElement[] {
  const s = hook.latest;
  const out: HTMLElement[] = [
    h(
      'div',
      { class: 'hook-head' },
      h('strong', { class: 'mono' }, hook.path || '(root)'),
      h('span', { class: 'badge' }, hook.kind),
      hook.attached ? '' : h('span', { class: 'badge muted' }, 'detached'),
      h(
        'span',
        { class: 'muted' },
        hook.shape ? `${formatShape(hook.shape)} ${hook.dtype ?? ''}` : 'no events yet',
      ),
      h('span', { class: 'spacer' }),
      h('span', null, 'events: ', h('span', { class: 'event-count' }, String(hook.events))),
      hook.attached
        ? h(
            'button',
            { type: 'button', onclick: () => post({ type: 'detachHook', hookId: hook.hookId }) },
            'Detach',
          )
        : '',
    ),
  ];
  if (hook.nanEvents || hook.infEvents) {
    out.push(
      h(
        'p',
        { class: 'warning', role: 'alert' },
        `⚠ ${hook.nanEvents ? `NaN in ${formatCount(hook.nanEvents)} event(s)` : ''}${hook.nanEvents && hook.infEvents ? ', ' : ''}${hook.infEvents ? `Inf in ${formatCount(hook.infEvents)} event(s)` : ''}; first at call ${hook.firstNonFiniteCall}`,
      ),
    );
  }
  if (s) {
    out.push(
      h(
        'p',
        { class: 'stats' },
        `call ${formatCount(hook.lastCall)}${hook.step !== undefined ? ` · step ${hook.step}` : ''} · mean ${formatNumber(s.mean)} · std ${formatNumber(s.std)} · min ${formatNumber(s.min)} · max ${formatNumber(s.max)}`,
      ),
    );
  }
  return out;
}

startPanel<HooksState, PanelPatches['hooks']>({ render, patch });
