"""JSON-RPC 2.0 with LSP-style `Content-Length` framing, as vscode-jsonrpc speaks it.

Torch-free: the transport must work (and report) even when torch cannot be imported."""

import json
import math
import os
import queue
import select
import threading

# A frame larger than this is a corrupted stream, not a request.
MAX_FRAME_BYTES = 256 * 1024 * 1024
# A header line longer than this is not a header: the stream lost its frame boundaries.
MAX_HEADER_LINE_BYTES = 8192
# A client writes each frame whole; this long without a byte in the middle of one means the
# declared Content-Length was wrong (too long) and the engine would otherwise wait forever.
PARTIAL_FRAME_TIMEOUT_S = 10.0
READ_CHUNK_BYTES = 65536

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class FramingError(Exception):
    """The byte stream no longer splits into frames: nothing after this point can be trusted."""


def _json_safe(value):
    """NaN and ±Infinity are not JSON; the protocol says null for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def encode_frame(message):
    body = json.dumps(
        _json_safe(message), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    return b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n" + body


def _header(line):
    """(name, value) of one header line, or FramingError when it is not one."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise FramingError("a header line is not ASCII: %r" % line[:80]) from None
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in ' \t{}"[]'):
        raise FramingError("expected a `Name: value` header line, got %r" % text[:80])
    return name.strip().lower(), value.strip()


def read_frame(stream):
    """Reads one framed message from a binary stream; None at a clean end of stream.

    Raises FramingError when the stream cannot be split into frames any more, and ValueError
    (json) for a well-framed body that is not JSON, which the caller answers with a parse error.
    """
    body = read_frame_body(stream)
    return None if body is None else json.loads(body.decode("utf-8"))


def read_frame_body(stream):
    """The body bytes of the next frame; None at a clean end of stream (a JSON `null` body is
    b"null", not the end)."""
    length = None
    saw_header = False
    while True:
        line = stream.readline(MAX_HEADER_LINE_BYTES)
        if not line:
            if saw_header:
                raise FramingError("stream ended inside a header")
            return None
        if not saw_header and hasattr(stream, "frame_started"):
            stream.frame_started()
        saw_header = True
        if not line.endswith(b"\n"):
            if len(line) >= MAX_HEADER_LINE_BYTES:
                raise FramingError("a header line is longer than %d bytes" % MAX_HEADER_LINE_BYTES)
            raise FramingError("stream ended inside a header")
        line = line.rstrip(b"\r\n")
        if not line:
            break
        name, value = _header(line)
        if name == "content-length":
            if not value.isdigit():
                raise FramingError("bad Content-Length: %r" % value[:80])
            length = int(value)
    if length is None:
        raise FramingError("frame without Content-Length")
    if length > MAX_FRAME_BYTES:
        raise FramingError(
            "Content-Length %d is over the %d-byte limit" % (length, MAX_FRAME_BYTES)
        )
    body = bytearray()
    while len(body) < length:
        chunk = stream.read(length - len(body))
        if not chunk:
            raise FramingError(
                "stream ended inside a frame body (%d of %d bytes)" % (len(body), length)
            )
        body += chunk
    if hasattr(stream, "frame_ended"):
        stream.frame_ended()
    return bytes(body)


class FdStream:
    """readline/read over a file descriptor where waiting is unbounded between frames but bounded
    (PARTIAL_FRAME_TIMEOUT_S) inside one or with unread bytes pending, so a wrong Content-Length
    (too long, or too short leaving a tail that is no header) is noticed."""

    def __init__(self, fd, partial_timeout_s=PARTIAL_FRAME_TIMEOUT_S):
        self._fd = fd
        self._buf = bytearray()
        self._in_frame = False
        self._partial_timeout_s = partial_timeout_s
        self._frame_bytes = 0

    def frame_started(self):
        self._in_frame = True
        self._frame_bytes = 0

    def frame_ended(self):
        self._in_frame = False

    def _fill(self):
        if self._in_frame or self._buf:
            ready, _, _ = select.select([self._fd], [], [], self._partial_timeout_s)
            if not ready:
                raise FramingError(
                    "no byte for %.0f s in the middle of a frame (%d bytes read); "
                    "the declared Content-Length is longer than what was sent"
                    % (self._partial_timeout_s, self._frame_bytes)
                )
        chunk = os.read(self._fd, READ_CHUNK_BYTES)
        self._buf += chunk
        return bool(chunk)

    def readline(self, limit):
        while True:
            i = self._buf.find(b"\n", 0, limit)
            if i >= 0 or len(self._buf) >= limit:
                n = i + 1 if i >= 0 else limit
                return self._take(n)
            if not self._fill():
                return self._take(len(self._buf))

    def read(self, n):
        if not self._buf and not self._fill():
            return b""
        return self._take(min(n, len(self._buf)))

    def _take(self, n):
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self._frame_bytes += n
        return out


class Connection:
    """Reads frames on a thread (so `$/cancelRequest` and the end of input are seen while a
    request runs) and writes frames under a lock (notifications may come from hooks on other
    threads).

    `on_fatal(reason)` is called on the reader thread when the input ends or desynchronises;
    the owner decides how the process ends (see watchdog.py)."""

    def __init__(self, reader, writer, on_fatal=None):
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()
        self.incoming = queue.Queue()
        self._cancelled = set()
        self._cancel_lock = threading.Lock()
        self.closed = False
        self._on_fatal = on_fatal
        # Called before any message other than `output` is sent (see output.flush_all).
        self.before_send = None

    def start(self):
        t = threading.Thread(target=self._read_loop, name="model-lens-rpc-reader", daemon=True)
        t.start()

    def _read_loop(self):
        while True:
            try:
                body = read_frame_body(self._reader)
                msg = None if body is None else ("message", json.loads(body.decode("utf-8")))
            except FramingError as e:
                # The owner says why first: the main loop ends the process on "desync".
                if self._on_fatal:
                    self._on_fatal("desync", str(e))
                self.incoming.put(("desync", str(e)))
                return
            except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
                self.send(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": PARSE_ERROR, "message": "Parse error: %s" % e},
                    }
                )
                continue
            except OSError:
                msg = None
            if msg is None:
                if self._on_fatal:
                    self._on_fatal("eof", None)
                self.incoming.put(("eof", None))
                return
            msg = msg[1]
            if isinstance(msg, dict) and msg.get("method") == "$/cancelRequest":
                params = msg.get("params")
                rid = params.get("id") if isinstance(params, dict) else None
                if isinstance(rid, (int, str)):
                    with self._cancel_lock:
                        self._cancelled.add(rid)
                continue
            self.incoming.put(("message", msg))

    def is_cancelled(self, rid):
        with self._cancel_lock:
            return rid in self._cancelled

    def forget(self, rid):
        with self._cancel_lock:
            self._cancelled.discard(rid)

    def send(self, message):
        data = encode_frame(message)
        with self._write_lock:
            if self.closed:
                return
            try:
                self._writer.write(data)
                self._writer.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True

    def _before(self):
        if self.before_send is not None:
            try:
                self.before_send()
            except Exception:
                pass

    def notify(self, method, params):
        if method != "output":
            self._before()
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def respond(self, rid, result):
        self._before()
        self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    def respond_error(self, rid, code, message, data=None):
        self._before()
        err = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        self.send({"jsonrpc": "2.0", "id": rid, "error": err})
