"""One rank of a distributed training run: the program torch.distributed.run starts per rank.

    python -m torch.distributed.run [launcher options] -m model_lens_engine.distributed.rank \\
        train.py [script args]

The launcher sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT as for any script; the engine
that started the launcher adds MODEL_LENS_AGGREGATOR (host:port) and MODEL_LENS_RUN_ID. This rank
runs the script unchanged as `__main__` with the training run's instrumentation (steps, loss,
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
import time

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
    """What a TrainingRun needs of the engine's Server: a connection, a log, no hooks."""

    def __init__(self, conn):
        self.conn = conn
        self.hooks = None
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


def _stats(run, timer):
    d = run.diagnosis()
    return {
        "steps": run.counters.steps,
        "stepMs": d.get("stepMs"),
        "breakdown": d.get("breakdown"),
        "collectives": timer.snapshot(),
    }


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write("usage: python -m model_lens_engine.distributed.rank FILE [ARGS...]\n")
        return 2
    file, args = os.path.abspath(argv[0]), argv[1:]
    rank = _int_env("RANK", 0)
    where = os.environ.get(ENV_AGGREGATOR)
    if not where:
        sys.stderr.write("model_lens_engine.distributed.rank: %s is not set; start the run with "
                         "`model-lens run --nproc-per-node N`\n" % ENV_AGGREGATOR)
        return 2
    _die_with_parent()
    host, _, port = where.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw = Connection(sock.makefile("rb"), sock.makefile("wb"))
    raw.start()
    conn = RankConnection(raw, rank)
    conn.notify("rank/hello", {
        "pid": os.getpid(), "host": socket.gethostname(), "localRank": _int_env("LOCAL_RANK"),
        "worldSize": _int_env("WORLD_SIZE"), "groupRank": _int_env("GROUP_RANK"),
        "localWorldSize": _int_env("LOCAL_WORLD_SIZE"),
    })

    import torch  # noqa: F401  (after hello: the aggregator knows the rank while torch loads)
    from ..training.run import TrainingRun

    histograms = _int_env(ENV_HISTOGRAMS, 0) if rank == 0 else 0
    run = TrainingRun(RankServer(conn), file, args, os.environ.get(ENV_RUN_ID, "r1"),
                      histogram_every=histograms)
    timer = CollectiveTimer(run.scope, lambda: run.counters.steps)
    stop = threading.Event()
    orphaned = threading.Event()
    wake = threading.Event()  # a stop asked for, or the run ended

    def on_signal(signum, frame):
        stop.set()
        wake.set()

    def listen():
        while True:
            kind, msg = raw.incoming.get()
            if kind == "eof":
                orphaned.set()
                stop.set()
                wake.set()
                return
            if kind == "message" and isinstance(msg, dict) and msg.get("method") == "rank/stop":
                stop.set()
                wake.set()

    def watch_end():
        run.finished.wait()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=listen, name="model-lens-rank-listen", daemon=True).start()
    timer.install()
    stopper = None
    deadline = None
    try:
        run.start(lambda: None)
        threading.Thread(target=watch_end, name="model-lens-rank-end", daemon=True).start()
        while not run.finished.is_set():
            # The main thread wakes for the stop signal handlers too (they run between waits).
            wake.wait(REPORT_INTERVAL_S if stopper is None else 0.05)
            wake.clear()
            if run.finished.is_set():
                break
            if stop.is_set() and stopper is None:
                stopper = threading.Thread(target=run.stop, name="model-lens-rank-stop", daemon=True)
                stopper.start()
                deadline = time.monotonic() + ORPHAN_GRACE_S
            if stopper is not None:
                if orphaned.is_set() and time.monotonic() > deadline:
                    os._exit(1)
            elif run.state == "running":
                try:
                    conn.notify("rank/stats", _stats(run, timer))
                except Exception as e:  # a reporting bug must not end the user's run
                    conn.notify("log", {"level": "error", "message": "rank stats: %s" % e})
    finally:
        timer.uninstall()
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
