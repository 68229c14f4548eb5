"""TensorInfo: strides, contiguity and why, storage sharing, view() safety, value statistics."""

import math

import torch

from .protocol import DEFAULT_HISTOGRAM_BINS

MAX_HISTOGRAM_BINS = 512

_storage_ids = {}


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def _storage_of(t):
    """(data_ptr, nbytes) of the tensor's storage; torch 2.x has untyped_storage(), 1.13 storage()."""
    if t.device.type == "meta" or t.is_sparse:
        return None
    try:
        if hasattr(t, "untyped_storage"):
            s = t.untyped_storage()
        else:
            s = t.storage()
        return s.data_ptr(), int(s.nbytes())
    except Exception:
        return None


def storage_key(t):
    s = _storage_of(t)
    if s is None:
        return None
    return (str(t.device), s[0])


def storage_id(key):
    sid = _storage_ids.get(key)
    if sid is None:
        sid = "s%d" % (len(_storage_ids) + 1)
        _storage_ids[key] = sid
    return sid


def contiguity(shape, stride, contiguous, t=None):
    if contiguous:
        return {
            "contiguous": True,
            "breaksAt": None,
            "reason": "row-major contiguous: each stride is the next stride times the next size",
        }
    dims = [i for i, s in enumerate(shape) if s != 1]
    breaks = None
    reason = "not contiguous"
    ds = [stride[i] for i in dims]
    if any(s == 0 for s in ds):
        why = "expanded: a stride of 0 repeats the same elements"
    elif any(x < y for x, y in zip(ds, ds[1:])):
        why = "permuted or transposed: strides are not in decreasing order"
    elif any(stride[a] < stride[b] * shape[b] for a, b in zip(dims, dims[1:])):
        # unfold's sliding windows: an outer step smaller than what the inner dims span.
        why = (
            "overlapping: a stride is smaller than the span of the dims inside it, so "
            "neighbouring slices share elements (as unfold's windows do)"
        )
    else:
        why = "a slice or strided view: there are gaps between its elements"
    for a, b in zip(dims, dims[1:]):
        need = stride[b] * shape[b]
        if stride[a] != need:
            breaks = a
            reason = (
                "dim %d has stride %d but a contiguous layout needs stride[%d]·size[%d] = %d·%d = %d (%s)"
                % (a, stride[a], b, b, stride[b], shape[b], need, why)
            )
            break
    if breaks is None and dims and stride[dims[-1]] != 1:
        breaks = dims[-1]
        reason = "the last dimension (%d) has stride %d, not 1 (%s)" % (breaks, stride[breaks], why)
    out = {"contiguous": False, "breaksAt": breaks, "reason": reason}
    if t is not None:
        try:
            if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
                out["memoryFormat"] = "channels_last"
                out["reason"] += "; it is contiguous in channels_last memory format"
            elif t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
                out["memoryFormat"] = "channels_last_3d"
                out["reason"] += "; it is contiguous in channels_last_3d memory format"
        except Exception:
            pass
    return out


def view_check(t, nbytes, contiguous):
    out = {"wouldFail": False, "copyBytes": 0 if contiguous else nbytes}
    try:
        # view() only builds new metadata over the same storage: trying it is the exact answer
        # and costs no copy.
        with torch.no_grad():
            t.view(-1)
    except RuntimeError as e:
        out["wouldFail"] = True
        out["error"] = str(e).split("\n")[0]
    return out


class NamedTensors:
    """The tensors of one model with names (`fc1.weight`, `output:fc1`, `input:0`), so a
    TensorInfo can say which others share its storage and what it is a view of."""

    def __init__(self):
        self.by_name = {}

    def add(self, name, t):
        if isinstance(t, torch.Tensor):
            self.by_name[name] = t

    def index(self):
        by_storage = {}
        by_id = {}
        for name, t in self.by_name.items():
            k = storage_key(t)
            if k is not None:
                by_storage.setdefault(k, []).append(name)
            by_id.setdefault(id(t), name)
        return by_storage, by_id


def _view_source(t, base, name, named, index):
    """The named tensor `t` is a view of: its base when the base has a name, else the first
    named tensor (in execution order) over the same base that is not `t` itself."""
    bname = index[1].get(id(base))
    if bname is not None and bname != name:
        return bname
    for n, other in named.by_name.items():
        if n == name or other is t:
            if n == name:
                break
            continue
        if getattr(other, "_base", None) is base or (
            other._base is None and storage_key(other) == storage_key(t)
        ):
            return n
    return None


def tensor_info(t, name=None, named=None, index=None):
    shape = list(t.shape)
    stride = list(t.stride()) if t.layout == torch.strided else []
    contiguous = bool(t.is_contiguous()) if t.layout == torch.strided else True
    esize = t.element_size()
    numel = t.numel()
    nbytes = numel * esize
    info = {
        "shape": shape,
        "dtype": dtype_name(t.dtype),
        "device": str(t.device),
        "stride": stride,
        "storageOffset": int(t.storage_offset()) if t.layout == torch.strided else 0,
        "contiguous": contiguous,
        "contiguity": contiguity(shape, stride, contiguous, t),
        "numel": numel,
        "bytes": nbytes,
        "elementSize": esize,
        "strideSynthetic": False,
        "view": view_check(t, nbytes, contiguous)
        if t.layout == torch.strided
        else {"wouldFail": True, "error": "sparse tensor", "copyBytes": nbytes},
        "requiresGrad": bool(t.requires_grad),
    }
    st = _storage_of(t)
    if st is not None:
        key = (str(t.device), st[0])
        shared = []
        if named is not None:
            if index is None:
                index = named.index()
            shared = [n for n in index[0].get(key, []) if n != name]
        info["storage"] = {"id": storage_id(key), "bytes": st[1], "sharedWith": shared}
    if named is not None:
        if index is None:
            index = named.index()
        base = getattr(t, "_base", None)
        if base is not None:
            info_view = _view_source(t, base, name, named, index)
            if info_view is not None:
                info["viewOf"] = info_view
    return info


