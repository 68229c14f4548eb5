"""Per-op timing with a TorchDispatchMode timer and per-module timing with forward hooks.

Why a dispatch-mode timer rather than torch.profiler: on resnet18 (CPU) it costs less than the
profiler (bench/torchOverhead.py measures both), it sees forward and backward aten ops with their
shapes and strides, it needs no kineto (absent from Debian's torch 1.13, whose profiler then
cannot even write a `traceEvents` trace), and it lets the engine sample the user frame cheaply.
"""

import json
import statistics
import sys
import time

import torch

from .errors import is_framework_file, location

try:
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # torch < 1.13
    TorchDispatchMode = None

# Rows kept per op: one per distinct list of input shapes (torch.profiler's
# group_by_input_shape); calls with further shapes are counted in the last one.
MAX_SHAPE_VARIANTS = 16
# Trace events kept per profile run; a bigger trace is unreadable in a viewer anyway.
MAX_TRACE_EVENTS = 200_000
DEFAULT_PROFILE_STEPS = 5
DEFAULT_WARMUP_STEPS = 1
MAX_PROFILE_STEPS = 1000

_perf = time.perf_counter
_Tensor = torch.Tensor


def op_name(func):
    """`aten.addmm.default` → `aten::addmm` (the profiler's spelling)."""
    s = str(func)
    parts = s.split(".")
    if len(parts) >= 2:
        return "%s::%s" % (parts[0], parts[1])
    return s


def innermost_source(frame):
    f = frame
    while f is not None:
        fn = f.f_code.co_filename
        if not is_framework_file(fn):
            return location(fn, f.f_lineno, f.f_code.co_name)
        f = f.f_back
    return None


if TorchDispatchMode is not None:

    class OpTimer(TorchDispatchMode):
        """Times every aten op, grouped by phase, op and input shapes (as torch.profiler's
        group_by_input_shape): fc1's and fc2's addmm are two rows. Strides and the user frame
        are taken the first time a group is seen."""

        def __init__(self, record_shapes=True, trace=None, cuda_events=False):
            super().__init__()
            self._by_phase = {}
            self._cur = self._by_phase.setdefault("forward", {})
            self._phase = "forward"
            self._variants = {}  # (phase, func) -> number of shape groups
            self.record_shapes = record_shapes  # kept for callers; shapes are always grouped
            self.trace = trace
            self.cuda_events = cuda_events
            self.pending_events = []

        @property
        def phase(self):
            return self._phase

        @phase.setter
        def phase(self, value):
            self._phase = value
            self._cur = self._by_phase.setdefault(value, {})

        def reset(self):
            """Forgets the counts and times (a warm-up's), keeps what each group is."""
            for d in self._by_phase.values():
                for st in d.values():
                    st[0], st[1], st[4] = 0, 0.0, 0.0
            self.pending_events = []
            if self.trace is not None:
                del self.trace[:]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if self.cuda_events and _on_cuda(args):
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                t0 = _perf()
                out = func(*args, **(kwargs or {}))
                e1.record()
                dt = _perf() - t0
            else:
                e0 = None
                t0 = _perf()
                out = func(*args, **kwargs) if kwargs else func(*args)
                dt = _perf() - t0
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, _Tensor))
            key = (func, shapes)
            st = self._cur.get(key)
            if st is None:
                vk = (self._phase, func)
                n = self._variants.get(vk, 0)
                if n >= MAX_SHAPE_VARIANTS:
                    key = (func, None)  # the overflow group
                    st = self._cur.get(key)
                if st is None:
                    self._variants[vk] = n + 1
                    strides = [list(a.stride()) for a in args if isinstance(a, _Tensor)]
                    st = self._cur[key] = [0, 0.0, strides, innermost_source(sys._getframe(1)), 0.0]
            st[0] += 1
            st[1] += dt
            if e0 is not None:
                self.pending_events.append((st, e0, e1))
            if self.trace is not None and len(self.trace) < MAX_TRACE_EVENTS:
                self.trace.append((func, t0, dt, self._phase))
            return out

        def collect_cuda(self):
            if not self.pending_events:
                return
            torch.cuda.synchronize()
            for st, e0, e1 in self.pending_events:
                st[4] += e0.elapsed_time(e1)
            self.pending_events = []

        def op_stats(self):
            rows = []
            for phase, d in self._by_phase.items():
                for (func, shapes), (calls, total, strides, source, cuda_ms) in d.items():
                    if not calls:
                        continue
                    ms = cuda_ms if self.cuda_events and cuda_ms > 0 else total * 1000.0
                    row = {
                        "name": op_name(func),
                        "calls": calls,
                        "totalMs": ms,
                        "selfMs": ms,  # the mode is off while an op runs: ops seen never nest
                        # One shape list per row; [] for the overflow group of an op called
                        # with more than MAX_SHAPE_VARIANTS shape lists.
                        "inputShapes": [[list(x) for x in shapes]] if shapes is not None else [],
                        "inputStrides": [strides] if shapes is not None else [],
                        "phase": phase,
                    }
                    if source:
                        row["source"] = source
                    rows.append(row)
            rows.sort(key=lambda r: -r["totalMs"])
            return rows
else:
    OpTimer = None


def _on_cuda(args):
    for a in args:
        if isinstance(a, _Tensor):
            return a.is_cuda
    return False


