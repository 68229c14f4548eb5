"""train/histograms: per-parameter weight and gradient statistics and histograms, computed on
the parameters' device and read in one transfer per device."""

import warnings

import torch

from ..tensors import finish_stats, histogram, quick_stats_vector

TRAIN_HISTOGRAM_BINS = 20
MAX_HISTOGRAM_PARAMS = 200
# A larger tensor's histogram is counted over an evenly strided sample of this many values.
HISTOGRAM_SAMPLE_ELEMENTS = 16384

_tolist = torch._C._TensorBase.tolist  # unpatched: the engine's own reads are not user syncs


def histogram_message(module, run_id, step, grads=True):
    """train/histograms for `module`'s trainable parameters, right after a step (the grads still
    hold that step's gradient in the usual zero_grad, backward, step order). Statistics are exact;
    a histogram is counted over an evenly strided sample of at most HISTOGRAM_SAMPLE_ELEMENTS
    values and scaled to the tensor's size."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    omitted = max(0, len(named) - MAX_HISTOGRAM_PARAMS)
    named = named[:MAX_HISTOGRAM_PARAMS]
    tensors = []  # weights and grads, in order
    slots = []  # (name, shape, weight index, grad index or None)
    for name, p in named:
        g = p.grad
        gi = None
        tensors.append(p)
        wi = len(tensors) - 1
        if (
            grads
            and isinstance(g, torch.Tensor)
            and g.layout == torch.strided
            and not g.is_complex()
        ):
            tensors.append(g)
            gi = len(tensors) - 1
        slots.append((name, list(p.shape), wi, gi))
    by_dev = {}
    for i, t in enumerate(tensors):
        by_dev.setdefault(t.device, []).append(i)
    rows = [None] * len(tensors)
    with torch.no_grad():
        for idx in by_dev.values():
            out = _tolist(summary_rows([tensors[i] for i in idx], TRAIN_HISTOGRAM_BINS))
            for i, r in zip(idx, out):
                rows[i] = r
        summaries = [summary(t, r, TRAIN_HISTOGRAM_BINS) for t, r in zip(tensors, rows)]
    params = []
    for name, shape, wi, gi in slots:
        item = {"name": name, "shape": shape, "weight": summaries[wi]}
        if gi is not None:
            item["grad"] = summaries[gi]
        params.append(item)
    msg = {"runId": run_id, "step": step, "params": params}
    if omitted:
        msg["omitted"] = omitted
    return msg


def summary_rows(ts, bins):
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
            x = x[:: -(-n // HISTOGRAM_SAMPLE_ELEMENTS)]
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
    unknown = torch.full_like(cnt, -1.0)
    stats = torch.stack([cnt, mean, std, mn, mx, unknown, unknown, zero], 1)
    if big:
        stats[torch.tensor(big, device=dev)] = torch.stack([quick_stats_vector(ts[i]) for i in big])
    mn, mx = stats[:, 3], stats[:, 4]
    span = torch.where(mx > mn, mx - mn, torch.ones_like(mx))
    pos = (flat - mn[seg]) * bins / span[seg]
    finite = torch.isfinite(pos)
    b = torch.where(finite, pos, torch.zeros_like(pos)).floor().clamp(0, bins - 1).long()
    b = torch.where(finite, b, torch.full_like(b, bins))  # a dropped bin for non-finite values
    counts = torch.bincount(seg * (bins + 1) + b, minlength=k * (bins + 1))
    counts = counts.view(k, bins + 1)[:, :bins]
    return torch.cat([stats, cnt.unsqueeze(1), counts.double()], 1)


def summary(t, row, bins):
    """Host side of one summary_rows row: {stats, histogram[, sampled]}. A tensor holding a NaN
    or an Inf (rare) is re-read exactly with the masked helpers."""
    stats = finish_stats(row[:8], t)
    if stats["nanCount"] or stats["infCount"]:
        return {"stats": stats, "histogram": histogram(t, bins)}
    n, taken = stats["numel"], int(row[8])
    counts = [int(c) for c in row[9 : 9 + bins]]
    out = {"stats": stats}
    if taken < n and taken:
        # Scale the sample's counts to the tensor's size; largest remainders keep the sum exact.
        exact = [c * n / taken for c in counts]
        counts = [int(v) for v in exact]
        for i in sorted(range(bins), key=lambda i: counts[i] - exact[i])[: n - sum(counts)]:
            counts[i] += 1
        out["sampled"] = taken
    lo = stats["min"] if stats["min"] is not None else 0.0
    hi = stats["max"] if stats["max"] is not None else 0.0
    out["histogram"] = {"min": lo, "max": hi, "counts": counts}
    return out
