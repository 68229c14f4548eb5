"""train/start with `distributed`: the user's script run on every rank by torch.distributed.run.

The engine starts the launcher (the module behind `torchrun`) with `-m
model_lens_engine.distributed.rank` as the program of every rank, listens on a local TCP port for
the ranks' reports (rank.py), and folds them into one run (aggregate.py): its train/progress,
train/diagnosis and output notifications are those of a single-process run plus the rank fields.

Processes: the launcher runs in the engine's process group, so the client's group kill reaches
it; torch 2.x starts each rank in a session of its own, so ranks also die with the launcher
(PR_SET_PDEATHSIG) and with this engine (their report connection closes). train/stop asks every
rank to stop at its next Python instruction, then SIGTERMs the launcher (which SIGTERMs its ranks),
then kills what is left, launcher and ranks by pid.
"""

import collections
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ..errors import (
    INTERNAL,
    INVALID_PARAMS,
    USER_ERROR,
    EngineFault,
    UserScope,
    bad_request,
    not_found,
    user_fault,
)
from ..rpc import Connection
from ..training.run import DEFAULT_HISTOGRAM_EVERY_STEPS
from .aggregate import JobView
from .rank import ENV_AGGREGATOR, ENV_HISTOGRAMS, ENV_RUN_ID

PROGRESS_INTERVAL_S = 0.25
DIAGNOSIS_INTERVAL_S = 5.0
# train/stop: how long ranks get to stop on their own before the launcher is sent SIGTERM, and
# how long the whole job gets before everything left is killed.
STOP_GRACE_S = 3.0
STOP_GIVE_UP_S = 20.0
# After the launcher exits, how long the ranks' last reports may take to arrive.
DRAIN_S = 3.0
LAUNCHER_TAIL_LINES = 40
# hook/attach and hook/detach wait this long for the ranks' replies.
HOOK_REPLY_TIMEOUT_S = 10.0
# After every rank ended, how long the launcher gets to exit by itself before SIGTERM.
LAUNCHER_EXIT_S = 10.0
LISTEN_BACKLOG = 128
MAX_NPROC_PER_NODE = 256
_RENDEZVOUS_OPTIONS = {
    "--standalone",
    "--nnodes",
    "--rdzv-backend",
    "--rdzv_backend",
    "--rdzv-endpoint",
    "--rdzv_endpoint",
    "--rdzv-id",
    "--rdzv_id",
    "--rdzv-conf",
    "--rdzv_conf",
    "--master-addr",
    "--master_addr",
    "--master-port",
    "--master_port",
    "--node-rank",
    "--node_rank",
}
_ENGINE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def launcher_args(spec):
    """torch.distributed.run options from train/start's `distributed`: {nprocPerNode?: int,
    launcherArgs?: string[]} (launcherArgs given as they would be typed after `torchrun`)."""
    if not isinstance(spec, dict):
        raise bad_request("train/start `distributed` must be an object", got=spec)
    out = []
    n = spec.get("nprocPerNode")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NPROC_PER_NODE:
            raise bad_request(
                "train/start `distributed.nprocPerNode` must be a whole number from 1 to %d, got %r"
                % (MAX_NPROC_PER_NODE, n),
                got=n,
            )
        out += ["--nproc_per_node", str(n)]
    extra = spec.get("launcherArgs") or []
    if isinstance(extra, str):
        extra = shlex.split(extra)
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise bad_request(
            "train/start `distributed.launcherArgs` must be a list of strings", got=extra
        )
    for a in extra:
        if a.split("=")[0] in _RENDEZVOUS_OPTIONS:
            break
    else:
        # One node and no rendezvous named: a free port on 127.0.0.1 for the job's store, so two
        # jobs on one machine do not both take the default 29500. (Not --standalone: torch 1.x
        # gives every standalone job the same port, 29400.)
        out += ["--master_port", str(_free_port())]
    for a in extra:
        if a in ("-m", "--module", "--no-python", "--no_python", "--run-path", "--run_path"):
            raise bad_request(
                "train/start `distributed.launcherArgs`: %s is set by Model Lens (each rank runs "
                "the script under its instrumentation)" % a,
                got=a,
            )
    return out + extra


def _needs_redirect_workaround(launch):
    """torch 1.13's launcher cannot parse its own default `--redirects 0` / `--tee 0` on Python
    3.11 (an IntFlag there no longer lists its zero member, so Std.from_str("0") is None and the
    launch fails in to_map). Redirecting stdout to its log and teeing it back is parsed fine; the
    script's own output reaches the engine through the ranks' reports either way."""
    if any(a.split("=")[0] in ("--redirects", "--tee", "-r", "-t") for a in launch):
        return False
    try:
        from torch.distributed.elastic.multiprocessing.api import Std

        return Std.from_str("0") is None
    except Exception:
        return False


