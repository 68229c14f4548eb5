"""Importing a user's model file (never as __main__), choosing and building the model, finding
an input for it, and turning what user code raises into protocol errors."""

import ast
import contextlib
import inspect
import os
import re
import sys
import types

import torch
import torch.nn as nn

from .errors import (
    EngineFault,
    UserScope,
    is_library_file,
    location,
    short_exception,
    user_fault,
)
from .inputs import EXAMPLE_INPUT_NAME, call, check_shapes, infer_input, make_inputs, resolve  # noqa: F401
from .training.import_guard import ImportGuard

USER_MODULE_PREFIX = "_model_lens_user_"


class CreationRecorder:
    """While user code builds modules, remembers which line registered each child module
    (`self.fc1 = nn.Linear(...)`, or the line that built a Sequential). The innermost frame
    outside torch is used, so torchvision's own lines show for its layers."""

    def __init__(self, scope):
        self.scope = scope
        self.by_key = {}
        self.by_child = {}
        self._saved = None

    def _record(self, parent, name, child):
        loc = self.scope.innermost_user_frame(sys._getframe(2), framework_only=True)
        if loc is not None:
            self.by_key[(id(parent), str(name))] = loc
            self.by_child.setdefault(id(child), loc)

    def __enter__(self):
        rec = self
        orig_setattr = nn.Module.__setattr__
        orig_add = nn.Module.add_module

        def __setattr__(self, name, value):
            if isinstance(value, nn.Module):
                rec._record(self, name, value)
            orig_setattr(self, name, value)

        def add_module(self, name, module):
            if isinstance(module, nn.Module):
                rec._record(self, name, module)
            return orig_add(self, name, module)

        self._saved = (orig_setattr, orig_add)
        nn.Module.__setattr__ = __setattr__
        nn.Module.add_module = add_module
        return self

    def __exit__(self, *exc):
        nn.Module.__setattr__, nn.Module.add_module = self._saved
        return False

    def creation(self, parent, name, child):
        return self.by_key.get((id(parent), name)) or self.by_child.get(id(child))


class LoadedModel:
    def __init__(self):
        self.model_id = None
        self.file = None
        self.name = None
        self.module = None
        self.user_module = None
        self.candidates = []
        self.inputs = []
        self.input_specs = []
        self.warnings = []
        self.location = None
        self.recorder = None
        self.scope = None
        self.device = None
        self.last_outputs = {}
        self.wrapper = None
        self.meta = False


def _class_location(cls):
    try:
        f = inspect.getsourcefile(cls)
        _, line = inspect.getsourcelines(cls)
        return location(f, line, cls.__name__)
    except (TypeError, OSError):
        return None


def required_args(cls):
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind in kinds and p.default is inspect.Parameter.empty
    ]


def _top_level_assignments(tree):
    lines = {}
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    lines.setdefault(n.id, node.lineno)
    return lines


def _purge_user_modules(folder):
    """Helper modules next to the model file were imported by the previous load; drop them so an
    edited helper is read again."""
    prefix = os.path.realpath(folder) + os.sep
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if name == "model_lens_engine" or name.startswith("model_lens_engine."):
            continue  # a model file above the engine's folder must not unload the engine
        if name.startswith(USER_MODULE_PREFIX) or (
            f and os.path.realpath(f).startswith(prefix) and not is_library_file(f)
        ):
            sys.modules.pop(name, None)


