// Model Lens: Tensor — shape, strides, contiguity and where the elements sit in memory.
import type { TensorPanelState } from '../src/protocol/webviewMessages';
import type { TensorInfo } from '../src/protocol/types';
import { HistogramChart } from './charts';
import { formatBytes, formatCount, formatShape } from '../src/shared/format';
import { formatNumber, h } from './dom';
import { app, startPanel } from './host';
import { MAX_LAYOUT_ELEMENTS, tensorLayout } from './memoryLayout';

type TensorState = TensorPanelState;

function render(state: TensorState | null): void {
  const root = app();
  if (!state) {
    root.replaceChildren(
      h('p', { class: 'muted' }, 'Pick a parameter, buffer or module output to inspect it.'),
    );
    return;
  }
  const t = state.tensor;
  root.replaceChildren(
    h(
      'header',
      null,
      h('h1', null, state.name),
      h(
        'span',
        { class: 'muted' },
        `${state.modelName} · ${t.dtype} · ${t.device} · ${formatCount(t.numel)} elements · ${formatBytes(t.bytes)}`,
      ),
    ),
    dimsTable(t),
    contiguity(t),
    viewCheck(t),
    layoutPicture(t),
    storage(t) ?? '',
    stats(state) ?? '',
  );
}

function dimsTable(t: TensorInfo): HTMLElement {
  // The stride each dim would have if the tensor were contiguous, to show where it differs.
  const expected: number[] = [];
  let acc = 1;
  for (let d = t.shape.length - 1; d >= 0; d--) {
    expected[d] = acc;
    acc *= t.shape[d];
  }
  const dims = t.shape.map((_, d) => d);
  const cls = (d: number) => (t.contiguity.breaksAt === d ? 'breaks' : '');
  return h(
    'section',
    { id: 'dims' },
    h('h2', null, 'Shape and strides'),
    h(
      'table',
      { class: 'grid dims' },
      h(
        'thead',
        null,
        h('tr', null, h('th', null, 'dim'), ...dims.map((d) => h('th', { class: cls(d) }, d))),
      ),
      h(
        'tbody',
        null,
        h(
          'tr',
          null,
          h('th', null, 'size'),
          ...dims.map((d) => h('td', { class: cls(d) }, t.shape[d])),
        ),
        h(
          'tr',
          null,
          h('th', null, 'stride'),
          ...dims.map((d) => h('td', { class: cls(d) }, t.stride[d])),
        ),
        h(
          'tr',
          { class: 'muted' },
          h('th', null, 'contiguous stride'),
          ...dims.map((d) => h('td', { class: cls(d) }, expected[d])),
        ),
      ),
    ),
    h(
      'p',
      null,
      `Shape ${formatShape(t.shape)} · stride ${formatShape(t.stride)} (elements) · storage offset ${t.storageOffset}`,
    ),
    t.strideSynthetic
      ? h(
          'p',
          { class: 'muted' },
          'This framework has no strides: these are the row-major strides of a contiguous tensor.',
        )
      : null,
  );
}

function contiguity(t: TensorInfo): HTMLElement {
  const c = t.contiguity;
  return h(
    'section',
    { id: 'contiguity', class: c.contiguous ? 'ok' : 'warn' },
    h('h2', null, 'Contiguity'),
    h(
      'p',
      null,
      c.contiguous ? 'Contiguous' : `Not contiguous: breaks at dim ${c.breaksAt}`,
      c.memoryFormat ? ` (${c.memoryFormat})` : '',
    ),
    c.reason ? h('p', { class: 'muted' }, c.reason) : null,
  );
}

function viewCheck(t: TensorInfo): HTMLElement {
  const v = t.view;
  return h(
    'section',
    { id: 'view', class: v.wouldFail ? 'warn' : 'ok' },
    h('h2', null, 'view() and reshape()'),
    h(
      'p',
      null,
      v.wouldFail
        ? `view() would fail — reshape copies ${formatCount(v.copyBytes)} bytes`
        : `view(-1) works without a copy${v.copyBytes ? `; reshape copies ${formatCount(v.copyBytes)} bytes` : ''}`,
    ),
    v.error ? h('pre', { class: 'error' }, v.error) : null,
  );
}

