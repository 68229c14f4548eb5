"""A 70 B-parameter Llama on the meta device, through the real engine process: model/load with
device "meta" (the file builds `model = LlamaForCausalLM(config)` at import, under
torch.device("meta")), model/tree, model/summary (1×128 token ids). Targets: ≤ 15 s wall from
spawning the engine to the summary, ≤ 1.5 GB peak RSS of the engine (VmHWM).

The config is Llama-3-70B's published shape (80 layers, hidden 8192, 64 heads, 8 KV heads,
intermediate 28672, vocabulary 128256): 70.55 G parameters, 282 GB of float32 weights never
allocated.

Run: HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .cache/venvs/torch2/bin/python bench/torchMeta.py
Needs torch 2.x and transformers (the torch2 venv).
"""

import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))

from engine_process import EngineProcess  # noqa: E402

TARGET_WALL_S = 15.0
TARGET_RSS_GB = 1.5
SEQUENCE_LENGTH = 128
MODEL_FILE = """# Llama-3-70B's shape, random weights on the meta device (never allocated).
from transformers import LlamaConfig, LlamaForCausalLM

config = LlamaConfig(num_hidden_layers=80, hidden_size=8192, num_attention_heads=64,
                     num_key_value_heads=8, intermediate_size=28672, vocab_size=128256,
                     max_position_embeddings=8192)
model = LlamaForCausalLM(config)
"""


def peak_rss_gb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def cpu_s(pid):
    """User + system CPU seconds of the process so far: on a shared machine, wall time mostly
    measures the other jobs."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "llama70b_model.py")
        with open(path, "w") as f:
            f.write(MODEL_FILE)
        t0 = time.perf_counter()
        e = EngineProcess(cwd=d, env={"HF_HUB_OFFLINE": "1"})
        try:
            t_init = time.perf_counter() - t0
            r = e.request(
                "model/load",
                {
                    "file": path,
                    "device": "meta",
                    "inputs": [
                        {"shape": [1, SEQUENCE_LENGTH], "dtype": "int64", "name": "input_ids"}
                    ],
                },
            )
            t_load = time.perf_counter() - t0
            tree = e.request("model/tree", {"modelId": r["modelId"]})
            t_tree = time.perf_counter() - t0
            s = e.request("model/summary", {"modelId": r["modelId"]})
            t_summary = time.perf_counter() - t0
            rss = peak_rss_gb(e.proc.pid)
            cpu = cpu_s(e.proc.pid)
        finally:
            e.close()
    result = {
        "params": s["totals"]["params"],
        "modules": len(tree["modules"]),
        "executedMacs": s["totals"]["executedMacs"],
        "torchinfoMacs": s["totals"]["macs"],
        "wallS": {
            "engineReady": round(t_init, 2),
            "load": round(t_load, 2),
            "tree": round(t_tree, 2),
            "summary": round(t_summary, 2),
        },
        "engineCpuS": round(cpu, 2),
        "peakRssGB": round(rss, 3),
        "targets": {"wallS": TARGET_WALL_S, "peakRssGB": TARGET_RSS_GB},
        "met": t_summary <= TARGET_WALL_S and rss <= TARGET_RSS_GB,
        "loadAvg1m": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
