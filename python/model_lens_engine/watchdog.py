"""Ends the engine when nobody is left to talk to it, even while the main thread is busy in
user code (an endless forward pass): a thread watches the parent process, and the protocol
reader reports the end of the input. Torch-free.

When the engine leads its own process group (the client starts it that way), the whole group
goes, so what user code forked (DataLoader workers, subprocesses) is not orphaned either."""

import os
import signal
import sys
import threading

# How often the parent process is checked. A getppid() call costs nothing measurable.
PARENT_POLL_S = 0.5
# After the input ends, the main loop normally exits at once; this long later it is busy in
# user code and the watchdog ends the process itself.
INPUT_CLOSED_GRACE_S = 2.0

# Exit codes the client can tell apart (src/client/engineExit.ts): 0 is a clean shutdown.
EXIT_PROTOCOL_DESYNC = 3
EXIT_ORPHANED = 4
EXIT_MEMORY_LIMIT = 5

# Set by the client: the pid the engine should have as its parent, and its memory ceiling.
PARENT_PID_ENV = "MODEL_LENS_PARENT_PID"
MEMORY_LIMIT_ENV = "MODEL_LENS_MEMORY_LIMIT_MB"
# The engine's memory ceiling in MiB once the watchdog has read it (0: none), for the input-size
# check in inputs.py.
MEMORY_LIMIT_MB = [0]


def _group_members(pgid):
    """Other live processes in a process group, from /proc; None where there is no /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    out = []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(name))
    return out


def _resident_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def hard_exit(code, message=None):
    """Ends the process (and its group when it leads one) from any thread, without waiting for
    the main thread or for non-daemon threads user code started."""
    if message:
        try:
            os.write(2, ("model-lens engine: %s\n" % message).encode("utf-8", "replace"))
        except OSError:
            pass
    try:
        sys.stderr.flush()
    except Exception:
        pass
    pid = os.getpid()
    if hasattr(os, "getpgrp") and os.getpgrp() == pid:
        others = _group_members(pid)
        if others is None:
            # No /proc: the group signal reaches what user code forked, and this process too.
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        for other in others or ():
            try:
                os.kill(other, signal.SIGKILL)
            except OSError:
                pass
    os._exit(code)


class Watchdog:
    def __init__(self, expected_parent=None):
        env_parent = os.environ.pop(PARENT_PID_ENV, "")
        # The parent at start (a launcher may sit between the client and the engine), and the
        # client itself when it said who it is.
        self.expected_parent = expected_parent or os.getppid()
        self.client_pid = int(env_parent) if env_parent.isdigit() else None
        limit = os.environ.pop(MEMORY_LIMIT_ENV, "")
        self.memory_limit_mb = int(limit) if limit.isdigit() else 0
        MEMORY_LIMIT_MB[0] = self.memory_limit_mb
        # What the engine is doing, for the messages below (set by the dispatcher).
        self.doing = "starting"
        self._input_closed = threading.Event()
        self._fatal = (EXIT_ORPHANED, None)

    def start(self):
        threading.Thread(target=self._watch, name="model-lens-watchdog", daemon=True).start()

    def parent_alive(self):
        if os.getppid() != self.expected_parent:
            return False
        if self.client_pid is not None and self.client_pid != self.expected_parent:
            try:
                os.kill(self.client_pid, 0)
            except ProcessLookupError:
                return False
            except OSError:
                pass  # alive, someone else's
        return True

    def on_input_fatal(self, what, detail):
        """Called by the protocol reader when its input ended or desynchronised. The main loop
        ends the process when it reaches that point (answering what came before); if user code
        keeps it busy, the watchdog does after a grace period."""
        if what == "desync":
            message = (
                "protocol desync: %s. The client and the engine no longer agree where "
                "messages start, so the engine exits." % detail
            )
            self._fatal = (EXIT_PROTOCOL_DESYNC, "")  # said once, here
            try:
                os.write(2, ("model-lens engine: %s\n" % message).encode("utf-8", "replace"))
            except OSError:
                pass
        self._input_closed.set()

    def exit_code(self):
        """The code to exit with once the main loop has stopped on a fatal input."""
        return self._fatal[0]

    def _watch(self):
        while not self._input_closed.wait(PARENT_POLL_S):
            if not self.parent_alive():
                hard_exit(
                    EXIT_ORPHANED,
                    "the client process (pid %d) is gone; exiting so the "
                    "engine is not left behind (was %s)"
                    % (self.client_pid or self.expected_parent, self.doing),
                )
            self._check_memory()
        # An idle main loop exits by itself on the end of input; give it that chance first.
        threading.Event().wait(INPUT_CLOSED_GRACE_S)
        code, message = self._fatal
        if message is None:
            message = (
                "the client closed the engine's input while user code was running (%s); "
                "exiting so the engine is not left behind" % self.doing
            )
        hard_exit(code, message)

    def _check_memory(self):
        if self.memory_limit_mb <= 0:
            return
        rss = _resident_bytes()
        if rss is not None and rss > self.memory_limit_mb * 2**20:
            hard_exit(
                EXIT_MEMORY_LIMIT,
                "went over its memory limit of %d MB (%d MB in use) while %s; "
                "stopped (out of memory)" % (self.memory_limit_mb, rss // 2**20, self.doing),
            )
