"""system/info: CPU from /proc/cpuinfo, GPUs through torch.cuda, memory of this process."""

import os
import platform

MIB = 1024 * 1024


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_info():
    text = _read("/proc/cpuinfo") or ""
    model = None
    mhz = None
    cores = set()
    phys = core = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        value = value.strip()
        if key in ("model name", "Model", "Processor") and model is None and value:
            model = value
        elif key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not line.strip():
            if core is not None:
                cores.add((phys, core))
            phys = core = None
    if core is not None:
        cores.add((phys, core))
    logical = os.cpu_count() or 1
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        max_mhz = float(max_khz) / 1000.0 if max_khz else None
    except ValueError:
        max_mhz = None
    try:
        load = min(100.0, os.getloadavg()[0] / logical * 100.0)
    except OSError:
        load = None
    return {
        "model": model or platform.processor() or "unknown",
        "arch": platform.machine(),
        "physicalCores": len(cores) or logical,
        "logicalCores": logical,
        "speedMHz": mhz,
        "speedMaxMHz": max_mhz,
        "loadPct": load,
    }


def _try(fn, default=None):
    try:
        return fn()
    except Exception:
        return default


def gpu_info():
    import torch

    if not _try(torch.cuda.is_available, False):
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        mem = _try(lambda: torch.cuda.mem_get_info(i))
        uuid = getattr(props, "uuid", None)
        out.append({
            "index": i,
            "name": props.name,
            "uuid": str(uuid) if uuid is not None else None,
            "memoryTotalMiB": props.total_memory / MIB,
            "memoryUsedMiB": (mem[1] - mem[0]) / MIB if mem else None,
            "utilizationPct": _try(lambda: float(torch.cuda.utilization(i))),
            "temperatureC": _try(lambda: float(torch.cuda.temperature(i))) if hasattr(torch.cuda, "temperature") else None,
            "computeCapability": "%d.%d" % (props.major, props.minor),
            "driverVersion": None,
            "cudaVersion": torch.version.cuda,
        })
    return out


def memory_info():
    statm = _read("/proc/self/statm")
    rss = 0
    if statm:
        try:
            rss = int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, IndexError, OSError):
            rss = 0
    out = {"rssBytes": rss}
    try:
        import torch
    except Exception:
        return out
    # The allocator figures mean something only once CUDA is initialised; without CUDA several of
    # these calls raise on torch 1.13.
    if _try(torch.cuda.is_available, False) and _try(torch.cuda.is_initialized, False):
        a = _try(torch.cuda.memory_allocated)
        r = _try(torch.cuda.memory_reserved)
        m = _try(torch.cuda.max_memory_allocated)
        if a is not None:
            out["torchAllocatedBytes"] = a
        if r is not None:
            out["torchReservedBytes"] = r
        if m is not None:
            out["torchMaxAllocatedBytes"] = m
    return out


def system_info():
    return {"cpu": _try(cpu_info), "gpus": _try(gpu_info, []), "memory": memory_info()}
