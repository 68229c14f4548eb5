"""sys.stdout / sys.stderr for user code: what it prints becomes `output` notifications, because
the engine's real stdout carries the protocol. Output is batched (one notification per burst, not
per line), so a print loop of a million lines costs a few hundred frames."""

import io
import os
import threading
import weakref

from .protocol import OUTPUT

# A batch is sent once it holds this many characters, even from inside a tight print loop.
MAX_OUTPUT_BUFFER_CHARS = 64 * 1024
# Otherwise complete lines (and `\r`-ended progress-bar redraws) go out this long after the first.
OUTPUT_FLUSH_S = 0.05


class _Flusher:
    """One daemon thread that sends what streams have buffered OUTPUT_FLUSH_S after they asked."""

    def __init__(self):
        self._due = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._pid = None

    def schedule(self, stream):
        if stream in self._due and self._pid == os.getpid():
            return  # already due: the common case inside a print loop, without the lock
        with self._lock:
            self._due.add(stream)
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="model-lens-output", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self):
        while True:
            self._wake.wait()
            threading.Event().wait(OUTPUT_FLUSH_S)
            with self._lock:
                self._wake.clear()
                due, self._due = self._due, set()
            for stream in due:
                try:
                    stream.send_lines()
                except Exception:
                    pass  # output must never take the engine down


_flusher = _Flusher()
_live: "weakref.WeakSet[UserOutput]" = weakref.WeakSet()
# The stream written last: when the script switches between stdout and stderr, what the other
# one holds goes out first, so the two keep the order the script wrote them in.
_last_writer: "list[UserOutput | None]" = [None]


def flush_all():
    """Sends the complete lines every user stream holds: called before any other message goes
    out, so output keeps its order with the responses and events around it."""
    for stream in list(_live):
        if stream._pid == os.getpid() and stream._buf:
            stream.send_lines()


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
        _live.add(self)

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
        last = _last_writer[0]
        if last is not self:
            _last_writer[0] = self
            if last is not None and last._buf and last._pid == self._pid:
                last.send_lines(whole=True)
        with self._lock:
            self._buf += s
            full = len(self._buf) >= MAX_OUTPUT_BUFFER_CHARS
        if full:
            self.send_lines(whole=True)
        elif "\n" in s or "\r" in s:
            _flusher.schedule(self)
        return len(s)

    def send_lines(self, whole=False):
        """Sends complete lines (everything when `whole` or when the buffer is full)."""
        with self._lock:
            # A progress bar (tqdm) redraws its line with \r: send those too, not only lines.
            cut = max(self._buf.rfind("\n"), self._buf.rfind("\r"))
            if whole or len(self._buf) >= MAX_OUTPUT_BUFFER_CHARS:
                cut = len(self._buf) - 1
            # A partial line waits for its end, a full buffer, or flush() before a response.
            text, self._buf = self._buf[: cut + 1], self._buf[cut + 1 :]
        if text:
            self._send(text)

    def flush(self):
        if os.getpid() != self._pid:
            return
        self.send_lines(whole=True)

    def _send(self, text):
        params = {"stream": self._stream, "text": text}
        if self._run_id is not None:
            params["runId"] = self._run_id
        self._conn.notify(OUTPUT, params)
