"""Overhead of a training run's instrumentation (python/model_lens_engine/training/) vs the plain
training loop, in one process, CPU, one thread.

Workloads
  iris      the examples/iris_train.py step: MLP 4→10→3, full batch 120×4, SGD, CrossEntropyLoss,
            `loss.item()` every 100 steps
  resnet18  torchvision resnet18 (random weights), batch 8×3×64×64, SGD momentum, CrossEntropyLoss

Variants
  plain-again  the plain loop again: the noise floor of this measurement (an A/A ratio)
  progress     everything a run installs (optimizer, backward, DataLoader, sync/copy patches, the
               epoch-tracking `range`, root timing hooks), the progress thread sending train/progress
               every PROGRESS_INTERVAL_MS (loss read once per notification, JSON-encoded) and the
               sampled op count (one step in OP_SAMPLE_EVERY_STEPS)
  hook         progress + one live forward hook (iris: fc1; resnet18: layer1) at HOOK_STATS_INTERVAL_MS

Each repetition runs every variant once in a shuffled order; a variant's figure for a repetition is
(its time per step / the plain time per step of the same repetition), time per step being the
block's total over its steps (so periodic costs, the progress thread included, are counted). Reported:
the median of those ratios over repetitions and their spread (min–max). Warm-up steps (model
discovery, the first op sample) are run before timing, as a long run amortises them.

Step times are process CPU time by default (--clock cpu; it includes the progress thread): on a
shared machine wall time mostly measures the other jobs. Use --clock wall on a quiet one.

Run: OMP_NUM_THREADS=1 /usr/bin/python3 bench/trainOverhead.py [--reps 15] [--json out.json]
Targets: progress ≤ 1.05×, hook ≤ 1.10×.
"""

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.join(REPO, "examples"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from model_lens_engine.hooks import HOOK_STATS_INTERVAL_MS, HookManager  # noqa: E402
from model_lens_engine.rpc import encode_frame  # noqa: E402
from model_lens_engine.training.instrument import OP_SAMPLE_EVERY_STEPS  # noqa: E402
from model_lens_engine.training.run import PROGRESS_INTERVAL_MS, TrainingRun  # noqa: E402

TARGETS = {"progress": 1.05, "hook": 1.10}
RESNET_BATCH = (8, 3, 64, 64)


class _Conn:
    """Encodes every notification as the engine would, then drops it."""

    def __init__(self):
        self.sent = 0
        self.bytes = 0

    def notify(self, method, params):
        self.sent += 1
        self.bytes += len(encode_frame({"jsonrpc": "2.0", "method": method, "params": params}))


class _Server:
    def __init__(self):
        self.conn = _Conn()
        self.hooks = HookManager(self.conn.notify)
        self.device = "cpu"
        self.lm = None
        self.model_counter = 0
        self.run = None

    def log(self, level, message):
        pass


def iris_workload():
    from iris_train import TRAIN_ROWS, IrisNet, load_data

    torch.manual_seed(0)
    x, y = load_data()
    x = (x - x.mean(0)) / x.std(0)
    perm = torch.randperm(len(x))
    xt, yt = x[perm[:TRAIN_ROWS]], y[perm[:TRAIN_ROWS]]
    model = IrisNet()
    crit = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def steps(n, rng, sink):
        for epoch in rng(n):
            model.train()
            opt.zero_grad()
            loss = crit(model(xt), yt)
            loss.backward()
            opt.step()
            if epoch % 100 == 0:
                sink.append(f"epoch {epoch} loss {loss.item():.4f}")

    return steps, "fc1"


def resnet_workload():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    x = torch.randn(*RESNET_BATCH)
    y = torch.randint(0, 1000, (RESNET_BATCH[0],))
    crit = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps(n, rng, sink):
        for epoch in rng(n):
            model.train()
            opt.zero_grad()
            loss = crit(model(x), y)
            loss.backward()
            opt.step()
            if epoch % 100 == 0:
                sink.append(f"epoch {epoch} loss {loss.item():.4f}")

    return steps, "layer1"


def run_variant(name, steps_fn, hook_path, n_steps, warmup, clock):
    sink = []
    if name.startswith("plain"):
        steps_fn(warmup, range, sink)
        t0 = clock()
        steps_fn(n_steps, range, sink)
        return (clock() - t0) / n_steps
    srv = _Server()
    run = TrainingRun(srv, os.path.abspath(__file__), [], "bench")
    run.tid = threading.get_ident()
    run.inst.install(run.tid)
    run.state = "running"
    run.in_user_code = True
    run.counters.t_script = time.perf_counter()
    ticker = threading.Thread(target=run.ticker, daemon=True)
    ticker.start()
    hook = None
    try:
        steps_fn(warmup, run.epochs.range, sink)
        if name == "hook":
            hook = srv.hooks.attach(run.lm, hook_path, "forward")
        t0 = clock()
        steps_fn(n_steps, run.epochs.range, sink)
        dt = (clock() - t0) / n_steps
    finally:
        if hook:
            srv.hooks.detach(hook)
        run.finished.set()
        ticker.join()
        run.inst.uninstall()
    if run.counters.steps != warmup + n_steps:
        raise SystemExit(
            "instrumentation counted %d steps, expected %d" % (run.counters.steps, warmup + n_steps)
        )
    return dt


def bench(label, workload, reps, n_steps, warmup, clock):
    steps_fn, hook_path = workload()
    names = ["plain", "plain-again", "progress", "hook"]
    per = {n: [] for n in names}
    raw = {n: [] for n in names}
    rng = random.Random(0)
    for _ in range(reps):
        order = names[:]
        rng.shuffle(order)
        got = {n: run_variant(n, steps_fn, hook_path, n_steps, warmup, clock) for n in order}
        for n in names:
            per[n].append(got[n] / got["plain"])
            raw[n].append(got[n])
    out = {}
    for n in names[1:]:
        rs = per[n]
        # best-of: the fastest block of the variant over the fastest plain block, the figure
        # least disturbed by other jobs on a shared machine.
        out[n] = {
            "median": statistics.median(rs),
            "min": min(rs),
            "max": max(rs),
            "bestOf": min(raw[n]) / min(raw["plain"]),
        }
    plain_ms = statistics.median(raw["plain"]) * 1e3
    print(
        "%-9s plain step %.3f ms median, %.3f ms best (%d steps × %d reps)"
        % (label, plain_ms, min(raw["plain"]) * 1e3, n_steps, reps)
    )
    for n, v in out.items():
        tgt = TARGETS.get(n)
        # Figures that add up: the added time per step is (median ratio - 1) × the median plain
        # step, both from this run.
        v["stepMs"] = plain_ms * v["median"]
        v["addedUs"] = (v["median"] - 1.0) * plain_ms * 1e3
        print(
            "  %-12s ×%.3f median (spread ×%.3f–×%.3f), best-of ×%.3f: %.3f ms/step, %+.0f µs "
            "per step%s"
            % (
                n,
                v["median"],
                v["min"],
                v["max"],
                v["bestOf"],
                v["stepMs"],
                v["addedUs"],
                ("  target ≤ ×%.2f %s" % (tgt, "ok" if v["median"] <= tgt else "MISSED"))
                if tgt
                else "",
            )
        )
    return {"plainStepMs": plain_ms, "ratios": out, "steps": n_steps, "reps": reps}


def readme_rows(res):
    """The README's two training rows, from this run's figures only."""
    i, r = res["iris"], res["resnet18"]

    def cell(name):
        return "×%.3f / ×%.3f" % (i["ratios"][name]["median"], r["ratios"][name]["median"])

    return [
        "| training run, progress + loss + histograms vs the plain script (iris %.3f ms/step / "
        "resnet18 %.0f ms/step, CPU time) | %s (iris %+.0f µs/step) | ≤ ×1.05 |"
        % (
            i["plainStepMs"],
            r["plainStepMs"],
            cell("progress"),
            i["ratios"]["progress"]["addedUs"],
        ),
        "| training run with one live hook (iris / resnet18) | %s (iris %+.0f µs/step) | ≤ ×1.10 |"
        % (cell("hook"), i["ratios"]["hook"]["addedUs"]),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--iris-steps", type=int, default=300)
    ap.add_argument("--resnet-steps", type=int, default=3)
    ap.add_argument("--resnet-reps", type=int, default=9)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        "torch %s, CPU, 1 thread, %s clock, load %.1f, PROGRESS_INTERVAL_MS %d, HOOK_STATS_INTERVAL_MS %d, "
        "OP_SAMPLE_EVERY_STEPS %d"
        % (
            torch.__version__,
            args.clock,
            os.getloadavg()[0],
            PROGRESS_INTERVAL_MS,
            HOOK_STATS_INTERVAL_MS,
            OP_SAMPLE_EVERY_STEPS,
        )
    )
    res = {
        "iris": bench("iris", iris_workload, args.reps, args.iris_steps, 10, clock),
        "resnet18": bench(
            "resnet18", resnet_workload, args.resnet_reps, args.resnet_steps, 1, clock
        ),
    }
    print("\nREADME rows (this run):")
    for row in readme_rows(res):
        print(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
