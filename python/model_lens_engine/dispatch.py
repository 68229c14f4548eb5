"""The engine process's transport and dispatch (the counterpart of src/engine/main.ts): owning
fds 0-2, the protocol loop, turning handler results and exceptions into responses, and ending
the process when the client is gone. Torch-free; the handlers live in server.py.

stdout belongs to the protocol. At start the real stdout is duplicated for frames and fd 1 is
pointed at stderr, so nothing user code prints (even from C) can corrupt a frame; Python-level
prints are forwarded as `output` notifications.
"""

import faulthandler
import io
import os
import queue
import signal
import sys
import threading
import time
import traceback

from . import protocol as P
from .errors import CANCELLED, INTERNAL, EngineFault, bad_request
from .output import UserOutput, flush_all
from .rpc import INVALID_REQUEST, METHOD_NOT_FOUND, Connection, FdStream
from .watchdog import Watchdog, hard_exit

# The client sends this to a request that overran its time: faulthandler prints every thread's
# Python stack to stderr, which says where user code loops (see EngineClient).
STACK_DUMP_SIGNAL = getattr(signal, "SIGUSR1", None)
# While a training script runs on the main thread, the request thread checks this often whether
# the script has ended.
MAIN_JOB_POLL_S = 0.05
# The client sets this (-P on Python >= 3.11) so the start folder is not on sys.path while the
# engine imports its own modules; it is dropped so scripts user code starts get a normal sys.path.
SAFE_PATH_ENV = "PYTHONSAFEPATH"