def _module_name_for(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isidentifier() and stem not in sys.modules and stem != "__main__":
        return stem
    return USER_MODULE_PREFIX + re.sub(r"\W", "_", stem)


def _user_exception(exc, scope, what):
    """A protocol error for an exception user code raised while `what` (importing, building...)."""
    tb = exc.__traceback__
    stack = scope.user_frames_of_tb(tb)
    loc = stack[-1] if stack else None
    if isinstance(exc, SystemExit):
        return user_fault(
            "userExit",
            "User code called sys.exit(%s) while %s%s; the engine caught it and is still running."
            % ("" if exc.code is None else repr(exc.code), what, _at(loc)),
            location=loc,
            userStack=stack or None,
            hint='Move script code (training, argument parsing, sys.exit) under `if __name__ == "__main__":`.',
        )
    if isinstance(exc, ImportError):
        missing = getattr(exc, "name", None)
        return user_fault(
            "importError",
            "%s while %s%s" % (short_exception(exc), what, _at(loc)),
            location=loc,
            userStack=stack or None,
            got=missing,
            hint=("Install `%s` for %s, or fix the import." % (missing, sys.executable))
            if missing
            else None,
        )
    return user_fault(
        "userCodeError",
        "%s while %s%s" % (short_exception(exc), what, _at(loc)),
        location=loc,
        userStack=stack or None,
    )


def _at(loc):
    if not loc:
        return ""
    return " (%s:%d%s)" % (
        loc["file"],
        loc["line"],
        (" in " + loc["function"]) if loc.get("function") else "",
    )


def _defined_names(user_module, modname):
    out = []
    for name, obj in vars(user_module).items():
        if name.startswith("__") or isinstance(obj, types.ModuleType):
            continue
        if getattr(obj, "__module__", modname) != modname and (
            inspect.isclass(obj) or inspect.isfunction(obj)
        ):
            continue  # imported, not defined here
        if inspect.isclass(obj):
            out.append("%s (class)" % name)
        elif inspect.isfunction(obj):
            out.append("%s (function)" % name)
        else:
            out.append("%s (%s)" % (name, type(obj).__name__))
    return out


def find_candidates(user_module, modname, tree, path):
    assigns = _top_level_assignments(tree)
    classes, instances = [], []
    seen = set()
    for name, obj in vars(user_module).items():
        if name.startswith("__"):
            continue
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == modname:
            cand = {"name": name, "kind": "class"}
            loc = _class_location(obj)
            if loc:
                cand["location"] = loc
            req = required_args(obj)
            if req:
                cand["requiredArgs"] = req
            classes.append((cand, obj))
        elif isinstance(obj, nn.Module) and id(obj) not in seen:
            seen.add(id(obj))
            cand = {"name": name, "kind": "instance"}
            if name in assigns:
                cand["location"] = location(path, assigns[name], "<module>")
            instances.append((cand, obj))
    return classes, instances


def _is_referenced(cls_name, other_classes):
    for _, other in other_classes:
        try:
            src = inspect.getsource(other)
        except (OSError, TypeError):
            continue
        if re.search(r"\b%s\b" % re.escape(cls_name), src) and other.__name__ != cls_name:
            return True
    return False


def choose(classes, instances, wanted, file, defined):
    all_names = [c["name"] for c, _ in instances] + [c["name"] for c, _ in classes]
    if wanted:
        for cand, obj in instances + classes:
            if cand["name"] == wanted:
                return cand, obj, None
        raise user_fault(
            "noModel",
            "%s has no nn.Module class or instance named %r; it has: %s"
            % (file, wanted, ", ".join(all_names) or "none"),
            candidates=all_names or defined,
            got=wanted,
        )
    if not classes and not instances:
        raise user_fault(
            "noModel",
            "%s defines no torch.nn.Module subclass and no module-level nn.Module instance; it defines: %s"
            % (file, ", ".join(defined) or "nothing"),
            candidates=defined,
            hint="Define a class deriving from torch.nn.Module, or a module-level `model = ...`.",
        )
    if len(instances) == 1:
        c, o = instances[0]
        why = None
        if classes:
            why = (
                "chose the module-level instance %r (built with the file's own arguments) over the class(es) %s"
                % (c["name"], ", ".join(k["name"] for k, _ in classes))
            )
        return c, o, why
    if not instances:
        if len(classes) == 1:
            return classes[0][0], classes[0][1], None
        # A class used inside another class of the file is a building block, not the model.
        tops = [(c, o) for c, o in classes if not _is_referenced(o.__name__, classes)]
        if len(tops) == 1:
            return (
                tops[0][0],
                tops[0][1],
                "chose %r: the other classes (%s) are used inside it"
                % (
                    tops[0][0]["name"],
                    ", ".join(c["name"] for c, _ in classes if c is not tops[0][0]),
                ),
            )
    raise user_fault(
        "ambiguousModel",
        "%s has several models (%s); say which one to load." % (file, ", ".join(all_names)),
        candidates=all_names,
        hint="Pick one with the `model` option (CLI: --model NAME).",
    )


def _pick_device(module, engine_device):
    for t in list(module.parameters()) + list(module.buffers()):
        if getattr(nn.parameter, "is_lazy", lambda _: False)(t):
            continue
        return t.device
    return torch.device(engine_device)


def unwrap(obj):
    """The module a wrapper runs, and what wrapped it: torch.compile's OptimizedModule (found by
    its `_orig_mod`, torch 2.x only) and DataParallel / DistributedDataParallel (`.module`)."""
    # Only where torch.compile has run: torch._dynamo is then imported already. Touching
    # torch._dynamo otherwise imports it, which costs more than a second of start-up.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    optimized = getattr(eval_frame, "OptimizedModule", None)
    if (
        optimized is not None
        and isinstance(obj, optimized)
        and isinstance(getattr(obj, "_orig_mod", None), nn.Module)
    ):
        return obj._orig_mod, "torch.compile"
    if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return obj.module, type(obj).__name__
    return obj, None


WRAPPER_NOTES = {
    "torch.compile": (
        "%s is compiled with torch.compile: the tree is the original module's; the "
        "summary and profile run the original module eagerly (per-module hooks do not "
        "fire inside a compiled graph), so timings are eager-mode timings."
    ),
    "DataParallel": "%s is wrapped in DataParallel: showing and running its .module on one device.",
    "DistributedDataParallel": (
        "%s is wrapped in DistributedDataParallel: showing and running its "
        ".module in this process, without the process group."
    ),
}


def has_lazy_params(module):
    is_lazy = getattr(nn.parameter, "is_lazy", None)
    return is_lazy is not None and any(is_lazy(p) for p in module.parameters())


def materialize_lazy(lm):
    """Lazy modules (nn.LazyLinear...) get their parameter shapes from the first forward pass:
    run it once under no_grad so the tree and the counts are of the real model."""
    if not has_lazy_params(lm.module):
        return
    if not lm.inputs:
        note = (
            "%s has lazy modules whose parameters are uninitialized until a forward pass; give "
            "an input to count them (they count 0 until then)." % lm.name
        )
        if note not in lm.warnings:
            lm.warnings.append(note)
        return
    from .tree import canonical_paths

    paths = canonical_paths(lm.module)
    try:
        with torch.no_grad():
            call(lm.module, lm.inputs)
    except BaseException as e:  # noqa: B902
        if isinstance(e, KeyboardInterrupt):
            raise
        raise classify_forward_error(
            e, lm, paths, "materializing lazy modules with a first forward pass"
        )
    lm.warnings.append(
        "%s has lazy modules: their parameters were materialized by one forward pass "
        "with input %s." % (lm.name, ", ".join(str(list(t.shape)) for t in lm.inputs))
    )


META_NEEDS = (
    "torch.device as a context manager (torch 2.0 and later), which builds every module "
    "of the file on the meta device; this torch is %s"
)


def meta_supported():
    return hasattr(torch.device, "__enter__")


def device_scope(meta):
    """torch.device("meta") as the default device while user code builds its model: parameters
    get shapes and no memory, even for a module-level `model = LlamaForCausalLM(config)`."""
    return torch.device("meta") if meta else contextlib.nullcontext()


def _out_of_memory(e):
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError)
        and ("can't allocate memory" in str(e) or "not enough memory" in str(e))
    )


