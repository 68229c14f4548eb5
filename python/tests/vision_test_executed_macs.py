"""Executed mult-adds (the aten ops that ran) against torchvision's documented GFLOPS and
torchinfo: resnet50 at 1×3×224×224 equals torchinfo's 4.09 G (a convnet's work is all in
parameterised layers), vit_l_16 is within 1% of its documented 61.55 G (attention's matmuls are
functional ops torchinfo does not see). vit_b_16 (17.56), vit_b_32 and inception_v3 are checked in
vision_test_torchinfo_oracle.py, which already runs them at their documented sizes."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchinfo  # noqa: E402
import torchvision  # noqa: E402
from engine_process import FIXTURES, EngineProcess, RpcError  # noqa: E402
from in_process import summary  # noqa: E402

VIT_L_16_GMACS = 61.55
DOCUMENTED_TOLERANCE = 0.01


class ExecutedMacsTest(unittest.TestCase):
    def test_resnet50_equals_torchinfo(self):
        model = torchvision.models.resnet50().eval()
        x = torch.randn(1, 3, 224, 224)
        ti = torchinfo.summary(model, input_data=[x], verbose=0, device="cpu")
        s = summary(model, (x,))
        self.assertEqual(round(ti.total_mult_adds / 1e9, 2), 4.09)
        self.assertEqual(round(s["totals"]["executedMacs"] / 1e9, 2), 4.09)
        self.assertEqual(s["totals"]["macs"], ti.total_mult_adds)
        # Batch norm has no multiply-add formula: named, not silently zero.
        self.assertIn("aten.native_batch_norm", [o["name"] for o in s["totals"]["uncountedOps"]])

    def test_vit_l_16_on_the_meta_device(self):
        e = EngineProcess()
        try:
            params = {"file": os.path.join(FIXTURES, "vit_l_16_model.py"), "device": "meta"}
            if hasattr(torch.device, "__enter__"):
                r = e.request("model/load", params)
                self.assertTrue(r["meta"])
                s = e.request("model/summary", {"modelId": r["modelId"]})
                got = s["totals"]["executedMacs"] / 1e9
                self.assertLess(abs(got / VIT_L_16_GMACS - 1), DOCUMENTED_TOLERANCE, got)
                self.assertEqual(s["totals"]["params"], 304_326_632)
            else:  # torch 1.13: no torch.device context manager, said in the engine's words
                with self.assertRaises(RpcError) as cm:
                    e.request("model/load", params)
                self.assertEqual(cm.exception.kind, "unsupported")
                self.assertIn("torch 2.0", str(cm.exception))
        finally:
            e.close()


if __name__ == "__main__":
    unittest.main()