class ModuleTimer:
    """Forward time per module from pre/post forward hooks (containers include their children);
    backward time from tensor hooks: grad of the output arriving to grad of the input done."""

    def __init__(self, root, paths, trace=None, backward=False, cuda_events=False):
        self.cuda_events = cuda_events
        self._events = []
        self.root = root
        self.paths = paths
        self.trace = trace
        self.backward = backward
        self.handles = []
        self.fwd = {}
        self.bwd = {}
        self.calls = {}
        self._stack = {}
        self._param_hooks = {}  # module id -> handles of the parameter hooks of its last call
        self._modules = {}

    def __enter__(self):
        for path, m in self.root.named_modules():
            mid = id(m)
            self.fwd[mid] = 0.0
            self.calls[mid] = 0
            self._modules[mid] = m
            self._stack[mid] = []
            self.handles.append(m.register_forward_pre_hook(self._pre(mid)))
            self.handles.append(m.register_forward_hook(self._post(mid)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        for hs in self._param_hooks.values():
            for h in hs:
                h.remove()
        self._param_hooks = {}
        return False

    def reset(self):
        """Forgets the warm-up's times and calls."""
        for mid in self.fwd:
            self.fwd[mid] = 0.0
            self.calls[mid] = 0
        self.bwd = {}
        self._events = []
        if self.trace is not None:
            del self.trace[:]

    def _pre(self, mid):
        stack = self._stack[mid]

        if self.cuda_events:

            def pre(m, args):
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                stack.append((_perf(), e))

            return pre

        def pre(m, args):
            stack.append(_perf())

        return pre

    def _post(self, mid):
        stack = self._stack[mid]
        fwd = self.fwd
        calls = self.calls
        trace = self.trace
        backward = self.backward

        events = self._events
        cuda_events = self.cuda_events

        def post(m, args, out):
            t1 = _perf()
            t0 = stack.pop() if stack else t1
            if cuda_events and isinstance(t0, tuple):
                t0, e0 = t0
                e1 = torch.cuda.Event(enable_timing=True)
                e1.record()
                events.append((mid, e0, e1))
            fwd[mid] += t1 - t0
            calls[mid] += 1
            if trace is not None and len(trace) < MAX_TRACE_EVENTS:
                trace.append((mid, t0, t1 - t0, "module"))
            if backward and torch.is_grad_enabled():
                self._hook_backward(mid, args, out)

        return post

    def _hook_backward(self, mid, args, out):
        """Backward time of one call: from its output's gradient arriving to its input's
        gradient done; when no input needs a gradient (the first layer, the root), to the last
        of its parameters' gradients done, so every module with parameters has a figure."""
        outs = (
            [out]
            if isinstance(out, _Tensor)
            else [
                o for o in (out if isinstance(out, (tuple, list)) else []) if isinstance(o, _Tensor)
            ]
        )
        ins = [a for a in args if isinstance(a, _Tensor) and a.requires_grad]
        outs = [o for o in outs if o.requires_grad]
        if not outs:
            return
        state = {"t0": None, "left": 0}

        def on_out(g):
            if state["t0"] is None:
                state["t0"] = _perf()

        def done():
            self.bwd[mid] = self.bwd.get(mid, 0.0) + (_perf() - state["t0"])
            state["t0"] = None

        outs[0].register_hook(on_out)
        if ins:
            ins[0].register_hook(lambda g: done() if state["t0"] is not None else None)
            return
        params = [p for p in self._modules[mid].parameters() if p.requires_grad]
        if not params:
            return
        # Parameters are leaves: their hooks outlive the graph, so the previous call's go first.
        for h in self._param_hooks.pop(mid, ()):
            h.remove()
        state["left"] = len(params)

        def on_param(g):
            state["left"] -= 1
            if state["left"] == 0 and state["t0"] is not None:
                done()

        self._param_hooks[mid] = [p.register_hook(on_param) for p in params]

    def collect_cuda(self):
        """On CUDA, kernel time between a module's pre and post hooks replaces host time."""
        if not self._events:
            return
        torch.cuda.synchronize()
        gpu = {}
        for mid, e0, e1 in self._events:
            gpu[mid] = gpu.get(mid, 0.0) + e0.elapsed_time(e1) / 1000.0
        self.fwd.update(gpu)
        self._events = []

    def module_timings(self, steps):
        # Totals over the timed steps, like the op statistics (protocol ModuleTiming).
        rows = []
        for path, m in self.root.named_modules():
            mid = id(m)
            calls = self.calls.get(mid, 0)
            row = {
                "path": path,
                "type": type(m).__name__,
                "calls": calls,
                "forwardMs": self.fwd.get(mid, 0.0) * 1000.0,
            }
            if mid in self.bwd:
                row["backwardMs"] = self.bwd[mid] * 1000.0
            rows.append(row)
        return rows


def write_chrome_trace(path, op_trace, module_trace, paths, t_origin):
    events = []
    pid = 1
    for func, t0, dt, phase in op_trace:
        events.append(
            {
                "name": op_name(func),
                "cat": "op," + phase,
                "ph": "X",
                "pid": pid,
                "tid": 1,
                "ts": (t0 - t_origin) * 1e6,
                "dur": dt * 1e6,
            }
        )
    for mid, t0, dt, _ in module_trace:
        p = paths.get(mid, "?")
        events.append(
            {
                "name": p or "(root)",
                "cat": "module",
                "ph": "X",
                "pid": pid,
                "tid": 1,
                "ts": (t0 - t_origin) * 1e6,
                "dur": dt * 1e6,
            }
        )
    events.sort(key=lambda e: (e["ts"], -e["dur"]))
    events.append(
        {
            "name": "process_name",
            "ph": "M",
            "pid": pid,
            "args": {"name": "Model Lens (PyTorch engine)"},
        }
    )
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)


def median_ms(samples):
    return statistics.median(samples) * 1000.0 if samples else 0.0