class _OutOfMemory(Exception):
    """Building the model ran out of host memory: load() tries again on the meta device."""

    def __init__(self, exc, scope, what):
        super().__init__(str(exc))
        self.fault = _user_exception(exc, scope, what)


def load(
    path, wanted=None, input_requests=None, engine_device="cpu", move_to_device=False, device=None
):
    """`input_requests`: [(shape, dtype or None, keyword name or None)] (inputs.requests_of), or
    plain shapes. `device="meta"` builds the model with no weight memory (torch 2.x); a model
    whose weights do not fit in memory is built on the meta device without being asked."""
    if device not in (None, "meta"):
        from .errors import bad_request

        raise bad_request('device must be "meta" or absent, got %r' % (device,))
    meta = device == "meta"
    path = os.path.abspath(path)
    if meta and not meta_supported():
        raise user_fault(
            "unsupported",
            "--device meta needs " + META_NEEDS % torch.__version__,
            got=torch.__version__,
            expected="torch 2.x",
        )
    try:
        return _load(path, wanted, input_requests, engine_device, move_to_device, meta)
    except _OutOfMemory as oom:
        if not meta_supported():
            raise oom.fault
        import gc

        gc.collect()
        lm = _load(path, wanted, input_requests, engine_device, move_to_device, True)
        lm.warnings.insert(
            0,
            "%s did not fit in memory (%s); it was built on the meta device "
            "instead: shapes, parameters and mult-adds without weights or values."
            % (os.path.basename(path), str(oom).split("\n")[0]),
        )
        return lm


