"""sys.stdout / sys.stderr for user code: what it prints becomes `output` notifications, because
the engine's real stdout carries the protocol."""
import io
import os
import threading

from .protocol import OUTPUT

# A user print without a line end is sent after this many characters anyway.
MAX_OUTPUT_BUFFER_CHARS = 8192


class UserOutput(io.TextIOBase):
    """Complete lines (and `\\r`-ended progress-bar redraws) go out as `output` notifications,
    tagged with the run id during a training run. During a run, the RPC thread's own writes go to
    `fallback`, and a forked DataLoader worker writes to fd 2 directly (the protocol pipe and its
    lock are not the child's to use)."""

    def __init__(self, conn, stream, run_id=None, fallback=None, rpc_thread=None):
        super().__init__()
        self._conn = conn
        self._stream = stream
        self._run_id = run_id
        self._fallback = fallback
        self._rpc_thread = rpc_thread
        self._pid = os.getpid()
        self._buf = ""
        self._lock = threading.Lock()

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return 1 if self._stream == "stdout" else 2  # fd 1 points at stderr in the engine

    def write(self, s):
        if not isinstance(s, str):
            s = str(s)
        if os.getpid() != self._pid:
            os.write(2, s.encode("utf-8", "replace"))
            return len(s)
        if self._fallback is not None and threading.get_ident() == self._rpc_thread:
            return self._fallback.write(s)
        with self._lock:
            self._buf += s
            # A progress bar (tqdm) redraws its line with \r: send those too, not only lines.
            cut = max(self._buf.rfind("\n"), self._buf.rfind("\r"))
            if cut < 0 and len(self._buf) < MAX_OUTPUT_BUFFER_CHARS:
                return len(s)
            if cut < 0:
                text, self._buf = self._buf, ""
            else:
                text, self._buf = self._buf[:cut + 1], self._buf[cut + 1:]
        self._send(text)
        return len(s)

    def flush(self):
        if os.getpid() != self._pid:
            return
        with self._lock:
            text, self._buf = self._buf, ""
        if text:
            self._send(text)

    def _send(self, text):
        params = {"stream": self._stream, "text": text}
        if self._run_id is not None:
            params["runId"] = self._run_id
        self._conn.notify(OUTPUT, params)
