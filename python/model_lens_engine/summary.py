"""torchinfo-compatible summary from one forward pass under no_grad, with forward hooks."""

import contextlib
import dataclasses
import math

import torch
import torch.nn as nn

from . import flops
from .counting import counts, effective, is_leaf, is_scripted, owned_params, type_name
from .inputs import call
from .loader import classify_forward_error, device_scope
from .tensors import tensor_info
from .tree import canonical_paths, named_tensors

try:
    from torch.distributions import Distribution as _Distribution
except ImportError:
    _Distribution = None

# Outputs kept for tensor/inspect after a summary; beyond this only shapes are kept.
MAX_KEPT_OUTPUT_BYTES = 512 * 1024 * 1024
FUSED_PATH_NOTE = (
    "Its forward hooks did not fire: %s (%s) took PyTorch's fused fast path, which skips its "
    "submodules' hooks (pytorch#128413). This torch cannot turn the fast path off "
    "(torch.backends.mha.set_fastpath_enabled is torch 2.x), and with frozen weights running with "
    "gradients does not avoid it. Shapes here come from the parent only."
)
_FUSED_TYPES = (nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.MultiheadAttention)
SCRIPTED_NOTE = (
    "TorchScript: %s runs as compiled code, which calls its submodules without Python "
    "hooks, so their output shapes cannot be observed; parameters are exact, and the "
    "executed mult-adds of its ops are counted in the nearest Python module that ran."
)
# Nesting followed when looking for tensors in a module's output.
MAX_OUTPUT_NESTING = 8


