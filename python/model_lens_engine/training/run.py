"""A training run's lifecycle: start, the script as `__main__`, stop, outcome, and the
notifications (train/progress, train/diagnosis, train/histograms) it sends.

The script runs on the engine's main thread, in the caller's working directory with its own
folder as sys.path[0], as `python script.py` would run it (signal.signal works, relative paths
mean what the user expects). Requests are served on another thread meanwhile (server.py's
`_run_on_main`), and progress is sent from a third."""

import ctypes
import gc
import os
import runpy
import sys
import threading
import time

import torch

from ..errors import EngineFault, UserScope, bad_request, location, not_found, user_fault
from ..output import UserOutput
from ..protocol import (
    BAD_REQUEST,
    DEFAULT_HISTOGRAM_EVERY_STEPS,
    DEFAULT_HISTOGRAM_MIN_INTERVAL_MS,
    HOOK_EVENT,
    TRAIN_DIAGNOSIS,
    TRAIN_HISTOGRAMS,
    TRAIN_PROGRESS,
    TRAIN_PROGRESS_INTERVAL_MS,
    TRAIN_STOP_TIMEOUT_MS,
)
from . import terminal
from .counters import Counters
from .diagnosis import diagnose
from .histograms import histogram_message
from .instrument import Instrumentation
from .progress import EpochTracker, LossQueue, RateWindow, starting_message

PROGRESS_INTERVAL_MS = TRAIN_PROGRESS_INTERVAL_MS
# A train/diagnosis snapshot is also sent this often during a run.
DIAGNOSIS_INTERVAL_MS = 5000
# How often train/stop re-raises the stop exception in the script's thread (a bare `except:` in
# user code may swallow one), and how long it waits before reporting that the run did not stop.
STOP_RETRY_MS = 50
STOP_GIVE_UP_S = TRAIN_STOP_TIMEOUT_MS / 1000.0
# A stop first waits this long for the end of an optimizer step, where the gradients of that
# step still exist (after backward, before the next zero_grad) for the final snapshot; then it
# lands wherever the script is.
STOP_AT_STEP_WAIT_MS = 500
# train/histograms: DEFAULT_HISTOGRAM_EVERY_STEPS (0 disables) and DEFAULT_HISTOGRAM_MIN_INTERVAL_MS
# come from the protocol (on a tiny model 100 steps pass in milliseconds, and a snapshot costs more
# than a step).

_perf = time.perf_counter


class StopRun(BaseException):
    """Raised in the script's thread by train/stop. A BaseException, so `except Exception` in user
    code does not swallow it."""


