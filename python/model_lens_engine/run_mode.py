"""train/start, train/stop, train/diagnose: a user's training script run unchanged as `__main__`.

The script runs in a worker thread so the main thread keeps answering requests (hook/attach,
train/stop, train/diagnose, system/info) while it trains. Nothing in the script is rewritten:
progress and diagnosis come from light patches installed for the run and removed after it:

- `Optimizer.step` (wrapped per class on torch 1.x, global step hooks on torch >= 2.0) counts steps;
- `Tensor.backward` / `torch.autograd.backward` keep a detached reference to scalar losses, read
  on the progress thread in one transfer per notification (no extra device sync per step);
- `nn.Module.__call__` finds the model the script trains (first top-level call with gradients
  and trainable parameters), then is restored; the model gets two root hooks for timing;
- `DataLoader.__iter__` / `_BaseDataLoaderIter.__next__` time data loading and count epochs;
- `range` in the script's own globals counts the iterations of the epoch loop;
- `.item()`, `.tolist()`, `.numpy()`, `.cpu()`, `print(tensor)`, `float(tensor)` are counted as
  sync points with the user's line; `.to()` / `.cuda()` / `.cpu()` count cross-device copies.
"""

import collections
import ctypes
import gc
import linecache
import math
import os
import re
import runpy
import sys
import threading
import time
import warnings
import weakref

import torch
import torch.nn as nn

from .errors import _ENGINE_DIR, EngineFault, UserScope, location, user_fault
from .output import UserOutput
from .protocol import BAD_REQUEST, DEFAULT_HISTOGRAM_EVERY_STEPS, DEFAULT_HISTOGRAM_MIN_INTERVAL_MS
from .protocol import HOOK_EVENT, TRAIN_DIAGNOSIS, TRAIN_HISTOGRAMS, TRAIN_PROGRESS
from .protocol import TRAIN_PROGRESS_INTERVAL_MS, TRAIN_STOP_TIMEOUT_MS
from .tensors import dtype_name, finish_stats, histogram, quick_stats_vector

PROGRESS_INTERVAL_MS = TRAIN_PROGRESS_INTERVAL_MS
# A train/diagnosis snapshot is also sent this often during a run.
DIAGNOSIS_INTERVAL_MS = 5000
# How often train/stop re-raises the stop exception in the script's thread (a bare `except:` in
# user code may swallow one), and how long it waits before reporting that the run did not stop.
STOP_RETRY_MS = 50
STOP_GIVE_UP_S = TRAIN_STOP_TIMEOUT_MS / 1000.0
MAX_LOSS_POINTS_PER_PROGRESS = 1024
# Losses kept between two notifications; beyond this the oldest are dropped.
MAX_PENDING_LOSSES = 8192
RATE_WINDOW_S = 5.0
# One step is run under a TorchDispatchMode op counter at this step and then every N steps.
OP_SAMPLE_FIRST_STEP = 3
OP_SAMPLE_EVERY_STEPS = 1000
MAX_SYNC_SITES = 32
MAX_FINDING_SYNC_SITES = 5
# Data loading above this share of a step is a finding.
DATA_BOUND_FRACTION = 0.3
MAX_EXPR_CHARS = 60
# The trained model's forward is timed (root hooks) on one step in this many, plus the first ones.
ROOT_SAMPLE_EVERY_STEPS = 10
# Forward calls of the trained model whose input device and batch size are checked: a device
# mismatch fails on the first call anyway, and the check costs a device object per call.
DEVICE_CHECK_CALLS = 20
# train/histograms: defaults DEFAULT_HISTOGRAM_EVERY_STEPS and DEFAULT_HISTOGRAM_MIN_INTERVAL_MS
# come from the protocol (on a tiny model 100 steps pass in milliseconds, and a snapshot costs more
# than a step); bins per histogram, and the most parameters one notification covers.
TRAIN_HISTOGRAM_BINS = 20
MAX_HISTOGRAM_PARAMS = 200
# A larger tensor's histogram is counted over an evenly strided sample of this many values.
HISTOGRAM_SAMPLE_ELEMENTS = 16384

_perf = time.perf_counter
_builtin_range = range
_Tensor = torch.Tensor
_item = torch._C._TensorBase.item  # unpatched: the engine's own reads are not user syncs
_tolist = torch._C._TensorBase.tolist
_TORCH_DIR = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep

try:
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # torch < 1.13
    TorchDispatchMode = None

if TorchDispatchMode is not None:

    class _OpCounter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = 0
            self.seconds = 0.0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            t0 = _perf()
            out = func(*args, **kwargs) if kwargs else func(*args)
            self.seconds += _perf() - t0
            self.ops += 1
            return out
else:
    _OpCounter = None


class StopRun(BaseException):
    """Raised in the script's thread by train/stop. A BaseException, so `except Exception` in user
    code does not swallow it."""


class _RangeRecord:
    __slots__ = ("length", "index", "active", "steps_at_start", "created")

    def __init__(self, length, created):
        self.length = length
        self.index = 0
        self.active = False
        self.steps_at_start = 0
        self.created = created


class _TrackedRange:
    """What `range(...)` returns in the script while the epoch loop is not yet known: a range
    that remembers how far its iteration got."""

    __slots__ = ("_r", "_rec", "_run")

    def __init__(self, r, rec, run):
        self._r = r
        self._rec = rec
        self._run = run

    def __iter__(self):
        rec = self._rec
        run = self._run
        rec.active = True
        try:
            n = 0
            for v in self._r:
                rec.index = n
                rec.steps_at_start = run.steps
                n += 1
                yield v
            rec.index = n
            rec.steps_at_start = run.steps
        finally:
            rec.active = False

    def __len__(self):
        return len(self._r)

    def __getitem__(self, i):
        return self._r[i]

    def __contains__(self, v):
        return v in self._r

    def __reversed__(self):
        return reversed(self._r)

    def __eq__(self, other):
        return self._r == (other._r if isinstance(other, _TrackedRange) else other)

    def __hash__(self):
        return hash(self._r)

    def __repr__(self):
        return repr(self._r)

    def __getattr__(self, name):  # start, stop, step, count, index
        return getattr(self._r, name)


class _LoaderRecord:
    __slots__ = ("iters", "length")

    def __init__(self, length):
        self.iters = 0
        self.length = length