function layoutPicture(t: TensorInfo): HTMLElement {
  const layout = tensorLayout(t.shape, t.stride, t.storageOffset);
  const section = h('section', { id: 'layout' }, h('h2', null, 'Logical order vs memory order'));
  if (!layout) {
    section.append(
      h('p', { class: 'muted' }, `Drawn for tensors of at most ${MAX_LAYOUT_ELEMENTS} elements.`),
    );
    return section;
  }
  const n = layout.storageIndex.length;
  const colour = (logical: number, cell: HTMLElement) => {
    cell.style.setProperty('--hue', String(Math.round((logical / Math.max(n, 1)) * 300)));
  };
  const logical = h('div', {
    class: 'cells logical',
    role: 'table',
    'aria-label': 'Logical order: storage index of each element',
  });
  logical.style.gridTemplateColumns = `repeat(${layout.cols}, minmax(2.2em, auto))`;
  layout.storageIndex.forEach((s, i) => {
    const cell = h('div', { class: 'cell', title: `element ${i} → storage[${s}]` }, s);
    colour(i, cell);
    logical.append(cell);
  });
  const memory = h('div', {
    class: 'cells memory',
    role: 'table',
    'aria-label': 'Memory order: element stored in each storage slot',
  });
  for (const slot of layout.slots) {
    const cell = h(
      'div',
      { class: slot.logical.length ? 'cell' : 'cell gap', title: `storage[${slot.index}]` },
      h('small', null, slot.index),
      h('span', null, slot.logical.join(',') || '·'),
    );
    if (slot.logical.length) colour(slot.logical[0], cell);
    memory.append(cell);
  }
  section.append(
    h(
      'p',
      { class: 'muted' },
      'Each element in logical (row-major) order, labelled with its storage index:',
    ),
    logical,
    h(
      'p',
      { class: 'muted' },
      'Storage from low to high address, labelled with the element stored there (· = not part of this tensor):',
    ),
    memory,
  );
  return section;
}

function storage(t: TensorInfo): HTMLElement | null {
  const s = t.storage;
  if (!s && !t.viewOf) return null;
  return h(
    'section',
    { id: 'storage' },
    h('h2', null, 'Storage'),
    s
      ? h(
          'p',
          null,
          `Storage ${s.id}: ${formatBytes(s.bytes)}${s.bytes > t.bytes ? ` (this tensor uses ${formatBytes(t.bytes)})` : ''}`,
        )
      : null,
    t.viewOf ? h('p', null, `View of ${t.viewOf}`) : null,
    s?.sharedWith.length
      ? h('p', null, `Shared with: ${s.sharedWith.join(', ')}`)
      : h('p', { class: 'muted' }, 'Not shared with other named tensors.'),
  );
}

function stats(state: TensorState): HTMLElement | null {
  const s = state.stats;
  if (!s) return null;
  return h(
    'section',
    { id: 'stats' },
    h('h2', null, 'Values'),
    h(
      'p',
      null,
      `mean ${formatNumber(s.mean)} · std ${formatNumber(s.std)} · min ${formatNumber(s.min)} · max ${formatNumber(s.max)}${s.zeroCount !== undefined ? ` · zeros ${formatCount(s.zeroCount)}` : ''}`,
    ),
    s.nanCount || s.infCount
      ? h(
          'p',
          { class: 'warning' },
          `${formatCount(s.nanCount)} NaN, ${formatCount(s.infCount)} Inf`,
        )
      : null,
    state.histogram ? histogramFigure(state.histogram) : null,
  );
}

let valueChart: HistogramChart | undefined;

/** The value histogram (uPlot, real vertical bins); one chart, re-fed when another tensor comes. */
function histogramFigure(hist: NonNullable<TensorState['histogram']>): HTMLElement {
  valueChart?.chart.dispose();
  const el = h('div', { class: 'histogram-chart', id: 'value-histogram' });
  const fig = h('figure', { class: 'wide' }, el, h('figcaption', null, 'value histogram'));
  // Built once the figure is in the page, so it measures its width.
  queueMicrotask(() => (valueChart = new HistogramChart(el, hist, 'value')));
  return fig;
}

startPanel<TensorState>({ render });