class DistributedJob:
    def __init__(self, server, file, args, run_id, launch, histogram_every=0):
        self.server = server
        self.conn = server.conn
        self.file = file
        self.args = [str(a) for a in args]
        self.run_id = run_id
        self.launch = launch
        self.histogram_every = histogram_every
        self.scope = UserScope(os.path.dirname(file))
        self.lm = None  # the engine holds no model: each rank has its own
        self.view = JobView()
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.ended = False
        self.stop_requested = False
        self.proc = None
        self.rank_conns = {}
        self.readers = []
        self.tail = collections.deque(maxlen=LAUNCHER_TAIL_LINES)
        self._dirty = True
        self._listener = None
        self.log_dir = None
        # Hooks: the job's hook id -> {rank: that rank's hook id}, and back.
        self.hooks = {}
        self._hook_of = {}
        self._hook_counter = 0
        self._replies = {}
        self._request_counter = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def command(self, port):
        cmd = [sys.executable, "-m", "torch.distributed.run"] + self.launch
        if _needs_redirect_workaround(self.launch):
            self.log_dir = tempfile.mkdtemp(prefix="model-lens-torchrun-")
            cmd += ["--redirects", "1", "--tee", "1", "--log_dir", self.log_dir]
        cmd += ["-m", "model_lens_engine.distributed.rank", self.file] + self.args
        env = dict(os.environ)
        env[ENV_AGGREGATOR] = "127.0.0.1:%d" % port
        env[ENV_RUN_ID] = self.run_id
        env[ENV_HISTOGRAMS] = str(self.histogram_every)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ENGINE_PARENT, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return cmd, env

    def start(self, respond_first):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(LISTEN_BACKLOG)
        cmd, env = self.command(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="model-lens-job-accept", daemon=True).start()
        threading.Thread(
            target=self._main, args=(respond_first, cmd, env), name="model-lens-job", daemon=True
        ).start()

    def active(self):
        return not self.ended

    def _main(self, respond_first, cmd, env):
        respond_first()
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=os.path.dirname(self.file),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError as e:
            self._finish(1, launch_error="Could not start %s: %s" % (cmd[0], e))
            return
        threading.Thread(
            target=self._read_launcher, name="model-lens-job-launcher", daemon=True
        ).start()
        next_diag = time.monotonic() + DIAGNOSIS_INTERVAL_S
        rc = None
        while True:
            try:
                rc = self.proc.wait(PROGRESS_INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            with self.lock:
                ended = self.view.all_ended()
            if ended:
                # Every rank has reported its end: the run is over, whatever the launcher still
                # does to shut down (its rendezvous, its own exit), which can take seconds.
                break
            if self._dirty:
                self._dirty = False
                with self.lock:
                    self.conn.notify(
                        "train/progress", self.view.progress(self.run_id, self._state())
                    )
            if time.monotonic() >= next_diag:
                next_diag = time.monotonic() + DIAGNOSIS_INTERVAL_S
                with self.lock:
                    self.conn.notify("train/diagnosis", self.view.diagnosis(self.run_id))
        deadline = time.monotonic() + DRAIN_S
        for t in list(self.readers):
            t.join(max(0.0, deadline - time.monotonic()))
        if rc is None:
            threading.Thread(
                target=self._reap_launcher, name="model-lens-job-reap", daemon=True
            ).start()
        self._finish(rc)

    def _reap_launcher(self):
        """The launcher after its ranks ended: it exits by itself; if it hangs, it is ended."""
        try:
            self.proc.wait(LAUNCHER_EXIT_S)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(LAUNCHER_EXIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _state(self):
        states = [v.state for v in self.view.ranks.values()]
        return "running" if "running" in states else "starting"

    def _finish(self, rc, launch_error=None):
        self._kill_leftovers()
        try:
            self._listener.close()
        except OSError:
            pass
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        with self.lock:
            state, error = self._outcome(rc, launch_error)
            diag = self.view.diagnosis(self.run_id)
            progress = self.view.progress(self.run_id, state, error, self.view.warnings())
            self.ended = True
        try:
            self.conn.notify("train/diagnosis", diag)
        finally:
            self.conn.notify("train/progress", progress)
            self.finished.set()

    def _outcome(self, rc, launch_error):
        first = self.view.first_failure()
        if first is not None:
            err = dict(first.error)
            err["message"] = "rank %d: %s" % (first.rank, err.get("message", "failed"))
            err["rank"] = first.rank
            return "failed", err
        if self.stop_requested:
            return "stopped", None
        if launch_error is None and rc in (0, None) and self.view.ranks and self.view.all_ended():
            return "done", None
        tail = "\n".join(self.tail).strip()
        if launch_error is None:
            launch_error = "torch.distributed.run exited with code %s%s" % (
                rc,
                " before every rank reported its end" if rc == 0 else "",
            )
        msg = launch_error + ((".\nLast launcher output:\n" + tail) if tail else ".")
        return "failed", {"kind": "launcherFailed", "message": msg}

    def stop(self):
        self.stop_requested = True
        with self.lock:
            self.view.stop_requested()
            conns = list(self.rank_conns.values())
        for c in conns:
            c.notify("rank/stop", {})
        if self.finished.wait(STOP_GRACE_S):
            return True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
        if self.finished.wait(STOP_GIVE_UP_S - STOP_GRACE_S):
            return True
        self._kill_leftovers(launcher=True)
        return self.finished.wait(DRAIN_S + 1.0)

    def _kill_leftovers(self, launcher=False):
        """Kills ranks still running once the launcher is gone (or, with `launcher`, it too)."""
        proc = self.proc
        if launcher and proc is not None and proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass
        for v in list(self.view.ranks.values()):
            pid = v.hello.get("pid")
            if (
                isinstance(pid, int)
                and v.state not in ("done", "stopped", "failed")
                and _alive(pid)
            ):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    # ---- ranks' reports --------------------------------------------------------------------

    def _accept(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock.makefile("rb"), sock.makefile("wb"))
            conn.start()
            t = threading.Thread(
                target=self._read_rank, args=(conn, sock), name="model-lens-job-rank", daemon=True
            )
            self.readers.append(t)
            t.start()

    def _read_rank(self, conn, sock):
        try:
            while True:
                kind, msg = conn.incoming.get()
                if kind == "eof":
                    return
                if kind != "message" or not isinstance(msg, dict):
                    continue
                method, params = msg.get("method"), msg.get("params")
                if not isinstance(params, dict):
                    continue
                self._on_rank_message(conn, method, params)
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _on_rank_message(self, conn, method, params):
        if method == "output":
            out = {
                "stream": params.get("stream", "stdout"),
                "text": params.get("text", ""),
                "runId": self.run_id,
            }
            if isinstance(params.get("rank"), int):
                out["rank"] = params["rank"]
            self.conn.notify("output", out)
            return
        if method == "hook/event":
            hid = self._hook_of.get((params.get("rank"), params.get("hookId")))
            if hid is not None:  # the job's id for it; a hook detached meanwhile is dropped
                self.conn.notify(method, dict(params, hookId=hid))
            return
        if method == "rank/hookReply":
            waiting = self._replies.get(params.get("requestId"))
            if waiting is not None:
                waiting[1][params.get("rank")] = params
                if len(waiting[1]) >= waiting[2]:
                    waiting[0].set()
            return
        if method == "train/histograms":
            if params.get("rank") == 0:  # rank 0's weights stand for all: DDP keeps them equal
                self.conn.notify(method, dict(params, runId=self.run_id))
            return
        if method == "log":
            self.server.log(
                params.get("level", "info"),
                "rank %s: %s" % (params.get("rank"), params.get("message")),
            )
            return
        with self.lock:
            if method == "rank/hello" and isinstance(params.get("rank"), int):
                self.rank_conns[params["rank"]] = conn
                if self.stop_requested:
                    conn.notify("rank/stop", {})
            if self.view.on_message(method, params):
                self._dirty = True

    def _read_launcher(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            self.server.log("info", "torch.distributed.run: %s" % line)

    def diagnosis(self):
        with self.lock:
            return self.view.diagnosis(self.run_id)

    # ---- hooks -----------------------------------------------------------------------------

    def _ask(self, ranks, method, params):
        """Sends `method` to these ranks and returns {rank: reply}; raises when one does not
        answer within HOOK_REPLY_TIMEOUT_S."""
        with self.lock:
            self._request_counter += 1
            rid = self._request_counter
            conns = {r: self.rank_conns[r] for r in ranks}
        done = threading.Event()
        self._replies[rid] = (done, {}, len(conns))
        try:
            for c in conns.values():
                c.notify(method, dict(params, requestId=rid))
            if not done.wait(HOOK_REPLY_TIMEOUT_S):
                missing = sorted(set(conns) - set(self._replies[rid][1]))
                raise EngineFault(
                    INTERNAL,
                    "timeout",
                    "rank %s did not answer %s within %.0f s"
                    % (", ".join(map(str, missing)), method, HOOK_REPLY_TIMEOUT_S),
                )
            return dict(self._replies[rid][1])
        finally:
            del self._replies[rid]

    def _ranks_for(self, rank):
        with self.lock:
            known = sorted(self.rank_conns)
        if rank is None:
            if not known:
                raise not_found("notLoaded", "Run %s has no rank running yet" % self.run_id)
            return known
        if isinstance(rank, bool) or not isinstance(rank, int) or rank not in known:
            raise bad_request(
                "hook/attach `rank` must be one of this run's ranks (%s), got %r"
                % (", ".join(map(str, known)) or "none yet", rank),
                got=rank,
            )
        return [rank]

    def hook_attach(self, params):
        """hook/attach during a distributed run: on `rank`, or on every rank when omitted. One
        hook id for the job; each event carries the rank it came from. A rank that cannot attach
        fails the request (the others' hooks are removed again)."""
        ranks = self._ranks_for(params.get("rank"))
        ask = {k: params.get(k) for k in ("path", "kind", "intervalMs", "histogramBins")}
        replies = self._ask(ranks, "rank/hookAttach", ask)
        failed = [(r, rep) for r, rep in sorted(replies.items()) if rep.get("error")]
        attached = {r: rep["hookId"] for r, rep in replies.items() if not rep.get("error")}
        if failed:
            for r, hid in attached.items():
                self._ask([r], "rank/hookDetach", {"hookId": hid})
            r, rep = failed[0]
            err = rep["error"]
            raise EngineFault(
                INVALID_PARAMS if err.get("kind") == "badRequest" else USER_ERROR,
                err.get("kind", "badRequest"),
                "rank %d: %s" % (r, err.get("message")),
                got=params.get("path"),
            )
        with self.lock:
            self._hook_counter += 1
            hid = "d%d" % self._hook_counter
            self.hooks[hid] = attached
            for r, rank_hid in attached.items():
                self._hook_of[(r, rank_hid)] = hid
        return {"hookId": hid, "ranks": sorted(attached)}

    def owns_hook(self, params):
        return params.get("hookId") in self.hooks or (bool(params.get("all")) and self.active())

    def hook_detach(self, params):
        if params.get("all"):
            targets = {hid: dict(m) for hid, m in self.hooks.items()}
        else:
            targets = {params["hookId"]: dict(self.hooks[params["hookId"]])}
        for hid, per_rank in targets.items():
            for r, rank_hid in per_rank.items():
                if self.active() and r in self.rank_conns:  # ended ranks took their hooks along
                    self._ask([r], "rank/hookDetach", {"hookId": rank_hid})
            with self.lock:
                self.hooks.pop(hid, None)
                for r, rank_hid in per_rank.items():
                    self._hook_of.pop((r, rank_hid), None)
        return {"detached": len(targets), "remaining": len(self.hooks)}


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def start_distributed_run(server, params):
    """train/start with `distributed` (server.train_start routes it here)."""
    file = params.get("file")
    if not isinstance(file, str) or not file:
        raise bad_request("train/start needs `file`")
    args = params.get("args") or []
    if not isinstance(args, list):
        raise bad_request("train/start `args` must be a list of strings")
    every = params.get("histogramEverySteps")
    if every is None:
        every = DEFAULT_HISTOGRAM_EVERY_STEPS
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise bad_request(
            "train/start `histogramEverySteps` must be a whole number >= 0 (0 disables), got %r"
            % (every,),
            got=every,
        )
    path = os.path.abspath(file)
    if not os.path.isfile(path):
        raise user_fault("fileNotFound", "No such file: %s" % path, got=path)
    launch = launcher_args(params.get("distributed"))
    run = getattr(server, "run", None)
    if run is not None and run.active():
        raise EngineFault(
            USER_ERROR,
            "badRequest",
            "Run %s is still going; stop it (train/stop) before starting another." % run.run_id,
            got=run.run_id,
        )
    try:
        import torch.distributed  # noqa: F401
        import torch.distributed.run  # noqa: F401
    except ImportError as e:
        raise user_fault(
            "unsupported",
            "This torch has no torch.distributed.run (%s): distributed runs need a torch "
            "built with distributed support." % e,
        ) from None
    server.run_counter = getattr(server, "run_counter", 0) + 1
    run_id = "r%d" % server.run_counter
    job = DistributedJob(server, path, args, run_id, launch, every)
    server.run = job
    rid = server.current_id

    def respond_first():
        deadline = time.monotonic() + 5.0
        while server.current_id == rid and time.monotonic() < deadline:
            time.sleep(0.001)
        server.conn.notify(
            "train/progress",
            {
                "runId": run_id,
                "state": "starting",
                "step": 0,
                "epoch": None,
                "totalSteps": None,
                "totalEpochs": None,
                "stepsPerSec": None,
                "etaSec": None,
                "loss": [],
            },
        )

    job.start(respond_first)
    return {"runId": run_id}
