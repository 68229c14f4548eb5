"""system/info: CPU from /proc/cpuinfo, GPUs through torch.cuda, memory of this process, and
torch's own view of CUDA (version, CUDA build, is_available, devices) -- the first thing to check
when "my GPU is not used"."""

import os
import platform
import re
import subprocess
import warnings

from .protocol_types import TorchDevice, TorchInfo

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


def _try(fn, default=None, *args):
    try:
        return fn(*args)
    except Exception:
        return default


def _float(v):
    return float(v) if v is not None else None


def _driver_version():
    """The NVIDIA kernel driver's version as nvidia-smi prints it, from the driver's own /proc file
    (torch has no call for it): "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15 ..."."""
    text = _read("/proc/driver/nvidia/version") or ""
    m = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def _context_device():
    """The device whose CUDA context this process already holds, else None. Asking another device
    for its free memory (mem_get_info) would create a context there: hundreds of MiB on every GPU
    of the machine, for a status poll."""
    import torch

    if not _try(torch.cuda.is_initialized, False):
        return None
    return _try(torch.cuda.current_device)


# nvidia-smi answers a one-shot query in well under a second; past this it is hung.
NVIDIA_SMI_TIMEOUT_S = 5


def nvidia_smi_memory():
    """{uuid without "GPU-": (total MiB, used MiB)} from nvidia-smi, or {} without it. The GPU's
    memory as nvidia-smi and NVML count it: torch's total_memory leaves out what the driver
    reserves (616 MiB of an H200's 143,771), so its figure never matches what users compare."""
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=uuid,memory.total,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            found[parts[0].replace("GPU-", "", 1)] = (float(parts[1]), float(parts[2]))
        except ValueError:
            continue  # [N/A] or [Not Supported]: leave this GPU to torch's figures
    return found


def gpu_info():
    import torch

    if not _try(torch.cuda.is_available, False):
        return []
    current = _context_device()
    driver = _driver_version()
    smi = nvidia_smi_memory()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        mem = _try(torch.cuda.mem_get_info, None, i) if i == current else None
        uuid = getattr(props, "uuid", None)
        temperature = getattr(torch.cuda, "temperature", None)
        # Matched by UUID: CUDA_VISIBLE_DEVICES renumbers torch's devices, not nvidia-smi's.
        total_used = smi.get(str(uuid)) if uuid is not None else None
        out.append(
            {
                "index": i,
                "name": props.name,
                "uuid": str(uuid) if uuid is not None else None,
                "memoryTotalMiB": total_used[0] if total_used else props.total_memory / MIB,
                "memoryUsedMiB": total_used[1]
                if total_used
                else ((mem[1] - mem[0]) / MIB if mem else None),
                # Both go through pynvml when the user has it; None otherwise.
                "utilizationPct": _float(_try(torch.cuda.utilization, None, i)),
                "temperatureC": _float(_try(temperature, None, i)) if temperature else None,
                "computeCapability": "%d.%d" % (props.major, props.minor),
                "driverVersion": driver,
                "cudaVersion": torch.version.cuda,
            }
        )
    return out


def _cuda_unavailable_reason(torch, cuda_build, hip_build, caught):
    if cuda_build is None and hip_build is None:
        return "a CPU-only build (torch.version.cuda is None) cannot use a GPU, whatever the driver"
    # torch says why in a warning ("CUDA initialization: The NVIDIA driver on your system is too
    # old ...", "Found no NVIDIA driver on your system"); pass its words on.
    for w in caught:
        text = str(w.message).strip()
        if text:
            return text.splitlines()[0]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return "torch.cuda.is_available() is False with CUDA_VISIBLE_DEVICES=%r" % visible
    return "torch.cuda.is_available() is False: no NVIDIA driver or device that this torch can use"


def torch_info() -> "TorchInfo":
    """torch's own view, as `python -c "import torch; print(torch.cuda.is_available())"` gives it.
    Reads allocator figures only: it never initialises CUDA itself."""
    import torch

    cuda_build = getattr(torch.version, "cuda", None)
    hip_build = getattr(torch.version, "hip", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(_try(torch.cuda.is_available, False))
    out: TorchInfo = {
        "version": torch.__version__,
        "cudaBuild": cuda_build,
        "cudaAvailable": available,
        "deviceCount": 0,
        "devices": [],
    }
    if hip_build:
        out["hipBuild"] = hip_build
    cudnn = getattr(torch.backends, "cudnn", None)
    if cuda_build and cudnn is not None:
        out["cudnnVersion"] = _try(cudnn.version)
    if not available:
        reason = _cuda_unavailable_reason(torch, cuda_build, hip_build, caught)
        out["cudaUnavailableReason"] = reason
        return out
    count = _try(torch.cuda.device_count, 0)
    out["deviceCount"] = count
    initialised = bool(_try(torch.cuda.is_initialized, False))
    out["cudaInitialized"] = initialised
    for i in range(count):
        props = _try(torch.cuda.get_device_properties, None, i)
        known = props is not None
        device: TorchDevice = {
            "index": i,
            "name": props.name if known else _try(torch.cuda.get_device_name, None, i),
            "totalBytes": props.total_memory if known else None,
            "computeCapability": "%d.%d" % (props.major, props.minor) if known else None,
            "allocatedBytes": 0,
            "reservedBytes": 0,
        }
        # Before CUDA is initialised the allocator holds nothing, and asking creates no context.
        if initialised:
            device["allocatedBytes"] = _try(torch.cuda.memory_allocated, 0, i)
            device["reservedBytes"] = _try(torch.cuda.memory_reserved, 0, i)
        out["devices"].append(device)
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
    out = {"cpu": _try(cpu_info), "gpus": _try(gpu_info, []), "memory": memory_info()}
    torch_view = _try(torch_info)
    if torch_view is not None:
        out["torch"] = torch_view
    return out
