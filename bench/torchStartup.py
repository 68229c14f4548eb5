"""Cold start: `model-lens inspect FILE --json` against a Python process that runs
torchinfo.summary on the same model file, both from nothing (a fresh process each time, torch
imported once per run). Target: Model Lens ≤ 1.1× torchinfo's time.

The two commands alternate, REPS times each; the figure is the ratio of medians, for wall time
and for CPU time (user + system of the process and everything it waited for: node, the interpreter
probe, the engine). On a shared machine CPU time is the steadier of the two.

Run: OMP_NUM_THREADS=1 python3 bench/torchStartup.py [--python PATH] [--reps 5] [FILE]
(the default model is test/fixtures/torch/resnet18_model.py at 1×3×64×64; build first with
`node esbuild.js`).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FILE = os.path.join(ROOT, "test", "fixtures", "torch", "resnet18_model.py")
TARGET_RATIO = 1.1
TORCHINFO_SCRIPT = """
import os, runpy, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
import torch, torchinfo
ns = runpy.run_path(sys.argv[1])
print(torchinfo.summary(ns["model"], input_data=ns["example_input"], verbose=0))
"""


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd), r.stderr[-2000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", default=DEFAULT_FILE)
    ap.add_argument("--python", default=os.environ.get("MODEL_LENS_PYTHON", "/usr/bin/python3"))
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    lens = [
        "node",
        os.path.join(ROOT, "bin", "model-lens.js"),
        "inspect",
        args.file,
        "--json",
        "--python",
        args.python,
    ]
    ti = [args.python, "-c", TORCHINFO_SCRIPT, args.file]
    runs = {"modelLens": [], "torchinfo": []}
    for _ in range(args.reps):
        for name, cmd in (("modelLens", lens), ("torchinfo", ti)):
            w, c, out = timed(cmd)
            runs[name].append((w, c))
    doc = json.loads(timed(lens)[2])
    med = {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in runs.items()
    }
    result = {
        "file": os.path.relpath(args.file, ROOT),
        "python": args.python,
        "torch": subprocess.run(
            [args.python, "-c", "import torch; print(torch.__version__)"],
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip(),
        "reps": args.reps,
        "medianWallS": {k: round(v[0], 3) for k, v in med.items()},
        "medianCpuS": {k: round(v[1], 3) for k, v in med.items()},
        "ratioWall": round(med["modelLens"][0] / med["torchinfo"][0], 3),
        "ratioCpu": round(med["modelLens"][1] / med["torchinfo"][1], 3),
        "target": TARGET_RATIO,
        "modules": len(doc.get("modules", [])),
        "loadAvg1m": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