def _tensors_of(value, _depth=0):
    """The tensors in a module's output, in order: plain tensors; tuples, lists, namedtuples and
    PackedSequence; dicts and Hugging Face ModelOutput; dataclasses; objects holding `.tensors`
    (torchvision's ImageList); a torch.distributions.Distribution as one batch+event-shaped
    placeholder (it allocates nothing)."""
    if _depth > MAX_OUTPUT_NESTING:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        out = []
        for v in value:
            out.extend(_tensors_of(v, _depth + 1))
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out.extend(_tensors_of(v, _depth + 1))
        return out
    if _Distribution is not None and isinstance(value, _Distribution):
        shape = tuple(value.batch_shape) + tuple(value.event_shape)
        return [torch.zeros((), device=_distribution_device(value)).expand(shape)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = []
        for f in dataclasses.fields(value):
            out.extend(_tensors_of(getattr(value, f.name, None), _depth + 1))
        return out
    inner = getattr(value, "tensors", None)
    if inner is not None and inner is not value:
        return _tensors_of(inner, _depth + 1)
    return []


def _distribution_device(d):
    for k in getattr(d, "arg_constraints", {}) or {}:
        t = d.__dict__.get(k)
        if isinstance(t, torch.Tensor):
            return t.device
    return "cpu"


def output_type(value):
    """The type of an output that is not a tensor, a tuple or a list of tensors (shown beside
    its shapes), or None."""
    if isinstance(value, torch.Tensor):
        return None
    if isinstance(value, (tuple, list)) and type(value) in (tuple, list):
        return None
    return type(value).__name__


def _nested_size(x):
    """torchinfo 1.8.0's nested_list_size: the shape it uses for a layer's output."""
    if hasattr(x, "tensors"):
        return _nested_size(x.tensors)
    if isinstance(x, torch.Tensor):
        return list(x.shape), x.element_size()
    if not hasattr(x, "__getitem__") or not x:
        return [], 0
    if isinstance(x, dict):
        return _nested_size(list(x.values()))
    if hasattr(x, "size") and callable(x.size):
        return list(x.size()), x.element_size()
    if isinstance(x, (list, tuple)):
        return _nested_size(x[0])
    return [], 0


def torchinfo_size(out):
    """(shape, element bytes) of a layer's output as torchinfo 1.8.0's calculate_size takes it
    (the first tensor of a tuple, the last value of a dict, a PackedSequence's data)."""
    if out is None:
        return [], 0
    if (
        isinstance(out, (list, tuple))
        and out
        and hasattr(out[0], "data")
        and hasattr(out[0].data, "size")
    ):
        return list(out[0].data.size()), out[0].data.element_size()
    if isinstance(out, dict):
        return _nested_size(list(out.values())[-1])
    if isinstance(out, torch.Tensor):
        return list(out.shape), out.element_size()
    if isinstance(out, (list, tuple)):
        return _nested_size(out)
    ts = _tensors_of(out)
    return (list(ts[0].shape), ts[0].element_size()) if ts else ([], 0)


def leaf_macs(m, out_shape):
    """torchinfo 1.8.0's rule (LayerInfo.calculate_macs): for `weight`/`bias` — conv: elements ×
    batch × output spatial positions; any other layer: elements × the output's first dim; other
    parameters named like weights (recurrent `weight_ih_l0`): elements × the first two output
    dims. A pruned `weight_orig` counts its mask's ones (the effective weights)."""
    if not out_shape:
        return 0
    cls = type(m).__name__
    macs = 0
    for owner, short, p in owned_params(m):
        n, name = effective(owner, short, p)
        if name in ("weight", "bias"):
            if "Conv" in cls:
                macs += n * math.prod(out_shape[:1] + out_shape[2:])
            else:
                macs += out_shape[0] * n
        elif "weight" in name or "bias" in name:
            macs += math.prod(out_shape[:2]) * n
    return int(macs)


@contextlib.contextmanager
def full_module_path(root):
    """Every module runs its own forward in the summary pass: PyTorch's fused fast path for
    TransformerEncoderLayer / MultiheadAttention (eval under no_grad) skips its submodules' hooks
    (pytorch#128413). Turned off where torch can (torch.backends.mha.set_fastpath_enabled);
    elsewhere (torch 1.13) the pass runs with gradients on, which the fast path refuses when the
    weights require grad. Yields whether gradients are on."""
    fused = any(isinstance(m, _FUSED_TYPES) for m in root.modules())
    mha = getattr(torch.backends, "mha", None)
    setter = getattr(mha, "set_fastpath_enabled", None)
    if not fused:
        with torch.no_grad():
            yield False
    elif setter is not None:
        was = mha.get_fastpath_enabled()
        setter(False)
        try:
            with torch.no_grad():
                yield False
        finally:
            setter(was)
    else:
        with torch.enable_grad():
            yield True


def forward_inputs_or_fail(lm, inputs):
    if not inputs:
        from .errors import user_fault

        raise user_fault(
            "shapeMismatch",
            "No input for %s: the engine could not infer an input shape." % lm.name,
            hint="Pass inputShapes, or define a module-level `example_input` tensor in the file.",
        )


class _ScriptedProbe(nn.Module):
    """Stands in for a TorchScript module that Python code calls, so that Python hooks see its
    inputs and outputs (the compiled module itself takes no hooks)."""

    def __init__(self, inner):
        super().__init__()
        object.__setattr__(self, "inner", inner)  # not registered: the tree stays the model's

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def _scripted_owner(path, scripted_paths):
    """The outermost TorchScript module at or above `path`, or None."""
    parts = path.split(".") if path else []
    for i in range(len(parts) + 1):
        p = ".".join(parts[:i])
        if p in scripted_paths:
            return p
    return None


def run_summary(lm, inputs, input_specs, warnings):
    forward_inputs_or_fail(lm, inputs)
    root = lm.module
    paths = canonical_paths(root)
    records = {}
    handles = []
    kept = {}
    kept_bytes = [0]
    counter = flops.new_counter()
    grad_on = [False]

    def make_hook(mid, leaf):
        def hook(m, args, out):
            if counter is not None:
                counter.leave(mid)
            r = records.get(mid)
            if r is None:
                r = records[mid] = {"calls": 0, "macs": 0, "fbBytes": 0, "leafBytes": 0}
            r["calls"] += 1
            ts = _tensors_of(out)
            if grad_on[0]:
                ts = [t.detach() for t in ts]
            r["shapes"] = [list(t.shape) for t in ts]
            r["out"] = ts[0] if ts else None
            r["outputType"] = output_type(out)
            if leaf:
                size, elem = torchinfo_size(out)
                r["macs"] += leaf_macs(m, size)
                if counts(m)["effective"] > 0:
                    r["fbBytes"] += 2 * elem * math.prod(size)  # torchinfo: ×2 for gradients
                r["leafBytes"] += sum(t.numel() * t.element_size() for t in ts)
            for i, t in enumerate(ts):
                key = "output:%s" % paths[mid] if i == 0 else "output:%s#%d" % (paths[mid], i)
                b = t.numel() * t.element_size()
                if key in kept or kept_bytes[0] + b <= MAX_KEPT_OUTPUT_BYTES:
                    kept[key] = t
                    kept_bytes[0] += b

        return hook

    def make_pre(mid):
        def pre(m, args):
            counter.enter(mid)

        return pre

    modules = list(root.named_modules())
    scripted_paths = {p for p, m in modules if is_scripted(m)}
    modes = [(m, m.training) for _, m in modules]
    out = None
    swapped = []
    try:
        by_path = dict(modules)
        for path, m in modules:
            if _scripted_owner(path, scripted_paths) is not None:
                # register_forward_hook is not supported on ScriptModules; one that Python code
                # calls is seen through a probe put in its place for this pass.
                parent = (
                    by_path.get(path.rsplit(".", 1)[0] if "." in path else "") if path else None
                )
                if parent is not None and not is_scripted(parent):
                    probe = _ScriptedProbe(m)
                    name = path.rsplit(".", 1)[-1]
                    swapped.append((parent, name, m))
                    parent._modules[name] = probe
                    handles.append(probe.register_forward_hook(make_hook(id(m), is_leaf(m))))
                    if counter is not None:
                        handles.append(probe.register_forward_pre_hook(make_pre(id(m))))
                continue
            handles.append(m.register_forward_hook(make_hook(id(m), is_leaf(m))))
            if counter is not None:
                handles.append(m.register_forward_pre_hook(make_pre(id(m))))
        root.eval()
        with full_module_path(root) as grad_on[0], device_scope(getattr(lm, "meta", False)), (
            counter if counter is not None else contextlib.nullcontext()
        ):
            if counter is not None and is_scripted(root):
                counter.enter(id(root))
            try:
                out = call(root, inputs)
            except BaseException as e:  # noqa: B902
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise classify_forward_error(
                    e, lm, paths, "running the summary forward pass"
                ) from e
    finally:
        for h in handles:
            h.remove()
        for parent, name, m in swapped:
            parent._modules[name] = m
        for m, t in modes:
            m.training = t
    if is_scripted(root) and out is not None:
        ts = [t.detach() for t in _tensors_of(out)]
        records[id(root)] = {
            "calls": 1,
            "macs": 0,
            "fbBytes": 0,
            "leafBytes": 0,
            "out": ts[0] if ts else None,
            "shapes": [list(t.shape) for t in ts],
            "outputType": output_type(out),
        }
        if ts:
            kept["output:"] = ts[0]

    lm.last_outputs = kept
    named = named_tensors(lm)
    index = named.index()
    executed = counter.by_module if counter is not None else {}

    rows = []
    ran_ids = set(records)
    leaf_ids = {id(m) for _, m in modules if is_leaf(m)}
    leaf_macs_of = {mid: r["macs"] for mid, r in records.items() if mid in leaf_ids}
    for path, m in modules:
        mid = id(m)
        leaf = is_leaf(m)
        c = counts(m, recurse=True)
        r = records.get(mid)
        row = {
            "path": path,
            "type": type_name(m),
            "depth": 0 if not path else path.count(".") + 1,
            "isLeaf": leaf,
            "outputShape": None,
            "params": c["effective"],
            "trainableParams": c["trainableEffective"],
            # A container shows the sum over the leaves below it
            # (src/protocol/types.ts SummaryRow.macs).
            "macs": (r["macs"] if r else 0)
            if leaf
            else sum(leaf_macs_of.get(id(x), 0) for x in m.modules()),
            "paramBytes": c["bytes"],
            "aliases": [],
            "ran": r is not None,
        }
        if counter is not None:
            row["executedMacs"] = executed.get(mid, 0)
        if r is not None and is_scripted(m) and path in scripted_paths and path:
            row["note"] = (
                "TorchScript: its output is seen from the Python code that calls it; "
                "the modules inside run as compiled code, without hooks."
            )
        if c["effective"] != c["stored"]:
            row["storedParams"] = c["stored"]
        if c["packed"]:
            row["packedParams"] = c["packed"]
        if r is not None:
            shapes = r["shapes"]
            row["outputShape"] = shapes[0] if len(shapes) == 1 else (shapes or None)
            if r.get("outputType"):
                row["outputType"] = r["outputType"]
            if r["out"] is not None:
                row["output"] = tensor_info(r["out"], "output:%s" % path, named, index)
            row["calls"] = r["calls"]
            if r["calls"] > 1:
                row["note"] = (
                    "called %d times in one forward pass; shape of the last call, "
                    "mult-adds of all calls" % r["calls"]
                )
        else:
            owner = _scripted_owner(path, scripted_paths)
            if owner is not None:
                row["note"] = SCRIPTED_NOTE % (owner or "the model")
            else:
                row["note"] = _why_not_run(root, path, ran_ids, grad_on[0])
        rows.append(row)
    all_paths = {}
    for p, m in root.named_modules(remove_duplicate=False):
        all_paths.setdefault(id(m), []).append(p)
    for row, (_path, m) in zip(rows, modules):
        row["aliases"] = all_paths[id(m)][1:]

    c = counts(root)
    uniq_bufs = {id(b): b for b in root.buffers()}.values()
    buffer_bytes = sum(b.numel() * b.element_size() for b in uniq_bufs)
    input_bytes = sum(t.numel() * t.element_size() for t in inputs)
    fb = sum(r["fbBytes"] for mid, r in records.items() if mid in leaf_ids)
    macs = sum(r["macs"] for mid, r in records.items() if mid in leaf_ids)
    totals = {
        "params": c["effective"],
        "trainableParams": c["trainableEffective"],
        "nonTrainableParams": c["effective"] - c["trainableEffective"],
        "macs": macs,
        "paramBytes": c["bytes"],
        "bufferBytes": buffer_bytes,
        "inputBytes": input_bytes,
        "forwardBackwardBytes": fb,
        "leafOutputBytes": sum(r["leafBytes"] for mid, r in records.items() if mid in leaf_ids),
        "totalBytes": input_bytes + fb + c["bytes"],
    }
    if c["effective"] != c["stored"]:
        totals["storedParams"] = c["stored"]
        warnings.append(
            "Pruned weights: %d parameters are stored, %d are effective (unmasked); "
            "params and mult-adds count the effective ones, as torchinfo does."
            % (c["stored"], c["effective"])
        )
    if c["packed"]:
        totals["packedParams"] = c["packed"]
    if counter is not None:
        totals["executedMacs"] = counter.total
        totals["uncountedOps"] = counter.uncounted_ops()
        totals["executedMacsMethod"] = flops.method_name()
    else:
        warnings.append("This torch has no TorchDispatchMode: executed mult-adds are not counted.")
    if scripted_paths:
        warnings.append(
            SCRIPTED_NOTE
            % (
                ", ".join(
                    sorted(
                        p or "(root)"
                        for p in scripted_paths
                        if _scripted_owner(p, scripted_paths) == p
                    )
                )
            )
        )
    skipped = [
        row["path"]
        for row, (_, m) in zip(rows, modules)
        if not row["ran"]
        and not isinstance(m, (nn.ModuleList, nn.ModuleDict))
        and _scripted_owner(row["path"], scripted_paths) is None
    ]
    if skipped:
        warnings.append(
            "%d module(s) did not run in the summary pass: %s"
            % (
                len(skipped),
                ", ".join(p or "(root)" for p in skipped[:8]) + (" …" if len(skipped) > 8 else ""),
            )
        )
    return {"rows": rows, "totals": totals, "inputs": input_specs, "warnings": warnings}


def _why_not_run(root, path, ran_ids, fused_possible):
    by_path = dict(root.named_modules())
    m = by_path[path]
    parent = by_path.get(path.rsplit(".", 1)[0] if "." in path else "") if path else None
    if isinstance(parent, nn.MultiheadAttention) and path.rsplit(".", 1)[-1] == "out_proj":
        return (
            "MultiheadAttention uses out_proj's weight and bias through the functional API "
            "(F.multi_head_attention_forward); it is never called itself. Its mult-adds are "
            "in the parent's executed count."
        )
    if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
        kids = [id(c) for c in m.children()]
        ran = sum(1 for k in kids if k in ran_ids)
        return "%s is a container that is never called itself; %d of its %d members ran." % (
            type(m).__name__,
            ran,
            len(kids),
        )
    parts = path.split(".") if path else []
    for i in range(len(parts) - 1, -1, -1):
        anc_path = ".".join(parts[:i])
        anc = by_path.get(anc_path)
        if fused_possible and isinstance(anc, _FUSED_TYPES) and id(anc) in ran_ids:
            return FUSED_PATH_NOTE % (anc_path or "(root)", type(anc).__name__)
    return (
        "Not called in the forward pass (unused, or its parent called its weights through "
        "the functional API)."
    )
