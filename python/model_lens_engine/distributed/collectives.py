"""Time each rank spends in torch.distributed collectives, measured at the c10d ops themselves.

Two places see every collective a training step makes:

- the `torch.distributed` functions (`all_reduce`, `broadcast`, `barrier`, ...), which user code,
  accelerate and FSDP call by module attribute: each is wrapped for the run and timed from call
  to return (an `async_op=True` call from call to its Work's completion);
- DDP's gradient all-reduce, which its C++ reducer starts per bucket during backward: a comm
  hook (DDP's own default `allreduce_hook`, wrapped) times each bucket from launch to completion.

A rank that is ahead launches its all-reduce early and waits for the slowest one, so the time
from launch to completion is the time it waits for its peers (plus the transfer itself).
Everything is attributed to the innermost frame of the user's script: for DDP, the line that
called `backward()`. Time before the first optimizer step (process-group setup, the first
barrier while other ranks still import torch) is kept apart from the per-step figures.
"""

import sys
import threading
import time

from ..training.patcher import Patcher

_perf = time.perf_counter

# The c10d ops wrapped in torch.distributed (those that exist in the installed torch).
COLLECTIVE_OPS = (
    "all_reduce",
    "broadcast",
    "barrier",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "reduce",
    "gather",
    "scatter",
    "all_to_all",
    "all_to_all_single",
    "all_gather_object",
    "broadcast_object_list",
    "gather_object",
    "scatter_object_list",
    "monitored_barrier",
    # FSDP's flat-parameter gathers and gradient reductions (names differ by torch version).
    "all_gather_single",
    "reduce_scatter_single",
    "_all_gather_base",
    "_reduce_scatter_base",
)
DDP_ALLREDUCE = "all_reduce"
# Distinct (op, source line) sites kept per rank; more are folded into the last one.
MAX_SITES = 32


def _caller():
    """The Python frame that called into the op; None when C++ called us on a thread without
    Python frames (a device's autograd thread)."""
    try:
        return sys._getframe(2)
    except ValueError:
        return None


class CollectiveTimer:
    """Counts per (op, user source line): calls, seconds in the op, and the same after the
    first optimizer step. `steps()` tells which step the script is in (the training run's
    optimizer-step count)."""

    def __init__(self, scope, steps):
        self.scope = scope
        self._steps = steps
        self._lock = threading.Lock()
        # (op, file, line) -> [calls, seconds, seconds after step 1, function]
        self.sites = {}
        self._patcher = Patcher()  # the training run's: one record of what is installed
        self._depth = threading.local()
        self._user_hooked = set()

    # ---- recording -------------------------------------------------------------------------

    def _site(self, op, frame):
        loc = self.scope.innermost_user_frame(frame) if frame is not None else None
        if loc is None:
            return (op, None, 0, None)
        return (op, loc["file"], loc["line"], loc.get("function"))

    def add(self, site, seconds):
        op, file, line, func = site
        key = (op, file, line)
        steady = self._steps() >= 1
        with self._lock:
            s = self.sites.get(key)
            if s is None:
                if len(self.sites) >= MAX_SITES:
                    key = (op, None, 0)
                    s = self.sites.get(key)
                if s is None:
                    s = self.sites[key] = [0, 0.0, 0.0, func]
            s[0] += 1
            s[1] += seconds
            if steady:
                s[2] += seconds

    def snapshot(self):
        """[{op, file, line, function, count, seconds, steadySeconds}] by time, most first."""
        with self._lock:
            items = list(self.sites.items())
        out = []
        for (op, file, line), (count, secs, steady, func) in items:
            out.append(
                {
                    "op": op,
                    "file": file,
                    "line": line,
                    "function": func,
                    "count": count,
                    "seconds": secs,
                    "steadySeconds": steady,
                }
            )
        out.sort(key=lambda s: -s["seconds"])
        return out

    # ---- installing ------------------------------------------------------------------------

    def install(self):
        import torch.distributed as dist

        if not dist.is_available():
            return
        for name in COLLECTIVE_OPS:
            orig = getattr(dist, name, None)
            if callable(orig):
                self._patcher.patch(dist, name, self._wrap_op(name, orig))
        self._install_ddp()

    def uninstall(self):
        self._patcher.restore()

    def _wrap_op(self, name, orig):
        timer = self
        depth = self._depth

        def op(*a, **k):
            # all_gather_object calls all_gather: only the outermost op is counted.
            if getattr(depth, "n", 0):
                return orig(*a, **k)
            depth.n = 1
            t0 = _perf()
            try:
                out = orig(*a, **k)  # a collective that raises (a peer left) is not counted
            finally:
                depth.n = 0
            site = timer._site(name, _caller())
            if k.get("async_op") and out is not None:
                timer._on_done(out, site, t0)
            else:
                timer.add(site, _perf() - t0)
            return out

        op.__name__ = name
        op.__wrapped__ = orig
        return op

    def _on_done(self, work, site, t0):
        def done(f):
            f.value()  # raises for a failed op, which is not counted
            self.add(site, _perf() - t0)

        try:
            work.get_future().then(done)
        except Exception:  # a backend whose Work has no future: count the launch only
            self.add(site, _perf() - t0)

    def _install_ddp(self):
        """DDP's gradient all-reduce: its default hook, timed, registered before the first
        forward unless the script registers its own (which is then timed instead)."""
        try:
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
            from torch.nn.parallel import DistributedDataParallel as DDP
        except ImportError:
            return
        timer = self
        depth = self._depth
        orig_register = DDP.register_comm_hook
        orig_forward = DDP.forward

        def timed(hook):
            def run_hook(state, bucket):
                t0 = _perf()
                site = timer._site(DDP_ALLREDUCE, _caller())
                # The hook's own dist.all_reduce is this collective, not another one.
                depth.n = getattr(depth, "n", 0) + 1
                try:
                    fut = hook(state, bucket)
                finally:
                    depth.n -= 1

                def done(f):
                    value = f.value()  # raises for a failed all-reduce, which is not counted
                    timer.add(site, _perf() - t0)
                    return value

                return fut.then(done)

            return run_hook

        def register_comm_hook(ddp, state, hook):
            timer._user_hooked.add(id(ddp))
            return orig_register(ddp, state, timed(hook))

        def forward(ddp, *a, **k):
            if id(ddp) not in timer._user_hooked:
                timer._user_hooked.add(id(ddp))
                try:
                    orig_register(ddp, ddp.process_group, timed(allreduce_hook))
                except Exception:  # a builtin hook is already registered: leave it untimed
                    pass
            return orig_forward(ddp, *a, **k)

        self._patcher.patch(DDP, "register_comm_hook", register_comm_hook)
        self._patcher.patch(DDP, "forward", forward)
