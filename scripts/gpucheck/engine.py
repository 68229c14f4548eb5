"""The PyTorch engine driven as the editor drives it, over JSON-RPC on its stdio (no Node needed):
python/tests/engine_process.py's client, initialised with a backend."""

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))

from tests.engine_process import EngineProcess, RpcError  # noqa: E402

TERMINAL = ("done", "stopped", "failed")
# One request may not eat the whole budget: a hung engine fails its check and the run goes on.
REQUEST_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120


class Engine(EngineProcess):
    def __init__(self, cwd, backend, threads):
        # The engine gets the threads torch uses in this process, so that the engine and the
        # reference it is compared with run alike (oversubscribed OpenMP threads on a shared box
        # make every small op wait for a descheduled thread).
        super().__init__(
            cwd=cwd, initialize=False, env={"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        )
        self.backend = backend
        self.info = self.request(
            "engine/initialize",
            {
                "protocolVersion": "1.0",
                "clientName": "gpu-check",
                "clientVersion": "0",
                "trusted": True,
                "cwd": cwd,
                "backend": backend,
            },
        )

    def request(self, method, params=None, timeout=REQUEST_TIMEOUT_S):
        return super().request(method, params, timeout)

    @property
    def pid(self):
        return self.proc.pid

    def progress(self, run_id):
        return [p for p in self.notes("train/progress") if p["runId"] == run_id]

    def wait_for(self, what, timeout=RUN_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = what()
            if v:
                return v
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "the engine exited (%s); stderr: %s"
                    % (self.proc.returncode, "".join(self.stderr[-10:]))
                )
            time.sleep(0.02)
        raise RuntimeError(
            "timed out after %d s; engine stderr: %s" % (timeout, "".join(self.stderr[-10:]))
        )

    def start_run(self, file, args, histogram_every=0):
        # Histograms at every N-th step however fast the steps are, so a short run has some.
        return self.request(
            "train/start",
            {
                "file": file,
                "args": [str(a) for a in args],
                "histogramEverySteps": histogram_every,
                "histogramMinIntervalMs": 0,
            },
        )["runId"]

    def train(self, file, args, histogram_every=0, timeout=RUN_TIMEOUT_S):
        """Runs a script to its end; (runId, last progress, diagnosis)."""
        run_id = self.start_run(file, args, histogram_every)
        end = self.wait_for(
            lambda: next((p for p in self.progress(run_id) if p["state"] in TERMINAL), None),
            timeout,
        )
        return run_id, end, self.request("train/diagnose", {"runId": run_id})


__all__ = ["Engine", "RpcError", "REPO", "TERMINAL"]
