"""Overhead of the PyTorch engine's instrumentation vs a plain forward, and vs torch.profiler.

resnet18 (torchvision's layers written out in test/fixtures/torch/resnet_layers.py, so the same
model runs on every torch, with or without torchvision; random weights), CPU, batch 8×3×64×64,
eval + no_grad, one thread. torch.profiler is kineto's where torch has it (2.x), else the legacy
autograd profiler: the header says which.
Variants run interleaved in a shuffled order each repetition; a variant's figure is the median
over repetitions of (its median step time / the plain median step time of the same repetition).

  plain-again   the plain forward again: the noise floor of this measurement (an A/A ratio)
  (a) attached    the engine's standing instrumentation: its root-module hook, nothing recording
  (b) stats       forward hooks with statistics on every module, throttled (HOOK_STATS_INTERVAL_MS)
  (b0) stats-all  the same with no throttle: statistics of every module output at every call
  (c) op-timing   per-op TorchDispatchMode timer + per-module timing hooks (what profile/run uses)
  profiler        torch.profiler.profile(record_shapes=True), one context per step
  profiler-long   one torch.profiler context around a repetition's steps

Step times are process CPU time by default (--clock cpu): on a shared machine wall time mostly
measures the other jobs. Use --clock wall on a quiet one.

Run: OMP_NUM_THREADS=1 /usr/bin/python3 bench/torchOverhead.py [--reps 15] [--steps 5]
and  OMP_NUM_THREADS=1 .cache/venvs/torch2/bin/python bench/torchOverhead.py  (torch 2.13, kineto)
Works on torch 1.13 and 2.x (feature-detected).
"""

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
)

import torch  # noqa: E402

sys.path.insert(
    0,
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test", "fixtures", "torch"
    ),
)
from resnet_layers import resnet18  # noqa: E402

from model_lens_engine.errors import UserScope  # noqa: E402
from model_lens_engine.hooks import HOOK_STATS_INTERVAL_MS, HookManager  # noqa: E402
from model_lens_engine.loader import LoadedModel  # noqa: E402
from model_lens_engine.profiling import ModuleTimer, OpTimer  # noqa: E402
from model_lens_engine.tree import canonical_paths  # noqa: E402

BATCH_SHAPE = (8, 3, 64, 64)
TARGETS = {"attached": 1.02, "op-timing": 1.10}


def make_model():
    torch.manual_seed(0)
    model = resnet18().eval()
    lm = LoadedModel()
    lm.module = model
    lm.model_id = "m1"
    lm.scope = UserScope(os.path.dirname(os.path.abspath(__file__)))
    return lm, torch.randn(*BATCH_SHAPE)


def variants(lm, x):
    model = lm.module
    paths = canonical_paths(model)
    sink = []

    @contextlib.contextmanager
    def plain():
        yield lambda: model(x)

    @contextlib.contextmanager
    def attached():
        mgr = HookManager(lambda m, p: sink.append(p))
        mgr._ensure_root(lm)
        try:
            yield lambda: model(x)
        finally:
            mgr.detach(all_hooks=True)

    def stats_with(interval_ms):
        @contextlib.contextmanager
        def ctx():
            mgr = HookManager(lambda m, p: sink.append(p))
            for p, _ in model.named_modules():
                mgr.attach(lm, p, "forward", interval_ms)
            try:
                yield lambda: model(x)
            finally:
                mgr.detach(all_hooks=True)
                sink.clear()

        return ctx

    @contextlib.contextmanager
    def op_timing():
        timer = OpTimer(record_shapes=True)
        with ModuleTimer(model, paths):

            def step():
                with timer:
                    model(x)
                # As profile/run does: shapes and strides come from the first step only.
                timer.record_shapes = False

            yield step

    @contextlib.contextmanager
    def profiler():
        def step():
            with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True
            ):
                model(x)

        yield step

    @contextlib.contextmanager
    def profiler_long():
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True
        ):
            yield lambda: model(x)

    out = {
        "plain": plain,
        "plain-again": plain,
        "attached": attached,
        "stats": stats_with(HOOK_STATS_INTERVAL_MS),
        "stats-all": stats_with(0),
        "op-timing": op_timing,
        "profiler": profiler,
        "profiler-long": profiler_long,
    }
    if OpTimer is None:  # torch without TorchDispatchMode
        del out["op-timing"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant per repetition")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU time (robust when other jobs share the cores); wall: perf_counter",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm, x = make_model()
    vs = variants(lm, x)
    names = list(vs)
    per_rep = {n: [] for n in names}
    rng = random.Random(0)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with torch.no_grad():
        for _ in range(3):
            lm.module(x)
        for rep in range(args.reps):
            order = names[:]
            rng.shuffle(order)
            for n in order:
                with vs[n]() as step:
                    step()  # first call after (re)attaching is not timed
                    times = []
                    for _ in range(args.steps):
                        t0 = clock()
                        step()
                        times.append(clock() - t0)
                per_rep[n].append(statistics.median(times))
    plain = per_rep["plain"]
    kineto = bool(getattr(torch.autograd, "kineto_available", lambda: False)())
    print(
        "torch %s (profiler: %s), resnet18 %s, CPU, %d thread(s), %d reps × %d steps, %s clock, load %.1f"
        % (
            torch.__version__,
            "kineto" if kineto else "legacy",
            "×".join(map(str, BATCH_SHAPE)),
            torch.get_num_threads(),
            args.reps,
            args.steps,
            args.clock,
            os.getloadavg()[0],
        )
    )
    print("plain step: median %.1f ms" % (statistics.median(plain) * 1000))
    out = {
        "torch": torch.__version__,
        "kineto": kineto,
        "plainMs": statistics.median(plain) * 1000,
        "ratios": {},
    }
    for n in names[1:]:
        ratios = [v / p for v, p in zip(per_rep[n], plain)]
        r = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [min(ratios), r, max(ratios)]
        target = TARGETS.get(n)
        verdict = (
            ""
            if target is None
            else ("  target ≤ %.2f: %s" % (target, "met" if r <= target else "MISSED"))
        )
        print("%-14s ×%.3f  (IQR %.3f–%.3f)%s" % (n, r, q[0], q[-1], verdict))
        out["ratios"][n] = {"median": r, "q1": q[0], "q3": q[-1]}
    if "op-timing" in out["ratios"]:
        op, prof = out["ratios"]["op-timing"]["median"], out["ratios"]["profiler"]["median"]
        print("op-timing below torch.profiler (per step): %s" % ("yes" if op < prof else "NO"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
