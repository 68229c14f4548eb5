// Folding the throttled hook/event stream into what the Hooks panel shows.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HookEvent } from '../src/protocol/messages';
import { HOOK_HISTORY_POINTS, HookStore } from '../src/extension/hookStore';

function event(
  hookId: string,
  call: number,
  mean: number | null,
  nanCount = 0,
  infCount = 0,
): HookEvent {
  return {
    hookId,
    path: 'fc1',
    kind: 'forward',
    call,
    time: 0,
    index: 0,
    tensor: { shape: [1, 10], dtype: 'float32', device: 'cpu', stride: [10, 1], contiguous: true },
    stats: { numel: 10, mean, std: 1, min: 0, max: 1, nanCount, infCount },
  };
}

describe('hook store', () => {
  it('counts events, keeps the latest figures and caps the history', () => {
    const store = new HookStore();
    store.add('h1', 'fc1', 'forward');
    const total = HOOK_HISTORY_POINTS + 5;
    for (let call = 1; call <= total; call++) store.onEvent(event('h1', call, call / 10));
    const h = store.get('h1')!;
    assert.equal(h.events, total);
    assert.equal(h.lastCall, total);
    assert.equal(h.history.length, HOOK_HISTORY_POINTS);
    assert.equal(h.history[0].call, 6); // the 5 oldest scrolled out
    assert.deepEqual(h.shape, [1, 10]);
  });

  it('counts events with NaN or Inf and remembers the first such call', () => {
    const store = new HookStore();
    store.add('h1', 'fc1', 'forward');
    store.onEvent(event('h1', 1, 0.5));
    store.onEvent(event('h1', 7, null, 3, 0));
    store.onEvent(event('h1', 9, null, 1, 2));
    const h = store.get('h1')!;
    assert.deepEqual([h.nanEvents, h.infEvents, h.firstNonFiniteCall], [2, 1, 7]);
  });

  it('ignores events of unknown or detached hooks', () => {
    const store = new HookStore();
    store.add('h1', 'fc1', 'forward');
    assert.equal(store.onEvent(event('nope', 1, 0)), undefined);
    store.detach(['h1']);
    assert.equal(store.onEvent(event('h1', 2, 0)), undefined);
    assert.equal(store.get('h1')!.events, 0);
    assert.deepEqual(store.attachedOn('fc1'), []);
  });

  it('a hook re-attached under a new id keeps its history', () => {
    const store = new HookStore();
    store.add('h1', 'fc1', 'forward');
    store.onEvent(event('h1', 1, 0.5));
    store.rebind('h1', 'h2');
    store.onEvent(event('h2', 1, 0.7));
    assert.equal(store.get('h1'), undefined);
    assert.equal(store.get('h2')!.events, 2);
  });
});
