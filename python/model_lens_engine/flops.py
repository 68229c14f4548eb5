"""Executed multiply-adds: counted from the aten ops that actually ran, per module.

torchinfo's rule (summary.leaf_macs) counts only what leaf layers with parameters do, from their
parameter counts; attention done with functional ops counts zero. This counter sees every aten op
under a TorchDispatchMode and prices it with torch's own formulas (torch.utils.flop_counter's
registry, flops / 2) where this torch has them, and with the formulas below where it does not
(torch 1.13 has no flop_counter; no torch has one for the CPU flash-attention kernel). Ops that ran
without a formula are listed by name, never counted as silently zero.
"""

import math

import torch

try:
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # torch < 1.13
    TorchDispatchMode = None

try:
    from torch.utils.flop_counter import flop_registry as _TORCH_FLOPS
except ImportError:  # torch 1.13
    _TORCH_FLOPS = {}

# Ops that move, view or allocate data and do no arithmetic: never "uncounted".
NO_ARITHMETIC = frozenset(
    (
        "view",
        "_unsafe_view",
        "reshape",
        "t",
        "transpose",
        "permute",
        "expand",
        "squeeze",
        "unsqueeze",
        "slice",
        "select",
        "index_select",
        "as_strided",
        "clone",
        "copy_",
        "contiguous",
        "detach",
        "alias",
        "lift_fresh",
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "fill_",
        "zero_",
        "arange",
        "cat",
        "stack",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "_to_copy",
        "to",
        "flatten",
        "unflatten",
        "narrow",
        "new_empty",
        "new_zeros",
        "new_ones",
        "new_full",
        "scalar_tensor",
        "_reshape_alias",
        "split",
        "max_pool2d_with_indices",
        "embedding",
        "index",
        "gather",
        "masked_fill",
        "masked_fill_",
        "_local_scalar_dense",
        "item",
        "repeat",
        "roll",
        "pad",
        "constant_pad_nd",
        "eq",
        "ne",
        "lt",
        "gt",
        "le",
        "ge",
        "where",
        "triu",
        "tril",
        "bitwise_not",
        "logical_not",
        "any",
        "all",
        "set_",
        "resize_",
        "randint",
        "rand",
        "randn",
        "uniform_",
        "normal_",
        "bernoulli_",
        "native_dropout",
        "_unsafe_index",
        "diagonal",
        "sym_size",
        "sym_stride",
        "sym_numel",
    )
)


def _shape(t):
    return list(t.shape) if isinstance(t, torch.Tensor) else None


def _mm(args, out):
    a, b = args[0], args[1]
    n, k = a.shape[-2], a.shape[-1]
    return math.prod(a.shape[:-2]) * n * k * b.shape[-1]


def _addmm(args, out):
    return _mm(args[1:], out)


def _convolution(args, out):
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    # w is [cout, cin/groups, *k] (transposed: [cin, cout/groups, *k]): each output element of a
    # plain conv takes cin/groups·prod(k) multiply-adds; a transposed conv spreads each input.
    per = math.prod(w.shape[1:])
    return (x.numel() if transposed else out.numel()) * per


def _sdpa(args, out):
    q, k, v = args[0], args[1], args[2]
    batch = math.prod(q.shape[:-2])
    lq, e = q.shape[-2], q.shape[-1]
    s, ev = k.shape[-2], v.shape[-1]
    return batch * lq * s * (e + ev)  # Q·Kᵀ and attention·V


def _dynamic_linear(args, out):
    # quantized::linear_dynamic(x, packed): x [..., in] → out [..., out_features]
    x = args[0]
    return math.prod(x.shape[:-1]) * x.shape[-1] * out.shape[-1]


OWN_FORMULAS = {
    "mm": _mm,
    "bmm": _mm,
    "addmm": _addmm,
    "baddbmm": _addmm,
    "convolution": _convolution,
    "_convolution": _convolution,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa,
    "_scaled_dot_product_flash_attention": _sdpa,
    "_scaled_dot_product_efficient_attention": _sdpa,
    "_scaled_dot_product_attention_math": _sdpa,
    "linear_dynamic": _dynamic_linear,
}


def op_name(func):
    """`aten.addmm`, `quantized.linear_dynamic`."""
    packet = getattr(func, "overloadpacket", func)
    ns = getattr(packet, "__module__", "") or ""
    name = getattr(packet, "__name__", str(packet))
    ns = ns.rsplit(".", 1)[-1] if ns.startswith("torch._ops") else ns
    return "%s.%s" % (ns, name) if ns else name


def macs_of(func, args, kwargs, out):
    """Multiply-adds of one op call, or None when there is no formula for it."""
    packet = getattr(func, "overloadpacket", func)
    short = getattr(packet, "__name__", "")
    own = OWN_FORMULAS.get(short)
    if own is not None:
        try:
            return int(own(args, out))
        except Exception:
            pass
    torch_formula = _TORCH_FLOPS.get(packet)
    if torch_formula is not None:
        return int(torch_formula(*args, **(kwargs or {}), out_val=out)) // 2
    if short in NO_ARITHMETIC or short.rstrip("_") in NO_ARITHMETIC:
        return 0
    return None


def method_name():
    return (
        "torch.utils.flop_counter formulas"
        if _TORCH_FLOPS
        else "own aten formulas (no torch.utils.flop_counter)"
    )


if TorchDispatchMode is not None:

    class ExecutedCounter(TorchDispatchMode):
        """Counts every op's multiply-adds into each module on the stack of modules running
        (`enter`/`leave` from forward pre-hooks and hooks), so a parent includes its children and
        a shared module called twice counts both calls."""

        @classmethod
        def _should_skip_dynamo(cls):
            # torch 2.x wraps a mode's __torch_dispatch__ in torch._disable_dynamo unless the
            # mode opts out like this (its documented example); the wrapper imports torch._dynamo
            # on the first op, a second of CPU at every start-up. This mode never runs under
            # torch.compile's tracing (the summary pass is eager), so it has nothing to disable.
            return False

        def __init__(self):
            super().__init__()
            self.stack = []
            self.by_module = {}
            self.total = 0
            self.uncounted = {}

        def enter(self, mid):
            self.stack.append(mid)

        def leave(self, mid):
            if self.stack and self.stack[-1] == mid:
                self.stack.pop()
            elif mid in self.stack:  # a module left without its children's post-hooks firing
                del self.stack[self.stack.index(mid) :]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            try:
                macs = macs_of(func, args, kwargs, out)
            except Exception:
                macs = None
            if macs is None:
                name = op_name(func)
                self.uncounted[name] = self.uncounted.get(name, 0) + 1
            elif macs:
                self.total += macs
                for mid in set(self.stack):
                    self.by_module[mid] = self.by_module.get(mid, 0) + macs
            return out

        def uncounted_ops(self):
            return [
                {"name": n, "calls": c}
                for n, c in sorted(self.uncounted.items(), key=lambda kv: -kv[1])
            ]


def new_counter():
    """An ExecutedCounter, or None where torch has no TorchDispatchMode (before 1.13)."""
    return ExecutedCounter() if TorchDispatchMode is not None else None