def brief_info(t):
    return {
        "shape": list(t.shape),
        "dtype": dtype_name(t.dtype),
        "device": str(t.device),
        "stride": list(t.stride()) if t.layout == torch.strided else [],
        "contiguous": bool(t.is_contiguous()) if t.layout == torch.strided else True,
    }


def _finite_f(x):
    return x if isinstance(x, float) and math.isfinite(x) else None


def stats_vector(t):
    """Statistics as one small float64 tensor on the tensor's own device, computed without any
    host synchronisation, so many can be stacked and moved to the host in one transfer."""
    with torch.no_grad():
        x = t.detach()
        if x.is_complex():
            x = x.abs()
        x = x.reshape(-1)
        dev = x.device
        if x.numel() == 0:
            nan = float("nan")
            return torch.tensor(
                [0.0, nan, nan, nan, nan, 0.0, 0.0, 0.0], dtype=torch.float64, device=dev
            )
        zero = (x == 0).sum()
        f = x if x.dtype in (torch.float32, torch.float64) else x.float()
        finite = torch.isfinite(f)
        nan = torch.isnan(f).sum()
        nfin = finite.sum()
        inf = f.numel() - nfin - nan
        zf = torch.zeros((), dtype=f.dtype, device=dev)
        mean = torch.where(finite, f, zf).sum(dtype=torch.float64) / nfin
        d = torch.where(finite, f - mean.to(f.dtype), zf)
        std = torch.sqrt((d * d).sum(dtype=torch.float64) / nfin)
        big = torch.tensor(float("inf"), dtype=f.dtype, device=dev)
        mn = torch.where(finite, f, big).min()
        mx = torch.where(finite, f, -big).max()
        n = torch.tensor(float(x.numel()), dtype=torch.float64, device=dev)
        return torch.stack(
            [
                n,
                mean,
                std,
                mn.to(torch.float64),
                mx.to(torch.float64),
                nan.to(torch.float64),
                inf.to(torch.float64),
                zero.to(torch.float64),
            ]
        )


def quick_stats_vector(t):
    """The hook-time statistics: a few passes that assume every value is finite (the sum is then
    finite too). Layout as stats_vector's, with -1 for the NaN/Inf counts: `finish_stats`
    recomputes with masks in the rare case the results show a non-finite value."""
    with torch.no_grad():
        x = t.detach()
        if x.is_complex():
            x = x.abs()
        x = x.reshape(-1)
        dev = x.device
        n = x.numel()
        if n == 0:
            return stats_vector(x)
        f = x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)
        mean = f.sum() / n
        d = f - mean
        var = torch.dot(d, d) / n
        mn, mx = torch.aminmax(f)
        zero = n - torch.count_nonzero(f)
        minus1 = torch.tensor(-1.0, dtype=torch.float64, device=dev)
        return torch.stack(
            [
                torch.tensor(float(n), dtype=torch.float64, device=dev),
                mean.to(torch.float64),
                torch.sqrt(var).to(torch.float64),
                mn.to(torch.float64),
                mx.to(torch.float64),
                minus1,
                minus1,
                zero.to(torch.float64),
            ]
        )


def finish_stats(values, t):
    """Host side of quick_stats_vector; `t` is re-read only when a NaN or Inf showed up."""
    if values[5] == -1:
        if all(math.isfinite(v) for v in values[1:5]):
            values = list(values)
            values[5] = values[6] = 0.0
        else:
            values = stats_vector(t).tolist()
    return stats_from_list(values)


def stats_from_list(v):
    n, mean, std, mn, mx, nan, inf, zero = v
    return {
        "numel": int(n),
        "mean": _finite_f(float(mean)),
        "std": _finite_f(float(std)),
        "min": _finite_f(float(mn)),
        "max": _finite_f(float(mx)),
        "nanCount": int(nan),
        "infCount": int(inf),
        "zeroCount": int(zero),
    }


def tensor_stats(t):
    return stats_from_list(stats_vector(t).tolist())


def histogram(t, bins=DEFAULT_HISTOGRAM_BINS):
    bins = max(1, min(int(bins or DEFAULT_HISTOGRAM_BINS), MAX_HISTOGRAM_BINS))
    with torch.no_grad():
        x = t.detach().reshape(-1)
        if x.is_complex():
            x = x.abs()
        x = x.to(torch.float64)
        x = x[torch.isfinite(x)]
        if x.numel() == 0:
            return {"min": 0.0, "max": 0.0, "counts": [0] * bins}
        mn, mx = [float(v) for v in torch.aminmax(x)]
        if mn == mx:
            counts = [0] * bins
            counts[0] = int(x.numel())
            return {"min": mn, "max": mx, "counts": counts}
        counts = torch.histc(x, bins=bins, min=mn, max=mx)
        return {"min": mn, "max": mx, "counts": [int(c) for c in counts.tolist()]}
