// Model Lens: Summary — torchinfo-style table of one forward pass, with totals.
import { formatBytes, formatCount, formatShape } from '../src/shared/format';
import { h } from './dom';
import { app, post, startPanel } from './host';
import type { SummaryResult } from '../src/protocol/messages';
import type { InputSpec } from '../src/protocol/types';

interface SummaryState {
  modelName: string;
  file: string;
  kind: string;
  inputs: InputSpec[];
  summary?: SummaryResult;
}

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
    h('button', { type: 'button', id: 'copy', disabled: !s, onclick: () => post({ type: 'copySummary' }) }, 'Copy as text'),
  );
  const inputs = h(
    'p',
    { id: 'inputs' },
    'Input: ',
    ...state.inputs.map((i, n) => h('span', { class: 'input', title: i.note ?? i.source }, `${n ? ', ' : ''}${formatShape(i.shape)} ${i.dtype} (${i.source})`)),
  );
  if (!s) {
    root.replaceChildren(header, inputs, h('p', { class: 'muted' }, 'The summary has not run yet (or failed: see the notification).'));
    return;
  }
  const rows = s.rows.map((r) =>
    h(
      'tr',
      {
        'data-path': r.path,
        class: r.ran ? '' : 'not-run',
        tabindex: 0,
        title: r.note ?? '',
        onclick: () => post({ type: 'revealModule', path: r.path }),
        onkeydown: (e: Event) => (e as KeyboardEvent).key === 'Enter' && post({ type: 'revealModule', path: r.path }),
      },
      h('td', { class: 'layer' }, indent(r.depth), h('span', { class: 'type' }, r.type), r.path ? h('span', { class: 'path' }, ` (${r.path})`) : ` (${state.modelName})`),
      h('td', { class: 'shape' }, r.ran ? formatShape(r.outputShape) : '--'),
      h('td', { class: 'num' }, !r.isLeaf && r.params === 0 ? '--' : formatCount(r.params)),
      h('td', { class: 'num' }, r.macs ? formatCount(r.macs) : '--'),
      h('td', { class: 'note' }, [r.aliases.length ? `also at ${r.aliases.join(', ')}` : '', r.note ?? ''].filter(Boolean).join(' · ')),
    ),
  );
  const table = h(
    'table',
    { id: 'summary-table', class: 'grid' },
    h('thead', null, h('tr', null, h('th', null, 'Layer (type)'), h('th', null, 'Output shape'), h('th', { class: 'num' }, 'Param #'), h('th', { class: 'num' }, 'Mult-adds'), h('th', null, ''))),
    h('tbody', null, ...rows),
  );
  const t = s.totals;
  const macs = t.macs >= 1e9 ? `Total mult-adds (G): ${(t.macs / 1e9).toFixed(2)}` : `Total mult-adds (M): ${(t.macs / 1e6).toFixed(2)}`;
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
  const warnings = s.warnings.length ? h('ul', { class: 'warnings' }, ...s.warnings.map((w) => h('li', null, w))) : null;
  root.replaceChildren(header, inputs, warnings ?? '', table, totals);
}

function indent(depth: number): HTMLElement {
  const span = h('span', { class: 'indent' }, depth > 0 ? `${'│ '.repeat(depth - 1)}└─` : '');
  return span;
}

startPanel<SummaryState>({ render });
