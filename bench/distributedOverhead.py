"""A distributed run's cost: the 2-rank gloo DDP job (examples/ddp_train.py) under plain
torch.distributed.run vs under Model Lens (every rank instrumented: steps, loss, phases, collective
timing, progress to the engine's aggregator), and what the aggregation costs.

1. Step time, instrumented / plain, in one run: repetitions alternate the two launches in a
   shuffled order; each launch's figures are rank 0's median wall time per step and its mean
   process CPU time per step (the script times its own steps, after WARMUP_STEPS; CPU time
   includes the rank's reporting threads); a repetition's ratio is instrumented / plain of that
   repetition. The plain launch is run twice per repetition for an A/A noise floor. On a shared
   machine wall time mostly measures the other jobs: read the CPU ratio there.
2. Bytes per step per rank: every frame a rank sends the aggregator, counted as it arrives.
3. Aggregator CPU per 1,000 rank reports: the frames one real rank sent (rank/stats, progress,
   diagnosis), replayed as ranks 0..N-1 into the job's view (JSON decode + fold), then one
   progress and one diagnosis of the whole job, as the engine makes every 250 ms / 5 s.

Run: OMP_NUM_THREADS=1 .cache/venvs/torch2/bin/python bench/distributedOverhead.py [--reps 3]
     [--steps 400] [--ranks 1000] [--json out.json]
Target: instrumented / plain ≤ 1.05.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

from model_lens_engine import rpc  # noqa: E402
from model_lens_engine.distributed.aggregate import JobView  # noqa: E402
from model_lens_engine.distributed.job import _free_port, start_distributed_run  # noqa: E402

SCRIPT = os.path.join(REPO, "examples", "ddp_train.py")
TARGET = 1.05
WARMUP_STEPS = 50
LAUNCH_TIMEOUT_S = 600


def step_times(text):
    """Rank 0's (wall ms, process CPU ms) per step, as examples/ddp_train.py --step-times prints."""
    got = {}
    for line in text.splitlines():
        line = line.split(":", 1)[1] if line.startswith("[default") else line
        for key in ("step times ms: ", "step cpu ms: "):
            if line.startswith(key):
                got[key] = [float(v) for v in line[len(key) :].split()]
    if len(got) != 2:
        raise RuntimeError("no step times in the output:\n" + text[-2000:])
    return got["step times ms: "], got["step cpu ms: "]


def plain(steps, extra):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    from model_lens_engine.distributed.job import _needs_redirect_workaround

    if _needs_redirect_workaround([]):
        cmd += ["--redirects", "1", "--tee", "1"]
    cmd += [SCRIPT, "--steps", str(steps), "--step-times"] + extra
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, cwd=REPO)
    if out.returncode:
        raise RuntimeError("plain torchrun failed:\n" + out.stderr[-3000:])
    return step_times(out.stdout)


class _Server:
    """What the engine's Server gives a distributed job: a connection (here: kept in memory)."""

    def __init__(self):
        self.conn = self
        self.current_id = None
        self.run = None
        self.output = []

    def notify(self, method, params):
        rpc.encode_frame(
            {"jsonrpc": "2.0", "method": method, "params": params}
        )  # as the engine would
        if method == "output":
            self.output.append(params["text"])

    def log(self, level, message):
        pass


class _FrameCounter:
    """Counts the bytes of every frame the aggregator reads, per rank, and keeps rank 0's frames."""

    def __init__(self):
        self.bytes = {}
        self.frames = []
        self._orig = rpc.read_frame
        self._lock = threading.Lock()

    def __enter__(self):
        def read_frame(stream):
            msg = self._orig(stream)
            if isinstance(msg, dict):
                r = (msg.get("params") or {}).get("rank")
                data = rpc.encode_frame(msg)
                with self._lock:
                    self.bytes[r] = self.bytes.get(r, 0) + len(data)
                    if r == 0:
                        self.frames.append(data)
            return msg

        rpc.read_frame = read_frame
        return self

    def __exit__(self, *exc):
        rpc.read_frame = self._orig


def instrumented(steps, extra):
    server = _Server()
    with _FrameCounter() as counter:
        t0 = time.monotonic()
        start_distributed_run(
            server,
            {
                "file": SCRIPT,
                "args": ["--steps", str(steps), "--step-times"] + extra,
                "distributed": {"nprocPerNode": 2},
            },
        )
        if not server.run.finished.wait(LAUNCH_TIMEOUT_S):
            server.run.stop()
            raise RuntimeError("the instrumented job did not end")
        counter.seconds = time.monotonic() - t0
    return step_times("".join(server.output)), counter


def per_step(times):
    """(median wall ms, mean CPU ms) per step after the warm-up steps."""
    wall, cpu = times
    return statistics.median(wall[WARMUP_STEPS:]), statistics.mean(cpu[WARMUP_STEPS:])