class TrainingRun:
    def __init__(
        self,
        server,
        file,
        args,
        run_id,
        histogram_every=DEFAULT_HISTOGRAM_EVERY_STEPS,
        histogram_min_interval_ms=DEFAULT_HISTOGRAM_MIN_INTERVAL_MS,
    ):
        self.server = server
        self.conn = server.conn
        self.file = os.path.abspath(file)
        self.folder = os.path.dirname(self.file)
        self.args = [str(a) for a in args]
        self.run_id = run_id
        self.scope = UserScope(self.folder)
        self.histogram_every = histogram_every
        self.histogram_min_interval_s = histogram_min_interval_ms / 1000.0
        self._hist_sent_step = None
        self._hist_sent_at = None
        self.rpc_thread = None  # the thread serving requests while the script runs
        self.lock = threading.Lock()
        self.state = "starting"
        self.error = None
        self.finished = threading.Event()
        self.ended = False
        self.thread = None
        self.tid = None
        self.in_user_code = False
        self.stop_requested = False
        self.stop_anywhere = False  # set once a stop has waited for a step end long enough
        self._stopped_at_step = False
        self.warnings = []
        self._warned = set()
        self._sent_warnings = 0
        self.counters = Counters()
        self.epochs = EpochTracker(self.counters)
        self.losses = LossQueue()
        self.rates = RateWindow()
        self.inst = Instrumentation(self)
        self._orig_notify = None
        self._saved = None

    @property
    def lm(self):
        """The trained model (a LoadedModel) once the script has called it, else None."""
        return self.inst.lm

    # ---- lifecycle -------------------------------------------------------------------------

    def active(self):
        # False from the moment the final notifications go out: a client reacting to the final
        # train/progress must find the model free.
        return not self.ended

    def start(self, respond_first):
        """Runs the script on a thread of its own, for a caller whose main thread has other work
        (a distributed rank waits there for stop signals): respond_first() runs first."""

        def body():
            respond_first()
            self.main(None)

        self.thread = threading.Thread(target=body, name="model-lens-run", daemon=True)
        self.thread.start()

    def main(self, request_thread):
        """Runs the script on the calling thread: the main thread (server.main_job), while
        `request_thread` serves requests. Returns when the run has ended."""
        self.tid = threading.get_ident()
        self.rpc_thread = request_thread
        self.conn.notify("train/progress", starting_message(self.run_id))
        outcome = None
        try:
            try:
                self._setup()
                self._progress_thread = threading.Thread(
                    target=self.ticker, name="model-lens-progress", daemon=True
                )
                self._progress_thread.start()
                outcome = self._run_script()
            except BaseException as e:  # noqa: B902 - a stop landing in setup
                outcome = outcome or self._classify(e)
        except StopRun:
            outcome = outcome or ("stopped", None)
        while True:  # no stop exception may land in the cleanup below
            try:
                with self.lock:
                    self.in_user_code = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.tid), None)
                break
            except StopRun:
                continue
        self._finish(*outcome)

    def _finish(self, state, error):
        try:
            self._teardown()
        except Exception as e:  # an engine bug must not leave the run hanging
            self._log_failure("cleanup", e)
        if self.stop_requested and state == "failed" and error and error.get("kind") != "userExit":
            state, error = "stopped", None
        if self.counters.steps == 0 and not self.inst.optimizers:
            self.warn(
                "The script never called an optimizer's step(): no steps were counted, so "
                "there is no rate or ETA."
            )
        elif self.counters.steps == 0:
            self.warn(
                "The script created an optimizer but never called its step(): no steps "
                "were counted."
            )
        if (
            self.histogram_every
            and self.counters.steps
            and self._hist_sent_step != self.counters.steps
        ):
            try:
                # Stopped elsewhere than a step end, the gradients may already be zeroed for the
                # next step: the final snapshot then has the weights only.
                self.send_histograms(grads=state != "stopped" or self._stopped_at_step)
            except Exception as e:
                self._log_failure("histograms", e)
        with self.lock:
            self.state = state
            self.error = error
        self.ended = True
        try:
            self.conn.notify(TRAIN_DIAGNOSIS, self.diagnosis())
        except Exception as e:
            self._log_failure("diagnosis", e)
        try:
            self.send_progress(final=True)
        except Exception as e:
            self._log_failure("progress", e)
            self.conn.notify(
                TRAIN_PROGRESS,
                dict(starting_message(self.run_id), state=state, step=self.counters.steps),
            )
        finally:
            self.finished.set()

    def _log_failure(self, what, e):
        self.server.log("error", "Training %s failed: %s: %s" % (what, type(e).__name__, e))

    def _run_script(self):
        with self.lock:
            self.state = "running"
            self.in_user_code = True
        self.counters.t_script = _perf()
        try:
            runpy.run_path(
                self.file, init_globals={"range": self.epochs.range}, run_name="__main__"
            )
            return "done", None
        except BaseException as e:  # noqa: B902
            try:
                return self._classify(e)
            finally:
                e.__traceback__ = None  # frames hold DataLoader iterators (and their workers)
                del e

    def stop(self):
        self.stop_requested = True
        if self.finished.wait(STOP_AT_STEP_WAIT_MS / 1000.0):
            return True
        self.stop_anywhere = True
        deadline = time.monotonic() + STOP_GIVE_UP_S
        while not self.finished.wait(STOP_RETRY_MS / 1000.0):
            with self.lock:
                if self.in_user_code and self.tid is not None:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(self.tid), ctypes.py_object(StopRun)
                    )
            if time.monotonic() > deadline:
                break
        return self.finished.is_set()

    def check_stop(self):
        if self.stop_requested and self.in_user_code:
            raise StopRun()

    def stop_at_step(self):
        """A stop at the end of an optimizer step: the snapshot that goes with it is taken now,
        while this step's gradients exist."""
        if not self.in_user_code:
            return
        self._stopped_at_step = True
        if self.histogram_every and self._hist_sent_step != self.counters.steps:
            try:
                self.send_histograms()
            except Exception as e:
                self._log_failure("histograms", e)
        raise StopRun()

    # ---- outcome ---------------------------------------------------------------------------

    def _classify(self, e):
        base = os.path.basename(self.file)
        if isinstance(e, (StopRun, KeyboardInterrupt)):
            return "stopped", None
        stack = self.scope.user_frames_of_tb(e.__traceback__)
        loc = stack[-1] if stack else None
        at = (" at %s:%d" % (os.path.basename(loc["file"]), loc["line"])) if loc else ""
        if isinstance(e, SystemExit):
            if e.code is None or e.code == 0:
                return "done", None
            err = {
                "kind": "userExit",
                "message": "The script called sys.exit(%r)%s." % (e.code, at),
            }
            if loc:
                err["location"] = loc
                err["userStack"] = stack
            return "failed", err
        if isinstance(e, SyntaxError) and not stack:
            loc = location(e.filename or self.file, e.lineno or 1, None, e.offset)
            return "failed", {
                "kind": "syntaxError",
                "message": "%s: %s (%s:%s)" % (type(e).__name__, e.msg, base, e.lineno),
                "location": loc,
                "userStack": [loc],
            }
        fault = None
        if self.lm is not None:
            try:
                from ..loader import classify_forward_error
                from ..tree import canonical_paths

                fault = classify_forward_error(
                    e, self.lm, canonical_paths(self.lm.module), "training"
                )
            except Exception:
                fault = None
        if fault is None:
            from ..loader import _user_exception

            fault = _user_exception(e, self.scope, "running %s" % base)
        err = dict(fault.data)
        err["message"] = fault.message
        return "failed", err

    # ---- setup / teardown ------------------------------------------------------------------

    def _setup(self):
        from ..loader import _purge_user_modules

        _purge_user_modules(self.folder)
        # As `python script.py` would: the caller's working directory stays, the script's folder
        # is sys.path[0].
        self._saved = (os.getcwd(), list(sys.argv), sys.stdout, sys.stderr)
        sys.argv = [self.file] + self.args
        sys.path.insert(0, self.folder)
        # Where the CLI shows the output in a terminal, the script writes to one (a pty).
        if terminal.wanted():
            sys.stdout = terminal.PtyOutput(
                self.conn, "stdout", self.run_id, self._saved[2], self.rpc_thread
            )
            sys.stderr = terminal.PtyOutput(
                self.conn, "stderr", self.run_id, self._saved[3], self.rpc_thread, share=sys.stdout
            )
        else:
            sys.stdout = UserOutput(
                self.conn, "stdout", self.run_id, self._saved[2], self.rpc_thread
            )
            sys.stderr = UserOutput(
                self.conn, "stderr", self.run_id, self._saved[3], self.rpc_thread
            )
        hooks = self.server.hooks
        if hooks is not None:
            self._orig_notify = hooks._notify
            run = self

            def notify(method, params):
                if method == HOOK_EVENT:
                    params["step"] = run.counters.steps + 1
                run._orig_notify(method, params)

            hooks._notify = notify
        self.inst.install(self.tid)

    def _teardown(self):
        self.inst.uninstall()
        # DataLoader workers end with their iterator; frames of a failed or stopped script may
        # still hold one, so shut them down explicitly.
        for it in list(self.inst.mp_iters):
            try:
                it._shutdown_workers()
            except Exception:
                pass
        gc.collect()
        cwd, argv, out, err = self._saved
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        ours = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = out, err
        for s in ours:
            if isinstance(s, terminal.PtyOutput):
                s.close_pty()
        sys.argv = argv
        try:
            sys.path.remove(self.folder)
        except ValueError:
            pass
        try:
            os.chdir(cwd)
        except OSError:
            pass
        if self._orig_notify is not None and self.server.hooks is not None:
            if self.server.hooks.count():
                self.server.hooks.flush()
            self.server.hooks._notify = self._orig_notify

    # ---- called by the instrumentation -------------------------------------------------

    def adopt_model(self, lm):
        """The script's first forward of the model it trains: make it the engine's model."""
        srv = self.server
        if srv.lm is not None and srv.hooks is not None:
            srv.hooks.detach(all_hooks=True)
        srv.model_counter += 1
        lm.model_id = "m%d" % srv.model_counter
        srv.lm = lm

    def warn(self, text):
        with self.lock:
            if text not in self._warned:
                self._warned.add(text)
                self.warnings.append(text)

    def maybe_send_histograms(self, now):
        if (
            self._hist_sent_at is not None
            and now - self._hist_sent_at < self.histogram_min_interval_s
        ):
            return
        self._hist_sent_at = now
        try:
            self.send_histograms()
        except Exception as e:  # a histogram bug must not end the user's run
            self._log_failure("histograms", e)

    def send_histograms(self, grads=True):
        lm = self.lm
        if lm is None:
            return
        self._hist_sent_step = self.counters.steps
        self.inst.sync_depth += 1  # the engine's own reads are not the user's sync points
        try:
            msg = histogram_message(lm.module, self.run_id, self.counters.steps, grads)
        finally:
            self.inst.sync_depth -= 1
        self.conn.notify(TRAIN_HISTOGRAMS, msg)

    def send_diagnosis(self):
        try:
            self.conn.notify(TRAIN_DIAGNOSIS, self.diagnosis())
        except Exception:
            pass

    # ---- progress --------------------------------------------------------------------------

    def ticker(self):
        interval = PROGRESS_INTERVAL_MS / 1000.0
        next_diag = time.monotonic() + DIAGNOSIS_INTERVAL_MS / 1000.0
        while not self.finished.wait(interval):
            if self.state != "running" or not self.in_user_code:
                if self.state in ("done", "stopped", "failed"):
                    return
                continue
            try:
                self.send_progress()
                if time.monotonic() >= next_diag:
                    next_diag = time.monotonic() + DIAGNOSIS_INTERVAL_MS / 1000.0
                    self.conn.notify(TRAIN_DIAGNOSIS, self.diagnosis())
            except Exception as e:  # a progress bug must not end the run
                self._log_failure("progress", e)

    def send_progress(self, final=False):
        with self.lock:
            state = self.state
            error = self.error
            new_warn = self.warnings[self._sent_warnings :]
            self._sent_warnings = len(self.warnings)
        loss = self.losses.points(self.warn, final)
        with self.lock:  # a NaN warning from these very points goes out with them
            new_warn = new_warn + self.warnings[self._sent_warnings :]
            self._sent_warnings = len(self.warnings)
        c = self.counters
        steps = c.steps
        rate = self.rates.rate(c, final)
        epoch, total_epochs, total_steps = self.epochs.epochs()
        if final and state == "done" and total_epochs is not None:
            epoch = total_epochs
        eta = None
        if total_steps and rate and not final:
            eta = max(0.0, (total_steps - steps) / rate)
        p = {
            "runId": self.run_id,
            "state": state,
            "step": steps,
            "epoch": epoch,
            "totalSteps": total_steps,
            "totalEpochs": total_epochs,
            "stepsPerSec": rate,
            "etaSec": 0.0 if final and state == "done" and total_steps else eta,
            "loss": loss,
        }
        inst = self.inst
        opt = inst.last_opt
        if opt is not None:
            try:
                p["lr"] = float(opt.param_groups[0]["lr"])
            except Exception:
                p["lr"] = None
        if inst.training is not None:
            # The flag model.train()/eval() last set; grad mode as the last timed forward saw it.
            p["training"] = (
                bool(self.lm.module.training) if self.lm is not None else bool(inst.training)
            )
            p["gradEnabled"] = bool(inst.grad_enabled)
        if self.lm is not None:
            p["modelId"] = self.lm.model_id
        if error:
            p["error"] = error
        if new_warn:
            p["warnings"] = new_warn
        self.conn.notify(TRAIN_PROGRESS, p)

    def diagnosis(self):
        dev = self.inst.model_device
        if dev is None:
            dev = torch.device(self.server.device or "cpu")
        return diagnose(self.counters, self.run_id, str(dev), _perf())


