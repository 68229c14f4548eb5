"""One prepared check for a machine with a GPU: the 2-rank DDP example under Model Lens with CUDA
tensors (gloo, both ranks on GPU 0) and with nccl (one rank per GPU), through the engine's own
job code. Prints each run's state, device, rank 0's loss curve head and the collectives seen.

Run: python3 bench/distributedDeviceCheck.py
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

import torch  # noqa: E402

from model_lens_engine.distributed.job import start_distributed_run  # noqa: E402

SCRIPT = os.path.join(REPO, "examples", "ddp_train.py")
TIMEOUT_S = 240


class _Server:
    def __init__(self):
        self.conn = self
        self.current_id = None
        self.run = None
        self.last = {}
        self.output = []

    def notify(self, method, params):
        self.last[method] = params
        if method == "output":
            self.output.append(params["text"])

    def log(self, level, message):
        pass


def check(name, nproc, args):
    s = _Server()
    start_distributed_run(s, {"file": SCRIPT, "args": args, "distributed": {"nprocPerNode": nproc}})
    ok = s.run.finished.wait(TIMEOUT_S)
    p, d = s.last.get("train/progress", {}), s.last.get("train/diagnosis", {})
    out = {
        "check": name,
        "finished": ok,
        "state": p.get("state"),
        "error": (p.get("error") or {}).get("message"),
        "device": d.get("device"),
        "loss": p.get("loss", [])[:3],
        "ranks": [
            {
                "rank": r["rank"],
                "state": r["state"],
                "steps": r["steps"],
                "stepMs": r["stepMs"],
                "collectives": [
                    (c["op"], c["count"], round(c["msPerStep"], 3)) for c in r["collectives"]
                ],
                "gpu": r.get("gpu"),
            }
            for r in d.get("ranks", [])
        ],
        "findings": [f["message"] for f in d.get("findings", [])][:3],
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


def main():
    print(
        "torch",
        torch.__version__,
        "cuda",
        torch.cuda.is_available(),
        torch.cuda.device_count(),
        flush=True,
    )
    results = [check("gloo, CUDA tensors, 2 ranks", 2, ["--steps", "200", "--device", "cuda"])]
    n = max(1, torch.cuda.device_count())
    results.append(
        check(
            "nccl, %d rank(s)" % n, n, ["--steps", "200", "--device", "cuda", "--backend", "nccl"]
        )
    )
    results.append(
        check(
            "gloo, CPU, slowed rank 1", 2, ["--steps", "200", "--slow-rank", "1", "--slow-ms", "5"]
        )
    )
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