def aggregator_cpu(frames, ranks):
    """CPU seconds to decode and fold `ranks` copies of one rank's frames, per 1,000 reports."""
    bodies = [f.split(b"\r\n\r\n", 1)[1] for f in frames]
    view = JobView()
    t0 = time.process_time()
    reports = 0
    for r in range(ranks):
        for body in bodies:
            msg = json.loads(body)
            params = msg["params"]
            params["rank"] = r
            params.pop("localWorldSize", None)
            params["worldSize"] = ranks
            view.on_message(msg["method"], params)
            reports += 1
    fold = time.process_time() - t0
    t1 = time.process_time()
    progress = view.progress("r1", "running")
    t2 = time.process_time()
    diagnosis = view.diagnosis("r1")
    t3 = time.process_time()
    return {
        "reports": reports,
        "foldCpuMsPer1000Reports": fold / reports * 1e6,
        "progressCpuMs": (t2 - t1) * 1e3,
        "progressBytes": len(json.dumps(progress)),
        "diagnosisCpuMs": (t3 - t2) * 1e3,
        "diagnosisBytes": len(json.dumps(diagnosis)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--ranks", type=int, default=1000)
    ap.add_argument(
        "--hidden", type=int, default=64, help="the example's hidden width (64: its default)"
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    ratios, floor, cpu_ratios, cpu_floor, rows = [], [], [], [], []
    counter = None
    extra = ["--hidden", str(args.hidden)]
    for rep in range(args.reps):
        order = ["plain", "plain-again", "instrumented"]
        random.shuffle(order)
        got = {}
        for variant in order:
            if variant == "instrumented":
                times, counter = instrumented(args.steps, extra)
            else:
                times = plain(args.steps, extra)
            got[variant] = per_step(times)
        ratios.append(got["instrumented"][0] / got["plain"][0])
        floor.append(got["plain-again"][0] / got["plain"][0])
        cpu_ratios.append(got["instrumented"][1] / got["plain"][1])
        cpu_floor.append(got["plain-again"][1] / got["plain"][1])
        rows.append(got)
        print(
            "rep %d: wall ms/step plain %.3f, again %.3f, instrumented %.3f (ratio %.3f); "
            "rank 0 CPU ms/step plain %.3f, again %.3f, instrumented %.3f (ratio %.3f)"
            % (
                rep + 1,
                got["plain"][0],
                got["plain-again"][0],
                got["instrumented"][0],
                ratios[-1],
                got["plain"][1],
                got["plain-again"][1],
                got["instrumented"][1],
                cpu_ratios[-1],
            ),
            flush=True,
        )
    per_rank = {r: b / args.steps for r, b in sorted(counter.bytes.items()) if r is not None}
    per_sec = {r: b / counter.seconds for r, b in sorted(counter.bytes.items()) if r is not None}
    by_method = {}
    for f in counter.frames:
        method = json.loads(f.split(b"\r\n\r\n", 1)[1])["method"]
        n, total = by_method.get(method, (0, 0))
        by_method[method] = (n + 1, total + len(f))
    agg = aggregator_cpu(counter.frames, args.ranks)
    result = {
        "torch": torch.__version__,
        "steps": args.steps,
        "reps": rows,
        "ratio": statistics.median(ratios),
        "ratioRange": [min(ratios), max(ratios)],
        "aaFloor": statistics.median(floor),
        "aaRange": [min(floor), max(floor)],
        "cpuRatio": statistics.median(cpu_ratios),
        "cpuRatioRange": [min(cpu_ratios), max(cpu_ratios)],
        "cpuAaFloor": statistics.median(cpu_floor),
        "cpuAaRange": [min(cpu_floor), max(cpu_floor)],
        "bytesPerStepPerRank": per_rank,
        "bytesPerSecondPerRank": per_sec,
        "aggregator": agg,
        "target": TARGET,
        "hidden": args.hidden,
        "rank0Messages": {m: {"count": n, "meanBytes": t / n} for m, (n, t) in by_method.items()},
    }
    print(
        "torch %s, 2 ranks, gloo, hidden %d, %d steps (median step after %d warm-up steps), "
        "%d repetitions" % (torch.__version__, args.hidden, args.steps, WARMUP_STEPS, args.reps)
    )
    print(
        "step time (wall), instrumented / plain: %.3f (%.3f–%.3f); "
        "A/A noise floor %.3f (%.3f–%.3f); target ≤ %.2f"
        % (result["ratio"], *result["ratioRange"], result["aaFloor"], *result["aaRange"], TARGET)
    )
    print(
        "rank 0 CPU per step, instrumented / plain: %.3f (%.3f–%.3f); A/A %.3f (%.3f–%.3f)"
        % (
            result["cpuRatio"],
            *result["cpuRatioRange"],
            result["cpuAaFloor"],
            *result["cpuAaRange"],
        )
    )
    print(
        "bytes per step per rank (whole run incl. start and end): %s; per second: %s"
        % (
            ", ".join("rank %s %.0f B" % kv for kv in per_rank.items()),
            ", ".join("rank %s %.0f B" % kv for kv in per_sec.items()),
        )
    )
    print(
        "rank 0's messages: %s"
        % ", ".join("%s %d × %.0f B" % (m, n, t / n) for m, (n, t) in sorted(by_method.items()))
    )
    print(
        "aggregator: %.1f ms CPU per 1,000 rank reports (decode + fold, %d reports); "
        "one progress over %d ranks %.1f ms / %d B, one diagnosis %.1f ms / %d B"
        % (
            agg["foldCpuMsPer1000Reports"],
            agg["reports"],
            args.ranks,
            agg["progressCpuMs"],
            agg["progressBytes"],
            agg["diagnosisCpuMs"],
            agg["diagnosisBytes"],
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