def _load(path, wanted, input_requests, engine_device, move_to_device, meta):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise user_fault("fileNotFound", "No such file: %s" % path, location=None, got=path)
    folder = os.path.dirname(path)
    scope = UserScope(folder)
    with open(path, "rb") as f:
        source = f.read()
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        tree = ast.parse(source, path)
    except SyntaxError as e:
        loc = location(e.filename or path, e.lineno or 1, None, e.offset)
        raise user_fault(
            "syntaxError",
            "%s: %s (%s:%s)" % (type(e).__name__, e.msg, e.filename or path, e.lineno),
            location=loc,
            userStack=[loc],
        )
    except ValueError as e:  # null bytes
        raise user_fault(
            "syntaxError", "Cannot compile %s: %s" % (path, e), location=location(path, 1)
        )

    _purge_user_modules(folder)
    modname = _module_name_for(path)
    user_module = types.ModuleType(modname)
    user_module.__file__ = path
    user_module.__builtins__ = __builtins__
    if folder not in sys.path:
        sys.path.insert(0, folder)
    os.chdir(folder)
    sys.modules[modname] = user_module
    recorder = CreationRecorder(scope)
    guard = ImportGuard(scope, path)  # a script that trains at import stops at its backward()
    try:
        with recorder, device_scope(meta):
            guard.exec(code, user_module.__dict__)
    except BaseException as e:  # noqa: B902 - SystemExit and KeyboardInterrupt from user code too
        sys.modules.pop(modname, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        if not meta and _out_of_memory(e):
            raise _OutOfMemory(e, scope, "importing %s" % os.path.basename(path))
        raise _user_exception(e, scope, "importing %s" % os.path.basename(path))

    classes, instances = find_candidates(user_module, modname, tree, path)
    instances = guard.without_losses(instances)
    defined = _defined_names(user_module, modname)
    wanted = wanted or guard.trained(instances, user_module.__dict__)
    cand, obj, why = choose(classes, instances, wanted, os.path.basename(path), defined)
    lm = LoadedModel()
    lm.file = path
    lm.scope = scope
    lm.recorder = recorder
    lm.user_module = user_module
    lm.candidates = [c for c, _ in instances] + [c for c, _ in classes]
    lm.name = cand["name"]
    lm.location = cand.get("location")
    if why:
        lm.warnings.append(why[0].upper() + why[1:] + ".")
    if guard.note:
        lm.warnings.append(guard.note)
    if cand["kind"] == "class":
        req = cand.get("requiredArgs")
        if req:
            raise user_fault(
                "constructorArgs",
                "%s(...) needs arguments %s, so the engine cannot build it on its own."
                % (cand["name"], ", ".join(req)),
                location=cand.get("location"),
                layer=cand["name"],
                expected="%s(%s)" % (cand["name"], ", ".join(req)),
                candidates=[c["name"] for c in lm.candidates],
                hint="Give the arguments defaults, or add a module-level instance such as `model = %s(...)`."
                % cand["name"],
            )
        try:
            with recorder, device_scope(meta):
                obj = obj()
        except BaseException as e:  # noqa: B902
            if isinstance(e, KeyboardInterrupt):
                raise
            if not meta and _out_of_memory(e):
                raise _OutOfMemory(e, scope, "building %s()" % cand["name"])
            raise _user_exception(e, scope, "building %s()" % cand["name"])
        if not isinstance(obj, nn.Module):
            raise user_fault(
                "noModel",
                "%s() did not return an nn.Module" % cand["name"],
                location=cand.get("location"),
            )
    module, wrapper = unwrap(obj)
    lm.wrapper = wrapper
    lm.meta = meta
    if wrapper:
        lm.warnings.append(WRAPPER_NOTES[wrapper] % cand["name"])
    if move_to_device and not meta:
        module.to(engine_device)
    lm.module = module
    lm.device = _pick_device(module, engine_device)
    if input_requests and not isinstance(input_requests[0], tuple):
        check_shapes(input_requests)
        input_requests = [(list(s), None, None) for s in input_requests]
    tensors, specs, warns = resolve(module, user_module, input_requests, lm.device)
    lm.inputs = tensors or []
    lm.input_specs = specs
    lm.warnings.extend(warns)
    if has_lazy_params(module):
        # model/load never runs the model: the tree and the summary materialize them.
        lm.warnings.append(
            "%s has lazy modules: their parameters get their shapes from the first "
            "forward pass, which the tree or the summary runs." % lm.name
        )
    return lm


# ---- errors raised inside forward ----------------------------------------------------------

_DEVICE_PATTERNS = (
    "Expected all tensors to be on the same device",
    "Expected object of device type",
    "should be the same",  # Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same
    "must be on the same device",
    "is on a different device",
    "is not on the expected device",  # torch 2.x: Tensor on device meta is not on the expected device cpu!
)
_SHAPE_PATTERNS = (
    "shapes cannot be multiplied",
    "size mismatch",
    "channels, but got",
    "to have",
    "must match the size of tensor",
    "The size of tensor a",
    "is invalid for input of size",
    "dimensional input",
    "Expected 2D",
    "Expected 3D",
    "Expected 4D",
    "expected input",
    "doesn't match the broadcast shape",
    "input.size(-1) must be equal to input_size",
    "normalized_shape",
    "running_mean should contain",
    "Expected more than 1 value per channel",
    "Sizes of tensors must match",
    "Dimension out of range",
    "Output size is too small",
    "Kernel size can't be greater than actual input size",
    "size of input",
    "number of dims",
)


def _module_frames(tb, paths):
    """(path, module, frame) of frames running a module's code, outermost first."""
    out = []
    while tb is not None:
        f = tb.tb_frame
        code = f.f_code
        if code.co_argcount and code.co_varnames and code.co_varnames[0] == "self":
            s = f.f_locals.get("self")
            if isinstance(s, nn.Module) and id(s) in paths:
                out.append((paths[id(s)], s, f))
        tb = tb.tb_next
    return out


def _frame_tensors(frame):
    code = frame.f_code
    names = code.co_varnames[1 : code.co_argcount]
    vals = []
    for n in names:
        v = frame.f_locals.get(n)
        if isinstance(v, torch.Tensor):
            vals.append(v)
        elif isinstance(v, (tuple, list)):
            vals.extend(x for x in v if isinstance(x, torch.Tensor))
    if code.co_flags & inspect.CO_VARARGS:
        star = frame.f_locals.get(code.co_varnames[code.co_argcount + code.co_kwonlyargcount])
        if isinstance(star, tuple):
            vals.extend(x for x in star if isinstance(x, torch.Tensor))
    return vals


def _expectation(m, got_shapes):
    first = got_shapes[0] if got_shapes else None
    if isinstance(m, nn.Linear):
        return "last dim = %d (in_features)" % m.in_features, "input %s (last dim %s)" % (
            first,
            first[-1] if first else "?",
        )
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        nd = len(m.kernel_size)
        return (
            "%dD input [N, %d, %s] or %dD unbatched, %d channels (in_channels) at dim %d"
            % (nd + 2, m.in_channels, ", ".join(["*"] * nd), nd + 1, m.in_channels, 1)
        ), "input %s" % (first,)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "%d features (num_features) at dim 1" % m.num_features, "input %s" % (first,)
    if isinstance(m, nn.LayerNorm):
        return "trailing dims %s (normalized_shape)" % (list(m.normalized_shape),), "input %s" % (
            first,
        )
    if isinstance(m, nn.RNNBase):
        return "last dim = %d (input_size)" % m.input_size, "input %s" % (first,)
    if isinstance(m, nn.Embedding):
        return "integer indices < %d" % m.num_embeddings, "input %s" % (first,)
    return None, ("inputs %s" % got_shapes) if got_shapes else None


def classify_forward_error(exc, lm, paths, what="running forward"):
    if isinstance(exc, EngineFault):
        return exc
    scope = lm.scope
    if isinstance(exc, (SystemExit, ImportError)):
        return _user_exception(exc, scope, what)
    tb = exc.__traceback__
    stack = scope.user_frames_of_tb(tb)
    loc = stack[-1] if stack else None
    mframes = _module_frames(tb, paths)
    text = str(exc).split("\n")[0]
    if mframes and isinstance(exc, (RuntimeError, ValueError, IndexError, TypeError)):
        path, m, frame = mframes[-1]
        label = "%s (%s)" % (path or "(root)", type(m).__name__)
        ins = _frame_tensors(frame)
        if any(p in text for p in _DEVICE_PATTERNS):
            pdev = sorted(
                {
                    str(t.device)
                    for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
                }
            )
            idev = sorted({str(t.device) for t in ins})
            mentioned = re.findall(r"\b(cpu|cuda(?::\d+)?|mps|meta|xla|xpu)\b", text)
            expected = ", ".join(pdev) if pdev else None
            got = ", ".join(idev) if idev else None
            if expected is None or got is None or expected == got:
                expected = expected or (mentioned[0] if mentioned else None)
                got = ", ".join(sorted(set(mentioned))) if mentioned else got
            return user_fault(
                "deviceMismatch",
                "Device mismatch in %s: its parameters/buffers are on %s but it got tensors on %s. torch: %s"
                % (label, expected or "?", got or "?", text),
                location=loc,
                layer=path,
                expected=expected,
                got=got,
                userStack=stack or None,
                hint="Create tensors inside forward with device=x.device, or move the module with .to(device).",
            )
        if any(p in text for p in _SHAPE_PATTERNS):
            got_shapes = [list(t.shape) for t in ins]
            expected, got = _expectation(m, got_shapes)
            return user_fault(
                "shapeMismatch",
                "Shape mismatch in %s: expected %s, got %s. torch: %s"
                % (label, expected or "a different shape", got or "?", text),
                location=loc,
                layer=path,
                expected=expected,
                got=got,
                userStack=stack or None,
                hint="Check the input shape (inputShapes / `example_input`) or the layer sizes before %s."
                % (path or "the model"),
            )
        return user_fault(
            "userCodeError",
            "%s in %s%s" % (short_exception(exc), label, _at(loc)),
            location=loc,
            layer=path,
            userStack=stack or None,
        )
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    return user_fault(
        "userCodeError",
        "%s while %s%s" % (short_exception(exc), what, _at(loc)),
        location=loc,
        userStack=stack or None,
    )
