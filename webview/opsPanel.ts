// Model Lens: Ops — where the time of one step goes, per op and per module.
import type { ProfileResult } from '../src/protocol/messages';
import type { OpStat } from '../src/protocol/types';
import type { OpsPanelState } from '../src/protocol/webviewMessages';
import { bar } from './meter';
import { formatCount, formatShape } from '../src/shared/format';
import { formatMs, h } from './dom';
import { app, post, savedState, saveState, startPanel } from './host';

type OpsState = OpsPanelState;

type SortKey = 'name' | 'calls' | 'totalMs' | 'selfMs';
interface ViewState {
  sort: SortKey;
  descending: boolean;
}

const COLUMNS: { key: SortKey; label: string; numeric: boolean }[] = [
  { key: 'name', label: 'Op', numeric: false },
  { key: 'calls', label: 'Calls', numeric: true },
  { key: 'totalMs', label: 'Total ms', numeric: true },
  { key: 'selfMs', label: 'Self ms', numeric: true },
];

let current: OpsState | null = null;
const view: ViewState = { sort: 'selfMs', descending: true, ...savedState<ViewState>() };

function render(state: OpsState | null): void {
  current = state;
  const root = app();
  if (!state) {
    root.replaceChildren(
      h('p', { class: 'muted' }, 'Run "Model Lens: Profile Current File" to time a model.'),
    );
    return;
  }
  const p = state.profile;
  root.replaceChildren(
    h(
      'header',
      null,
      h('h1', null, `${state.modelName}: ops`),
      h(
        'span',
        { class: 'muted' },
        `${p.steps} step${p.steps === 1 ? '' : 's'} · median ${formatMs(p.stepMs)} ms/step · ${p.method} · ${state.kind}`,
      ),
      h(
        'button',
        { type: 'button', id: 'export-trace', onclick: () => post({ type: 'exportTrace' }) },
        'Export trace',
      ),
    ),
    p.warnings.length
      ? h('ul', { class: 'warnings' }, ...p.warnings.map((w) => h('li', null, w)))
      : '',
    opsTable(p.ops),
    modulesTable(p),
  );
}

function opsTable(ops: OpStat[]): HTMLElement {
  const indexed = ops.map((op, index) => ({ op, index }));
  const dir = view.descending ? -1 : 1;
  indexed.sort((a, b) => {
    const x = a.op[view.sort];
    const y = b.op[view.sort];
    return (
      (typeof x === 'string' ? x.localeCompare(y as string) : (x as number) - (y as number)) * dir
    );
  });
  const maxSelf = Math.max(1e-9, ...ops.map((o) => o.selfMs));
  const totalSelf = ops.reduce((a, o) => a + o.selfMs, 0) || 1;
  const head = h(
    'tr',
    null,
    ...COLUMNS.map((c) =>
      h(
        'th',
        {
          class: c.numeric ? 'num sortable' : 'sortable',
          'aria-sort':
            view.sort === c.key ? (view.descending ? 'descending' : 'ascending') : 'none',
          tabindex: 0,
          'data-sort': c.key,
          onclick: () => sortBy(c.key, c.numeric),
          onkeydown: (e: Event) => (e as KeyboardEvent).key === 'Enter' && sortBy(c.key, c.numeric),
        },
        c.label,
        view.sort === c.key ? (view.descending ? ' ▼' : ' ▲') : '',
      ),
    ),
    h('th', null, 'Share of self time'),
    h('th', null, 'Input shapes'),
    h('th', null, 'Source'),
  );
  const rows = indexed.map(({ op, index }) =>
    h(
      'tr',
      { 'data-op': op.name },
      h(
        'td',
        { class: 'mono' },
        op.name,
        op.phase && op.phase !== 'forward' ? h('span', { class: 'badge' }, op.phase) : '',
      ),
      h('td', { class: 'num' }, formatCount(op.calls)),
      h('td', { class: 'num' }, formatMs(op.totalMs)),
      h('td', { class: 'num' }, formatMs(op.selfMs)),
      h(
        'td',
        { class: 'bar-cell' },
        bar(op.selfMs / maxSelf, `${((op.selfMs / totalSelf) * 100).toFixed(1)}% of self time`),
        ` ${((op.selfMs / totalSelf) * 100).toFixed(1)}%`,
      ),
      h(
        'td',
        { class: 'mono shapes' },
        op.inputShapes
          .slice(0, 2)
          .map((s) => s.map((x) => formatShape(x)).join(' '))
          .join(' | '),
      ),
      h(
        'td',
        null,
        op.source
          ? h(
              'a',
              {
                href: '#',
                onclick: (e: Event) => (e.preventDefault(), post({ type: 'openOpSource', index })),
              },
              `${basename(op.source.file)}:${op.source.line}`,
            )
          : '',
      ),
    ),
  );
  return h(
    'section',
    { id: 'ops' },
    h('h2', null, 'Ops'),
    h(
      'table',
      { class: 'grid', id: 'ops-table' },
      h('thead', null, head),
      h('tbody', null, ...rows),
    ),
  );
}

function modulesTable(p: ProfileResult): HTMLElement | string {
  if (!p.modules.length) return '';
  const mods = [...p.modules].sort((a, b) => b.forwardMs - a.forwardMs);
  const max = Math.max(1e-9, ...mods.map((m) => m.forwardMs + (m.backwardMs ?? 0)));
  const hasBackward = mods.some((m) => m.backwardMs !== undefined);
  return h(
    'section',
    { id: 'modules' },
    h('h2', null, 'Modules'),
    h(
      'table',
      { class: 'grid', id: 'modules-table' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', null, 'Module'),
          h('th', null, 'Type'),
          h('th', { class: 'num' }, 'Calls'),
          h('th', { class: 'num' }, 'Forward ms'),
          hasBackward ? h('th', { class: 'num' }, 'Backward ms') : '',
          h('th', null, ''),
        ),
      ),
      h(
        'tbody',
        null,
        ...mods.map((m) =>
          h(
            'tr',
            {
              'data-path': m.path,
              tabindex: 0,
              onclick: () => post({ type: 'revealModule', path: m.path }),
              onkeydown: (e: Event) =>
                (e as KeyboardEvent).key === 'Enter' &&
                post({ type: 'revealModule', path: m.path }),
            },
            h('td', { class: 'mono' }, m.path || '(root)'),
            h('td', null, m.type),
            h('td', { class: 'num' }, formatCount(m.calls)),
            h('td', { class: 'num' }, formatMs(m.forwardMs)),
            hasBackward
              ? h(
                  'td',
                  { class: 'num' },
                  m.backwardMs === undefined ? '--' : formatMs(m.backwardMs),
                )
              : '',
            h('td', { class: 'bar-cell' }, bar((m.forwardMs + (m.backwardMs ?? 0)) / max)),
          ),
        ),
      ),
    ),
  );
}

function sortBy(key: SortKey, numeric: boolean): void {
  view.descending = view.sort === key ? !view.descending : numeric;
  view.sort = key;
  saveState(view);
  render(current);
}

function basename(file: string): string {
  return file.split(/[\\/]/).pop() ?? file;
}

startPanel<OpsState>({ render });
