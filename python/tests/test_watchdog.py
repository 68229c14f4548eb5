"""The engine never outlives its client and never goes silent on a broken stream: the real
engine process over raw pipes, in its own process group as EngineClient starts it, with a model
that hangs in user code (and has forked a child) when the client goes away."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_process import PYTHON_DIR, frame, read_message  # noqa: E402
from procs import children_of, group_members  # noqa: E402

# Generous: torch imports slowly on a loaded machine. Each wait ends as soon as its condition holds.
START_TIMEOUT_S = 180
# The watchdog polls the parent every 0.5 s and gives a busy main loop 2 s after the input ends.
EXIT_TIMEOUT_S = 30

HANG_MODEL = """
import os
import subprocess
from torch import nn


class Hang(nn.Module):
    def __init__(self):
        super().__init__()
        child = subprocess.Popen(["sleep", "600"])  # forked by user code: must go with the engine
        with open(os.environ["MODEL_LENS_TEST_MARKER"], "w") as f:
            f.write(str(child.pid))
        while True:  # busy in user code: the main thread never reads the protocol again
            pass
"""

# Starts the engine the way EngineClient does (own session), sends initialize and a model/load
# that hangs, prints the engine pid, then waits to be killed without cleaning up.
INTERMEDIATE_CLIENT = """
import os, subprocess, sys
stdin_fd = int(sys.argv[1])
engine = subprocess.Popen([sys.executable, "-u", "-m", "model_lens_engine"], stdin=stdin_fd,
                          stdout=subprocess.DEVNULL, stderr=open(sys.argv[2], "wb"),
                          start_new_session=True, pass_fds=())
print(engine.pid, flush=True)
sys.stdin.read()
"""


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))


def engine_env(extra=None):
    e = dict(os.environ)
    e.update({"PYTHONPATH": PYTHON_DIR, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    e.update(extra or {})
    return e


def initialize_and_hang(write, model_file):
    write(
        frame(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "engine/initialize",
                "params": {
                    "protocolVersion": "1.0",
                    "clientName": "t",
                    "clientVersion": "0",
                    "trusted": True,
                    "cwd": os.path.dirname(model_file),
                },
            }
        )
    )
    write(
        frame({"jsonrpc": "2.0", "id": 2, "method": "model/load", "params": {"file": model_file}})
    )


class WatchdogTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.model = os.path.join(self.tmp.name, "hang_model.py")
        with open(self.model, "w") as f:
            f.write(HANG_MODEL)
        self.marker = os.path.join(self.tmp.name, "in_user_code")
        self.stderr_file = os.path.join(self.tmp.name, "engine.stderr")
        self.pgids = []

    def tearDown(self):
        for pgid in self.pgids:  # only if a test failed: never leave its processes behind
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        self.tmp.cleanup()

    def stderr_text(self):
        with open(self.stderr_file, encoding="utf-8", errors="replace") as f:
            return f.read()

    def assert_group_gone(self, pgid, sleeper):
        wait_until(
            lambda: not group_members(pgid), EXIT_TIMEOUT_S, "process group %d to be empty" % pgid
        )
        self.assertEqual(group_members(pgid), [])
        with (
            open("/proc/%d/stat" % sleeper)
            if os.path.exists("/proc/%d/stat" % sleeper)
            else open(os.devnull)
        ) as f:
            state = f.read()
        self.assertTrue(state == "" or ") Z " in state, "the forked child %d is gone" % sleeper)

    def test_input_closed_while_user_code_loops(self):
        with open(self.stderr_file, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "model_lens_engine"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                env=engine_env({"MODEL_LENS_TEST_MARKER": self.marker}),
            )
        self.pgids.append(proc.pid)
        initialize_and_hang(lambda b: (proc.stdin.write(b), proc.stdin.flush()), self.model)
        wait_until(
            lambda: os.path.exists(self.marker) and os.path.getsize(self.marker),
            START_TIMEOUT_S,
            "the model to be running",
        )
        sleeper = int(open(self.marker).read())
        self.assertEqual(sorted(group_members(proc.pid)), sorted([proc.pid, sleeper]))
        proc.stdin.close()
        proc.wait(EXIT_TIMEOUT_S)
        self.assert_group_gone(proc.pid, sleeper)
        self.assertIn("closed the engine's input", self.stderr_text())

    def test_client_killed_while_user_code_loops(self):
        # The test keeps the engine's input open, so only the parent watch can notice.
        r, w = os.pipe()
        client = subprocess.Popen(
            [sys.executable, "-c", INTERMEDIATE_CLIENT, str(r), self.stderr_file],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(r,),
            env=engine_env({"MODEL_LENS_TEST_MARKER": self.marker}),
        )
        os.close(r)
        try:
            engine_pid = int(client.stdout.readline())
            self.pgids.append(engine_pid)
            self.assertEqual(children_of(client.pid), [engine_pid])
            initialize_and_hang(lambda b: os.write(w, b), self.model)
            wait_until(
                lambda: os.path.exists(self.marker) and os.path.getsize(self.marker),
                START_TIMEOUT_S,
                "the model to be running",
            )
            sleeper = int(open(self.marker).read())
            client.kill()
            client.wait()
            self.assert_group_gone(engine_pid, sleeper)
            self.assertIn("the client process (pid %d) is gone" % client.pid, self.stderr_text())
        finally:
            os.close(w)
            client.stdin.close()
            client.stdout.close()


class DesyncTest(unittest.TestCase):
    """A stream that no longer splits into frames ends the engine with a message on stderr."""

    def run_engine(self, data, wait_s=EXIT_TIMEOUT_S):
        """Sends a good request then `data`; returns the exit code, the messages the engine sent
        and its stderr. The input stays open: the engine must end by itself."""
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "model_lens_engine"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=engine_env(),
        )
        try:
            proc.stdin.write(frame({"jsonrpc": "2.0", "id": 1, "method": "system/info"}) + data)
            proc.stdin.flush()
            messages = []
            while True:
                m = read_message(proc.stdout)
                if m is None:
                    break
                messages.append(m)
            code = proc.wait(wait_s)
            answered = [m for m in messages if m.get("id") == 1]
            self.assertIn("memory", answered[0]["result"])  # what came before was still answered
            return code, messages, proc.stderr.read().decode("utf-8", "replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for s in (proc.stdin, proc.stdout, proc.stderr):
                s.close()

    def test_content_length_not_a_number(self):
        code, _, err = self.run_engine(b'Content-Length: 12abc\r\n\r\n{"jsonrpc":1}')
        self.assertEqual(code, 3)
        self.assertIn("protocol desync: bad Content-Length: '12abc'", err)

    def test_content_length_too_short(self):
        body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "system/info"}).encode()
        code, rest, err = self.run_engine(b"Content-Length: %d\r\n\r\n" % (len(body) - 10) + body)
        self.assertEqual(code, 3)
        # The cut body is answered as JSON-RPC says, then its tail is not a header.
        self.assertTrue(any("Parse error" in m.get("error", {}).get("message", "") for m in rest))
        # What is left of the body is neither a header nor followed by one.
        self.assertRegex(err, r"protocol desync: no byte for 10 s in the middle of a frame")

    def test_content_length_too_long(self):
        body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "system/info"}).encode()
        code, _, err = self.run_engine(b"Content-Length: %d\r\n\r\n" % (len(body) + 50) + body)
        self.assertEqual(code, 3)
        self.assertRegex(
            err, r"protocol desync: no byte for 10 s in the middle of a frame \(\d+ bytes read\)"
        )


if __name__ == "__main__":
    unittest.main()
