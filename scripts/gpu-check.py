#!/usr/bin/env python3
"""GPU truth (issue #16): every GPU path of Model Lens checked against ground truth measured in the
same run -- nvidia-smi -q -x, NVML, torch.cuda, torch.profiler with CUDA activities.

    python scripts/gpu-check.py --out report.json [--budget-s 330] [--stream-s 30]

Prints a PASS / FAIL / SKIP table and a summary on stdout, writes the full JSON report to --out and
the raw `nvidia-smi -q -x` beside it (<out>.nvidia-smi-q.xml). Without a CUDA GPU it runs every
check that can run on the CPU and marks the rest SKIP with the reason: a check is PASS only when it
ran and compared figures. Needs only Python with torch (torchvision, transformers, nvidia-ml-py
when present); the engine is driven over its JSON-RPC stdio, no Node.js. See scripts/gpu-check.md.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpucheck import checks_compute, checks_memory, checks_runtime, checks_system  # noqa: E402
from gpucheck.engine import REPO, Engine  # noqa: E402
from gpucheck.report import report_document, run_checks, table, write_json  # noqa: E402
from gpucheck.truth import Nvml, SamplerStream, nvidia_smi_path  # noqa: E402
from gpucheck.workloads import Workloads  # noqa: E402

# Issue #16: the whole run fits in six minutes on the GPU machine.
DEFAULT_BUDGET_S = 330
STREAM_S = 30


class Context:
    def __init__(self, args):
        import torch

        self.args = args
        self.repo = REPO
        self.torch = torch
        self.python = sys.executable
        self.threads = torch.get_num_threads()
        self.tmp = tempfile.mkdtemp(prefix="gpu-check-")
        self.work = Workloads(self.tmp, REPO)
        self.engines = {}
        self.smi = None
        self.stream = None
        self.artifacts = {}
        self.nvml = Nvml.open()
        # Compute processes before any engine starts: inside a container NVML may report pids of
        # another namespace, and then the engine is the process that appeared.
        self.baseline_pids = set()
        if self.nvml is not None:
            try:
                for i in range(self.nvml.m.nvmlDeviceGetCount()):
                    self.baseline_pids.update(p["pid"] for p in self.nvml.device(i)["processes"])
            except Exception:
                pass
        smi = nvidia_smi_path()
        reasons = []
        if torch.version.cuda is None:
            reasons.append("torch %s is a CPU-only build" % torch.__version__)
        elif not torch.cuda.is_available():
            reasons.append(
                "torch.cuda.is_available() is False (torch %s, CUDA %s build)"
                % (torch.__version__, torch.version.cuda)
            )
        if smi is None:
            reasons.append("nvidia-smi is not on PATH")
        self.gpu = not reasons
        self.no_gpu_reason = "no CUDA GPU: " + "; ".join(reasons) if reasons else None

    def engine(self, backend):
        if backend not in self.engines:
            self.engines[backend] = Engine(self.tmp, backend, self.threads)
        return self.engines[backend]

    def save_artifact(self, name, text):
        if not self.args.out:
            return
        path = "%s.%s" % (os.path.splitext(self.args.out)[0], name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.artifacts[name] = path

    def environment(self):
        t = self.torch
        env = {
            "torch": t.__version__,
            "torchCuda": t.version.cuda,
            "cudaAvailable": t.cuda.is_available(),
            "nvidiaSmi": nvidia_smi_path(),
            "nvml": self.nvml is not None,
            "node": shutil.which("node"),
            "artifacts": self.artifacts,
        }
        for mod in ("torchvision", "transformers"):
            try:
                env[mod] = __import__(mod).__version__
            except Exception:
                env[mod] = None
        if self.gpu:
            env["devices"] = [t.cuda.get_device_name(i) for i in range(t.cuda.device_count())]
            env["cudnn"] = t.backends.cudnn.version()
        return env

    def close(self):
        for e in self.engines.values():
            e.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", default="gpu-check-report.json", help="JSON report path (default %(default)s)"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="stop starting checks after this many seconds (default %(default)s)",
    )
    p.add_argument(
        "--stream-s",
        type=float,
        default=STREAM_S,
        help="seconds of the sampler's -lms stream (default %(default)s)",
    )
    p.add_argument("--only", default="", help="comma-separated check ids or sections (e.g. 1,3.3)")
    args = p.parse_args(argv)
    started = time.time()
    deadline = time.monotonic() + args.budget_s
    ctx = Context(args)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    # Device names from NVML, not torch: this process must not hold a CUDA context before the
    # memory checks count the engine's.
    log(
        "gpu-check: torch %s, %s"
        % (
            ctx.torch.__version__,
            "CUDA %s" % ctx.torch.version.cuda if ctx.gpu else ctx.no_gpu_reason,
        )
    )
    checks = (
        checks_system.SECTION_1
        + checks_memory.SECTION_2
        + checks_compute.SECTION_3
        + checks_compute.SECTION_4
        + checks_runtime.SECTION_5
        + checks_runtime.SECTION_6
        + checks_system.SECTION_1_END
    )
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        checks = [c for c in checks if any(c.id == w or c.id.startswith(w + ".") for w in wanted)]
    if ctx.gpu:
        # On the GPU machine its checks come first; the CPU stand-ins use what time is left, and
        # the sampler stream (joined by 1.5) ends the run.
        checks = sorted(checks, key=lambda c: (c.id == "1.5", not c.gpu))
    try:
        if ctx.gpu and any(c.id == "1.5" for c in checks):
            # Runs in the background while the other checks load the GPU.
            ctx.stream = SamplerStream(REPO, args.stream_s).start()
        results = run_checks(
            checks,
            ctx,
            deadline,
            log,
            lambda rows: write_json(args.out, report_document(rows, ctx, started, args, False)),
        )
        doc = report_document(results, ctx, started, args)
    finally:
        ctx.close()
    write_json(args.out, doc)
    print(table(results))
    c = doc["counts"]
    print(
        "\n%d PASS, %d FAIL, %d SKIP in %.0f s; report: %s"
        % (c["PASS"], c["FAIL"], c["SKIP"], doc["seconds"], args.out)
    )
    return 1 if c["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
