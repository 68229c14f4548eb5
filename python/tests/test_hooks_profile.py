"""hook/attach, hook/detach (no hook left behind), and profile/run with a Chrome trace."""

import json
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_process import EXAMPLES, FIXTURES, EngineProcess, RpcError  # noqa: E402


class HookProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()
        cls.mid = cls.engine.request(
            "model/load", {"file": os.path.join(FIXTURES, "resnet18_model.py")}
        )["modelId"]

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_forward_pre_and_backward_events(self):
        e = self.engine
        fwd = e.request(
            "hook/attach",
            {"modelId": self.mid, "path": "layer1.0.relu", "kind": "forward", "intervalMs": 0},
        )["hookId"]
        pre = e.request(
            "hook/attach",
            {"modelId": self.mid, "path": "layer2", "kind": "forwardPre", "intervalMs": 0},
        )["hookId"]
        bwd = e.request(
            "hook/attach",
            {
                "modelId": self.mid,
                "path": "fc",
                "kind": "backward",
                "intervalMs": 0,
                "histogramBins": 4,
            },
        )["hookId"]
        e.request("model/forward", {"modelId": self.mid, "steps": 1, "backward": True})
        detached = e.request("hook/detach", {"all": True})
        self.assertEqual(detached, {"detached": 3, "remaining": 0})
        n = len(e.notes("hook/event"))
        events = e.notes("hook/event")
        by = {}
        for ev in events:
            by.setdefault(ev["hookId"], []).append(ev)
        # BasicBlock calls its one ReLU twice.
        self.assertEqual([ev["call"] for ev in by[fwd]], [1, 2])
        ev = by[fwd][0]
        self.assertEqual(ev["tensor"]["shape"], [1, 64, 16, 16])
        self.assertEqual(ev["stats"]["min"], 0.0)  # after a ReLU
        self.assertEqual(ev["stats"]["numel"], 64 * 16 * 16)
        self.assertEqual(ev["kind"], "forward")
        self.assertEqual(by[pre][0]["tensor"]["shape"], [1, 64, 16, 16])
        # d(sum(out))/d(out) is all ones.
        g = by[bwd][0]
        self.assertEqual(g["tensor"]["shape"], [1, 1000])
        self.assertEqual(
            (g["stats"]["min"], g["stats"]["max"], g["stats"]["mean"]), (1.0, 1.0, 1.0)
        )
        self.assertEqual(sum(g["histogram"]["counts"]), 1000)
        # Nothing after detach.
        e.request("model/forward", {"modelId": self.mid, "steps": 1, "backward": True})
        time.sleep(0.3)
        self.assertEqual(len(e.notes("hook/event")), n)

    def test_throttle(self):
        e = self.engine
        h = e.request(
            "hook/attach",
            {"modelId": self.mid, "path": "fc", "kind": "forward", "intervalMs": 3_600_000},
        )["hookId"]
        e.request("model/forward", {"modelId": self.mid, "steps": 3})
        e.request("hook/detach", {"hookId": h})
        mine = [ev for ev in e.notes("hook/event") if ev["hookId"] == h]
        self.assertEqual(len(mine), 1)

    def test_errors(self):
        e = self.engine
        with self.assertRaises(RpcError) as cm:
            e.request("hook/attach", {"modelId": self.mid, "path": "layer9", "kind": "forward"})
        self.assertEqual(cm.exception.kind, "unknownPath")
        with self.assertRaises(RpcError) as cm:
            e.request("hook/detach", {"hookId": "h999"})
        self.assertEqual(cm.exception.kind, "unknownHook")
        with self.assertRaises(RpcError) as cm:
            e.request("hook/attach", {"modelId": self.mid, "path": "fc", "kind": "sideways"})
        self.assertEqual(cm.exception.kind, "badRequest")


class HookDetachUnitTest(unittest.TestCase):
    """Detach must leave torch's hook dictionaries empty on every module."""

    def test_detach_leaves_no_torch_hooks(self):
        import torch

        from model_lens_engine.hooks import HookManager
        from model_lens_engine.loader import load

        events = []
        lm = load(os.path.join(FIXTURES, "resnet18_model.py"))
        lm.model_id = "m1"
        mgr = HookManager(lambda m, p: events.append(p))
        paths = [p for p, _ in lm.module.named_modules()]
        for i, p in enumerate(paths):
            mgr.attach(lm, p, ("forward", "forwardPre", "backward")[i % 3], 0)
        out = lm.module(*lm.inputs)
        out.sum().backward()
        mgr.flush()
        self.assertGreater(len(events), len(paths) // 2)
        self.assertEqual(mgr.detach(all_hooks=True), (len(paths), 0))
        for p, m in lm.module.named_modules():
            self.assertEqual(len(m._forward_hooks), 0, p)
            self.assertEqual(len(m._forward_pre_hooks), 0, p)
            self.assertEqual(len(m._backward_hooks), 0, p)
        before = len(events)
        with torch.no_grad():
            lm.module(*lm.inputs)
        mgr.flush()
        self.assertEqual(len(events), before)


class ProfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess(cwd=EXAMPLES)
        cls.mid = cls.engine.request("model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py")})[
            "modelId"
        ]

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_forward_profile_with_trace(self):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "trace.json")
            p = self.engine.request(
                "profile/run", {"modelId": self.mid, "steps": 3, "warmup": 1, "traceFile": trace}
            )
            self.assertEqual(p["method"], "TorchDispatchMode; 1 warm-up step excluded")
            self.assertEqual(p["steps"], 3)
            self.assertEqual(p["traceFile"], trace)
            # Under no_grad a Linear is t + addmm: two per step, totals over the 3 timed steps,
            # one row per input shapes (fc1's and fc2's).
            addmm = [o for o in p["ops"] if o["name"] == "aten::addmm"]
            self.assertEqual(sum(o["calls"] for o in addmm), 2 * 3)
            ops = {
                o["name"]: o
                for o in sorted(
                    addmm, key=lambda o: o["inputShapes"] != [[[10], [8, 4], [4, 10]]], reverse=True
                )
            }
            self.assertEqual(ops["aten::addmm"]["inputShapes"], [[[10], [8, 4], [4, 10]]])
            self.assertEqual(ops["aten::addmm"]["phase"], "forward")
            self.assertEqual(
                ops["aten::addmm"]["source"]["file"], os.path.join(EXAMPLES, "iris_mlp.py")
            )
            mods = {m["path"]: m for m in p["modules"]}
            self.assertEqual(mods["fc1"]["calls"], 3)
            self.assertGreater(mods[""]["forwardMs"], mods["fc1"]["forwardMs"])
            with open(trace) as f:
                doc = json.load(f)
            names = {ev["name"] for ev in doc["traceEvents"]}
            self.assertIn("aten::addmm", names)
            self.assertIn("fc1", names)
            self.assertEqual(
                sum(1 for ev in doc["traceEvents"] if ev["name"] == "aten::addmm"), 2 * 3
            )

    def test_train_profile_has_backward_ops(self):
        p = self.engine.request("profile/run", {"modelId": self.mid, "steps": 2, "mode": "train"})
        phases = {o["phase"] for o in p["ops"]}
        self.assertEqual(phases, {"forward", "backward"})
        self.assertTrue(any("backwardMs" in m for m in p["modules"]))
        self.assertTrue(p["warnings"])


if __name__ == "__main__":
    unittest.main()
