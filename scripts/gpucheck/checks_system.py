"""Section 1: system/info and the GPU sampler against nvidia-smi -q -x and NVML."""

import os
import shutil
import subprocess

from .report import Check, Skip
from .truth import nvidia_smi_xml

# torch's total_memory and nvidia-smi's FB total are the same memory, up to rounding to MiB.
TOTAL_MIB_TOLERANCE = 1.0
# Memory used moves while other processes run: compared within this much.
USED_MIB_TOLERANCE = 256.0
# A CUDA context (kernels, cuBLAS/cuDNN workspaces) costs the process this much above what the
# caching allocator reserves; more would mean the engine holds memory torch does not account for.
CONTEXT_MIB_MAX = 1536.0
# Idle utilization read a moment apart by two tools.
UTIL_POINTS_TOLERANCE = 15.0


def check_torch_view(ctx, out):
    """system/info's torch block is what torch answers in the same interpreter."""
    torch = ctx.torch
    view = ctx.engine("cpu").request("system/info").get("torch")
    out.expect(view is not None, "system/info has no torch block")
    if view is None:
        return
    out.measured["torch"] = view
    out.expect(
        view["version"] == torch.__version__,
        "version %r vs torch.__version__ %r" % (view["version"], torch.__version__),
    )
    out.expect(
        view["cudaBuild"] == torch.version.cuda,
        "cudaBuild %r vs torch.version.cuda %r" % (view["cudaBuild"], torch.version.cuda),
    )
    avail = torch.cuda.is_available()
    out.expect(
        view["cudaAvailable"] == avail,
        "cudaAvailable %r vs is_available() %r" % (view["cudaAvailable"], avail),
    )
    count = torch.cuda.device_count() if avail else 0
    out.expect(
        view["deviceCount"] == count,
        "deviceCount %r vs device_count() %r" % (view["deviceCount"], count),
    )
    if avail:
        names = [torch.cuda.get_device_name(i) for i in range(count)]
        out.expect(
            [d["name"] for d in view["devices"]] == names,
            "device names %r vs %r" % (view["devices"], names),
        )
    else:
        out.expect(
            bool(view.get("cudaUnavailableReason")),
            "no cudaUnavailableReason while CUDA is unavailable",
        )


def _smi(ctx):
    if ctx.smi is None:
        xml_text, ctx.smi = nvidia_smi_xml()
        ctx.save_artifact("nvidia-smi-q.xml", xml_text)
    return ctx.smi


def check_info_vs_smi(ctx, out):
    """Engine system/info (cuda engine, context held) vs `nvidia-smi -q -x` taken right after."""
    eng = ctx.engine("cuda")
    info = eng.request("system/info")
    smi = _smi(ctx)
    smi_now = nvidia_smi_xml()[1]
    out.measured.update(
        engineGpus=info["gpus"],
        nvidiaSmi={k: v for k, v in smi_now.items() if k != "gpus"},
        nvidiaSmiGpus=smi_now["gpus"],
    )
    out.expect(
        len(info["gpus"]) == len(smi_now["gpus"]) or bool(os.environ.get("CUDA_VISIBLE_DEVICES")),
        "engine sees %d GPUs, nvidia-smi %d" % (len(info["gpus"]), len(smi_now["gpus"])),
    )
    for g, s in zip(info["gpus"], smi_now["gpus"]):
        out.expect(
            g["name"] == s["name"],
            "GPU %d name %r vs nvidia-smi %r" % (g["index"], g["name"], s["name"]),
        )
        out.close(
            g["memoryTotalMiB"],
            s["memoryTotalMiB"],
            0.0,
            "GPU %d memory total MiB" % g["index"],
            abs_tol=TOTAL_MIB_TOLERANCE,
        )
        if g["index"] == 0:
            out.close(
                g["memoryUsedMiB"],
                s["memoryUsedMiB"],
                0.0,
                "GPU 0 memory used MiB",
                abs_tol=USED_MIB_TOLERANCE,
            )
        out.expect(
            g["driverVersion"] == smi["driverVersion"],
            "driverVersion %r vs nvidia-smi %r" % (g["driverVersion"], smi["driverVersion"]),
        )
    torch_view = info.get("torch") or {}
    build, driver_cuda = torch_view.get("cudaBuild"), smi["cudaVersion"]
    out.measured["cuda"] = {"torchBuild": build, "driverSupports": driver_cuda}
    out.expect(
        _ver(build) <= _ver(driver_cuda),
        "torch built for CUDA %s, driver supports %s" % (build, driver_cuda),
    )


