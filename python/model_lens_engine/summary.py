"""torchinfo-compatible summary from one forward pass under no_grad, with forward hooks."""

import math

import torch
import torch.nn as nn

from .loader import classify_forward_error
from .tensors import tensor_info
from .tree import canonical_paths, module_param_counts, named_tensors

# Outputs kept for tensor/inspect after a summary; beyond this only shapes are kept.
MAX_KEPT_OUTPUT_BYTES = 512 * 1024 * 1024
FUSED_PATH_NOTE = (
    "Its forward hooks did not fire: %s (%s) ran in eval mode under no_grad, where PyTorch takes a "
    "fused fast path that skips its submodules' hooks (pytorch#128413). Shapes and mult-adds here "
    "come from the parent only; run in train mode (or with gradients) to see them."
)
_FUSED_TYPES = (nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.MultiheadAttention)


def _tensors_of(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        out = []
        for v in value:
            out.extend(_tensors_of(v))
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out.extend(_tensors_of(v))
        return out
    return []


def leaf_macs(m, out_shape):
    """torchinfo's rule: conv — weight+bias elements × batch × output spatial positions; linear —
    weight+bias elements × all output dims but the last; other layers with parameters — their
    parameters × batch; recurrent inner weights — parameters × the first two output dims."""
    if not out_shape:
        return 0
    cls = type(m).__name__
    macs = 0
    for name, p in m.named_parameters():
        n = p.numel()
        short = name.rsplit(".", 1)[-1]
        if short in ("weight", "bias"):
            if "Conv" in cls:
                macs += n * math.prod(out_shape[:1] + out_shape[2:])
            elif "Linear" in cls:
                macs += n * math.prod(out_shape[:-1])
            else:
                macs += out_shape[0] * n
        elif "weight" in short or "bias" in short:
            macs += math.prod(out_shape[:2]) * n
    return int(macs)


def forward_inputs_or_fail(lm, inputs):
    if not inputs:
        from .errors import user_fault

        raise user_fault(
            "shapeMismatch",
            "No input for %s: the engine could not infer an input shape." % lm.name,
            hint="Pass inputShapes, or define a module-level `example_input` tensor in the file.",
        )


def run_summary(lm, inputs, input_specs, warnings):
    forward_inputs_or_fail(lm, inputs)
    root = lm.module
    paths = canonical_paths(root)
    records = {}
    handles = []
    kept = {}
    kept_bytes = [0]
    ran_order = []

    def make_hook(mid, leaf):
        def hook(m, args, out):
            r = records.get(mid)
            if r is None:
                r = records[mid] = {"calls": 0, "macs": 0, "outBytes": 0}
                ran_order.append(mid)
            r["calls"] += 1
            ts = _tensors_of(out)
            r["shapes"] = [list(t.shape) for t in ts]
            r["out"] = ts[0] if ts else None
            if leaf:
                r["macs"] += leaf_macs(m, list(ts[0].shape) if ts else None)
                r["outBytes"] += sum(t.numel() * t.element_size() for t in ts)
            for i, t in enumerate(ts):
                key = "output:%s" % paths[mid] if i == 0 else "output:%s#%d" % (paths[mid], i)
                b = t.numel() * t.element_size()
                if key in kept or kept_bytes[0] + b <= MAX_KEPT_OUTPUT_BYTES:
                    kept[key] = t
                    kept_bytes[0] += b
        return hook

    modules = list(root.named_modules())
    modes = [(m, m.training) for _, m in modules]
    try:
        for path, m in modules:
            leaf = len(m._modules) == 0
            handles.append(m.register_forward_hook(make_hook(id(m), leaf)))
        root.eval()
        with torch.no_grad():
            try:
                root(*inputs)
            except BaseException as e:  # noqa: B902
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise classify_forward_error(e, lm, paths, "running the summary forward pass")
    finally:
        for h in handles:
            h.remove()
        for m, t in modes:
            m.training = t

    lm.last_outputs = kept
    named = named_tensors(lm)
    index = named.index()

    rows = []
    ran_ids = set(records)
    leaf_ids = {id(m) for _, m in modules if len(m._modules) == 0}
    leaf_macs_of = {mid: r["macs"] for mid, r in records.items() if mid in leaf_ids}
    for path, m in modules:
        mid = id(m)
        leaf = len(m._modules) == 0
        own, total, trainable = module_param_counts(m)
        if leaf:
            plist = {id(p): p for p in m.parameters(recurse=False)}.values()
            params = own
            tparams = sum(p.numel() for p in plist if p.requires_grad)
            pbytes = sum(p.numel() * p.element_size() for p in plist)
        else:
            plist = {id(p): p for p in m.parameters()}.values()
            params = total
            tparams = trainable
            pbytes = sum(p.numel() * p.element_size() for p in plist)
        r = records.get(mid)
        row = {
            "path": path,
            "type": type(m).__name__,
            "depth": 0 if not path else path.count(".") + 1,
            "isLeaf": leaf,
            "outputShape": None,
            "params": params,
            "trainableParams": tparams,
            # A container shows the sum over the leaves below it (src/protocol/types.ts SummaryRow.macs).
            "macs": (r["macs"] if r else 0) if leaf else sum(
                leaf_macs_of.get(id(x), 0) for x in m.modules()),
            "paramBytes": pbytes,
            "aliases": [],
            "ran": r is not None,
        }
        if r is not None:
            shapes = r["shapes"]
            row["outputShape"] = shapes[0] if len(shapes) == 1 else (shapes or None)
            if r["out"] is not None:
                row["output"] = tensor_info(r["out"], "output:%s" % path, named, index)
            if r["calls"] > 1:
                row["note"] = "called %d times in one forward pass; shape of the last call, mult-adds of all calls" % r["calls"]
        else:
            row["note"] = _why_not_run(root, path, ran_ids)
        rows.append(row)
    all_paths = {}
    for p, m in root.named_modules(remove_duplicate=False):
        all_paths.setdefault(id(m), []).append(p)
    for row, (path, m) in zip(rows, modules):
        row["aliases"] = all_paths[id(m)][1:]

    uniq_params = {id(p): p for p in root.parameters()}.values()
    uniq_bufs = {id(b): b for b in root.buffers()}.values()
    total_params = sum(p.numel() for p in uniq_params)
    trainable = sum(p.numel() for p in uniq_params if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in uniq_params)
    buffer_bytes = sum(b.numel() * b.element_size() for b in uniq_bufs)
    input_bytes = sum(t.numel() * t.element_size() for t in inputs)
    # torchinfo's forward/backward size: outputs of the leaves that have parameters, ×2.
    weighted_leaf_ids = {id(m) for _, m in modules
                         if len(m._modules) == 0 and any(True for _ in m.parameters(recurse=False))}
    fb = 2 * sum(r["outBytes"] for mid, r in records.items() if mid in weighted_leaf_ids)
    macs = sum(r["macs"] for mid, r in records.items() if mid in leaf_ids)
    totals = {
        "params": total_params,
        "trainableParams": trainable,
        "nonTrainableParams": total_params - trainable,
        "macs": macs,
        "paramBytes": param_bytes,
        "bufferBytes": buffer_bytes,
        "inputBytes": input_bytes,
        "forwardBackwardBytes": fb,
        "totalBytes": input_bytes + fb + param_bytes,
    }
    skipped = [row["path"] for row, (_, m) in zip(rows, modules)
               if not row["ran"] and not isinstance(m, (nn.ModuleList, nn.ModuleDict))]
    if skipped:
        warnings.append("%d module(s) did not run in the summary pass: %s" % (
            len(skipped), ", ".join(p or "(root)" for p in skipped[:8]) + (" …" if len(skipped) > 8 else "")))
    return {"rows": rows, "totals": totals, "inputs": input_specs, "warnings": warnings}


def _why_not_run(root, path, ran_ids):
    m = root.get_submodule(path) if path else root
    if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
        kids = [id(c) for c in m.children()]
        ran = sum(1 for k in kids if k in ran_ids)
        return "%s is a container that is never called itself; %d of its %d members ran." % (type(m).__name__, ran, len(kids))
    parts = path.split(".") if path else []
    for i in range(len(parts) - 1, -1, -1):
        anc_path = ".".join(parts[:i])
        anc = root.get_submodule(anc_path) if anc_path else root
        if isinstance(anc, _FUSED_TYPES) and id(anc) in ran_ids:
            return FUSED_PATH_NOTE % (anc_path or "(root)", type(anc).__name__)
    return "Not called in the forward pass (unused, or its parent called its weights through the functional API)."
