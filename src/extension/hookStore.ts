// What the Hooks panel shows per hook, folded from the engine's throttled `hook/event` stream.
// No `vscode` import here: unit tests run this without an editor.
import type { HookEvent } from '../protocol/messages';
import type { HookKind } from '../protocol/types';
import type { HookView } from '../protocol/webviewMessages';

/** Points kept for each sparkline; older ones scroll out. */
export const HOOK_HISTORY_POINTS = 120;
/** Histograms kept for the offset view: enough to see a trend, few enough to stay readable. */
export const HOOK_HISTOGRAM_SNAPSHOTS = 16;

export class HookStore {
  private readonly hooks = new Map<string, HookView>();

  add(hookId: string, path: string, kind: HookKind): HookView {
    const view: HookView = {
      hookId,
      path,
      kind,
      events: 0,
      lastCall: 0,
      history: [],
      nanEvents: 0,
      infEvents: 0,
      attached: true,
    };
    this.hooks.set(hookId, view);
    return view;
  }

  /** Folds one event in; returns the hook's new view, or undefined for a hook this store does not know. */
  onEvent(e: HookEvent): HookView | undefined {
    const h = this.hooks.get(e.hookId);
    if (!h || !h.attached) return undefined;
    h.events++;
    h.lastCall = e.call;
    h.step = e.step;
    h.shape = e.tensor.shape;
    h.dtype = e.tensor.dtype;
    h.latest = e.stats;
    if (e.histogram) {
      h.histogram = e.histogram;
      const snaps = (h.histograms ??= []);
      snaps.push({ call: e.call, step: e.step, histogram: e.histogram });
      if (snaps.length > HOOK_HISTOGRAM_SNAPSHOTS)
        snaps.splice(0, snaps.length - HOOK_HISTOGRAM_SNAPSHOTS);
    }
    h.history.push({ call: e.call, mean: e.stats.mean, std: e.stats.std });
    if (h.history.length > HOOK_HISTORY_POINTS)
      h.history.splice(0, h.history.length - HOOK_HISTORY_POINTS);
    if (e.stats.nanCount > 0) h.nanEvents++;
    if (e.stats.infCount > 0) h.infEvents++;
    if ((e.stats.nanCount > 0 || e.stats.infCount > 0) && h.firstNonFiniteCall === undefined)
      h.firstNonFiniteCall = e.call;
    return h;
  }

  /** The same hook attached again under a new id (the model was reloaded): its history goes on. */
  rebind(oldId: string, newId: string): void {
    const h = this.hooks.get(oldId);
    if (!h) return;
    this.hooks.delete(oldId);
    h.hookId = newId;
    h.attached = true;
    this.hooks.set(newId, h);
  }

  /** Marks hooks detached (kept on screen until cleared, so their last figures stay readable). */
  detach(hookIds: Iterable<string>): void {
    for (const id of hookIds) {
      const h = this.hooks.get(id);
      if (h) h.attached = false;
    }
  }

  attachedOn(path: string): HookView[] {
    return this.all().filter((h) => h.attached && h.path === path);
  }

  attached(): HookView[] {
    return this.all().filter((h) => h.attached);
  }

  get(hookId: string): HookView | undefined {
    return this.hooks.get(hookId);
  }

  all(): HookView[] {
    return [...this.hooks.values()];
  }

  clear(): void {
    this.hooks.clear();
  }
}
