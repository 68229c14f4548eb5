"""A pseudo-terminal for a training script whose output ends up in a terminal (the CLI says so
with MODEL_LENS_TERMINAL=1, COLUMNS and LINES): sys.stdout and sys.stderr are then the slave
ends of two ptys sized like that terminal, so isatty() is true and os.get_terminal_size() works
(tqdm sizes its bar with it). As in a real terminal, stdout and stderr are one pty, so what the
script writes to both keeps its order (tqdm draws on stderr, print() goes to stdout). A thread
forwards what arrives as `output` notifications, unchanged (output post-processing is off, so
"\\n" stays "\\n")."""

import codecs
import fcntl
import io
import os
import pty
import struct
import termios
import threading

TERMINAL_ENV = "MODEL_LENS_TERMINAL"
DEFAULT_COLUMNS = 100
DEFAULT_LINES = 30
READ_CHUNK_BYTES = 65536
# At the end of a run, how long the forwarding threads get to send what is still in the ptys.
DRAIN_WAIT_S = 2.0


def wanted():
    return os.environ.get(TERMINAL_ENV) == "1"


def _size(name, default):
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


class PtyOutput(io.TextIOBase):
    """The script's sys.stdout or sys.stderr: a pty's slave end. Writes from the thread that
    serves requests go to `fallback`, as UserOutput does."""

    def __init__(self, conn, stream, run_id, fallback, rpc_thread, share=None):
        super().__init__()
        self._conn = conn
        self._stream = stream
        self._run_id = run_id
        self._fallback = fallback
        self._rpc_thread = rpc_thread
        # `share`: the PtyOutput whose terminal this stream writes to (stderr shares stdout's).
        self._owner = share is None
        if share is not None:
            self._master, self._slave, self._reader = share._master, share._slave, None
            return
        self._master, self._slave = pty.openpty()
        attrs = termios.tcgetattr(self._slave)
        attrs[1] &= ~termios.OPOST  # no "\n" → "\r\n": the text arrives as the script wrote it
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        fcntl.ioctl(
            self._slave,
            termios.TIOCSWINSZ,
            struct.pack(
                "HHHH", _size("LINES", DEFAULT_LINES), _size("COLUMNS", DEFAULT_COLUMNS), 0, 0
            ),
        )
        self._reader = threading.Thread(
            target=self._forward, name="model-lens-pty-" + stream, daemon=True
        )
        self._reader.start()

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return True

    def fileno(self):
        return self._slave

    def write(self, s):
        if not isinstance(s, str):
            s = str(s)
        if self._fallback is not None and threading.get_ident() == self._rpc_thread:
            return self._fallback.write(s)
        data = s.encode("utf-8", "replace")
        while data:
            n = os.write(self._slave, data)
            data = data[n:]
        return len(s)

    def flush(self):
        pass

    def _forward(self):
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                chunk = os.read(self._master, READ_CHUNK_BYTES)
            except OSError:  # EIO: every slave end is closed
                chunk = b""
            text = decoder.decode(chunk, final=not chunk)
            if text:
                params = {"stream": self._stream, "text": text}
                if self._run_id is not None:
                    params["runId"] = self._run_id
                self._conn.notify("output", params)
            if not chunk:
                return

    def close_pty(self):
        """Closes the slave end and waits for what is left to be forwarded (by the owner)."""
        if not self._owner:
            return
        try:
            os.close(self._slave)
        except OSError:
            pass
        self._reader.join(DRAIN_WAIT_S)
        try:
            os.close(self._master)
        except OSError:
            pass
