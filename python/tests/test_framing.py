"""Content-Length framing, unit level and through the real engine process."""

import io
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from engine_process import FIXTURES, EngineProcess, RpcError, frame  # noqa: E402

from model_lens_engine.rpc import FramingError, encode_frame, read_frame  # noqa: E402


class FramingUnitTest(unittest.TestCase):
    def test_round_trip_counts_utf8_bytes(self):
        msg = {"jsonrpc": "2.0", "method": "log", "params": {"message": "µ·✓"}}
        data = encode_frame(msg)
        header, _, body = data.partition(b"\r\n\r\n")
        # 3 non-ASCII characters take 2+2+3 bytes: the header counts bytes, not characters.
        self.assertEqual(int(header.split(b":")[1]), len(body))
        self.assertEqual(
            len(body),
            len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")),
        )
        self.assertEqual(read_frame(io.BytesIO(data)), msg)

    def test_two_frames_back_to_back_and_extra_headers(self):
        a = {"id": 1}
        b = {"id": 2}
        body = json.dumps(b).encode()
        stream = io.BytesIO(
            encode_frame(a)
            + b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self.assertEqual(read_frame(stream), a)
        self.assertEqual(read_frame(stream), b)
        self.assertIsNone(read_frame(stream))

    def test_nan_becomes_null(self):
        data = encode_frame({"v": float("nan"), "w": [float("inf"), 1.5]})
        self.assertEqual(read_frame(io.BytesIO(data)), {"v": None, "w": [None, 1.5]})

    def test_truncated_frames_raise(self):
        with self.assertRaises(FramingError):
            read_frame(io.BytesIO(b"Content-Length: 10\r\n\r\n{}"))
        with self.assertRaises(FramingError):
            read_frame(io.BytesIO(b"X-Other: 1\r\n\r\n{}"))


class FramingProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_initialize_result(self):
        info = self.engine.info["engine"]
        self.assertEqual(self.engine.info["protocolVersion"], "1.0")
        self.assertEqual(info["kind"], "pytorch")
        self.assertEqual(info["backend"], "cpu")
        self.assertEqual(info["device"], "cpu")
        self.assertEqual(info["capabilities"]["strides"], "real")
        self.assertEqual(info["executable"], sys.executable)
        names = [r["name"] for r in info["runtimes"]]
        self.assertEqual(names[:2], ["python", "torch"])
        import torch

        self.assertEqual(info["runtimes"][1]["version"], torch.__version__)
        self.assertEqual(info["pid"], self.engine.proc.pid)

    def test_split_and_coalesced_writes(self):
        e = self.engine
        one = frame({"jsonrpc": "2.0", "id": 9001, "method": "system/info"})
        two = frame({"jsonrpc": "2.0", "id": 9002, "method": "system/info"})
        # Half a header, then the rest of it with a whole second frame in the same write.
        e.proc.stdin.write(one[:7])
        e.proc.stdin.flush()
        e.proc.stdin.write(one[7:] + two)
        e.proc.stdin.flush()
        self.assertIn("memory", e.wait(9001))
        self.assertIn("memory", e.wait(9002))

    def test_unknown_method_is_method_not_found(self):
        with self.assertRaises(RpcError) as cm:
            self.engine.request("model/dance", {})
        self.assertEqual(cm.exception.code, -32601)
        self.assertEqual(cm.exception.kind, "unsupported")

    def test_user_prints_become_output_notifications(self):
        e = self.engine
        r = e.request("model/load", {"file": os.path.join(FIXTURES, "prints_model.py")})
        e.request("model/forward", {"modelId": r["modelId"]})
        texts = "".join(n["text"] for n in e.notes("output"))
        self.assertIn("hello from import\n", texts)
        self.assertIn("forward sees (1, 3)\n", texts)
        self.assertTrue(all(n["stream"] == "stdout" for n in e.notes("output")))
        # Bytes written to fd 1 went to stderr, never into the protocol stream.
        self.assertTrue(any("raw bytes on fd 1" in line for line in e.stderr))
        self.assertFalse(any("corrupt" in m for m in e.raw))

    def test_cancel_request_stops_a_long_profile(self):
        e = self.engine
        r = e.request("model/load", {"file": os.path.join(FIXTURES, "resnet18_model.py")})
        rid = e.request_async("profile/run", {"modelId": r["modelId"], "steps": 1000, "warmup": 0})
        e.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}})
        with self.assertRaises(RpcError) as cm:
            e.wait(rid, timeout=120)
        self.assertEqual(cm.exception.code, -32800)
        self.assertEqual(cm.exception.kind, "cancelled")
        self.assertIn("memory", e.request("system/info"))

    def test_system_info(self):
        s = self.engine.request("system/info")
        with open("/proc/cpuinfo") as f:
            logical = sum(1 for line in f if line.startswith("processor"))
        self.assertEqual(s["cpu"]["logicalCores"], logical)
        self.assertEqual(s["gpus"], [])
        self.assertGreater(s["memory"]["rssBytes"], 50 * 1024 * 1024)  # torch alone is bigger


class TrustTest(unittest.TestCase):
    def test_untrusted_engine_runs_no_user_code(self):
        e = EngineProcess(trusted=False)
        try:
            marker = os.path.join(FIXTURES, "prints_model.py")
            with self.assertRaises(RpcError) as cm:
                e.request("model/load", {"file": marker})
            self.assertEqual(cm.exception.kind, "untrusted")
            self.assertEqual(cm.exception.code, -32002)
            self.assertEqual(e.notes("output"), [])
            with self.assertRaises(RpcError) as cm:
                e.request("train/start", {"file": marker})
            self.assertEqual(cm.exception.kind, "untrusted")
        finally:
            e.close()

    def test_other_protocol_major_is_refused(self):
        e = EngineProcess(initialize=False)
        try:
            with self.assertRaises(RpcError) as cm:
                e.request(
                    "engine/initialize",
                    {
                        "protocolVersion": "2.0",
                        "clientName": "t",
                        "clientVersion": "0",
                        "trusted": True,
                    },
                )
            self.assertEqual(cm.exception.kind, "unsupported")
        finally:
            e.close()

    def test_without_torch_the_engine_explains(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            os.mkdir(os.path.join(d, "torch"))
            with open(os.path.join(d, "torch", "__init__.py"), "w") as f:
                f.write("raise ImportError('simulated: no torch here')\n")
            from engine_process import PYTHON_DIR

            e = EngineProcess(env={"PYTHONPATH": d + os.pathsep + PYTHON_DIR})
            try:
                self.assertEqual(e.info["engine"]["backend"], "none")
                self.assertIn("simulated", e.info["engine"]["backendNotes"][0])
                with self.assertRaises(RpcError) as cm:
                    e.request("model/load", {"file": os.path.join(FIXTURES, "shared_model.py")})
                self.assertEqual(cm.exception.kind, "runtimeMissing")
                self.assertIn("cpu", e.request("system/info"))
            finally:
                e.close()

    def test_shutdown_exits_the_process(self):
        e = EngineProcess()
        self.assertIsNone(e.request("engine/shutdown"))
        self.assertEqual(e.proc.wait(timeout=30), 0)
        e.close()


if __name__ == "__main__":
    unittest.main()
