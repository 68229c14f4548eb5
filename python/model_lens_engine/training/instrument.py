"""Everything a training run patches, installed through one Patcher and removed when it ends:

- `Optimizer.step` (wrapped per class on torch 1.x, global step hooks on torch >= 2.0) counts steps;
- `torch.autograd.backward` (which `Tensor.backward` calls) keeps scalar losses (LossQueue);
- `nn.Module.__call__` finds the model the script trains (first top-level call with gradients
  and trainable parameters), then is restored; the model gets two root hooks for timing;
- `DataLoader.__iter__` / `_BaseDataLoaderIter.__next__` time data loading and count epochs;
- `range` in the script's own globals counts the iterations of the epoch loop (EpochTracker);
- `.item()`, `.tolist()`, `.numpy()`, `.cpu()`, `print(tensor)`, `float(tensor)` are counted as
  sync points with the user's line; `.to()` / `.cuda()` / `.cpu()` count cross-device copies.

Every patch acts only on the script's thread (`tid`): the engine's own work on other threads is
not the user's.
"""

import os
import sys
import threading
import time
import weakref

import torch
import torch.nn as nn

from ..errors import _ENGINE_DIR
from ..tensors import dtype_name
from .patcher import Patcher

# One step is run under a TorchDispatchMode op counter at this step and then every N steps.
OP_SAMPLE_FIRST_STEP = 3
OP_SAMPLE_EVERY_STEPS = 1000
MAX_SYNC_SITES = 32
# The trained model's forward is timed (root hooks) on one step in this many, plus the first ones.
ROOT_SAMPLE_EVERY_STEPS = 10
# Forward calls of the trained model whose input device and batch size are checked: a device
# mismatch fails on the first call anyway, and the check costs a device object per call.
DEVICE_CHECK_CALLS = 20

_perf = time.perf_counter
_Tensor = torch.Tensor
_TORCH_DIR = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
# torch's files through which printing a tensor or a parameter reaches Tensor.__repr__.
_PRINT_FILES = (os.sep + "_tensor.py", os.sep + "parameter.py")

try:
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # torch < 1.13
    TorchDispatchMode = None

if TorchDispatchMode is not None:

    class _OpCounter(TorchDispatchMode):
        """Counts the ops of one step (not their time: see diagnosis.py's avgOpUs)."""

        def __init__(self):
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **kwargs) if kwargs else func(*args)
else:
    _OpCounter = None


def _loader_facts(loader):
    try:
        rows = len(loader.dataset)
    except Exception:  # an IterableDataset without len()
        rows = None
    return {
        "workers": int(getattr(loader, "num_workers", 0) or 0),
        "pinMemory": bool(getattr(loader, "pin_memory", False)),
        "persistent": bool(getattr(loader, "persistent_workers", False)),
        "rows": rows,
    }


