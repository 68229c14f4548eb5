"""Section 2: GPU memory three ways -- the engine's allocator figures, system/info's device
memory (nvidia-smi's count, which includes what the driver reserves; torch's mem_get_info does
not) and NVML's per-process figure -- around a forward, a backward and mid-run under Adam."""

from .checks_system import CONTEXT_MIB_MAX, USED_MIB_TOLERANCE
from .report import Check, Skip
from .truth import MIB, nvidia_smi_xml

# Memory-check model: 4 × Linear(4096, 4096) = 256 MiB of parameters.
MEM_WIDTH, MEM_LAYERS, MEM_BATCH = 4096, 4, 1024
ALLOCATOR_SLACK_MIB = 64.0


def engine_process_mib(ctx, eng, device=0):
    """NVML's per-process memory of the engine: by pid, or -- inside a container whose pids NVML
    does not share -- the one compute process that was not there before the script started."""
    procs = ctx.nvml.device(device)["processes"]
    for p in procs:
        if p["pid"] == eng.pid:
            return p["usedMiB"], "pid"
    new = [p for p in procs if p["pid"] not in ctx.baseline_pids]
    if len(new) == 1:
        return new[0][
            "usedMiB"
        ], "only new process (NVML pid %d, engine pid %d: another pid namespace)" % (
            new[0]["pid"],
            eng.pid,
        )
    return None, "not found among %r" % [p["pid"] for p in procs]


def check_memory_three_ways(ctx, out):
    """Allocator figures (engine) vs system/info's device memory vs NVML, around a forward and a
    backward on a model of known size."""
    if ctx.nvml is None:
        raise Skip("pynvml (nvidia-ml-py) cannot be imported: no per-process ground truth")
    eng = ctx.engine("cuda")
    path = ctx.work.mlp_model(MEM_WIDTH, MEM_LAYERS, MEM_BATCH)
    params_mib = MEM_LAYERS * (MEM_WIDTH * MEM_WIDTH + MEM_WIDTH) * 4 / MIB
    input_mib = MEM_BATCH * MEM_WIDTH * 4 / MIB
    loaded = eng.request("model/load", {"file": path})
    mid = loaded["modelId"]
    phases = {}

    def snap(name):
        info = eng.request("system/info")
        dev = info["torch"]["devices"][0]
        nv_proc, matched = engine_process_mib(ctx, eng)
        dev_nv = ctx.nvml.device(0)
        smi = nvidia_smi_xml()[1]["gpus"][0]
        smi_proc = next((p["usedMiB"] for p in smi["processes"] if p["pid"] == eng.pid), None)
        if smi_proc is None and matched != "pid":
            smi_proc = next(
                (p["usedMiB"] for p in smi["processes"] if p["pid"] not in ctx.baseline_pids), None
            )
        phases[name] = {
            "allocatedMiB": dev["allocatedBytes"] / MIB,
            "reservedMiB": dev["reservedBytes"] / MIB,
            "engineUsedMiB(system/info)": info["gpus"][0]["memoryUsedMiB"],
            "nvmlProcessMiB": nv_proc,
            "engineProcessMatchedBy": matched,
            "nvidiaSmiProcessMiB": smi_proc,
            "nvmlDeviceUsedMiB": dev_nv["memoryUsedMiB"],
            "allProcesses": dev_nv["processes"],
        }
        return phases[name]

    after_load = snap("afterLoad")
    eng.request("model/forward", {"modelId": mid, "steps": 1})
    after_fwd = snap("afterForward")
    eng.request("model/forward", {"modelId": mid, "steps": 1, "backward": True})
    after_step = snap("afterTrainingStep")
    out.measured.update(phases=phases, paramsMiB=params_mib, inputMiB=input_mib)
    for name, p in phases.items():
        out.expect(
            p["allocatedMiB"] >= params_mib,
            "%s: allocated %.1f MiB < the parameters' %.1f MiB"
            % (name, p["allocatedMiB"], params_mib),
        )
        out.expect(p["reservedMiB"] >= p["allocatedMiB"], "%s: reserved < allocated" % name)
        out.expect(
            p["nvmlProcessMiB"] is not None,
            "%s: NVML lists no memory for the engine (pid %d)" % (name, eng.pid),
        )
        if p["nvmlProcessMiB"] is not None:
            ctx_mib = p["nvmlProcessMiB"] - p["reservedMiB"]
            out.expect(
                0 <= ctx_mib <= CONTEXT_MIB_MAX,
                "%s: NVML per-process %.0f MiB − reserved %.0f MiB = %.0f MiB outside [0, %d]"
                % (name, p["nvmlProcessMiB"], p["reservedMiB"], ctx_mib, CONTEXT_MIB_MAX),
            )
            if p["nvidiaSmiProcessMiB"] is not None:
                out.close(
                    p["nvidiaSmiProcessMiB"],
                    p["nvmlProcessMiB"],
                    0.0,
                    "%s: nvidia-smi vs NVML per-process" % name,
                    abs_tol=2,
                )
        if p["engineUsedMiB(system/info)"] is not None:
            out.close(
                p["engineUsedMiB(system/info)"],
                p["nvmlDeviceUsedMiB"],
                0.0,
                "%s: system/info used vs NVML device used" % name,
                abs_tol=USED_MIB_TOLERANCE,
            )
        else:
            out.expect(
                False, "%s: system/info has no memoryUsedMiB for the device the engine uses" % name
            )
    out.close(
        after_load["allocatedMiB"],
        params_mib + input_mib,
        0.0,
        "after load: allocated vs parameters + input",
        abs_tol=ALLOCATOR_SLACK_MIB,
    )
    # The engine frees gradients after its training step: back to parameters + input.
    out.close(
        after_step["allocatedMiB"],
        after_load["allocatedMiB"],
        0.0,
        "after the step: allocated back to the loaded size",
        abs_tol=ALLOCATOR_SLACK_MIB,
    )
    out.expect(
        after_fwd["reservedMiB"] >= after_load["reservedMiB"], "reserved shrank after a forward"
    )


