"""Progress of a training run: which loop is the epoch loop, the loss points, the rate, and the
train/progress message."""

import collections
import math
import time
import weakref

import torch

MAX_LOSS_POINTS_PER_PROGRESS = 1024
# Losses kept between two notifications; beyond this the oldest are dropped.
MAX_PENDING_LOSSES = 8192
RATE_WINDOW_S = 5.0

_builtin_range = range
_Tensor = torch.Tensor
_item = torch._C._TensorBase.item  # unpatched: the engine's own reads are not user syncs


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

    __slots__ = ("_r", "_rec", "_counters")

    def __init__(self, r, rec, counters):
        self._r = r
        self._rec = rec
        self._counters = counters

    def __iter__(self):
        rec = self._rec
        c = self._counters
        rec.active = True
        try:
            n = 0
            for v in self._r:
                rec.index = n
                rec.steps_at_start = c.steps
                n += 1
                yield v
            rec.index = n
            rec.steps_at_start = c.steps
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


class EpochTracker:
    """Finds the epoch loop: the outermost `range(...)` loop in progress, or the DataLoader being
    iterated, when the first optimizer step ends."""

    def __init__(self, counters):
        self.counters = counters
        self.ranges = []
        self.epoch_range = None
        self.loaders = {}
        self.iter_loader = weakref.WeakKeyDictionary()
        self.cur_loader = None
        self.epoch_loader = None

    def range(self, *args):
        """The script's `range` (its globals get this one)."""
        r = _builtin_range(*args)
        if self.epoch_range is not None or self.counters.steps > 0 or len(r) < 2:
            return r
        rec = _RangeRecord(len(r), len(self.ranges))
        self.ranges.append(rec)
        return _TrackedRange(r, rec, self.counters)

    def on_loader_iter(self, loader, it):
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

    def on_loader_next(self, it):
        self.cur_loader = self.iter_loader.get(it)

    def pick_source(self):
        live = [r for r in self.ranges if r.active]
        if live:
            self.epoch_range = min(live, key=lambda r: r.created)
        self.ranges = []
        if self.cur_loader is not None:
            self.epoch_loader = self.cur_loader

    def epochs(self):
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


class LossQueue:
    """Scalar losses seen at backward(), read when progress is sent: a device loss is kept as a
    detached reference (no sync per step), all are read in one transfer per notification."""

    def __init__(self):
        self.pending = collections.deque(maxlen=MAX_PENDING_LOSSES)
        self.nan_step = None
        # Until the script creates an optimizer, losses are held back: those before it are an
        # autograd demonstration, dropped by discard(). A script that never makes one (a manual
        # update loop) gets its losses with the final progress.
        self.held = True

    def discard(self):
        """The first optimizer exists: what came before is not the training."""
        self.pending.clear()
        self.held = False

    def append(self, step, t):
        # A CPU loss is read now, which costs less than keeping hundreds of tensors alive. The
        # deque needs no lock.
        self.pending.append((step, _item(t) if t.is_cpu else t.detach()))

    def points(self, warn, final=False):
        if self.held and not final:
            return []
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
                    warn(
                        "The loss became %s at step %d; the model's weights are probably ruined "
                        "from there on (check the learning rate, the inputs and log/divide "
                        "operations)." % (v, s)
                    )
                    break
        if len(points) > MAX_LOSS_POINTS_PER_PROGRESS:
            n = len(points)
            idx = sorted(
                {
                    round(i * (n - 1) / (MAX_LOSS_POINTS_PER_PROGRESS - 1))
                    for i in range(MAX_LOSS_POINTS_PER_PROGRESS)
                }
            )
            points = [points[i] for i in idx]
        return points


class RateWindow:
    """Steps per second over the last RATE_WINDOW_S seconds."""

    def __init__(self):
        self.hist = []

    def rate(self, c, final=False):
        """Steps per second now; at the end, over the same steps as the diagnosis's stepMs (2 to
        the last, step 1 being warm-up), so the two figures agree."""
        steps = c.steps
        if final and c.snap is not None and steps >= 2 and c.t_last_step is not None:
            return (steps - 1) / max(c.t_last_step - c.snap[0], 1e-9)
        now = time.monotonic()
        self.hist.append((now, steps))
        while len(self.hist) > 2 and now - self.hist[1][0] >= RATE_WINDOW_S:
            self.hist.pop(0)
        t0, s0 = self.hist[0]
        rate = (steps - s0) / (now - t0) if now - t0 > 0 and steps > s0 else None
        if rate is None and steps and c.t_script is not None and c.t_last_step is not None:
            rate = steps / max(c.t_last_step - c.t_script, 1e-9)
        return rate


def starting_message(run_id):
    return {
        "runId": run_id,
        "state": "starting",
        "step": 0,
        "epoch": None,
        "totalSteps": None,
        "totalEpochs": None,
        "stepsPerSec": None,
        "etaSec": None,
        "loss": [],
    }
