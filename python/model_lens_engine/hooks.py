"""hook/attach and hook/detach: throttled statistics of module inputs, outputs and gradients.

Statistics are computed on the tensor's device without synchronising (tensors.quick_stats_vector)
and queued; the queue goes to the host in one transfer per step, when the root module's forward ends
(forward and forwardPre events) or when the engine flushes after backward (backward events).
"""

import sys
import threading
import time

import torch

from .errors import bad_request, not_found
from .protocol import HOOK_EVENT, HOOK_KINDS, HOOK_STATS_INTERVAL_MS
from .tensors import brief_info, finish_stats, histogram, quick_stats_vector

MIN_HOOK_INTERVAL_MS = 0


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, torch.Tensor)]
    return []


class _Hook:
    def __init__(self, hook_id, path, kind, module, interval_s, bins, model_id):
        self.id = hook_id
        self.path = path
        self.kind = kind
        self.module = module
        self.interval_s = interval_s
        self.bins = bins
        self.model_id = model_id
        self.handles = []
        self.calls = 0
        self.last = -1e18
        self.alive = True

    def due(self):
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        return True


class HookManager:
    def __init__(self, notify):
        self._notify = notify
        self._hooks = {}
        self._pending = []
        self._lock = threading.Lock()
        self._next = 1
        self._root_handles = {}

    def count(self):
        return len(self._hooks)

    def attach(self, lm, path, kind, interval_ms=None, bins=None):
        if kind not in HOOK_KINDS:
            raise bad_request("kind must be one of %s, got %r" % (", ".join(HOOK_KINDS), kind))
        module = _resolve(lm.module, path)
        interval_ms = (
            HOOK_STATS_INTERVAL_MS
            if interval_ms is None
            else max(MIN_HOOK_INTERVAL_MS, float(interval_ms))
        )
        hook_id = "h%d" % self._next
        self._next += 1
        h = _Hook(
            hook_id,
            path,
            kind,
            module,
            interval_ms / 1000.0,
            int(bins) if bins else None,
            lm.model_id,
        )
        h.scope = lm.scope
        if kind == "forward":
            h.handles.append(module.register_forward_hook(self._forward_fn(h)))
        elif kind == "forwardPre":
            h.handles.append(module.register_forward_pre_hook(self._pre_fn(h)))
        else:
            h.handles.append(module.register_forward_hook(self._backward_fn(h)))
        with self._lock:
            self._hooks[hook_id] = h
        self._ensure_root(lm)
        return hook_id

    def _ensure_root(self, lm):
        key = id(lm.module)
        if key not in self._root_handles:
            self._root_handles[key] = (lm.module, lm.module.register_forward_hook(self._flush_hook))

    def _flush_hook(self, module, args, out):
        self.flush()  # must return None: a forward hook's return value replaces the output

    def detach(self, hook_id=None, all_hooks=False):
        with self._lock:
            if all_hooks:
                victims = list(self._hooks.values())
            elif hook_id is not None:
                h = self._hooks.get(hook_id)
                if h is None:
                    raise not_found("unknownHook", "No hook %r is attached" % hook_id, got=hook_id)
                victims = [h]
            else:
                raise bad_request("hook/detach needs hookId or all: true")
            for h in victims:
                h.alive = False
                for handle in h.handles:
                    handle.remove()
                h.handles = []
                self._hooks.pop(h.id, None)
            dead = {h.id for h in victims}
            self._pending = [p for p in self._pending if p[0].id not in dead]
            if not self._hooks:
                for _mod, handle in list(self._root_handles.values()):
                    handle.remove()
                self._root_handles.clear()
            return len(victims), len(self._hooks)

    # ---- hook bodies ---------------------------------------------------------------------

    def _enqueue(self, h, tensors, frame):
        source = (
            h.scope.innermost_user_frame(frame, framework_only=True) if frame is not None else None
        )
        when = time.time() * 1000.0
        with self._lock:
            if not h.alive:
                return
            for i, t in enumerate(tensors):
                if not isinstance(t, torch.Tensor):
                    continue
                hist = None
                if h.bins:
                    hist = histogram(t, h.bins)
                self._pending.append(
                    (h, h.calls, when, i, brief_info(t), quick_stats_vector(t), hist, source, t)
                )

    def _forward_fn(self, h):
        def fn(m, args, out):
            h.calls += 1
            if h.due():
                self._enqueue(h, _tensors(out), sys._getframe(1))

        return fn

    def _pre_fn(self, h):
        def fn(m, args):
            h.calls += 1
            if h.due():
                self._enqueue(h, _tensors(args), sys._getframe(1))

        return fn

    def _backward_fn(self, h):
        # register_full_backward_hook breaks on in-place ops (resnet's ReLU(inplace=True)), so
        # gradients are caught by tensor hooks on the outputs, registered while they are made.
        def fn(m, args, out):
            h.calls += 1
            if not torch.is_grad_enabled() or not h.due():
                return
            call = h.calls
            outs = _tensors(out)
            src = h.scope.innermost_user_frame(sys._getframe(1), framework_only=True)
            for i, t in enumerate(outs):
                if t.requires_grad:
                    t.register_hook(self._grad_fn(h, i, call, src))

        return fn

    def _grad_fn(self, h, index, call, source):
        def g(grad):
            when = time.time() * 1000.0
            with self._lock:
                if h.alive and grad is not None:
                    hist = histogram(grad, h.bins) if h.bins else None
                    self._pending.append(
                        (
                            h,
                            call,
                            when,
                            index,
                            brief_info(grad),
                            quick_stats_vector(grad),
                            hist,
                            source,
                            grad,
                        )
                    )

        return g

    def flush(self):
        if not self._pending:
            return 0
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        # One transfer to the host per device for every statistic of the step.
        by_dev = {}
        for i, p in enumerate(pending):
            by_dev.setdefault(p[5].device, []).append(i)
        values = [None] * len(pending)
        for idxs in by_dev.values():
            for i, row in zip(idxs, torch.stack([pending[i][5] for i in idxs]).tolist()):
                values[i] = row
        sent = 0
        for p, v in zip(pending, values):
            h, call, when, index, info, _, hist, source, tensor = p
            if not h.alive:
                continue
            ev = {
                "hookId": h.id,
                "path": h.path,
                "kind": h.kind,
                "call": call,
                "time": when,
                "index": index,
                "tensor": info,
                "stats": finish_stats(v, tensor),
            }
            if hist is not None:
                ev["histogram"] = hist
            if source:
                ev["source"] = source
            self._notify(HOOK_EVENT, ev)
            sent += 1
        return sent


def _resolve(root, path):
    if path == "" or path is None:
        return root
    for p, m in root.named_modules(remove_duplicate=False):
        if p == path:
            return m
    raise not_found("unknownPath", "The model has no module at path %r" % path, layer=path)
