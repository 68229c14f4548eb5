"""Drives the real engine the way the TypeScript client does: a subprocess speaking framed
JSON-RPC over its stdin/stdout."""

import json
import os
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON_DIR = os.path.join(REPO, "python")
FIXTURES = os.path.join(REPO, "test", "fixtures", "torch")
EXAMPLES = os.path.join(REPO, "examples")
# Importing torch on a loaded 2-core box can take many seconds; resnet50 at 2×3×224×224 more.
REQUEST_TIMEOUT_S = 240


class RpcError(Exception):
    def __init__(self, error):
        super().__init__(error.get("message"))
        self.code = error.get("code")
        self.data = error.get("data") or {}
        self.kind = self.data.get("kind")


def frame(message):
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_message(stream):
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        k, _, v = line.decode("ascii").partition(":")
        if k.lower() == "content-length":
            length = int(v)
    return json.loads(stream.read(length).decode("utf-8"))


class EngineProcess:
    def __init__(self, cwd=FIXTURES, trusted=True, initialize=True, env=None):
        e = dict(os.environ)
        e["PYTHONPATH"] = PYTHON_DIR
        e["OMP_NUM_THREADS"] = "1"
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        e.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "model_lens_engine"],
            cwd=cwd,
            env=e,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stderr = []
        self.notifications = []
        self.nlock = threading.Lock()
        self.responses = {}
        self.cond = threading.Condition()
        self.next_id = 1
        self.raw = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.info = None
        if initialize:
            self.info = self.request(
                "engine/initialize",
                {
                    "protocolVersion": "1.0",
                    "clientName": "python-tests",
                    "clientVersion": "0",
                    "trusted": trusted,
                    "cwd": cwd,
                },
            )

    def _read(self):
        while True:
            try:
                msg = read_message(self.proc.stdout)
            except Exception as e:  # a corrupted frame fails the test that waits for it
                msg = {"corrupt": repr(e)}
            if msg is None:
                with self.cond:
                    self.cond.notify_all()
                return
            self.raw.append(msg)
            if "id" in msg and ("result" in msg or "error" in msg):
                with self.cond:
                    self.responses[msg["id"]] = msg
                    self.cond.notify_all()
            else:
                with self.nlock:
                    self.notifications.append(msg)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def send(self, message):
        self.proc.stdin.write(frame(message))
        self.proc.stdin.flush()

    def request_async(self, method, params=None):
        rid = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def wait(self, rid, timeout=REQUEST_TIMEOUT_S):
        with self.cond:
            ok = self.cond.wait_for(
                lambda: rid in self.responses or self.proc.poll() is not None, timeout
            )
            if rid not in self.responses:
                raise AssertionError(
                    "no response to %s (alive=%s, ok=%s); stderr:\n%s"
                    % (rid, self.proc.poll() is None, ok, "".join(self.stderr[-30:]))
                )
            msg = self.responses.pop(rid)
        if "error" in msg:
            raise RpcError(msg["error"])
        return msg["result"]

    def request(self, method, params=None, timeout=REQUEST_TIMEOUT_S):
        return self.wait(self.request_async(method, params), timeout)

    def notes(self, method):
        with self.nlock:
            return [n["params"] for n in self.notifications if n.get("method") == method]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.request("engine/shutdown", None, timeout=30)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass
