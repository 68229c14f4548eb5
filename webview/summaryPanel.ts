// Model Lens: Summary — torchinfo-style table of one forward pass, with totals.
import { formatBytes, formatCount, formatShape } from '../src/shared/format';
import { h } from './dom';
import { app, post, startPanel } from './host';
import type { SummaryResult } from '../src/protocol/messages';
import type { SummaryPanelState } from '../src/protocol/webviewMessages';

type SummaryState = SummaryPanelState;

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(2);
}

function render(state: SummaryState | null): void {
  const root = app();
  if (!state) {
    root.replaceChildren(h('p', { class: 'muted' }, 'Inspect a model to see its summary.'));
    return;
  }
  const s = state.summary;
  const header = h(
    'header',
    null,
    h('h1', null, state.modelName),
    h('span', { class: 'muted' }, `${state.file} · ${state.kind}`),
    h(
      'button',
      { type: 'button', id: 'copy', disabled: !s, onclick: () => post({ type: 'copySummary' }) },
      'Copy as text',
    ),
  );
  const inputs = h(
    'p',
    { id: 'inputs' },
    'Input: ',
    ...state.inputs.map((i, n) =>
      h(
        'span',
        { class: 'input', title: i.note ?? i.source },
        `${n ? ', ' : ''}${formatShape(i.shape)} ${i.dtype} (${i.source})`,
      ),
    ),
  );
  if (!s) {
    root.replaceChildren(
      header,
      inputs,
      h('p', { class: 'muted' }, 'The summary has not run yet (or failed: see the notification).'),
    );
    return;
  }
  const rows: HTMLElement[] = [];
  for (const r of s.rows) {
    rows.push(
      h(
        'tr',
        {
          'data-path': r.path,
          class: r.ran ? '' : 'not-run',
          tabindex: 0,
          onclick: () => post({ type: 'revealModule', path: r.path }),
          onkeydown: (e: Event) =>
            (e as KeyboardEvent).key === 'Enter' && post({ type: 'revealModule', path: r.path }),
        },
        h(
          'td',
          { class: 'layer' },
          indent(r.depth),
          h('span', { class: 'type' }, r.type),
          r.path ? h('span', { class: 'path' }, ` (${r.path})`) : ` (${state.modelName})`,
        ),
        h('td', { class: 'shape' }, r.ran ? formatShape(r.outputShape) : '--'),
        h('td', { class: 'num' }, !r.isLeaf && r.params === 0 ? '--' : formatCount(r.params)),
        h('td', { class: 'num' }, r.macs ? formatCount(r.macs) : '--'),
      ),
    );
    // A note is a sentence: it gets a row of its own under its module, spanning the table, so a
    // long one wraps instead of pushing the table past the panel's edge.
    const note = [r.aliases.length ? `shared: also at ${r.aliases.join(', ')}` : '', r.note ?? '']
      .filter(Boolean)
      .join(' · ');
    if (note) rows.push(noteRow(r.depth, note));
  }
  insertAliasRows(s.rows, rows);
  const table = h(
    'table',
    { id: 'summary-table', class: 'grid' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, 'Layer (type)'),
        h('th', null, 'Output shape'),
        h('th', { class: 'num' }, 'Param #'),
        h('th', { class: 'num' }, 'Mult-adds'),
      ),
    ),
    h('tbody', null, ...rows),
  );
  const t = s.totals;
  const macs =
    t.macs >= 1e9
      ? `Total mult-adds (G): ${(t.macs / 1e9).toFixed(2)}`
      : `Total mult-adds (M): ${(t.macs / 1e6).toFixed(2)}`;
  const totals = h(
    'div',
    { id: 'totals' },
    ...[
      `Total params: ${formatCount(t.params)}`,
      `Trainable params: ${formatCount(t.trainableParams)}`,
      `Non-trainable params: ${formatCount(t.nonTrainableParams)}`,
      macs,
      `Input size (MB): ${mb(t.inputBytes)}`,
      `Forward/backward pass size (MB): ${mb(t.forwardBackwardBytes)}`,
      `Params size (MB): ${mb(t.paramBytes)} (${formatBytes(t.paramBytes)})`,
      `Buffers size (MB): ${mb(t.bufferBytes)}`,
      `Estimated Total Size (MB): ${mb(t.totalBytes)}`,
    ].map((line) => h('div', null, line)),
  );
  const warnings = s.warnings.length
    ? h('ul', { class: 'warnings' }, ...s.warnings.map((w) => h('li', null, w)))
    : null;
  root.replaceChildren(header, inputs, warnings ?? '', table, totals);
}

/**
 * A shared module is one row, under its first name; its other names (`layers.2` when
 * `layers[2] is layers[0]`) get a row of their own at the end of their parent's members, so
 * the table lists every registered name, each labelled with its own path.
 */
function insertAliasRows(summary: SummaryResult['rows'], rows: HTMLElement[]): void {
  const inserts: { after: number; row: HTMLElement; note: HTMLElement }[] = [];
  summary.forEach((r) => {
    for (const alias of r.aliases) {
      const parent = alias.includes('.') ? alias.slice(0, alias.lastIndexOf('.')) : '';
      const parentIndex = summary.findIndex((x) => x.path === parent);
      if (parentIndex < 0) continue;
      // The parent's subtree ends at the first later row that is not deeper than the parent.
      let end = parentIndex;
      while (end + 1 < summary.length && summary[end + 1].depth > summary[parentIndex].depth) end++;
      const depth = summary[parentIndex].depth + 1;
      inserts.push({
        after: end,
        row: h(
          'tr',
          {
            'data-alias': alias,
            class: 'alias',
            tabindex: 0,
            onclick: () => post({ type: 'revealModule', path: r.path }),
          },
          h(
            'td',
            { class: 'layer' },
            indent(depth),
            h('span', { class: 'type' }, r.type),
            h('span', { class: 'path' }, ` (${alias})`),
          ),
          h('td', { class: 'shape' }, '='),
          h('td', { class: 'num' }, '--'),
          h('td', { class: 'num' }, '--'),
        ),
        note: noteRow(depth, `same module as ${r.path}: counted there`),
      });
    }
  });
  // `after` counts summary rows; rows[] also holds note rows, so place by the row element.
  const rowOf = (i: number) => rows.findIndex((tr) => tr.dataset.path === summary[i].path);
  for (const { after, row, note } of inserts.reverse()) {
    let at = rowOf(after) + 1;
    while (at < rows.length && rows[at].classList.contains('note-row')) at++;
    rows.splice(at, 0, row, note);
  }
}

function noteRow(depth: number, text: string): HTMLElement {
  const td = h('td', { class: 'note', colspan: 4 }, text);
  td.style.paddingLeft = `${1 + depth * 1.2}em`;
  return h('tr', { class: 'note-row' }, td);
}

function indent(depth: number): HTMLElement {
  const span = h('span', { class: 'indent' }, depth > 0 ? `${'│ '.repeat(depth - 1)}└─` : '');
  return span;
}

startPanel<SummaryState>({ render });