class TrainingRun:
    def __init__(self, server, file, args, run_id, histogram_every=DEFAULT_HISTOGRAM_EVERY_STEPS,
                 histogram_min_interval_ms=DEFAULT_HISTOGRAM_MIN_INTERVAL_MS):
        self.server = server
        self.histogram_every = histogram_every
        self.histogram_min_interval_s = histogram_min_interval_ms / 1000.0
        self._hist_sent_step = None
        self._hist_sent_at = None
        self.conn = server.conn
        self.file = os.path.abspath(file)
        self.folder = os.path.dirname(self.file)
        self.args = [str(a) for a in args]
        self.run_id = run_id
        self.scope = UserScope(self.folder)
        self.rpc_thread = threading.get_ident()
        self.lock = threading.Lock()
        self.state = "starting"
        self.finished = threading.Event()
        self.ended = False
        self.thread = None
        self.tid = None
        self.in_user_code = False
        self.stop_requested = False
        self.t_start = time.monotonic()
        # progress
        self.steps = 0
        self.pending = collections.deque(maxlen=MAX_PENDING_LOSSES)
        self.optimizers = []
        self.opt_params = set()
        self.last_opt = None
        self.lm = None
        self.model_device = None
        self.training = None
        self.grad_enabled = None
        self.warnings = []
        self._warned = set()
        self._sent_warnings = 0
        self.nan_step = None
        self.error = None
        self.rate_hist = []
        # epochs
        self.ranges = []
        self.epoch_range = None
        self.loaders = {}
        self.iter_loader = weakref.WeakKeyDictionary()
        self.cur_loader = None
        self.epoch_loader = None
        self.mp_iters = weakref.WeakSet()
        # timing (perf_counter seconds)
        self.t_data = self.t_fwd = self.t_bwd = self.t_opt = 0.0
        self._t_opt0 = 0.0
        self._t_fwd0 = None
        self._fwd_cur = 0.0
        self.fwd_steps = 0
        self._root_handles = None
        self._root_whole = False
        self._slow_step = 1
        self._snap = None
        self._t_last_step = None
        self._t_script = None
        # diagnosis
        self.h2d = [0, 0]
        self.d2h = [0, 0]
        self.syncs = {}
        self.op_counter = None
        self.op_steps = 0
        self.op_count = 0
        self.op_seconds = 0.0
        self.batch_size = None
        self.device_findings = []
        self._device_seen = set()
        self._device_checks = DEVICE_CHECK_CALLS
        self._first_layer = None
        self._patches = []
        self._user_cache = {}
        self._sync_depth = 0
        self._in_step = False
        self._in_bwd = False
        self._depth = 0
        self._call_patched = False
        self._orig_notify = None
        self._saved = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, respond_first):
        self.thread = threading.Thread(target=self._thread_main, args=(respond_first,), name="model-lens-run", daemon=True)
        self.thread.start()

    def active(self):
        # False from the moment the final notifications go out: a client reacting to the final
        # train/progress must find the model free.
        return not self.ended

    def _thread_main(self, respond_first):
        self.tid = threading.get_ident()
        respond_first()  # notifications only after the client has the runId
        outcome = None
        try:
            try:
                self._setup()
                self._progress_thread = threading.Thread(target=self._ticker, name="model-lens-progress", daemon=True)
                self._progress_thread.start()
                outcome = self._run_script()
            except BaseException as e:  # noqa: B902 - a stop landing in setup
                outcome = outcome or self._classify(e)
        except StopRun:
            outcome = outcome or ("stopped", None)
        while True:  # no stop exception may land in the cleanup below
            try:
                with self.lock:
                    self.in_user_code = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.tid), None)
                break
            except StopRun:
                continue
        state, error = outcome
        try:
            self._teardown()
        except Exception as e:  # an engine bug must not leave the run hanging
            self.server.log("error", "Training run cleanup failed: %s: %s" % (type(e).__name__, e))
        if self.stop_requested and state == "failed" and error and error.get("kind") != "userExit":
            state, error = "stopped", None
        if self.steps == 0 and not self.optimizers:
            self._warn("The script never called an optimizer's step(): no steps were counted, so there is no rate or ETA.")
        elif self.steps == 0:
            self._warn("The script created an optimizer but never called its step(): no steps were counted.")
        if self.histogram_every and self.steps and self._hist_sent_step != self.steps:
            try:
                self._send_histograms()
            except Exception as e:
                self.server.log("error", "Training histograms failed: %s: %s" % (type(e).__name__, e))
        with self.lock:
            self.state = state
            self.error = error
        self.ended = True
        try:
            self.conn.notify(TRAIN_DIAGNOSIS, self.diagnosis())
        except Exception as e:
            self.server.log("error", "Training diagnosis failed: %s: %s" % (type(e).__name__, e))
        try:
            self._send_progress(final=True)
        except Exception as e:
            self.server.log("error", "Training progress failed: %s: %s" % (type(e).__name__, e))
            self.conn.notify(TRAIN_PROGRESS, {"runId": self.run_id, "state": state, "step": self.steps, "epoch": None,
                                                "totalSteps": None, "totalEpochs": None, "stepsPerSec": None,
                                                "etaSec": None, "loss": []})
        finally:
            self.finished.set()

    def _run_script(self):
        with self.lock:
            self.state = "running"
            self.in_user_code = True
        self._t_script = _perf()
        try:
            runpy.run_path(self.file, init_globals={"range": self._range}, run_name="__main__")
            return "done", None
        except BaseException as e:  # noqa: B902
            try:
                return self._classify(e)
            finally:
                e.__traceback__ = None  # frames hold DataLoader iterators (and their workers)
                del e

    def stop(self):
        self.stop_requested = True
        deadline = time.monotonic() + STOP_GIVE_UP_S
        while not self.finished.wait(STOP_RETRY_MS / 1000.0):
            with self.lock:
                if self.in_user_code and self.tid is not None:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.tid), ctypes.py_object(StopRun))
            if time.monotonic() > deadline:
                break
        return self.finished.is_set()

    def _check_stop(self):
        if self.stop_requested and self.in_user_code:
            raise StopRun()

    # ---- outcome ---------------------------------------------------------------------------

    def _classify(self, e):
        base = os.path.basename(self.file)
        if isinstance(e, (StopRun, KeyboardInterrupt)):
            return "stopped", None
        stack = self.scope.user_frames_of_tb(e.__traceback__)
        loc = stack[-1] if stack else None
        at = (" at %s:%d" % (os.path.basename(loc["file"]), loc["line"])) if loc else ""
        if isinstance(e, SystemExit):
            if e.code is None or e.code == 0:
                return "done", None
            err = {"kind": "userExit", "message": "The script called sys.exit(%r)%s." % (e.code, at)}
            if loc:
                err["location"] = loc
                err["userStack"] = stack
            return "failed", err
        if isinstance(e, SyntaxError) and not stack:
            loc = location(e.filename or self.file, e.lineno or 1, None, e.offset)
            return "failed", {"kind": "syntaxError", "message": "%s: %s (%s:%s)" % (type(e).__name__, e.msg, base, e.lineno),
                              "location": loc, "userStack": [loc]}
        fault = None
        if self.lm is not None:
            try:
                from .loader import classify_forward_error
                from .tree import canonical_paths

                fault = classify_forward_error(e, self.lm, canonical_paths(self.lm.module), "training")
            except Exception:
                fault = None
        if fault is None:
            from .loader import _user_exception

            fault = _user_exception(e, self.scope, "running %s" % base)
        err = dict(fault.data)
        err["message"] = fault.message
        return "failed", err

    # ---- setup / teardown ------------------------------------------------------------------

    def _setup(self):
        from .loader import _purge_user_modules

        _purge_user_modules(self.folder)
        self._saved = (os.getcwd(), list(sys.argv), sys.stdout, sys.stderr)
        os.chdir(self.folder)
        sys.argv = [self.file] + self.args
        sys.path.insert(0, self.folder)
        sys.stdout = UserOutput(self.conn, "stdout", self.run_id, self._saved[2], self.rpc_thread)
        sys.stderr = UserOutput(self.conn, "stderr", self.run_id, self._saved[3], self.rpc_thread)
        hooks = self.server.hooks
        if hooks is not None:
            self._orig_notify = hooks._notify
            run = self

            def notify(method, params):
                if method == HOOK_EVENT:
                    params["step"] = run.steps + 1
                run._orig_notify(method, params)
            hooks._notify = notify
        self._install()

    def _teardown(self):
        try:
            self._stop_op_sample(complete=False)
        except Exception:
            pass
        self._uninstall()
        # DataLoader workers end with their iterator; frames of a failed or stopped script may
        # still hold one, so shut them down explicitly.
        for it in list(self.mp_iters):
            try:
                it._shutdown_workers()
            except Exception:
                pass
        gc.collect()
        cwd, argv, out, err = self._saved
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        sys.stdout, sys.stderr = out, err
        sys.argv = argv
        try:
            sys.path.remove(self.folder)
        except ValueError:
            pass
        try:
            os.chdir(cwd)
        except OSError:
            pass
        if self._orig_notify is not None and self.server.hooks is not None:
            if self.server.hooks.count():
                self.server.hooks.flush()
            self.server.hooks._notify = self._orig_notify

    def _patch(self, owner, name, value):
        had = name in vars(owner)
        self._patches.append((owner, name, had, vars(owner).get(name)))
        setattr(owner, name, value)

    def _uninstall(self):
        if self._root_handles is not None:
            self._root_hooks_off()
        for item in reversed(self._patches):
            if callable(item):
                try:
                    item()
                except Exception:
                    pass
                continue
            owner, name, had, old = item
            if had:
                setattr(owner, name, old)
            else:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass
        self._patches = []
        self._call_patched = False

    def _install(self):
        run = self
        tid = self.tid
        get_ident = threading.get_ident

        # -- optimizers --
        Opt = torch.optim.Optimizer
        orig_init = Opt.__init__
        import torch.optim.optimizer as optmod

        global_hooks = hasattr(optmod, "register_optimizer_step_pre_hook") and hasattr(optmod, "register_optimizer_step_post_hook")

        def opt_init(opt, *a, **k):
            orig_init(opt, *a, **k)
            if get_ident() == tid:
                run._on_optimizer(opt, global_hooks)
        self._patch(Opt, "__init__", opt_init)
        if not global_hooks:
            # Optimizers made before the run (or by a library) step through these too.
            todo = list(Opt.__subclasses__())
            while todo:
                cls = todo.pop()
                todo.extend(cls.__subclasses__())
                if "step" in vars(cls):
                    self._wrap_step(cls)
        else:
            h1 = optmod.register_optimizer_step_pre_hook(lambda opt, args, kwargs: run._step_pre(opt) if get_ident() == tid else None)
            h2 = optmod.register_optimizer_step_post_hook(lambda opt, args, kwargs: run._step_post(opt) if get_ident() == tid else None)
            self._patches.append(h1.remove)
            self._patches.append(h2.remove)

        # -- backward --
        # Tensor.backward calls torch.autograd.backward, so one wrapper sees both.
        orig_abackward = torch.autograd.backward
        hooks = self.server.hooks
        pending = self.pending

        def abackward(tensors, *a, **k):
            if run._in_bwd or get_ident() != tid:
                return orig_abackward(tensors, *a, **k)
            if run.stop_requested:
                run._check_stop()
            t = tensors if isinstance(tensors, _Tensor) else (tensors[0] if tensors else None)
            if isinstance(t, _Tensor) and t.numel() == 1:
                # A device loss is kept as a detached reference and read with the others when
                # progress is sent (no sync per step); a CPU one is read now, which costs less
                # than keeping hundreds of tensors alive. The deque needs no lock.
                pending.append((run.steps + 1, _item(t) if t.is_cpu else t.detach()))
            run._in_bwd = True
            t0 = _perf()
            try:
                return orig_abackward(tensors, *a, **k)
            finally:
                run._in_bwd = False
                run.t_bwd += _perf() - t0
                if hooks is not None and hooks._pending:
                    hooks.flush()  # backward hooks' statistics, once per step
        self._patch(torch.autograd, "backward", abackward)

        # -- model discovery --
        orig_call = nn.Module.__call__

        def module_call(m, *a, **k):
            if run._call_patched and run._depth == 0 and get_ident() == tid:
                if run.lm is None and run._qualifies(m):
                    run._adopt(m, a)
                run._depth += 1
                try:
                    return orig_call(m, *a, **k)
                finally:
                    run._depth -= 1
            return orig_call(m, *a, **k)
        self._patch(nn.Module, "__call__", module_call)
        self._call_patch_index = len(self._patches) - 1
        self._call_patched = True
        self._orig_call = orig_call

        # -- data loading --
        from torch.utils.data import dataloader as dl

        orig_iter = dl.DataLoader.__iter__

        def dl_iter(loader):
            it = orig_iter(loader)
            if get_ident() == tid:
                run._on_loader_iter(loader, it)
            return it
        self._patch(dl.DataLoader, "__iter__", dl_iter)
        orig_next = dl._BaseDataLoaderIter.__next__

        def dl_next(it):
            if get_ident() != tid:
                return orig_next(it)
            if run.stop_requested:
                run._check_stop()
            run.cur_loader = run.iter_loader.get(it)
            t0 = _perf()
            try:
                return orig_next(it)
            finally:
                run.t_data += _perf() - t0
        self._patch(dl._BaseDataLoaderIter, "__next__", dl_next)
        self._mp_iter_cls = getattr(dl, "_MultiProcessingDataLoaderIter", None)

        # -- sync points and copies --
        def sync(name, kind):
            orig = getattr(_Tensor, name)

            def w(t, *a, **k):
                if run._sync_depth or get_ident() != tid:
                    return orig(t, *a, **k)
                run._sync_depth += 1
                try:
                    on_dev = t.device.type != "cpu"
                    t0 = _perf()
                    out = orig(t, *a, **k)
                    dt = _perf() - t0
                finally:
                    run._sync_depth -= 1
                run._note_sync(kind, sys._getframe(1), dt if on_dev else 0.0)
                if kind == "cpu" and isinstance(out, _Tensor):
                    run._note_copy(t, out)
                return out
            w.__name__ = name
            self._patch(_Tensor, name, w)

        for name, kind in (("item", "item"), ("tolist", "tolist"), ("numpy", "numpy"), ("cpu", "cpu"),
                           ("__repr__", "print"), ("__format__", "print"), ("__float__", "other"), ("__int__", "other")):
            sync(name, kind)

        def copier(name):
            orig = getattr(_Tensor, name)

            def w(t, *a, **k):
                out = orig(t, *a, **k)
                if out is not t and get_ident() == tid and isinstance(out, _Tensor):
                    run._note_copy(t, out)
                return out
            w.__name__ = name
            self._patch(_Tensor, name, w)

        copier("to")
        copier("cuda")

    # ---- instrument bodies -----------------------------------------------------------------

    def _warn(self, text):
        with self.lock:
            if text not in self._warned:
                self._warned.add(text)
                self.warnings.append(text)

    def _on_optimizer(self, opt, global_hooks):
        self.optimizers.append(weakref.ref(opt))
        for g in opt.param_groups:
            for p in g.get("params", []):
                self.opt_params.add(id(p))
        if not global_hooks:
            self._wrap_step(type(opt))

    def _wrap_step(self, cls):
        if getattr(vars(cls).get("step"), "_model_lens_run", None) is self:
            return
        prev = cls.step
        run = self
        tid = self.tid

        def step(o, *a, **k):
            if run._in_step or threading.get_ident() != tid:
                return prev(o, *a, **k)
            if run.stop_requested:
                run._check_stop()
            run._in_step = True
            t0 = _perf()
            try:
                out = prev(o, *a, **k)
            finally:
                run._in_step = False
            # _step_post inlined: this runs every step.
            now = _perf()
            run.t_opt += now - t0
            run.steps += 1
            run.last_opt = o
            run._t_last_step = now
            if run.steps >= run._slow_step or run._root_handles is not None or run.op_counter is not None:
                run._step_slow(now)
            return out
        step._model_lens_run = self
        # torch 1.x wraps a class's step once for the profiler, unless it is marked as done.
        step.hooked = getattr(prev, "hooked", False)
        self._patch(cls, "step", step)

    def _step_pre(self, opt):
        if self.stop_requested:
            self._check_stop()
        self._t_opt0 = _perf()

    def _step_post(self, opt):
        now = _perf()
        self.t_opt += now - self._t_opt0
        self.steps += 1
        self.last_opt = opt
        self._t_last_step = now
        if self.steps >= self._slow_step or self._root_handles is not None or self.op_counter is not None:
            self._step_slow(now)

    def _step_slow(self, now):
        """Step-boundary work that is not needed every step: sampled forward timing, the op
        sample, the first step's snapshot. `_slow_step` is the next step that needs it."""
        steps = self.steps
        nxt = (steps // ROOT_SAMPLE_EVERY_STEPS + 1) * ROOT_SAMPLE_EVERY_STEPS
        nxt = min(nxt, (steps // OP_SAMPLE_EVERY_STEPS + 1) * OP_SAMPLE_EVERY_STEPS)
        if steps < OP_SAMPLE_FIRST_STEP:
            nxt = min(nxt, OP_SAMPLE_FIRST_STEP)
        every = self.histogram_every
        if every:
            nxt = min(nxt, (steps // every + 1) * every)
        self._slow_step = nxt
        if self._root_handles is not None:
            if self._root_whole:
                self.t_fwd += self._fwd_cur
                self.fwd_steps += 1
            self._fwd_cur = 0.0
            self._root_whole = True
            if not self._device_checks and self.steps % ROOT_SAMPLE_EVERY_STEPS:
                self._root_hooks_off()
        elif self.lm is not None and self.steps % ROOT_SAMPLE_EVERY_STEPS == 0:
            self._root_hooks_on()
            self._root_whole = True
        if self.steps == 1:
            self._snap = (now, self.t_data, self.t_fwd, self.t_bwd, self.t_opt, self.fwd_steps)
            self._pick_epoch_source()
        if self.op_counter is not None:
            self._stop_op_sample()
            start_ops = False
        else:
            start_ops = _OpCounter is not None and (self.steps == OP_SAMPLE_FIRST_STEP or self.steps % OP_SAMPLE_EVERY_STEPS == 0)
        # Between op samples, so the op counter never counts the engine's own work.
        if every and steps % every == 0 and (
                self._hist_sent_at is None or now - self._hist_sent_at >= self.histogram_min_interval_s):
            self._hist_sent_at = now
            try:
                self._send_histograms()
            except Exception as e:  # a histogram bug must not end the user's run
                self.server.log("error", "Training histograms failed: %s: %s" % (type(e).__name__, e))
        if start_ops:
            self.op_counter = _OpCounter()
            self.op_counter.__enter__()

    def _send_histograms(self):
        """train/histograms for the trained model's trainable parameters, right after a step (the
        grads still hold that step's gradient in the usual zero_grad, backward, step order).
        Statistics are exact; a histogram is counted over an evenly strided sample of at most
        HISTOGRAM_SAMPLE_ELEMENTS values and scaled to the tensor's size. Everything is computed on
        the parameters' device and read in one transfer per device."""
        lm = self.lm
        if lm is None:
            return
        self._hist_sent_step = self.steps
        named = [(n, p) for n, p in lm.module.named_parameters() if p.requires_grad]
        omitted = max(0, len(named) - MAX_HISTOGRAM_PARAMS)
        named = named[:MAX_HISTOGRAM_PARAMS]
        tensors = []  # weights and grads, in order
        slots = []  # (name, shape, weight index, grad index or None)
        for name, p in named:
            g = p.grad
            gi = None
            tensors.append(p)
            wi = len(tensors) - 1
            if isinstance(g, _Tensor) and g.layout == torch.strided and not g.is_complex():
                tensors.append(g)
                gi = len(tensors) - 1
            slots.append((name, list(p.shape), wi, gi))
        by_dev = {}
        for i, t in enumerate(tensors):
            by_dev.setdefault(t.device, []).append(i)
        rows = [None] * len(tensors)
        self._sync_depth += 1  # the engine's own reads are not the user's sync points
        try:
            with torch.no_grad():
                for dev, idx in by_dev.items():
                    out = _tolist(_summary_rows([tensors[i] for i in idx], TRAIN_HISTOGRAM_BINS))
                    for i, r in zip(idx, out):
                        rows[i] = r
                summaries = [_summary(t, r, TRAIN_HISTOGRAM_BINS) for t, r in zip(tensors, rows)]
        finally:
            self._sync_depth -= 1
        params = []
        for name, shape, wi, gi in slots:
            item = {"name": name, "shape": shape, "weight": summaries[wi]}
            if gi is not None:
                item["grad"] = summaries[gi]
            params.append(item)
        msg = {"runId": self.run_id, "step": self.steps, "params": params}
        if omitted:
            msg["omitted"] = omitted
        self.conn.notify(TRAIN_HISTOGRAMS, msg)

    def _stop_op_sample(self, complete=True):
        c = self.op_counter
        if c is None:
            return
        self.op_counter = None
        c.__exit__(None, None, None)
        if not complete:  # the script ended inside the sampled step
            return
        self.op_steps += 1
        self.op_count += c.ops
        self.op_seconds += c.seconds

    def _qualifies(self, m):
        if not torch.is_grad_enabled():
            return False
        ids = [id(p) for p in m.parameters() if p.requires_grad]
        if not ids:
            return False
        return not self.opt_params or any(i in self.opt_params for i in ids)

    def _adopt(self, module, args):
        from .loader import LoadedModel

        # Restore Module.__call__ at once: the patch costs a Python call per module call.
        owner, name, had, old = self._patches[self._call_patch_index]
        if had:
            setattr(owner, name, old)
        self._call_patched = False
        srv = self.server
        lm = LoadedModel()
        lm.file = self.file
        lm.name = type(module).__name__
        lm.module = module
        lm.scope = self.scope
        lm.warnings = []
        params = list(module.parameters())
        lm.device = params[0].device if params else torch.device("cpu")
        self.model_device = lm.device
        firsts = [a for a in args if isinstance(a, _Tensor)]
        if firsts and len(firsts) == len(args):
            lm.inputs = [a.detach() for a in firsts]
            lm.input_specs = [{"shape": list(a.shape), "dtype": dtype_name(a.dtype), "source": "example",
                               "note": "first batch of training run %s" % self.run_id} for a in firsts]
        for path, m in module.named_modules():
            own = list(m.parameters(recurse=False))
            if own:
                self._first_layer = (path, type(m).__name__, own[0].device)
                break
        by_dev = {}
        for path, m in module.named_modules():
            for p in m.parameters(recurse=False):
                by_dev.setdefault(str(p.device), path or "(root)")
        if len(by_dev) > 1:
            self._device_finding("The model's parameters are on several devices: %s." % ", ".join(
                "%s on %s" % (path, dev) for dev, path in by_dev.items()), None)
        if srv.lm is not None and srv.hooks is not None:
            srv.hooks.detach(all_hooks=True)
        srv.model_counter += 1
        lm.model_id = "m%d" % srv.model_counter
        srv.lm = lm
        self.lm = lm
        self._root_hooks_on()

    def _root_hooks_on(self):
        m = self.lm.module
        self._root_handles = [m.register_forward_pre_hook(self._root_pre), m.register_forward_hook(self._root_post)]
        self._root_whole = False

    def _root_hooks_off(self):
        for h in self._root_handles or ():
            h.remove()
        self._root_handles = None

    def _root_pre(self, m, args):
        # Runs once per forward of the trained model (the RPC thread is refused that model), so
        # it is kept to attribute reads; the device check runs on the first calls only.
        if self.stop_requested:
            self._check_stop()
        self.training = m.training
        self.grad_enabled = torch.is_grad_enabled()
        if self._device_checks and args and isinstance(args[0], _Tensor):
            self._device_checks -= 1
            x = args[0]
            if self.batch_size is None and self.grad_enabled and x.dim() > 0:
                self.batch_size = int(x.shape[0])
            if x.device != self.model_device and self._first_layer is not None:
                key = (str(x.device), str(self.model_device))
                if key not in self._device_seen:
                    self._device_seen.add(key)
                    path, typ, dev = self._first_layer
                    self._device_finding(
                        "The input batch is on %s but the model is on %s: its first layer %s (%s) has its weights on %s."
                        % (x.device, self.model_device, path or "(root)", typ, dev), path)
        self._t_fwd0 = _perf()
        return None

    def _root_post(self, m, args, out):
        if self._t_fwd0 is not None:
            self._fwd_cur += _perf() - self._t_fwd0
            self._t_fwd0 = None
        return None

    def _device_finding(self, text, layer):
        f = {"severity": "error", "message": text + " Move both to the same device (model.to(device), x.to(device))."}
        self.device_findings.append(f)
        # Sent now: the forward is about to fail.
        try:
            self.conn.notify(TRAIN_DIAGNOSIS, self.diagnosis())
        except Exception:
            pass

    def _on_loader_iter(self, loader, it):
        rec = self.loaders.get(id(loader))
        if rec is None:
            try:
                n = len(loader)
            except TypeError:
                n = None
            rec = self.loaders[id(loader)] = _LoaderRecord(n)
        rec.iters += 1
        try:
            self.iter_loader[it] = rec
        except TypeError:
            pass
        if self._mp_iter_cls is not None and isinstance(it, self._mp_iter_cls):
            self.mp_iters.add(it)

    def _range(self, *args):
        r = _builtin_range(*args)
        if self.epoch_range is not None or self.steps > 0 or len(r) < 2:
            return r
        rec = _RangeRecord(len(r), len(self.ranges))
        self.ranges.append(rec)
        return _TrackedRange(r, rec, self)

    def _pick_epoch_source(self):
        live = [r for r in self.ranges if r.active]
        if live:
            self.epoch_range = min(live, key=lambda r: r.created)
        self.ranges = []
        if self.cur_loader is not None:
            self.epoch_loader = self.cur_loader

    def _note_copy(self, src, out):
        sd, od = src.device, out.device
        if sd == od:
            return
        nbytes = out.numel() * out.element_size()
        if sd.type == "cpu":
            self.h2d[0] += 1
            self.h2d[1] += nbytes
        elif od.type == "cpu":
            self.d2h[0] += 1
            self.d2h[1] += nbytes

    def _file_kind(self, fn):
        """0 library or stdlib, 1 user, 2 this engine, 3 torch itself (cached per file name)."""
        u = self._user_cache.get(fn)
        if u is None:
            real = os.path.realpath(fn) if not fn.startswith("<") else fn
            if real.startswith(_ENGINE_DIR + os.sep):
                u = 2
            elif real.startswith(_TORCH_DIR):
                u = 3
            else:
                u = 1 if self.scope.is_user_file(fn) else 0
            self._user_cache[fn] = u
        return u

    def _note_sync(self, kind, frame, seconds):
        f = frame
        # torch's own bookkeeping (an optimizer reading its step count) is not the user's sync;
        # torch/_tensor.py is where print(tensor) and f-strings come in.
        if self._file_kind(f.f_code.co_filename) == 3 and not f.f_code.co_filename.endswith("_tensor.py"):
            return
        while f is not None:
            u = self._file_kind(f.f_code.co_filename)
            if u == 2:
                return
            if u == 1:
                break
            f = f.f_back
        key = (kind, f.f_code.co_filename, f.f_lineno) if f is not None else (kind, None, 0)
        with self.lock:
            s = self.syncs.get(key)
            if s is None:
                if len(self.syncs) >= MAX_SYNC_SITES:
                    return
                s = self.syncs[key] = [0, 0.0, f.f_code.co_name if f is not None else None, self.steps, self.steps]
            s[0] += 1
            s[1] += seconds
            s[4] = self.steps

    # ---- progress --------------------------------------------------------------------------

    def _ticker(self):
        interval = PROGRESS_INTERVAL_MS / 1000.0
        next_diag = time.monotonic() + DIAGNOSIS_INTERVAL_MS / 1000.0
        while not self.finished.wait(interval):
            if self.state != "running" or not self.in_user_code:
                if self.state in ("done", "stopped", "failed"):
                    return
                continue
            try:
                self._send_progress()
                if time.monotonic() >= next_diag:
                    next_diag = time.monotonic() + DIAGNOSIS_INTERVAL_MS / 1000.0
                    self.conn.notify(TRAIN_DIAGNOSIS, self.diagnosis())
            except Exception as e:  # a progress bug must not end the run
                self.server.log("error", "Training progress failed: %s: %s" % (type(e).__name__, e))

    def _loss_points(self):
        q = self.pending
        pend = [q.popleft() for _ in range(len(q))]
        if not pend:
            return []
        tensors = [t for _, t in pend if isinstance(t, _Tensor)]
        read = {}
        if tensors:
            try:
                # One stack, one conversion, one transfer: per-element reads cost ~3 µs each.
                vals = torch.stack(tensors).to(torch.float64).reshape(-1).tolist()
            except Exception:  # mixed devices or dtypes, or a tensor without data (meta)
                vals = []
                for t in tensors:
                    try:
                        vals.append(float(_item(t.reshape(()))))
                    except Exception:
                        vals.append(None)
            read = {id(t): v for t, v in zip(tensors, vals)}
        points = []
        for s, v in pend:
            if isinstance(v, _Tensor):
                v = read.get(id(v))
            if v is not None:
                points.append([s, float(v)])
        if self.nan_step is None:
            for s, v in points:
                if not math.isfinite(v):
                    self.nan_step = s
                    self._warn("The loss became %s at step %d; the model's weights are probably ruined from there on "
                               "(check the learning rate, the inputs and log/divide operations)." % (v, s))
                    break
        if len(points) > MAX_LOSS_POINTS_PER_PROGRESS:
            n = len(points)
            idx = sorted({round(i * (n - 1) / (MAX_LOSS_POINTS_PER_PROGRESS - 1)) for i in range(MAX_LOSS_POINTS_PER_PROGRESS)})
            points = [points[i] for i in idx]
        return points

    def _epochs(self):
        """(epoch, totalEpochs, totalSteps): epoch is the 1-based epoch in progress."""
        r = self.epoch_range
        lrec = self.epoch_loader
        if r is not None:
            epoch = min(r.index + 1, r.length)
            per = None
            if lrec is not None and lrec.length:
                per = lrec.length
            elif r.index >= 1 and r.steps_at_start > 0:
                per = r.steps_at_start / r.index
            total = int(round(per * r.length)) if per else None
            return epoch, r.length, total
        if lrec is not None:
            return lrec.iters, None, None
        return None, None, None

    def _send_progress(self, final=False):
        with self.lock:
            state = self.state
            error = self.error
            new_warn = self.warnings[self._sent_warnings:]
            self._sent_warnings = len(self.warnings)
        loss = self._loss_points()
        with self.lock:  # a NaN warning from these very points goes out with them
            new_warn = new_warn + self.warnings[self._sent_warnings:]
            self._sent_warnings = len(self.warnings)
        steps = self.steps
        now = time.monotonic()
        self.rate_hist.append((now, steps))
        while len(self.rate_hist) > 2 and now - self.rate_hist[1][0] >= RATE_WINDOW_S:
            self.rate_hist.pop(0)
        t0, s0 = self.rate_hist[0]
        rate = (steps - s0) / (now - t0) if now - t0 > 0 and steps > s0 else None
        if rate is None and steps and self._t_script is not None and self._t_last_step is not None:
            rate = steps / max(self._t_last_step - self._t_script, 1e-9)
        epoch, total_epochs, total_steps = self._epochs()
        if final and state == "done" and total_epochs is not None:
            epoch = total_epochs
        eta = None
        if total_steps and rate and not final:
            eta = max(0.0, (total_steps - steps) / rate)
        p = {
            "runId": self.run_id,
            "state": state,
            "step": steps,
            "epoch": epoch,
            "totalSteps": total_steps,
            "totalEpochs": total_epochs,
            "stepsPerSec": rate,
            "etaSec": 0.0 if final and state == "done" and total_steps else eta,
            "loss": loss,
        }
        opt = self.last_opt
        if opt is not None:
            try:
                lr = opt.param_groups[0]["lr"]
                p["lr"] = float(lr)
            except Exception:
                p["lr"] = None
        if self.training is not None:
            # The flag model.train()/eval() last set; grad mode as the last timed forward saw it.
            p["training"] = bool(self.lm.module.training) if self.lm is not None else bool(self.training)
            p["gradEnabled"] = bool(self.grad_enabled)
        if self.lm is not None:
            p["modelId"] = self.lm.model_id
        if error:
            p["error"] = error
        if new_warn:
            p["warnings"] = new_warn
        self.conn.notify(TRAIN_PROGRESS, p)

    # ---- diagnosis -------------------------------------------------------------------------

    def diagnosis(self):
        steps = self.steps
        dev = self.model_device if self.model_device is not None else torch.device(self.server.device or "cpu")
        on_cpu = dev.type == "cpu"
        step_s = None
        breakdown = None
        snap = self._snap
        if snap is not None and steps >= 2 and self._t_last_step is not None:
            n = steps - 1
            wall = self._t_last_step - snap[0]
            step_s = wall / n
            data = (self.t_data - snap[1]) / n
            fwd = (self.t_fwd - snap[2]) / (self.fwd_steps - snap[5]) if self.fwd_steps > snap[5] else 0.0
            bwd = (self.t_bwd - snap[3]) / n
            opt = (self.t_opt - snap[4]) / n
            breakdown = {"dataMs": data * 1e3, "forwardMs": fwd * 1e3, "backwardMs": bwd * 1e3, "optimizerMs": opt * 1e3,
                         "otherMs": max(0.0, step_s - data - fwd - bwd - opt) * 1e3}
        elif steps == 1 and self._t_script is not None and self._t_last_step is not None:
            step_s = self._t_last_step - self._t_script
        with self.lock:
            sync_items = sorted(self.syncs.items(), key=lambda kv: -kv[1][0])
        syncs = []
        for (kind, file, line), (count, secs, func, _, _) in sync_items:
            s = {"kind": kind, "count": count, "totalMs": secs * 1e3}
            if file:
                s["source"] = location(file, line, func)
            syncs.append(s)
        ops_per_step = self.op_count / self.op_steps if self.op_steps else None
        avg_op_us = self.op_seconds / self.op_count * 1e6 if self.op_count else None
        findings = list(self.device_findings)
        findings.extend(self._findings(steps, dev, on_cpu, step_s, breakdown, sync_items, ops_per_step, avg_op_us))
        return {
            "runId": self.run_id,
            "steps": steps,
            "device": str(dev),
            "batchSize": self.batch_size,
            "stepMs": (step_s or 0.0) * 1e3,
            "opsPerStep": ops_per_step,
            "avgOpUs": avg_op_us,
            "hostToDevice": {"count": self.h2d[0], "bytes": self.h2d[1]},
            "deviceToHost": {"count": self.d2h[0], "bytes": self.d2h[1]},
            "syncs": syncs,
            "breakdown": breakdown,
            "findings": findings,
        }

    def _findings(self, steps, dev, on_cpu, step_s, breakdown, sync_items, ops_per_step, avg_op_us):
        out = []
        if steps == 0:
            out.append({"severity": "warning", "message": "No optimizer step was seen, so nothing is per step: the script "
                        "never called step() on a torch.optim optimizer."})
        for (kind, file, line), (count, secs, func, first_step, last_step) in sync_items[:MAX_FINDING_SYNC_SITES]:
            what = _sync_expr(kind, file, line)
            where = (" at %s:%d" % (os.path.basename(file), line)) if file else ""
            if count == 1:
                freq = "once"
            elif last_step > first_step:
                every = (last_step - first_step) / (count - 1)
                if every >= 1.5:
                    freq = "every %d steps" % round(every)
                else:
                    per = count / (last_step - first_step + 1)
                    freq = "every step" if per < 1.5 else "%.0f times per step" % per
            else:
                freq = "%d times" % count
            msg = "%s%s forces a device sync %s" % (what, where, freq)
            sev = "info"
            if on_cpu:
                msg += " (free here: on CPU there is no device to wait for)"
            else:
                total_s = (self._t_last_step or _perf()) - (self._t_script or _perf())
                share = secs / total_s * 100 if total_s > 0 else 0.0
                msg += ": %.1f ms waiting in total, %.0f%% of the run" % (secs * 1e3, share)
                if share >= 5:
                    sev = "warning"
            f = {"severity": sev, "message": msg + "."}
            if file:
                f["source"] = location(file, line, func)
            out.append(f)
        if on_cpu:
            out.append({"severity": "info", "message": "Syncs and copies cost nothing on CPU (no device): %d sync point%s and %d "
                        "host↔device copies were seen." % (sum(v[0] for _, v in sync_items), "" if len(sync_items) == 1 else "s",
                                                          self.h2d[0] + self.d2h[0])})
        elif steps > 0:
            if self.h2d[0]:
                out.append({"severity": "info", "message": "%.1f host→device copies per step, %s per step." % (
                    self.h2d[0] / steps, _bytes(self.h2d[1] / steps))})
            if self.d2h[0]:
                out.append({"severity": "info", "message": "%.1f device→host copies per step, %s per step." % (
                    self.d2h[0] / steps, _bytes(self.d2h[1] / steps))})
        if breakdown is not None and step_s:
            ms = step_s * 1e3
            out.append({"severity": "info", "message": "Per step (%d steps): %.2f ms = data %.2f + forward %.2f + backward %.2f + "
                        "optimizer %.2f + other %.2f ms." % (steps - 1, ms, breakdown["dataMs"], breakdown["forwardMs"],
                                                            breakdown["backwardMs"], breakdown["optimizerMs"], breakdown["otherMs"])})
            frac = breakdown["dataMs"] / ms if ms > 0 else 0
            if frac >= DATA_BOUND_FRACTION:
                out.append({"severity": "warning", "message": "Waiting for data takes %.0f%% of each step (%.2f of %.2f ms): more "
                            "DataLoader workers, pin_memory=True or preloading would help." % (frac * 100, breakdown["dataMs"], ms)})
        if self.batch_size is not None:
            out.append({"severity": "info", "message": "Batch size %d on %s." % (self.batch_size, dev)})
        if ops_per_step is not None and avg_op_us is not None:
            msg = "About %.0f ops per step averaging %.1f µs each (sampled over %d step%s)." % (
                ops_per_step, avg_op_us, self.op_steps, "" if self.op_steps == 1 else "s")
            sev = "info"
            if avg_op_us < 20:
                msg += " Ops this small are dominated by per-op overhead; a larger batch would use the hardware better."
            out.append({"severity": sev, "message": msg})
        return out


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%.0f %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0


_SYNC_METHOD = {"item": "item", "tolist": "tolist", "numpy": "numpy", "cpu": "cpu"}


def _sync_expr(kind, file, line):
    """`loss.item()` when the line shows it, else the generic `.item()`."""
    text = linecache.getline(file, line).strip() if file else ""
    meth = _SYNC_METHOD.get(kind)
    if meth:
        m = re.search(r"([A-Za-z_][\w\.]*(?:\[[^\[\]]*\])?(?:\([^()]*\))?)\.%s\(\)" % meth, text)
        if m and len(m.group(0)) <= MAX_EXPR_CHARS:
            return "`%s`" % m.group(0)
        return "`.%s()`" % meth
    if kind == "print":
        return "printing a tensor"
    return "converting a tensor to a Python number"


def _summary_rows(ts, bins):
    """One float64 row per tensor (all on one device): quick_stats_vector's 8 values, then the
    number of sampled values, then `bins` counts over [min, max] of an evenly strided sample (as
    histc: the maximum falls in the last bin; non-finite values in none). No host sync.

    A tensor small enough to be sampled whole gets its statistics from segment reductions over
    the concatenated samples, so many small parameters cost a fixed number of ops."""
    k = len(ts)
    samples = []
    big = []
    for i, t in enumerate(ts):
        x = t.detach().reshape(-1)
        if x.is_complex():
            x = x.abs()
        n = x.numel()
        if n > HISTOGRAM_SAMPLE_ELEMENTS:
            x = x[::-(-n // HISTOGRAM_SAMPLE_ELEMENTS)]
            big.append(i)
        samples.append(x.double())
    flat = torch.cat(samples)
    dev = flat.device
    lens = torch.tensor([x.numel() for x in samples], dtype=torch.int64, device=dev)
    seg = torch.repeat_interleave(torch.arange(k, device=dev), lens)
    cnt = lens.double()
    zeros = torch.zeros(k, dtype=torch.float64, device=dev)
    mean = zeros.index_add(0, seg, flat) / cnt
    d = flat - mean[seg]
    std = torch.sqrt(zeros.index_add(0, seg, d * d) / cnt)
    inf = torch.full((k,), float("inf"), dtype=torch.float64, device=dev)
    with warnings.catch_warnings():  # torch 1.x calls scatter_reduce beta; not the user's concern
        warnings.simplefilter("ignore")
        mn = inf.scatter_reduce(0, seg, flat, "amin")
        mx = (-inf).scatter_reduce(0, seg, flat, "amax")
    zero = zeros.index_add(0, seg, (flat == 0).double())
    stats = torch.stack([cnt, mean, std, mn, mx, torch.full_like(cnt, -1.0), torch.full_like(cnt, -1.0), zero], 1)
    if big:
        stats[torch.tensor(big, device=dev)] = torch.stack([quick_stats_vector(ts[i]) for i in big])
    mn, mx = stats[:, 3], stats[:, 4]
    span = torch.where(mx > mn, mx - mn, torch.ones_like(mx))
    pos = (flat - mn[seg]) * bins / span[seg]
    finite = torch.isfinite(pos)
    b = torch.where(finite, pos, torch.zeros_like(pos)).floor().clamp(0, bins - 1).long()
    b = torch.where(finite, b, torch.full_like(b, bins))  # a dropped bin for non-finite values
    counts = torch.bincount(seg * (bins + 1) + b, minlength=k * (bins + 1)).view(k, bins + 1)[:, :bins]
    return torch.cat([stats, cnt.unsqueeze(1), counts.double()], 1)


def _summary(t, row, bins):
    """Host side of one _summary_rows row: {stats, histogram[, sampled]}. A tensor holding a NaN
    or an Inf (rare) is re-read exactly with the masked helpers."""
    stats = finish_stats(row[:8], t)
    if stats["nanCount"] or stats["infCount"]:
        return {"stats": stats, "histogram": histogram(t, bins)}
    n, taken = stats["numel"], int(row[8])
    counts = [int(c) for c in row[9:9 + bins]]
    out = {"stats": stats}
    if taken < n and taken:
        # Scale the sample's counts to the tensor's size; largest remainders keep the sum exact.
        exact = [c * n / taken for c in counts]
        counts = [int(v) for v in exact]
        for i in sorted(range(bins), key=lambda i: counts[i] - exact[i])[:n - sum(counts)]:
            counts[i] += 1
        out["sampled"] = taken
    lo = stats["min"] if stats["min"] is not None else 0.0
    hi = stats["max"] if stats["max"] is not None else 0.0
    out["histogram"] = {"min": lo, "max": hi, "counts": counts}
    return out


def start_run(server, params):
    file = params.get("file")
    if not isinstance(file, str) or not file:
        from .errors import bad_request

        raise bad_request("train/start needs `file`")
    args = params.get("args") or []
    if not isinstance(args, list):
        from .errors import bad_request

        raise bad_request("train/start `args` must be a list of strings")
    every = params.get("histogramEverySteps", DEFAULT_HISTOGRAM_EVERY_STEPS)
    if every is None:
        every = DEFAULT_HISTOGRAM_EVERY_STEPS
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        from .errors import bad_request

        raise bad_request("train/start `histogramEverySteps` must be a whole number >= 0 (0 disables), got %r" % (every,), got=every)
    min_interval = params.get("histogramMinIntervalMs", DEFAULT_HISTOGRAM_MIN_INTERVAL_MS)
    if min_interval is None:
        min_interval = DEFAULT_HISTOGRAM_MIN_INTERVAL_MS
    if isinstance(min_interval, bool) or not isinstance(min_interval, (int, float)) or min_interval < 0:
        from .errors import bad_request

        raise bad_request("train/start `histogramMinIntervalMs` must be a number >= 0, got %r" % (min_interval,),
                          got=min_interval)
    path = os.path.abspath(file)
    if not os.path.isfile(path):
        raise user_fault("fileNotFound", "No such file: %s" % path, got=path)
    run = getattr(server, "run", None)
    if run is not None and run.active():
        raise EngineFault(BAD_REQUEST, "badRequest", "Run %s is still going; stop it (train/stop) before starting another." % run.run_id,
                          got=run.run_id)
    server.run_counter = getattr(server, "run_counter", 0) + 1
    run = TrainingRun(server, path, args, "r%d" % server.run_counter, every, min_interval)
    server.run = run
    rid = server.current_id

    def respond_first():
        # The response to train/start goes out when its handler returns; wait for that.
        deadline = time.monotonic() + 5.0
        while server.current_id == rid and time.monotonic() < deadline:
            time.sleep(0.001)
        run.conn.notify(TRAIN_PROGRESS, {
            "runId": run.run_id, "state": "starting", "step": 0, "epoch": None, "totalSteps": None, "totalEpochs": None,
            "stepsPerSec": None, "etaSec": None, "loss": []})

    run.start(respond_first)
    return {"runId": run.run_id}


def find_run(server, params):
    from .errors import not_found

    rid = params.get("runId")
    run = getattr(server, "run", None)
    if run is None or (rid is not None and rid != run.run_id):
        raise not_found("notLoaded", "No training run %r%s" % (rid, (" (the latest is %s)" % run.run_id) if run else ""), got=rid)
    return run
