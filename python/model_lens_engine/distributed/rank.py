"""One rank of a distributed training run: the program torch.distributed.run starts per rank.

    python -m torch.distributed.run [launcher options] -m model_lens_engine.distributed.rank \\
        train.py [script args]

The launcher sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT as for any script; the engine
that started the launcher adds MODEL_LENS_AGGREGATOR (host:port) and MODEL_LENS_RUN_ID. This rank
runs the script unchanged as `__main__` on its main thread, as `python train.py` would, with the
training run's instrumentation (steps, loss,
phases, syncs) plus the collective timer, and sends what it sees to the aggregator as the same
notifications a single-process run sends (train/progress, train/diagnosis, output), each with
its `rank`, plus `rank/hello` once and `rank/stats` every REPORT_INTERVAL_S.

The aggregator's connection is this rank's lifeline: `rank/stop` from it stops the script at
its next Python instruction, and its loss (the engine went away) stops the rank and then ends the
process. SIGTERM (the launcher tearing the group down after another rank failed) stops the
script the same way, so every rank still reports how it ended.
"""

import ctypes
import os
import signal
import socket
import sys
import threading

from ..rpc import Connection
from .collectives import CollectiveTimer

REPORT_INTERVAL_S = 1.0
# After the aggregator is gone, how long the script gets to stop before the process ends anyway.
ORPHAN_GRACE_S = 5.0
CONNECT_TIMEOUT_S = 30.0
ENV_AGGREGATOR = "MODEL_LENS_AGGREGATOR"
ENV_RUN_ID = "MODEL_LENS_RUN_ID"
ENV_HISTOGRAMS = "MODEL_LENS_HISTOGRAM_EVERY_STEPS"
_PR_SET_PDEATHSIG = 1


class RankConnection:
    """Notifications to the aggregator, each tagged with this rank."""

    def __init__(self, conn, rank):
        self.conn = conn
        self.rank = rank

    def notify(self, method, params):
        params = dict(params)
        params["rank"] = self.rank
        self.conn.notify(method, params)


class RankServer:
    """What a TrainingRun needs of the engine's Server: a connection, a log, the hooks (their
    events go to the aggregator with this rank)."""

    def __init__(self, conn):
        from ..hooks import HookManager

        self.conn = conn
        self.hooks = HookManager(conn.notify)
        self.lm = None
        self.model_counter = 0
        self.device = "cpu"
        self.current_id = None

    def log(self, level, message):
        self.conn.notify("log", {"level": level, "message": message})


def _die_with_parent():
    """The launcher killed outright (SIGKILL) cannot stop its workers, which torch 2.x starts in
    sessions of their own: the kernel ends this process when its parent goes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent went before the call
            os._exit(1)
    except Exception:
        pass


def _int_env(name, default=None):
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


def _gpu_memory():
    """This rank's CUDA device and its memory, once the script has used CUDA. `index` is the
    device as nvidia-smi numbers it: CUDA_VISIBLE_DEVICES remaps what torch calls cuda:0."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    dev = torch.cuda.current_device()
    out = {
        "device": "cuda:%d" % dev,
        "allocatedBytes": torch.cuda.memory_allocated(dev),
        "peakBytes": torch.cuda.max_memory_allocated(dev),
    }
    out.update(smi_identity(dev, os.environ.get("CUDA_VISIBLE_DEVICES")))
    return out


def smi_identity(dev, visible_env):
    """nvidia-smi's name for torch's cuda:`dev`: {index} or, where CUDA_VISIBLE_DEVICES lists
    UUIDs (GPU-..., MIG-...), {uuid}."""
    if visible_env is None:
        return {"index": dev}
    visible = [v.strip() for v in visible_env.split(",") if v.strip()]
    if dev >= len(visible):
        return {}
    return {"index": int(visible[dev])} if visible[dev].isdigit() else {"uuid": visible[dev]}


def hook_request(run, method, params):
    """rank/hookAttach {requestId, path, kind, intervalMs?, histogramBins?} on the model this
    rank trains, or rank/hookDetach {requestId, hookId?, all?}: the reply's `hookId`, `detached`
    or `error` {message, kind}."""
    from ..errors import EngineFault

    reply = {"requestId": params.get("requestId")}
    hooks = run.server.hooks
    try:
        if method == "rank/hookDetach":
            reply["detached"], _ = hooks.detach(params.get("hookId"), bool(params.get("all")))
            return reply
        lm = run.lm
        if lm is None:
            reply["error"] = {
                "kind": "notLoaded",
                "message": "this rank has not called its model yet",
            }
            return reply
        reply["hookId"] = hooks.attach(
            lm,
            params.get("path"),
            params.get("kind"),
            params.get("intervalMs"),
            params.get("histogramBins"),
        )
    except EngineFault as e:
        reply["error"] = {"kind": e.data.get("kind", "badRequest"), "message": e.message}
    except Exception as e:  # a module path the model does not have, a bad kind
        reply["error"] = {"kind": "badRequest", "message": "%s: %s" % (type(e).__name__, e)}
    return reply