def start_run(server, params):
    """train/start: checks the request, starts the run, answers {"runId"}."""
    file = params.get("file")
    if not isinstance(file, str) or not file:
        raise bad_request("train/start needs `file`")
    if params.get("epochs") is not None:
        raise bad_request(
            "train/start `epochs` applies to a TF.js train export; a PyTorch "
            "script reads its own arguments (`args`)",
            got=params.get("epochs"),
        )
    args = params.get("args") or []
    if not isinstance(args, list):
        raise bad_request("train/start `args` must be a list of strings")
    every = params.get("histogramEverySteps", DEFAULT_HISTOGRAM_EVERY_STEPS)
    if every is None:
        every = DEFAULT_HISTOGRAM_EVERY_STEPS
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise bad_request(
            "train/start `histogramEverySteps` must be a whole number >= 0 (0 "
            "disables), got %r" % (every,),
            got=every,
        )
    min_interval = params.get("histogramMinIntervalMs", DEFAULT_HISTOGRAM_MIN_INTERVAL_MS)
    if min_interval is None:
        min_interval = DEFAULT_HISTOGRAM_MIN_INTERVAL_MS
    if (
        isinstance(min_interval, bool)
        or not isinstance(min_interval, (int, float))
        or min_interval < 0
    ):
        raise bad_request(
            "train/start `histogramMinIntervalMs` must be a number >= 0, got %r" % (min_interval,),
            got=min_interval,
        )
    path = os.path.abspath(file)
    if not os.path.isfile(path):
        raise user_fault("fileNotFound", "No such file: %s" % path, got=path)
    run = getattr(server, "run", None)
    if run is not None and run.active():
        raise EngineFault(
            BAD_REQUEST,
            "badRequest",
            "Run %s is still going; stop it (train/stop) before starting another." % run.run_id,
            got=run.run_id,
        )
    server.run_counter = getattr(server, "run_counter", 0) + 1
    run = TrainingRun(server, path, args, "r%d" % server.run_counter, every, min_interval)
    server.run = run
    # The script starts on the main thread once this response has gone out.
    server.main_job = run.main
    return {"runId": run.run_id}


def find_run(server, params):
    """The run train/stop and train/diagnose name (the latest one)."""
    rid = params.get("runId")
    run = getattr(server, "run", None)
    if run is None or (rid is not None and rid != run.run_id):
        raise not_found(
            "notLoaded",
            "No training run %r%s" % (rid, (" (the latest is %s)" % run.run_id) if run else ""),
            got=rid,
        )
    return run