def _ver(text):
    try:
        return tuple(int(p) for p in str(text).split(".")[:2])
    except ValueError:
        return (0,)


def check_info_vs_nvml(ctx, out):
    if ctx.nvml is None:
        raise Skip("pynvml (nvidia-ml-py) cannot be imported: NVML ground truth unavailable")
    eng = ctx.engine("cuda")
    info = eng.request("system/info")
    smi = _smi(ctx)
    nv = [ctx.nvml.device(i) for i in range(len(info["gpus"]))]
    out.measured["nvml"] = nv
    out.expect(
        ctx.nvml.driver_version() == smi["driverVersion"],
        "NVML driver %r vs nvidia-smi %r" % (ctx.nvml.driver_version(), smi["driverVersion"]),
    )
    out.expect(
        ctx.nvml.cuda_driver_version() == smi["cudaVersion"],
        "NVML CUDA %r vs nvidia-smi %r" % (ctx.nvml.cuda_driver_version(), smi["cudaVersion"]),
    )
    for g, n in zip(info["gpus"], nv):
        i = g["index"]
        out.expect(g["name"] == n["name"], "GPU %d name %r vs NVML %r" % (i, g["name"], n["name"]))
        out.expect(
            g["computeCapability"] == n["computeCapability"],
            "GPU %d compute capability %r vs NVML %r"
            % (i, g["computeCapability"], n["computeCapability"]),
        )
        out.close(
            g["memoryTotalMiB"],
            n["memoryTotalMiB"],
            0.0,
            "GPU %d memory total MiB vs NVML" % i,
            abs_tol=TOTAL_MIB_TOLERANCE,
        )
        if g["utilizationPct"] is None:
            out.expect(
                False,
                "GPU %d utilizationPct is null (torch.cuda.utilization needs pynvml in the "
                "engine's interpreter)" % i,
            )
        else:
            out.close(
                g["utilizationPct"],
                n["utilizationPct"],
                0.0,
                "GPU %d utilization %% vs NVML" % i,
                abs_tol=UTIL_POINTS_TOLERANCE,
            )
    # system/info must not create CUDA contexts on devices the engine does not use.
    for i, n in enumerate(nv[1:], 1):
        pids = [p["pid"] for p in n["processes"]]
        out.expect(
            eng.pid not in pids, "the engine holds a context on GPU %d after system/info" % i
        )


