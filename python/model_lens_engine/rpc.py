"""JSON-RPC 2.0 with LSP-style `Content-Length` framing, as vscode-jsonrpc speaks it."""

import json
import math
import queue
import threading

# A frame larger than this is a corrupted stream, not a request.
MAX_FRAME_BYTES = 256 * 1024 * 1024

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class FramingError(Exception):
    pass


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
    body = json.dumps(_json_safe(message), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n" + body


def read_frame(stream):
    """Reads one framed message from a binary stream; None at a clean end of stream."""
    length = None
    saw_header = False
    while True:
        line = stream.readline(65536)
        if not line:
            if saw_header:
                raise FramingError("stream ended inside a header")
            return None
        saw_header = True
        line = line.rstrip(b"\r\n")
        if not line:
            break
        name, _, value = line.decode("ascii", "replace").partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise FramingError("bad Content-Length: %r" % value.strip())
    if length is None:
        raise FramingError("frame without Content-Length")
    if length < 0 or length > MAX_FRAME_BYTES:
        raise FramingError("Content-Length %d out of range" % length)
    body = b""
    while len(body) < length:
        chunk = stream.read(length - len(body))
        if not chunk:
            raise FramingError("stream ended inside a frame body")
        body += chunk
    return json.loads(body.decode("utf-8"))


class Connection:
    """Reads frames on a thread (so `$/cancelRequest` arrives while a request runs) and writes
    frames under a lock (notifications may come from hooks on other threads)."""

    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()
        self.incoming = queue.Queue()
        self._cancelled = set()
        self._cancel_lock = threading.Lock()
        self.closed = False

    def start(self):
        t = threading.Thread(target=self._read_loop, name="model-lens-rpc-reader", daemon=True)
        t.start()

    def _read_loop(self):
        while True:
            try:
                msg = read_frame(self._reader)
            except FramingError as e:
                self.incoming.put(("framingError", str(e)))
                continue
            except (ValueError, UnicodeDecodeError) as e:
                self.send({"jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "Parse error: %s" % e}})
                continue
            except OSError:
                msg = None
            if msg is None:
                self.incoming.put(("eof", None))
                return
            if isinstance(msg, dict) and msg.get("method") == "$/cancelRequest":
                rid = (msg.get("params") or {}).get("id")
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

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def respond(self, rid, result):
        self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    def respond_error(self, rid, code, message, data=None):
        err = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        self.send({"jsonrpc": "2.0", "id": rid, "error": err})