class Instrumentation:
    def __init__(self, run):
        self.run = run
        self.c = run.counters
        self.epochs = run.epochs
        self.losses = run.losses
        self.patcher = Patcher()
        self.tid = None
        self.optimizers = []
        self.opt_params = set()
        self.last_opt = None
        self.lm = None  # the trained model, once found
        self.model_device = None
        self.training = None  # model.training as the last timed forward saw it
        self.grad_enabled = None
        self.mp_iters = weakref.WeakSet()
        self.op_counter = None
        self._mp_iter_cls = None
        self._t_opt0 = 0.0
        self._t_fwd0 = None
        self._fwd_cur = 0.0
        self._root_handles = None
        self._root_whole = False
        self._slow_step = 1
        self._device_seen = set()
        self._device_checks = DEVICE_CHECK_CALLS
        self._first_layer = None
        self._user_cache = {}
        self.sync_depth = 0  # > 0 while the engine itself reads tensors
        self._in_step = False
        self._in_bwd = False
        self._depth = 0
        self._call_patched = False
        self._restore_call = None

    # ---- install / uninstall ------------------------------------------------------------

    def install(self, tid):
        self.tid = tid
        self._install_optimizers()
        self._install_backward()
        self._install_module_call()
        self._install_data()
        self._install_syncs()

    def uninstall(self):
        try:
            self.stop_op_sample(complete=False)
        except Exception:
            pass
        if self._root_handles is not None:
            self._root_hooks_off()
        self.patcher.restore()
        self._call_patched = False

    def _install_optimizers(self):
        inst = self
        tid = self.tid
        get_ident = threading.get_ident
        Opt = torch.optim.Optimizer
        orig_init = Opt.__init__
        import torch.optim.optimizer as optmod

        global_hooks = hasattr(optmod, "register_optimizer_step_pre_hook") and hasattr(
            optmod, "register_optimizer_step_post_hook"
        )

        def opt_init(opt, *a, **k):
            orig_init(opt, *a, **k)
            if get_ident() == tid:
                inst._on_optimizer(opt, global_hooks)

        self.patcher.patch(Opt, "__init__", opt_init)
        if not global_hooks:
            # Optimizers made before the run (or by a library) step through these too.
            todo = list(Opt.__subclasses__())
            while todo:
                cls = todo.pop()
                todo.extend(cls.__subclasses__())
                if "step" in vars(cls):
                    self._wrap_step(cls)
        else:
            h1 = optmod.register_optimizer_step_pre_hook(
                lambda opt, args, kwargs: inst._step_pre(opt) if get_ident() == tid else None
            )
            h2 = optmod.register_optimizer_step_post_hook(
                lambda opt, args, kwargs: inst._step_post(opt) if get_ident() == tid else None
            )
            self.patcher.on_restore(h1.remove)
            self.patcher.on_restore(h2.remove)

    def _install_backward(self):
        # Tensor.backward calls torch.autograd.backward, so one wrapper sees both.
        inst = self
        run = self.run
        c = self.c
        tid = self.tid
        get_ident = threading.get_ident
        orig_abackward = torch.autograd.backward
        hooks = run.server.hooks
        losses = self.losses

        def abackward(tensors, *a, **k):
            if inst._in_bwd or get_ident() != tid:
                return orig_abackward(tensors, *a, **k)
            if run.stop_anywhere:
                run.check_stop()
            t = tensors if isinstance(tensors, _Tensor) else (tensors[0] if tensors else None)
            if isinstance(t, _Tensor) and t.numel() == 1:
                losses.append(c.steps + 1, t)
            inst._in_bwd = True
            t0 = _perf()
            try:
                return orig_abackward(tensors, *a, **k)
            finally:
                inst._in_bwd = False
                c.t_bwd += _perf() - t0
                if hooks is not None and hooks._pending:
                    hooks.flush()  # backward hooks' statistics, once per step

        self.patcher.patch(torch.autograd, "backward", abackward)

    def _install_module_call(self):
        inst = self
        tid = self.tid
        get_ident = threading.get_ident
        orig_call = nn.Module.__call__

        def module_call(m, *a, **k):
            if inst._call_patched and inst._depth == 0 and get_ident() == tid:
                if inst.lm is None and inst._qualifies(m):
                    inst._adopt_called(m, a, sys._getframe(1))
                inst._depth += 1
                try:
                    return orig_call(m, *a, **k)
                finally:
                    inst._depth -= 1
            return orig_call(m, *a, **k)

        self._module_call = module_call
        self._restore_call = self.patcher.patch(nn.Module, "__call__", module_call)
        self._call_patched = True

    def _install_data(self):
        run = self.run
        c = self.c
        epochs = self.epochs
        inst = self
        tid = self.tid
        get_ident = threading.get_ident
        from torch.utils.data import dataloader as dl

        self._mp_iter_cls = getattr(dl, "_MultiProcessingDataLoaderIter", None)
        orig_iter = dl.DataLoader.__iter__

        def dl_iter(loader):
            if get_ident() != tid:
                return orig_iter(loader)
            # Starting an iterator starts the workers (again each epoch unless they persist):
            # that time is data loading too.
            t0 = _perf()
            it = orig_iter(loader)
            c.t_data += _perf() - t0
            c.loader = _loader_facts(loader)
            epochs.on_loader_iter(loader, it)
            if inst._mp_iter_cls is not None and isinstance(it, inst._mp_iter_cls):
                inst.mp_iters.add(it)
            return it

        self.patcher.patch(dl.DataLoader, "__iter__", dl_iter)
        orig_next = dl._BaseDataLoaderIter.__next__

        def dl_next(it):
            if get_ident() != tid:
                return orig_next(it)
            if run.stop_anywhere:
                run.check_stop()
            epochs.on_loader_next(it)
            t0 = _perf()
            try:
                return orig_next(it)
            finally:
                c.t_data += _perf() - t0

        self.patcher.patch(dl._BaseDataLoaderIter, "__next__", dl_next)

    def _install_syncs(self):
        inst = self
        tid = self.tid
        get_ident = threading.get_ident

        def sync(name, kind):
            orig = getattr(_Tensor, name)

            def w(t, *a, **k):
                if inst.sync_depth or get_ident() != tid:
                    return orig(t, *a, **k)
                inst.sync_depth += 1
                try:
                    on_dev = t.device.type != "cpu"
                    t0 = _perf()
                    out = orig(t, *a, **k)
                    dt = _perf() - t0
                finally:
                    inst.sync_depth -= 1
                inst._note_sync(kind, sys._getframe(1), dt if on_dev else 0.0)
                if kind == "cpu" and isinstance(out, _Tensor):
                    inst._note_copy(t, out)
                return out

            w.__name__ = name
            self.patcher.patch(_Tensor, name, w)

        for name, kind in (
            ("item", "item"),
            ("tolist", "tolist"),
            ("numpy", "numpy"),
            ("cpu", "cpu"),
            ("__repr__", "print"),
            ("__format__", "print"),
            ("__float__", "other"),
            ("__int__", "other"),
        ):
            sync(name, kind)

        def copier(name):
            orig = getattr(_Tensor, name)

            def w(t, *a, **k):
                out = orig(t, *a, **k)
                if out is not t and get_ident() == tid and isinstance(out, _Tensor):
                    inst._note_copy(t, out)
                return out

            w.__name__ = name
            self.patcher.patch(_Tensor, name, w)

        copier("to")
        copier("cuda")

    # ---- optimizer steps ----------------------------------------------------------------

    def _on_optimizer(self, opt, global_hooks):
        first = not self.optimizers
        self.optimizers.append(weakref.ref(opt))
        for g in opt.param_groups:
            for p in g.get("params", []):
                self.opt_params.add(id(p))
        if first:
            # Losses before any optimizer are a demonstration (autograd on its own), not the
            # training: the curve starts at the first step.
            self.losses.discard()
        if self.lm is not None and not any(
            id(p) in self.opt_params for p in self.lm.module.parameters()
        ):
            self._drop_model()
        if not global_hooks:
            self._wrap_step(type(opt))

    def _wrap_step(self, cls):
        if getattr(vars(cls).get("step"), "_model_lens_run", None) is self:
            return
        prev = cls.step
        inst = self
        run = self.run
        c = self.c
        tid = self.tid

        def step(o, *a, **k):
            if inst._in_step or threading.get_ident() != tid:
                return prev(o, *a, **k)
            if run.stop_anywhere:
                run.check_stop()
            inst._in_step = True
            t0 = _perf()
            try:
                out = prev(o, *a, **k)
            finally:
                inst._in_step = False
            # _step_post inlined: this runs every step.
            now = _perf()
            c.t_opt += now - t0
            c.steps += 1
            inst.last_opt = o
            c.t_last_step = now
            if (
                c.steps >= inst._slow_step
                or inst._root_handles is not None
                or inst.op_counter is not None
            ):
                inst._step_slow(now)
            if run.stop_requested:
                run.stop_at_step()
            return out

        step._model_lens_run = self
        # torch 1.x wraps a class's step once for the profiler, unless it is marked as done.
        step.hooked = getattr(prev, "hooked", False)
        self.patcher.patch(cls, "step", step)

    def _step_pre(self, opt):
        if self.run.stop_anywhere:
            self.run.check_stop()
        self._t_opt0 = _perf()

    def _step_post(self, opt):
        c = self.c
        now = _perf()
        c.t_opt += now - self._t_opt0
        c.steps += 1
        self.last_opt = opt
        c.t_last_step = now
        if (
            c.steps >= self._slow_step
            or self._root_handles is not None
            or self.op_counter is not None
        ):
            self._step_slow(now)
        if self.run.stop_requested:
            self.run.stop_at_step()

    def _step_slow(self, now):
        """Step-boundary work that is not needed every step: sampled forward timing, the op
        sample, the first step's snapshot. `_slow_step` is the next step that needs it."""
        c = self.c
        steps = c.steps
        nxt = (steps // ROOT_SAMPLE_EVERY_STEPS + 1) * ROOT_SAMPLE_EVERY_STEPS
        nxt = min(nxt, (steps // OP_SAMPLE_EVERY_STEPS + 1) * OP_SAMPLE_EVERY_STEPS)
        if steps < OP_SAMPLE_FIRST_STEP:
            nxt = min(nxt, OP_SAMPLE_FIRST_STEP)
        every = self.run.histogram_every
        if every:
            nxt = min(nxt, (steps // every + 1) * every)
        self._slow_step = nxt
        if self._root_handles is not None:
            if self._root_whole:
                c.t_fwd += self._fwd_cur
                c.fwd_steps += 1
            self._fwd_cur = 0.0
            self._root_whole = True
            if not self._device_checks and steps % ROOT_SAMPLE_EVERY_STEPS:
                self._root_hooks_off()
        elif self.lm is not None and steps % ROOT_SAMPLE_EVERY_STEPS == 0:
            self._root_hooks_on()
            self._root_whole = True
        if steps == 1:
            c.take_snapshot(now)
            self.epochs.pick_source()
        if self.op_counter is not None:
            self.stop_op_sample()
            start_ops = False
        else:
            start_ops = _OpCounter is not None and (
                steps == OP_SAMPLE_FIRST_STEP or steps % OP_SAMPLE_EVERY_STEPS == 0
            )
        # Between op samples, so the op counter never counts the engine's own work.
        if every and steps % every == 0:
            self.run.maybe_send_histograms(now)
        if start_ops:
            self.op_counter = _OpCounter()
            self.op_counter.__enter__()

    def stop_op_sample(self, complete=True):
        oc = self.op_counter
        if oc is None:
            return
        self.op_counter = None
        oc.__exit__(None, None, None)
        if not complete:  # the script ended inside the sampled step
            return
        c = self.c
        c.op_steps += 1
        c.op_count += oc.ops

    # ---- the trained model --------------------------------------------------------------

    def _qualifies(self, m):
        """A module the script may be training: called with gradients on, with trainable
        parameters, some of them stepped by an optimizer (before any optimizer exists, any such
        module is adopted provisionally: see _on_optimizer)."""
        if not torch.is_grad_enabled():
            return False
        ids = [id(p) for p in m.parameters() if p.requires_grad]
        if not ids:
            return False
        return not self.opt_params or any(i in self.opt_params for i in ids)

    def _adopt_called(self, m, args, caller):
        """`m` was called at the top level. When the caller is the `forward` of a module that
        holds `m` (the script called `model.forward(x)` directly, which skips __call__), the
        model is that module."""
        owner = caller.f_locals.get("self") if caller is not None else None
        if (
            caller is not None
            and caller.f_code.co_name == "forward"
            and isinstance(owner, nn.Module)
            and owner is not m
            and any(sub is m for sub in owner.modules())
            and self._qualifies(owner)
        ):
            self._adopt(owner, None, direct=caller.f_back)
        else:
            self._adopt(m, args)

    def _adopt(self, module, args, direct=None):
        """Makes `module` the trained model. `direct` is the user's frame that called its
        forward() directly (None when it was called as module(x))."""
        from ..loader import LoadedModel

        # Restore Module.__call__ at once: the patch costs a Python call per module call.
        self._restore_call()
        self._call_patched = False
        run = self.run
        lm = LoadedModel()
        lm.file = run.file
        lm.name = type(module).__name__
        lm.module = module
        lm.scope = run.scope
        lm.warnings = []
        params = list(module.parameters())
        lm.device = params[0].device if params else torch.device("cpu")
        self.model_device = lm.device
        firsts = [a for a in args or () if isinstance(a, _Tensor)]
        if firsts and len(firsts) == len(args):
            lm.inputs = [a.detach() for a in firsts]
            lm.input_specs = [
                {
                    "shape": list(a.shape),
                    "dtype": dtype_name(a.dtype),
                    "source": "example",
                    "note": "first batch of training run %s" % run.run_id,
                }
                for a in firsts
            ]
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
            self._device_finding(
                "The model's parameters are on several devices: %s."
                % ", ".join("%s on %s" % (path, dev) for dev, path in by_dev.items())
            )
        run.adopt_model(lm)
        self.lm = lm
        if direct is None:
            self._root_hooks_on()
        else:
            self._time_forward_directly(module, direct)

    def _time_forward_directly(self, module, frame):
        """The script calls module.forward(x) itself, so root hooks never fire: time forward()
        through an instance attribute instead (which module(x) goes through as well)."""
        inst = self
        c = self.c
        c.fwd_every_step = True
        where = ""
        while frame is not None and self._file_kind(frame.f_code.co_filename) != 1:
            frame = frame.f_back
        if frame is not None:
            where = " (%s:%d)" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno)
        self.run.warn(
            "The script calls %s.forward() directly%s instead of calling the model: "
            "that skips the module's hooks (forward hooks, and Model Lens's hooks on "
            "the whole model). Its forward time is measured inside forward() instead."
            % (type(module).__name__, where)
        )
        orig = module.forward

        def forward(*a, **k):
            inst._observe_input(module, a)
            t0 = _perf()
            try:
                return orig(*a, **k)
            finally:
                c.t_fwd += _perf() - t0

        module.forward = forward

        def undo():
            if vars(module).get("forward") is forward:
                del module.forward

        self.patcher.on_restore(undo)

    def _drop_model(self):
        """An optimizer appeared that does not step the provisionally adopted model (an
        autograd demo before the real training): forget it and look again."""
        self._root_hooks_off()
        self.lm = None
        self.model_device = None
        self._first_layer = None
        self._device_checks = DEVICE_CHECK_CALLS
        self._fwd_cur = 0.0
        self.c.batch_size = None
        self._restore_call = self.patcher.patch(nn.Module, "__call__", self._module_call)
        self._call_patched = True

    def _root_hooks_on(self):
        m = self.lm.module
        self._root_handles = [
            m.register_forward_pre_hook(self._root_pre),
            m.register_forward_hook(self._root_post),
        ]
        self._root_whole = False

    def _root_hooks_off(self):
        for h in self._root_handles or ():
            h.remove()
        self._root_handles = None

    def _root_pre(self, m, args):
        self._observe_input(m, args)
        self._t_fwd0 = _perf()
        return None

    def _observe_input(self, m, args):
        # Runs once per forward of the trained model (the RPC thread is refused that model), so
        # it is kept to attribute reads; the device check runs on the first calls only.
        run = self.run
        if run.stop_anywhere:
            run.check_stop()
        self.training = m.training
        self.grad_enabled = torch.is_grad_enabled()
        if self._device_checks and args and isinstance(args[0], _Tensor):
            self._device_checks -= 1
            x = args[0]
            if self.c.batch_size is None and self.grad_enabled and x.dim() > 0:
                self.c.batch_size = int(x.shape[0])
            if x.device != self.model_device and self._first_layer is not None:
                key = (str(x.device), str(self.model_device))
                if key not in self._device_seen:
                    self._device_seen.add(key)
                    path, typ, dev = self._first_layer
                    self._device_finding(
                        "The input batch is on %s but the model is on %s: its first layer %s (%s) "
                        "has its weights on %s."
                        % (x.device, self.model_device, path or "(root)", typ, dev)
                    )

    def _root_post(self, m, args, out):
        if self._t_fwd0 is not None:
            self._fwd_cur += _perf() - self._t_fwd0
            self._t_fwd0 = None
        return None

    def _device_finding(self, text):
        f = {
            "severity": "error",
            "message": text + " Move both to the same device (model.to(device), x.to(device)).",
        }
        self.c.device_findings.append(f)
        self.run.send_diagnosis()  # now: the forward is about to fail

    # ---- syncs and copies ---------------------------------------------------------------

    def _note_copy(self, src, out):
        sd, od = src.device, out.device
        if sd == od:
            return
        nbytes = out.numel() * out.element_size()
        c = self.c
        if sd.type == "cpu":
            c.h2d[0] += 1
            c.h2d[1] += nbytes
        elif od.type == "cpu":
            c.d2h[0] += 1
            c.d2h[1] += nbytes

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
                u = 1 if self.run.scope.is_user_file(fn) else 0
            self._user_cache[fn] = u
        return u

    def _note_sync(self, kind, frame, seconds):
        f = frame
        # torch's own bookkeeping (an optimizer reading its step count) is not the user's sync;
        # torch/_tensor.py is where print(tensor) and f-strings come in, nn/parameter.py where
        # print(parameter) does.
        fn = f.f_code.co_filename
        if self._file_kind(fn) == 3 and not fn.endswith(_PRINT_FILES):
            return
        while f is not None:
            u = self._file_kind(f.f_code.co_filename)
            if u == 2:
                return
            if u == 1:
                break
            f = f.f_back
        key = (kind, f.f_code.co_filename, f.f_lineno) if f is not None else (kind, None, 0)
        c = self.c
        steps = c.steps
        with c.lock:
            s = c.syncs.get(key)
            if s is None:
                if len(c.syncs) >= MAX_SYNC_SITES:
                    return
                s = c.syncs[key] = [
                    0,
                    0.0,
                    f.f_code.co_name if f is not None else None,
                    steps,
                    steps,
                ]
            s[0] += 1
            s[1] += seconds
            s[4] = steps