def check_sampler_cli(ctx, out):
    """The TypeScript side (nvidia-smi query + parser) through `model-lens system --json`."""
    node = shutil.which("node")
    cli = os.path.join(ctx.repo, "dist", "cli.js")
    if node is None or not os.path.exists(cli):
        raise Skip(
            "Node.js or dist/cli.js missing: the TypeScript parser is not exercised here "
            "(carry dist/ and a node binary to run it)"
        )
    r = subprocess.run(
        [
            node,
            os.path.join(ctx.repo, "bin", "model-lens.js"),
            "system",
            "--json",
            "--python",
            ctx.python,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out.expect(
        r.returncode == 0, "model-lens system exited %d: %s" % (r.returncode, r.stderr[-300:])
    )
    import json

    doc = json.loads(r.stdout)
    smi = nvidia_smi_xml()[1]
    nv = (
        [ctx.nvml.device(i) for i in range(len(smi["gpus"]))]
        if ctx.nvml
        else [None] * len(smi["gpus"])
    )
    out.measured["cli"] = doc
    out.expect(
        len(doc["gpus"]) == len(smi["gpus"]),
        "CLI lists %d GPUs, nvidia-smi %d" % (len(doc["gpus"]), len(smi["gpus"])),
    )
    for g, s, n in zip(doc["gpus"], smi["gpus"], nv):
        out.expect(g["name"] == s["name"], "CLI name %r vs %r" % (g["name"], s["name"]))
        out.close(
            g["memoryTotalMiB"],
            s["memoryTotalMiB"],
            0.0,
            "CLI memory total",
            abs_tol=TOTAL_MIB_TOLERANCE,
        )
        out.close(
            g["memoryUsedMiB"],
            s["memoryUsedMiB"],
            0.0,
            "CLI memory used",
            abs_tol=USED_MIB_TOLERANCE,
        )
        out.expect(
            g["driverVersion"] == smi["driverVersion"],
            "CLI driver %r vs %r" % (g["driverVersion"], smi["driverVersion"]),
        )
        if n is not None:
            out.expect(
                g["computeCapability"] == n["computeCapability"],
                "CLI compute capability %r vs NVML %r"
                % (g["computeCapability"], n["computeCapability"]),
            )
    out.expect(
        doc.get("torch", {}).get("cudaAvailable") is True,
        "CLI's torch view says CUDA unavailable: %r" % doc.get("torch"),
    )
    out.expect(
        doc.get("warnings") == [], "CLI warns on a working machine: %r" % doc.get("warnings")
    )


def check_sampler_stream(ctx, out):
    """The sampler's `-lms` stream ran in the background during the other checks."""
    s = ctx.stream
    if s is None or s.thread is None:
        raise Skip("the stream was not started: %s" % (s.error if s else "no nvidia-smi"))
    s.join(s.seconds + 30)
    rows = s.rows()
    out.measured.update(
        args=s.args, seconds=s.wall_s, lines=len(s.lines), rows=len(rows), cpuSeconds=s.cpu_s
    )
    out.expect(s.error is None, "stream failed: %s" % s.error)
    n_gpus = len(_smi(ctx)["gpus"])
    ticks = len(rows) / max(n_gpus, 1)
    expected = s.seconds * 1000 / s.interval_ms
    out.measured["ticks"] = ticks
    # nvidia-smi may print its first tick at once and lose the last to the stop.
    out.close(
        ticks, expected, 0.1, "ticks in %d s at %d ms" % (s.seconds, s.interval_ms), abs_tol=2
    )
    out.expect(
        len(rows) == len(s.lines),
        "%d of %d lines do not parse into the %d sampler fields: %r"
        % (
            len(s.lines) - len(rows),
            len(s.lines),
            len(s.fields),
            [text for _, text in s.lines[:3]],
        ),
    )
    for _, r in rows[:n_gpus]:
        for f in ("name", "memory.total", "compute_cap", "driver_version"):
            out.expect(not r.get(f, "").startswith("["), "field %s is %r" % (f, r.get(f)))
    if s.cpu_s is not None and s.wall_s:
        pct = s.cpu_s / s.wall_s * 100
        out.measured["cpuPctOfOneCore"] = pct
        out.expect(pct < 2.0, "nvidia-smi stream uses %.2f%% of a core" % pct)
    used = [
        float(r["memory.used"])
        for _, r in rows
        if r.get("index") == "0" and r["memory.used"].isdigit()
    ]
    if used:
        out.measured["gpu0UsedMiB"] = {"min": min(used), "max": max(used)}


SECTION_1 = [
    Check(
        "1.1", "system", "system/info torch view = torch's own answers", check_torch_view, cost_s=10
    ),
    Check(
        "1.2",
        "system",
        "system/info GPUs vs nvidia-smi -q -x (name, memory, driver, CUDA)",
        check_info_vs_smi,
        gpu=True,
        cost_s=15,
    ),
    Check(
        "1.3",
        "system",
        "system/info GPUs vs NVML (compute capability, utilization, no stray contexts)",
        check_info_vs_nvml,
        gpu=True,
        cost_s=5,
    ),
    Check(
        "1.4",
        "system",
        "model-lens system --json (TypeScript parser) vs nvidia-smi / NVML",
        check_sampler_cli,
        gpu=True,
        cost_s=15,
    ),
]
SECTION_1_END = [
    Check(
        "1.5",
        "system",
        "sampler -lms stream over the run: ticks, fields, CPU cost",
        check_sampler_stream,
        gpu=True,
        cost_s=35,
    ),
]