class Dispatcher:
    """The request loop. Subclasses fill `handlers` (method → callable(params)) and may refuse a
    request before it runs with `refusal(method, params)`."""

    def __init__(self, conn, watchdog=None):
        self.conn = conn
        self.watchdog = watchdog
        self.handlers = {}
        self.current_id = None
        self.running = True
        # A job a handler leaves for the main thread (a training script), run after its response.
        self.main_job = None

    def log(self, level, message):
        self.conn.notify(P.LOG, {"level": level, "message": message})

    def refusal(self, method, params):
        """(code, message, data) to answer instead of running the handler, or None."""
        return None

    def serve(self):
        while self.running:
            kind, msg = self.conn.incoming.get()
            if not self._dispatch(kind, msg):
                break
            # The request thread may have accepted the next run while this one was ending.
            while self.main_job is not None and self.running:
                job, self.main_job = self.main_job, None
                self._run_on_main(job)
        self._stop_output()

    def _dispatch(self, kind, msg):
        """Handles one incoming item; False at the end of the input stream."""
        if kind == "eof":
            if self.watchdog is not None and not self.watchdog.parent_alive():
                self._stop_output()
                hard_exit(0)  # take along what user code forked: nobody else will
            return False
        if kind == "desync":
            self._stop_output()
            hard_exit(self.watchdog.exit_code() if self.watchdog else 3)  # reader said why
        if not isinstance(msg, dict):
            self.conn.respond_error(None, INVALID_REQUEST, "Invalid request: not an object")
            return True
        method = msg.get("method")
        if method is None:
            return True  # a response to something we never ask; nothing to do
        if "id" not in msg:
            return True  # notifications from the client ($/setTrace, exit...) need no answer
        rid = msg["id"]
        if isinstance(rid, bool) or not isinstance(rid, (int, str)) or not isinstance(method, str):
            self.conn.respond_error(
                None,
                INVALID_REQUEST,
                "Invalid request: id must be a number or string and method a string",
            )
            return True
        self.handle(rid, method, msg.get("params"))
        return True

    def _run_on_main(self, job):
        """Runs `job(request_thread_id)` (a training script, handed over by a handler as
        `main_job` after its response went out) on the main thread, where Python code expects to
        run (signal.signal works only there), while another thread serves requests."""
        done = threading.Event()
        ready = threading.Event()
        ident = []

        def serve_meanwhile():
            ident.append(threading.get_ident())
            ready.set()
            while not done.is_set() and self.running:
                try:
                    kind, msg = self.conn.incoming.get(timeout=MAIN_JOB_POLL_S)
                except queue.Empty:
                    continue
                if not self._dispatch(kind, msg):
                    # The client is gone: end the job, then the engine (main() exits).
                    self.running = False
                    self.end_main_job()
                    return

        t = threading.Thread(target=serve_meanwhile, name="model-lens-requests", daemon=True)
        t.start()
        ready.wait()
        try:
            job(ident[0])
        finally:
            done.set()
            t.join()

    def end_main_job(self):
        """Asks the job running on the main thread to stop (the client is gone)."""

    def _stop_output(self):
        try:
            sys.stdout.flush()
        except Exception:
            pass

    def handle(self, rid, method, params):
        handler = self.handlers.get(method)
        if handler is None:
            self.conn.respond_error(
                rid,
                METHOD_NOT_FOUND,
                "Unknown method %s" % method,
                {"kind": "unsupported", "got": method},
            )
            return
        if self.conn.is_cancelled(rid):
            self.conn.forget(rid)
            self.conn.respond_error(rid, CANCELLED, "Request cancelled", {"kind": "cancelled"})
            return
        if params is None:
            params = {}
        refused = self.refusal(method, params)
        if refused is not None:
            self.conn.respond_error(rid, *refused)
            return
        self.current_id = rid
        if self.watchdog is not None:
            file = params.get("file") if isinstance(params, dict) else None
            of = " of %s" % file if isinstance(file, str) else ""
            self.watchdog.doing = "running %s%s" % (method, of)
        try:
            if not isinstance(params, dict):
                raise bad_request("params must be an object")
            result = handler(params)
            self._stop_output()
            self.conn.respond(rid, result)
        except EngineFault as e:
            self._stop_output()
            self.conn.respond_error(rid, e.code, e.message, e.data)
        except KeyboardInterrupt:
            self.conn.respond_error(rid, CANCELLED, "Interrupted", {"kind": "cancelled"})
        except Exception as e:  # a bug in the engine: report it, stay up
            self._stop_output()
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            self.log("error", "Engine error in %s: %s" % (method, tb.strip().splitlines()[-1]))
            self.conn.respond_error(
                rid,
                INTERNAL,
                "Engine error in %s: %s: %s" % (method, type(e).__name__, e),
                {"kind": "internal", "hint": tb.strip().splitlines()[-1][:500]},
            )
        finally:
            self.current_id = None
            self.conn.forget(rid)
            if self.watchdog is not None:
                self.watchdog.doing = "idle after %s" % method
        if method == P.ENGINE_SHUTDOWN:
            self.running = False

    def check_cancel(self):
        if self.current_id is not None and self.conn.is_cancelled(self.current_id):
            raise EngineFault(CANCELLED, "cancelled", "Request cancelled")


def main(make_server, preload=None):
    """Runs the engine: `make_server(conn, watchdog, preload_error)` builds the dispatcher;
    `preload()` (e.g. `import torch`) runs before the loop and returns an error text or None."""
    os.environ.pop(SAFE_PATH_ENV, None)
    # A segfault or abort in native code prints the Python stack (file and line) to stderr.
    faulthandler.enable(file=sys.__stderr__, all_threads=True)
    if STACK_DUMP_SIGNAL is not None:
        faulthandler.register(STACK_DUMP_SIGNAL, file=sys.__stderr__, all_threads=True)
    # Frames get their own copies of the real stdin/stdout; fds 0 and 1 are then taken away from
    # user code (fd 1 → stderr, fd 0 → /dev/null).
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    proto_in = FdStream(os.dup(0))
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = io.StringIO("")
    watchdog = Watchdog()
    watchdog.start()
    conn = Connection(proto_in, proto_out, on_fatal=watchdog.on_input_fatal)
    conn.before_send = flush_all
    sys.stdout = UserOutput(conn, "stdout")
    t0 = time.perf_counter()
    preload_error = preload() if preload is not None else None
    conn.start()
    server = make_server(conn, watchdog, preload_error, time.perf_counter() - t0)
    try:
        server.serve()
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        # User code may have left non-daemon threads (DataLoader workers...): do not wait for them.
        os._exit(0)