def check_memory_in_training(ctx, out):
    """Mid-run, a model trained with Adam holds weights + gradients + two moments: the engine's
    allocator figures must show it, and NVML must see it in the engine's process."""
    if ctx.nvml is None:
        raise Skip("pynvml (nvidia-ml-py) cannot be imported: no per-process ground truth")
    # The engine that has not touched CUDA yet (the script picks its device itself), so nothing
    # it held before the run can be freed during it.
    eng = ctx.engine("cpu")
    before = eng.request("system/info")["torch"]["devices"][0]
    nv_before, matched = engine_process_mib(ctx, eng)
    path = ctx.work.adam_train(MEM_WIDTH, MEM_LAYERS, MEM_BATCH, 10**7, "cuda")
    params_mib = MEM_LAYERS * (MEM_WIDTH * MEM_WIDTH + MEM_WIDTH) * 4 / MIB
    run_id = eng.start_run(path, [])
    try:
        eng.wait_for(lambda: any(p["step"] >= 5 for p in eng.progress(run_id)), 60)
        dev = eng.request("system/info")["torch"]["devices"][0]
        nv_during, matched = engine_process_mib(ctx, eng)
    finally:
        eng.request("train/stop", {"runId": run_id})
    grown = (dev["allocatedBytes"] - before["allocatedBytes"]) / MIB
    out.measured.update(
        paramsMiB=params_mib,
        allocatedGrowthMiB=grown,
        reservedMiB=dev["reservedBytes"] / MIB,
        nvmlProcessMiB={"before": nv_before, "during": nv_during, "matchedBy": matched},
    )
    # Weights, gradients, exp_avg, exp_avg_sq: 4× the parameters, plus activations of one batch.
    activations_mib = MEM_LAYERS * MEM_BATCH * MEM_WIDTH * 4 / MIB
    out.expect(
        4 * params_mib - ALLOCATOR_SLACK_MIB
        <= grown
        <= 4 * params_mib + 2 * activations_mib + ALLOCATOR_SLACK_MIB,
        "allocated grew %.0f MiB during Adam training of %.0f MiB of parameters "
        "(expected about 4×)" % (grown, params_mib),
    )
    out.expect(dev["reservedBytes"] >= dev["allocatedBytes"], "reserved < allocated during the run")
    if nv_during is not None:
        out.expect(
            nv_during - dev["reservedBytes"] / MIB <= CONTEXT_MIB_MAX
            and nv_during >= dev["reservedBytes"] / MIB,
            "NVML per-process %.0f MiB vs reserved %.0f MiB"
            % (nv_during, dev["reservedBytes"] / MIB),
        )


SECTION_2 = [
    Check(
        "2.1",
        "memory",
        "allocated/reserved vs system/info (nvidia-smi) vs NVML per-process, load/forward/step",
        check_memory_three_ways,
        gpu=True,
        cost_s=20,
    ),
    Check(
        "2.2",
        "memory",
        "mid-run Adam training: allocated ≈ 4× parameters; NVML per-process ≥ reserved",
        check_memory_in_training,
        gpu=True,
        cost_s=20,
    ),
]
