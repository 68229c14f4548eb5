// Forward / forward-pre hooks observe a layer's `call`; backward hooks wrap its output in
// tf.customGrad, whose gradient function sees dL/d(output) and passes it through unchanged.
// Events are throttled per hook; the tensor is only read when an event is due.
import type * as tfTypes from '@tensorflow/tfjs';
import type {
  HookAttachParams,
  HookDetachParams,
  HookDetachResult,
  HookEvent,
} from '../../protocol/messages';
import type { HookKind } from '../../protocol/types';
import type { Tf } from './backend';
import { addCallListener, tensorsOf } from './callInterceptor';
import type { CallOutput } from './callInterceptor';
import { fail } from './engineError';
import type { ModelSession } from './modelSession';
import { DEFAULT_HISTOGRAM_BINS, HOOK_STATS_INTERVAL_MS } from '../../protocol/defaults';
import { HOOK_KINDS } from '../../protocol/types';
import { rowMajorStrides, tensorStats } from './tensorFacts';

/** Default minimum time between two events of one hook. */

interface Hook {
  id: string;
  path: string;
  kind: HookKind;
  modelId: string;
  intervalMs: number;
  bins: number;
  calls: number;
  lastEmit: number;
  remove: () => void;
  active: boolean;
}

export class HookManager {
  private readonly hooks = new Map<string, Hook>();
  private next = 1;

  constructor(
    private readonly tf: () => Tf,
    private readonly emit: (e: HookEvent) => void,
    private readonly currentStep: () => number | undefined,
  ) {}

  attach(s: ModelSession, p: HookAttachParams): string {
    if (!(HOOK_KINDS as readonly string[]).includes(p.kind))
      fail('badRequest', `Unknown hook kind '${p.kind}' (forward, forwardPre, backward)`);
    const layer = s.index.layerAt.get(p.path);
    if (!layer) {
      fail('unknownPath', `No module at path '${p.path}' in ${s.name}`, {
        layer: p.path,
        candidates: s.index.modules.map((m) => m.path).slice(0, 50),
      });
    }
    if (layer === (s.model as unknown as tfTypes.layers.Layer)) {
      fail(
        'unsupported',
        'Hooks on the root model are not supported by the tfjs engine: predict and fit never call the root model’s call()',
        {
          layer: '',
          hint: 'Hook one of its layers instead.',
        },
      );
    }
    const { hook, due, send } = this.newHook(s, p);
    if (p.kind === 'forwardPre') {
      hook.remove = addCallListener(layer, {
        before: (_l, inputs) => {
          hook.calls++;
          if (due()) send(tensorsOf(inputs));
        },
      });
    } else if (p.kind === 'forward') {
      hook.remove = addCallListener(layer, {
        after: (_l, _in, _kw, output) => {
          hook.calls++;
          if (due()) send(tensorsOf(output));
        },
      });
    } else {
      hook.remove = addCallListener(layer, {
        after: (_l, _in, _kw, output): CallOutput | void => {
          hook.calls++;
          const outs = Array.isArray(output) ? output : [output];
          if (tensorsOf(output).length !== outs.length) return;
          const tf = this.tf();
          const wrapped = outs.map(
            (t, index) =>
              tf.customGrad(((x: tfTypes.Tensor) => ({
                value: x.clone(),
                gradFunc: (dy: tfTypes.Tensor) => {
                  if (due()) send([dy], index);
                  return dy;
                },
              })) as never)(t) as tfTypes.Tensor,
          );
          return Array.isArray(output) ? wrapped : wrapped[0];
        },
      });
    }
    this.hooks.set(hook.id, hook);
    return hook.id;
  }

  /**
   * A hook whose events come from elsewhere than a layer's call (graph-model node outputs):
   * `install` gets the throttled sender and returns the remover.
   */
  attachExternal(
    s: { id: string; name: string; device: string },
    p: HookAttachParams,
    install: (emit: (ts: tfTypes.Tensor[]) => void) => () => void,
  ): string {
    if (!HOOK_KINDS.includes(p.kind)) {
      fail('badRequest', `Unknown hook kind '${p.kind}' (forward, forwardPre, backward)`);
    }
    const { hook, due, send } = this.newHook(s, p);
    hook.remove = install((ts) => {
      hook.calls++;
      if (due()) send(ts);
    });
    this.hooks.set(hook.id, hook);
    return hook.id;
  }

  private newHook(
    s: { id: string; device: string },
    p: HookAttachParams,
  ): { hook: Hook; due: () => boolean; send: (ts: tfTypes.Tensor[], firstIndex?: number) => void } {
    const hook: Hook = {
      id: `h${this.next++}`,
      path: p.path,
      kind: p.kind,
      modelId: s.id,
      intervalMs: Math.max(0, p.intervalMs ?? HOOK_STATS_INTERVAL_MS),
      bins: p.histogramBins ?? DEFAULT_HISTOGRAM_BINS,
      calls: 0,
      lastEmit: -Infinity,
      remove: () => {},
      active: true,
    };
    const due = (): boolean => {
      const now = Date.now();
      if (!hook.active || now - hook.lastEmit < hook.intervalMs) return false;
      hook.lastEmit = now;
      return true;
    };
    const send = (ts: tfTypes.Tensor[], firstIndex = 0): void => {
      ts.forEach((t, i) => {
        const index = firstIndex + i;
        if (!hook.active || t.isDisposed) return;
        const { stats, histogram } = tensorStats(t, hook.bins);
        this.emit({
          hookId: hook.id,
          path: hook.path,
          kind: hook.kind,
          call: hook.calls,
          step: this.currentStep(),
          time: Date.now(),
          index,
          tensor: {
            shape: [...t.shape],
            dtype: t.dtype,
            device: s.device,
            stride: rowMajorStrides(t.shape),
            contiguous: true,
          },
          stats,
          histogram,
        });
      });
    };
    return { hook, due, send };
  }

  detach(p: HookDetachParams): HookDetachResult {
    let ids: string[];
    if (p.all) ids = [...this.hooks.keys()];
    else if (p.hookId) {
      if (!this.hooks.has(p.hookId))
        fail('unknownHook', `No hook '${p.hookId}'`, { candidates: [...this.hooks.keys()] });
      ids = [p.hookId];
    } else return fail('badRequest', 'hook/detach needs hookId or all: true');
    for (const id of ids) {
      const h = this.hooks.get(id)!;
      h.active = false;
      h.remove();
      this.hooks.delete(id);
    }
    return { detached: ids.length, remaining: this.hooks.size };
  }

  /** Hooks of a model that is being replaced or released. */
  detachModel(modelId: string): void {
    for (const h of [...this.hooks.values()])
      if (h.modelId === modelId) this.detach({ hookId: h.id });
  }

  get count(): number {
    return this.hooks.size;
  }
}