def _stats(run, timer):
    d = run.diagnosis()
    out = {
        "steps": run.counters.steps,
        "stepMs": d.get("stepMs"),
        "breakdown": d.get("breakdown"),
        "collectives": timer.snapshot(),
    }
    gpu = _gpu_memory()
    if gpu is not None:
        out["gpu"] = gpu
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write("usage: python -m model_lens_engine.distributed.rank FILE [ARGS...]\n")
        return 2
    file, args = os.path.abspath(argv[0]), argv[1:]
    rank = _int_env("RANK", 0)
    where = os.environ.get(ENV_AGGREGATOR)
    if not where:
        sys.stderr.write(
            "model_lens_engine.distributed.rank: %s is not set; start the run with "
            "`model-lens run --nproc-per-node N`\n" % ENV_AGGREGATOR
        )
        return 2
    _die_with_parent()
    host, _, port = where.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw = Connection(sock.makefile("rb"), sock.makefile("wb"))
    raw.start()
    conn = RankConnection(raw, rank)
    conn.notify(
        "rank/hello",
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "localRank": _int_env("LOCAL_RANK"),
            "worldSize": _int_env("WORLD_SIZE"),
            "groupRank": _int_env("GROUP_RANK"),
            "localWorldSize": _int_env("LOCAL_WORLD_SIZE"),
        },
    )

    import torch  # noqa: F401  (after hello: the aggregator knows the rank while torch loads)

    from ..training.run import TrainingRun

    histograms = _int_env(ENV_HISTOGRAMS, 0) if rank == 0 else 0
    run = TrainingRun(
        RankServer(conn), file, args, os.environ.get(ENV_RUN_ID, "r1"), histogram_every=histograms
    )
    timer = CollectiveTimer(run.scope, lambda: run.counters.steps)
    stop = threading.Event()
    orphaned = threading.Event()

    def on_signal(signum, frame):
        # Runs on the main thread inside the script; the reporter thread does the stopping.
        stop.set()

    def listen():
        while True:
            kind, msg = raw.incoming.get()
            if kind == "eof":
                orphaned.set()
                stop.set()
                return
            if kind != "message" or not isinstance(msg, dict):
                continue
            method, params = msg.get("method"), msg.get("params") or {}
            if method == "rank/stop":
                stop.set()
            elif method in ("rank/hookAttach", "rank/hookDetach"):
                conn.notify("rank/hookReply", hook_request(run, method, params))

    def report():
        """Sends rank/stats every REPORT_INTERVAL_S; stops the run when asked; ends the process
        when the engine is gone and the script does not stop."""
        while not stop.wait(REPORT_INTERVAL_S):
            if run.state == "running":
                try:
                    conn.notify("rank/stats", _stats(run, timer))
                except Exception as e:  # a reporting bug must not end the user's run
                    conn.notify("log", {"level": "error", "message": "rank stats: %s" % e})
        if run.finished.is_set():
            return
        run.stop()
        if orphaned.is_set() and not run.finished.wait(ORPHAN_GRACE_S):
            os._exit(1)

    # The script may install its own handlers (it runs as `python train.py` would); until it
    # does, the launcher's SIGTERM stops the run cleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=listen, name="model-lens-rank-listen", daemon=True).start()
    reporter = threading.Thread(target=report, name="model-lens-rank-report", daemon=True)
    reporter.start()
    timer.install()
    try:
        # The script on this (the main) thread; the reporter stands in for the request thread
        # (what it prints goes to the real stderr, not into the run's output).
        run.main(reporter.ident)
    finally:
        timer.uninstall()
        stop.set()
    conn.notify("rank/stats", _stats(run, timer))
    conn.notify("rank/end", {"state": run.state})
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    # A failed rank exits non-zero so the launcher stops the others.
    return 1 if run.state == "failed" else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads the script left behind (a DataLoader's pin thread, gloo's) must not keep a
    # finished rank alive.
    os._exit(code)
