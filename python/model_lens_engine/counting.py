"""Parameter counts of the module kinds users meet: pruned (stored `weight_orig` vs effective
weights, torchinfo's rule), lazy (uninitialized until a forward pass), dynamically quantized
(packed weights that are no nn.Parameter), TorchScript (its original class name)."""

import torch
import torch.nn as nn

_is_lazy = getattr(nn.parameter, "is_lazy", None)
PRUNED_SUFFIX = "_orig"
MASK_SUFFIX = "_mask"


def is_lazy(t):
    return _is_lazy is not None and _is_lazy(t)


def numel(t):
    """Elements of a parameter; 0 for one a lazy module has not materialized yet."""
    return 0 if is_lazy(t) else t.numel()


def prune_mask(module, short_name):
    """The `weight_mask` buffer torch.nn.utils.prune keeps beside `weight_orig`, or None."""
    if not short_name.endswith(PRUNED_SUFFIX):
        return None
    mask = module._buffers.get(short_name[: -len(PRUNED_SUFFIX)] + MASK_SUFFIX)
    return mask if isinstance(mask, torch.Tensor) else None


def effective(owner, short, p):
    """(count, name) as torchinfo counts a parameter: a pruned `weight_orig` counts the ones of its
    mask and is named `weight`."""
    mask = prune_mask(owner, short)
    if mask is not None and mask.device.type != "meta":
        return int(mask.sum()), short[: -len(PRUNED_SUFFIX)]
    return numel(p), short


def owned_params(m, recurse=True):
    """(owner, short name, parameter) for each distinct parameter of `m`, first owner kept."""
    seen = set()
    mods = m.named_modules() if recurse else [("", m)]
    for _, owner in mods:
        for short, p in owner._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            yield owner, short, p


def counts(m, recurse=True):
    """{stored, effective, trainable, trainableEffective, packed, bytes} of `m`'s distinct
    parameters (effective: pruned weights count their mask's ones, torchinfo's rule)."""
    out = {
        "stored": 0,
        "effective": 0,
        "trainable": 0,
        "trainableEffective": 0,
        "packed": 0,
        "bytes": 0,
    }
    for owner, short, p in owned_params(m, recurse):
        n = numel(p)
        e, _ = effective(owner, short, p)
        out["stored"] += n
        out["effective"] += e
        out["bytes"] += n * p.element_size() if n else 0
        if p.requires_grad:
            out["trainable"] += n
            out["trainableEffective"] += e
    for _, sub in m.named_modules() if recurse else [("", m)]:
        out["packed"] += packed(sub)
    return out


def packed(module):
    """Packed weight + bias elements of a dynamically quantized layer's LinearPackedParams (its
    weights are no nn.Parameter, so parameters() misses them); 0 for other modules."""
    wb = getattr(module, "_weight_bias", None)
    if wb is None or not callable(wb) or isinstance(module, torch.jit.ScriptModule):
        return 0
    if isinstance(getattr(module, "_packed_params", None), nn.Module):
        return (
            0  # the quantized Linear itself: its LinearPackedParams child holds (and counts) them
        )
    try:
        return sum(t.numel() for t in wb() if isinstance(t, torch.Tensor))
    except Exception:
        return 0


def type_name(m):
    """Class name; a TorchScript module shows the class it was scripted from."""
    if isinstance(m, torch.jit.ScriptModule):
        return getattr(m, "original_name", None) or type(m).__name__
    return type(m).__name__


def is_scripted(m):
    return isinstance(m, torch.jit.ScriptModule)


def children(m):
    """Child modules, without the `None` entries register_module("x", None) leaves (as children()
    does)."""
    return [c for c in m._modules.values() if c is not None]


def is_leaf(m):
    return not children(m)
