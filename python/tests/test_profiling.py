"""profile/run's tables (issue #10): op rows grouped by input shapes as torch.profiler groups
them, warm-up excluded and said, a backward figure for every module with parameters."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine_process import EXAMPLES, EngineProcess  # noqa: E402

IRIS = os.path.join(EXAMPLES, "iris_mlp.py")
STEPS = 4


class ProfileTablesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess(cwd=EXAMPLES)
        cls.mid = cls.engine.request("model/load", {"file": IRIS})["modelId"]

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def profile(self, mode):
        return self.engine.request(
            "profile/run", {"modelId": self.mid, "steps": STEPS, "warmup": 1, "mode": mode}
        )

    def test_ops_grouped_by_input_shapes_like_torch_profiler(self):
        import torch
        import torch.nn as nn

        r = self.profile("forward")
        addmm = sorted(o["inputShapes"][0] for o in r["ops"] if o["name"] == "aten::addmm")
        # The reference: torch's own profiler over the same layers (4 → 10 → 3, batch 8).
        model = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3))
        with torch.no_grad(), torch.autograd.profiler.profile(record_shapes=True) as prof:
            model(torch.randn(8, 4))
        ref = sorted(
            [s for s in e.input_shapes if s]  # scalar arguments (beta, alpha) are []
            for e in prof.key_averages(group_by_input_shape=True)
            if e.key == "aten::addmm"
        )
        self.assertEqual(addmm, ref)
        self.assertEqual(len(addmm), 2)
        for o in r["ops"]:
            self.assertEqual(o["calls"] % STEPS, 0, o)  # warm-up calls are not counted

    def test_warmup_excluded_and_said(self):
        r = self.profile("forward")
        self.assertIn("1 warm-up step excluded", r["method"])
        self.assertEqual(
            {m["path"]: m["calls"] for m in r["modules"]},
            {"": STEPS, "fc1": STEPS, "act": STEPS, "fc2": STEPS},
        )

    def test_train_mode_has_phases_and_backward_for_every_module_with_parameters(self):
        r = self.profile("train")
        phases = {o["phase"] for o in r["ops"]}
        self.assertEqual(phases, {"forward", "backward"})
        rows = {}
        for o in r["ops"]:
            key = (o["name"], o["phase"], str(o["inputShapes"]))
            self.assertNotIn(key, rows, "two rows nothing tells apart")
            rows[key] = o
        back = {m["path"]: m.get("backwardMs") for m in r["modules"]}
        # The root and fc1 take an input that needs no gradient: their backward ends with
        # their parameters' gradients.
        for path in ("", "fc1", "fc2"):
            self.assertIsNotNone(back[path], path)
            self.assertGreater(back[path], 0, path)


class ContiguityReasonTest(unittest.TestCase):
    def test_unfold_windows_overlap(self):
        import torch

        from model_lens_engine.tensors import contiguity

        # Issue #10: unfold's windows were said to have "gaps between its elements".
        w = torch.arange(10.0).unfold(0, 3, 1)  # 8 windows of 3, each one element on
        self.assertEqual(
            (list(w.shape), list(w.stride()), w.is_contiguous()), ([8, 3], [1, 1], False)
        )
        r = contiguity(list(w.shape), list(w.stride()), w.is_contiguous(), w)
        self.assertIn("overlapping", r["reason"])
        self.assertNotIn("gaps", r["reason"])
        # A real slice with gaps keeps its reason.
        g = torch.arange(20.0).view(4, 5)[:, :2]
        r = contiguity(list(g.shape), list(g.stride()), g.is_contiguous(), g)
        self.assertIn("gaps between its elements", r["reason"])


if __name__ == "__main__":
    unittest.main()
