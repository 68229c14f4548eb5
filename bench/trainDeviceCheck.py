"""A training run on a CUDA device, through the real engine: the checks of issue #10 that need a
GPU (the script on the main thread with its model on cuda, model.forward(x) called directly,
the diagnosis's device, copies and sync figures on the device actually used).

Run: OMP_NUM_THREADS=1 python3 bench/trainDeviceCheck.py   (prints what it saw; asserts little)
"""

import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python", "tests"))

from engine_process import EXAMPLES, EngineProcess  # noqa: E402

TIMEOUT_S = 180


def run(e, file, args=()):
    rid = e.request("train/start", {"file": file, "args": list(args)})["runId"]
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ps = [p for p in e.notes("train/progress") if p["runId"] == rid]
        if ps and ps[-1]["state"] in ("done", "stopped", "failed"):
            break
        time.sleep(0.1)
    final = ps[-1]
    diag = e.request("train/diagnose", {"runId": rid})
    out = "".join(o["text"] for o in e.notes("output") if o.get("runId") == rid)
    return final, diag, out


def main():
    import torch

    print(
        "torch",
        torch.__version__,
        "cuda",
        torch.version.cuda,
        "available",
        torch.cuda.is_available(),
        flush=True,
    )
    e = EngineProcess(cwd=EXAMPLES)
    try:
        print("engine device", e.info["engine"]["device"])
        final, diag, out = run(e, os.path.join(EXAMPLES, "linear_forward_direct.py"))
        print("state", final["state"], "step", final["step"], "stepsPerSec", final["stepsPerSec"])
        print(
            "warnings",
            json.dumps(
                [w for p in e.notes("train/progress") for w in p.get("warnings", [])], indent=1
            ),
        )
        print(
            "diagnosis",
            json.dumps(
                {
                    k: diag[k]
                    for k in (
                        "device",
                        "steps",
                        "stepMs",
                        "batchSize",
                        "opsPerStep",
                        "avgOpUs",
                        "hostToDevice",
                        "deviceToHost",
                        "breakdown",
                        "syncs",
                    )
                },
                indent=1,
            ),
        )
        for f in diag["findings"]:
            print(" ", f["severity"], f["message"])
        print("script output:", out.strip())
    finally:
        e.close()


if __name__ == "__main__":
    main()
