// Model Lens: Hooks — a live card per hook: event count, mean ± std over time, latest histogram.
import { histogram, sparkline } from './charts';
import { formatCount, formatShape } from '../src/shared/format';
import { formatNumber, h } from './dom';
import { app, post, startPanel } from './host';
import type { HookView } from '../src/protocol/webviewMessages';

interface HooksState {
  modelName?: string;
  hooks: HookView[];
}

const cards = new Map<string, HTMLElement>();
let list: HTMLElement | undefined;

function render(state: HooksState | null): void {
  const root = app();
  cards.clear();
  list = h('div', { id: 'hooks' });
  root.replaceChildren(
    h('header', null, h('h1', null, `Hooks${state?.modelName ? `: ${state.modelName}` : ''}`), h('span', { class: 'muted' }, 'Run a forward pass (Model Lens: Run Forward Pass) or train to see events.')),
    list,
  );
  const hooks = state?.hooks ?? [];
  if (!hooks.length) list.append(h('p', { class: 'muted empty' }, 'No hooks. Attach one from a module in the Modules view.'));
  for (const hook of hooks) upsert(hook);
}

function patch(p: { hooks: HookView[] }): void {
  if (!list) render({ hooks: [] });
  for (const hook of p.hooks) upsert(hook);
}

function upsert(hook: HookView): void {
  list?.querySelector('.empty')?.remove();
  let card = cards.get(hook.hookId);
  if (!card) {
    card = h('section', { class: 'hook', 'data-hook-path': hook.path, 'data-hook-kind': hook.kind, 'data-hook-id': hook.hookId });
    cards.set(hook.hookId, card);
    list?.append(card);
  }
  card.classList.toggle('detached', !hook.attached);
  card.replaceChildren(...cardContent(hook));
}

function cardContent(hook: HookView): (HTMLElement | SVGElement | string)[] {
  const s = hook.latest;
  const out: (HTMLElement | SVGElement | string)[] = [
    h(
      'div',
      { class: 'hook-head' },
      h('strong', { class: 'mono' }, hook.path || '(root)'),
      h('span', { class: 'badge' }, hook.kind),
      hook.attached ? '' : h('span', { class: 'badge muted' }, 'detached'),
      h('span', { class: 'muted' }, hook.shape ? `${formatShape(hook.shape)} ${hook.dtype ?? ''}` : 'no events yet'),
      h('span', { class: 'spacer' }),
      h('span', null, 'events: ', h('span', { class: 'event-count' }, String(hook.events))),
      hook.attached ? h('button', { type: 'button', onclick: () => post({ type: 'detachHook', hookId: hook.hookId }) }, 'Detach') : '',
    ),
  ];
  if (hook.nanEvents || hook.infEvents) {
    out.push(
      h('p', { class: 'warning', role: 'alert' }, `⚠ ${hook.nanEvents ? `NaN in ${formatCount(hook.nanEvents)} event(s)` : ''}${hook.nanEvents && hook.infEvents ? ', ' : ''}${hook.infEvents ? `Inf in ${formatCount(hook.infEvents)} event(s)` : ''}; first at call ${hook.firstNonFiniteCall}`),
    );
  }
  if (s) {
    out.push(
      h('p', { class: 'stats' }, `call ${formatCount(hook.lastCall)}${hook.step !== undefined ? ` · step ${hook.step}` : ''} · mean ${formatNumber(s.mean)} · std ${formatNumber(s.std)} · min ${formatNumber(s.min)} · max ${formatNumber(s.max)}`),
      h(
        'div',
        { class: 'charts' },
        h('figure', null, sparkline(hook.history, `mean ± std of ${hook.path || 'root'}`), h('figcaption', null, `mean ± std, last ${hook.history.length} events`)),
        hook.histogram ? histogram(hook.histogram, 'latest histogram') : '',
      ),
    );
  }
  return out;
}

startPanel<HooksState, { hooks: HookView[] }>({ render, patch });
