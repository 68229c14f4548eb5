"""Ground truth measured independently of Model Lens: `nvidia-smi -q -x` (the driver's own report),
NVML through pynvml/nvidia-ml-py when importable, and the nvidia-smi `-lms` stream run with the
GPU sampler's exact arguments (read from src/system, so they cannot drift)."""

import os
import re
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

NVIDIA_SMI_TIMEOUT_S = 30
MIB = 1024 * 1024


def nvidia_smi_path():
    return shutil.which("nvidia-smi")


def nvidia_smi_xml():
    """(raw XML text, parsed dict) from `nvidia-smi -q -x`; raises with nvidia-smi's words."""
    exe = nvidia_smi_path()
    if exe is None:
        raise RuntimeError("nvidia-smi is not on PATH")
    r = subprocess.run(
        [exe, "-q", "-x"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S
    )
    if r.returncode != 0:
        raise RuntimeError(
            "nvidia-smi -q -x exited %d: %s" % (r.returncode, (r.stdout + r.stderr).strip()[:300])
        )
    return r.stdout, parse_nvidia_smi_xml(r.stdout)


def _mib(text):
    """'143771 MiB' → 143771.0; 'N/A' → None."""
    m = re.match(r"\s*([\d.]+)\s*MiB", text or "")
    return float(m.group(1)) if m else None


def _pct(text):
    m = re.match(r"\s*([\d.]+)\s*%", text or "")
    return float(m.group(1)) if m else None


def _text(node, path):
    el = node.find(path)
    return el.text.strip() if el is not None and el.text else None


def parse_nvidia_smi_xml(text):
    root = ET.fromstring(text)
    gpus = []
    for i, g in enumerate(root.findall("gpu")):
        procs = []
        for p in g.findall("processes/process_info"):
            pid = _text(p, "pid")
            procs.append(
                {
                    "pid": int(pid) if pid and pid.isdigit() else None,
                    "name": _text(p, "process_name"),
                    "usedMiB": _mib(_text(p, "used_memory")),
                }
            )
        gpus.append(
            {
                "index": i,
                "busId": g.get("id"),
                "name": _text(g, "product_name"),
                "uuid": _text(g, "uuid"),
                "memoryTotalMiB": _mib(_text(g, "fb_memory_usage/total")),
                "memoryReservedMiB": _mib(_text(g, "fb_memory_usage/reserved")),
                "memoryUsedMiB": _mib(_text(g, "fb_memory_usage/used")),
                "utilizationPct": _pct(_text(g, "utilization/gpu_util")),
                "migMode": _text(g, "mig_mode/current_mig"),
                "processes": procs,
            }
        )
    return {
        "driverVersion": _text(root, "driver_version"),
        "cudaVersion": _text(root, "cuda_version"),
        "attachedGpus": int(_text(root, "attached_gpus") or 0),
        "gpus": gpus,
    }


class Nvml:
    """NVML through pynvml (the nvidia-ml-py package), or None where it cannot be imported."""

    def __init__(self):
        import pynvml

        self.m = pynvml
        pynvml.nvmlInit()

    @staticmethod
    def open():
        try:
            return Nvml()
        except Exception:
            return None

    def _s(self, v):
        return v.decode() if isinstance(v, bytes) else v

    def device(self, i):
        m = self.m
        h = m.nvmlDeviceGetHandleByIndex(i)
        mem = m.nvmlDeviceGetMemoryInfo(h)
        util = m.nvmlDeviceGetUtilizationRates(h)
        major, minor = m.nvmlDeviceGetCudaComputeCapability(h)
        procs = []
        for p in m.nvmlDeviceGetComputeRunningProcesses(h):
            used = getattr(p, "usedGpuMemory", None)
            procs.append({"pid": p.pid, "usedMiB": used / MIB if isinstance(used, int) else None})
        return {
            "name": self._s(m.nvmlDeviceGetName(h)),
            "uuid": self._s(m.nvmlDeviceGetUUID(h)),
            "memoryTotalMiB": mem.total / MIB,
            "memoryUsedMiB": mem.used / MIB,
            "utilizationPct": float(util.gpu),
            "computeCapability": "%d.%d" % (major, minor),
            "processes": procs,
        }

    def driver_version(self):
        return self._s(self.m.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self):
        v = self.m.nvmlSystemGetCudaDriverVersion()
        return "%d.%d" % (v // 1000, (v % 1000) // 10)


def sampler_args(repo):
    """The GPU sampler's `--query-gpu` fields and interval, read from its TypeScript source."""
    with open(os.path.join(repo, "src", "system", "nvidiaSmiParse.ts"), encoding="utf-8") as f:
        src = f.read()
    m = re.search(r"GPU_QUERY_FIELDS = \[(.*?)\] as const", src, re.S)
    fields = re.findall(r"'([^']+)'", m.group(1))
    fmt = re.search(r"CSV_FORMAT_ARG = '([^']+)'", src).group(1)
    with open(os.path.join(repo, "src", "system", "gpuSampler.ts"), encoding="utf-8") as f:
        sampler = f.read()
    interval = re.search(r"GPU_SAMPLE_INTERVAL_MS\s*=\s*([\d_]+)", sampler)
    interval_ms = int(interval.group(1).replace("_", "")) if interval else 1000
    return fields, fmt, interval_ms


def _proc_cpu_s(pid):
    """utime + stime of a live process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SamplerStream:
    """The sampler's long-lived `nvidia-smi --query-gpu=... -lms N`, run in the background for
    `seconds` while the other checks load the GPU; records every line and the child's CPU time."""

    def __init__(self, repo, seconds):
        self.fields, self.fmt, self.interval_ms = sampler_args(repo)
        self.seconds = seconds
        self.lines = []
        self.error = None
        self.cpu_s = None
        self.wall_s = None
        self.thread = None

    def start(self):
        exe = nvidia_smi_path()
        if exe is None:
            self.error = "nvidia-smi is not on PATH"
            return self
        args = [
            exe,
            "--query-gpu=" + ",".join(self.fields),
            self.fmt,
            "-lms",
            str(self.interval_ms),
        ]
        self.args = args
        self.thread = threading.Thread(target=self._run, args=(args,), daemon=True)
        self.thread.start()
        return self

    def _run(self, args):
        try:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            stop = threading.Timer(self.seconds, lambda: self._stop(proc))
            stop.start()
            with proc.stdout:
                for line in proc.stdout:
                    self.lines.append((time.monotonic() - t0, line.rstrip("\n")))
            proc.wait()
            stop.cancel()
            self.wall_s = time.monotonic() - t0
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)

    def _stop(self, proc):
        try:
            self.cpu_s = _proc_cpu_s(proc.pid)
        except OSError:
            pass
        proc.terminate()

    def join(self, timeout):
        if self.thread is not None:
            self.thread.join(timeout)
        return self

    def rows(self):
        out = []
        for t, line in self.lines:
            cells = [c.strip() for c in line.split(", ")]
            if len(cells) == len(self.fields):
                out.append((t, dict(zip(self.fields, cells))))
        return out
