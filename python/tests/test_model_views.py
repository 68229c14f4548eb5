"""model/tree, model/summary and tensor/inspect against hand-computed and published figures."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_process import FIXTURES, EngineProcess, RpcError  # noqa: E402

VIEW_ERROR = (
    "view size is not compatible with input tensor's size and stride (at least one dimension "
    "spans across two contiguous subspaces). Use .reshape(...) instead."
)


def fx(name):
    return os.path.join(FIXTURES, name)


def line_of(path, needle):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i
    raise AssertionError(needle)


class TreeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()
        cls.load = cls.engine.request("model/load", {"file": fx("shared_model.py")})
        cls.tree = cls.engine.request("model/tree", {"modelId": cls.load["modelId"]})
        cls.nodes = {m["path"]: m for m in cls.tree["modules"]}

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_chosen_model(self):
        self.assertEqual(self.load["name"], "SharedNet")

    def test_shared_module_once_with_aliases(self):
        paths = [m["path"] for m in self.tree["modules"]]
        self.assertEqual(len(paths), len(set(paths)))
        self.assertIn("shared", self.nodes)
        self.assertNotIn("blocks.1", self.nodes)
        self.assertEqual(self.nodes["shared"]["aliases"], ["blocks.1"])
        self.assertEqual(self.nodes["blocks"]["children"], ["blocks.0", "shared", "blocks.2"])
        self.assertEqual(self.nodes["heads"]["children"], ["heads.cls", "heads.aux"])
        self.assertEqual(self.nodes["blocks.0.fc"]["parent"], "blocks.0")
        self.assertEqual(self.nodes["blocks.0.fc"]["depth"], 3)

    def test_counts_shared_parameters_once(self):
        root = self.nodes[""]
        # stem 4·8+8=40, norm 8+8=16, shared 8·8+8=72, two Blocks 72 each, heads.cls 8·3+3=27,
        # heads.aux only its bias 3 (its weight is heads.cls.weight), frozen 72.
        self.assertEqual(root["totalParams"], 40 + 16 + 72 + 72 + 72 + 27 + 3 + 72)
        self.assertEqual(root["trainableParams"], root["totalParams"] - 72)
        self.assertEqual(root["ownParams"], 0)
        self.assertEqual(self.nodes["blocks"]["totalParams"], 72 * 3)
        self.assertEqual(self.nodes["heads"]["totalParams"], 27 + 3)
        self.assertTrue(self.nodes["frozen"]["frozen"])
        self.assertFalse(self.nodes["stem"]["frozen"])
        self.assertTrue(self.nodes["stem"]["isLeaf"])
        self.assertFalse(self.nodes["blocks"]["isLeaf"])

    def test_tied_and_shared_parameter_aliases(self):
        params = {p["name"]: p for p in self.tree["parameters"]}
        self.assertEqual(params["shared.weight"]["aliases"], ["blocks.1.weight"])
        self.assertEqual(params["heads.cls.weight"]["aliases"], ["heads.aux.weight"])
        self.assertNotIn("heads.aux.weight", params)
        self.assertFalse(params["frozen.weight"]["requiresGrad"])
        self.assertEqual(params["frozen.weight"]["module"], "frozen")

    def test_buffers(self):
        bufs = {b["name"]: b for b in self.tree["buffers"]}
        self.assertEqual(
            set(bufs),
            {"scale", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"},
        )
        self.assertFalse(bufs["scale"]["persistent"])
        self.assertTrue(bufs["norm.running_mean"]["persistent"])
        self.assertEqual(bufs["norm.num_batches_tracked"]["tensor"]["dtype"], "int64")
        self.assertEqual(bufs["norm.running_var"]["tensor"]["shape"], [8])
        self.assertEqual(bufs["norm.running_var"]["module"], "norm")

    def test_source_locations(self):
        path = fx("shared_model.py")
        stem = self.nodes["stem"]["source"]
        self.assertEqual(stem["creation"]["file"], path)
        self.assertEqual(stem["creation"]["line"], line_of(path, "self.stem = nn.Linear(4, 8)"))
        self.assertEqual(
            self.nodes["blocks.0"]["source"]["definition"]["line"], line_of(path, "class Block")
        )
        self.assertEqual(
            self.nodes["blocks.0.fc"]["source"]["creation"]["line"],
            line_of(path, "self.fc = nn.Linear(width, width)"),
        )
        self.assertEqual(
            self.nodes["blocks.0"]["source"]["creation"]["line"],
            line_of(path, "self.blocks = nn.ModuleList"),
        )

    def test_shared_summary(self):
        s = self.engine.request("model/summary", {"modelId": self.load["modelId"]})
        rows = {r["path"]: r for r in s["rows"]}
        self.assertEqual(s["totals"]["params"], 374)
        self.assertEqual(s["totals"]["nonTrainableParams"], 72)
        self.assertEqual(rows["shared"]["aliases"], ["blocks.1"])
        self.assertIn("2 times", rows["shared"]["note"])
        # Batch 2: stem (32+8)·2=80, norm 16·2=32, each 8→8 Linear 72·2=144 (blocks.0.fc,
        # shared twice, blocks.2.fc, frozen = 5 calls), heads 27·2 + 27·2 (aux uses the tied
        # weight too) = 108.
        self.assertEqual(s["totals"]["macs"], 80 + 32 + 5 * 144 + 108)


class SummaryTest(unittest.TestCase):
    """torchinfo's published totals (see /work/shared/anchors.md)."""

    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def summary(self, name):
        r = self.engine.request("model/load", {"file": fx(name)})
        return self.engine.request("model/summary", {"modelId": r["modelId"]})

    def test_resnet18_torchinfo_totals(self):
        s = self.summary("resnet18_model.py")
        self.assertEqual(s["totals"]["params"], 11_689_512)
        self.assertEqual(round(s["totals"]["macs"] / 1e6, 2), 148.57)
        self.assertEqual(s["totals"]["paramBytes"], 11_689_512 * 4)
        self.assertEqual(s["totals"]["inputBytes"], 3 * 64 * 64 * 4)
        # torchinfo's "Forward/backward pass size (MB)": 3.25 (2 × the output bytes of layers
        # with parameters); the bytes of every leaf output are a separate figure.
        self.assertEqual(round(s["totals"]["forwardBackwardBytes"] / 1e6, 2), 3.25)
        self.assertGreater(s["totals"]["leafOutputBytes"], s["totals"]["forwardBackwardBytes"] / 2)
        rows = {r["path"]: r for r in s["rows"]}
        self.assertEqual(rows["conv1"]["outputShape"], [1, 64, 32, 32])
        # conv1: 64·3·7·7 weights × 32·32 positions
        self.assertEqual(rows["conv1"]["macs"], 9408 * 32 * 32)
        self.assertEqual(rows["fc"]["macs"], 512 * 1000 + 1000)
        self.assertEqual(rows["layer1"]["params"], 147_968)
        self.assertTrue(all(r["ran"] for r in s["rows"]))

    def test_resnet50_torchinfo_totals(self):
        s = self.summary("resnet50_model.py")
        self.assertEqual(s["totals"]["params"], 25_557_032)
        self.assertEqual(round(s["totals"]["macs"] / 1e9, 2), 8.18)

    def test_fused_transformer_every_module_has_its_shape(self):
        # The fused fast path (eval + no_grad) would skip the inner modules' hooks
        # (pytorch#128413); the summary pass turns it off (torch 2.x) or runs with gradients
        # (torch 1.13), so every inner module reports its own shape.
        s = self.summary("transformer_model.py")
        rows = {r["path"]: r for r in s["rows"]}
        # MultiheadAttention uses out_proj's weights through F.multi_head_attention_forward: it is
        # the one module that is never called itself.
        self.assertEqual(
            [r["path"] for r in s["rows"] if not r["ran"]], ["layer.self_attn.out_proj"]
        )
        self.assertIn("functional", rows["layer.self_attn.out_proj"]["note"])
        self.assertEqual(rows["layer.linear1"]["outputShape"], [1, 5, 32])
        self.assertEqual(rows["layer.linear2"]["outputShape"], [1, 5, 16])
        self.assertEqual(rows["layer.norm2"]["outputShape"], [1, 5, 16])
        # torchinfo's rule for linear1: (16·32 + 32) weights × batch 1.
        self.assertEqual(rows["layer.linear1"]["macs"], 16 * 32 + 32)
        # Executed: linear1 multiplies 5 tokens × 16 × 32.
        self.assertEqual(rows["layer.linear1"]["executedMacs"], 5 * 16 * 32)
        # Attention: in-projection 5·16·48, scores and weighted sum 2·(2 heads · 5 · 5 · 8),
        # out-projection 5·16·16.
        self.assertEqual(
            rows["layer.self_attn"]["executedMacs"], 5 * 16 * 48 + 2 * 2 * 5 * 5 * 8 + 5 * 16 * 16
        )


class TensorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()
        cls.mid = cls.engine.request("model/load", {"file": fx("permuted_output.py")})["modelId"]

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def inspect(self, target, **kw):
        return self.engine.request(
            "tensor/inspect", dict({"modelId": self.mid, "target": target}, **kw)
        )

    def test_permuted_output(self):
        r = self.inspect({"kind": "output", "path": "permute"})
        t = r["tensor"]
        self.assertEqual(r["name"], "output:permute")
        # (2,3,4) contiguous has strides (12,4,1); permute(2,0,1) gives shape (4,2,3),
        # strides (1,12,4).
        self.assertEqual(t["shape"], [4, 2, 3])
        self.assertEqual(t["stride"], [1, 12, 4])
        self.assertFalse(t["contiguous"])
        self.assertEqual(t["contiguity"]["breaksAt"], 0)
        self.assertTrue(t["view"]["wouldFail"])
        self.assertEqual(t["view"]["error"], VIEW_ERROR)
        self.assertEqual(t["view"]["copyBytes"], 24 * 4)
        self.assertEqual(t["bytes"], 96)
        self.assertEqual(t["dtype"], "float32")
        self.assertIn("output:scale", t["storage"]["sharedWith"])
        self.assertEqual(t["viewOf"], "output:scale")

    def test_root_output_is_the_same_tensor(self):
        t = self.inspect({"kind": "output", "path": ""}, stats=True)
        self.assertFalse(t["tensor"]["contiguous"])
        self.assertEqual(t["stats"]["numel"], 24)
        self.assertEqual(sum(t["histogram"]["counts"]), 24)

    def test_parameter_and_input(self):
        w = self.inspect({"kind": "parameter", "name": "scale.weight"})["tensor"]
        self.assertTrue(w["contiguous"])
        self.assertEqual(w["stride"], [4, 1])
        self.assertFalse(w["view"]["wouldFail"])
        self.assertEqual(w["view"]["copyBytes"], 0)
        self.assertIsNone(w["contiguity"]["breaksAt"])
        x = self.inspect({"kind": "input", "index": 0})
        self.assertEqual(x["name"], "input:0")
        self.assertEqual(x["tensor"]["shape"], [2, 3, 4])

    def test_unknown_targets(self):
        with self.assertRaises(RpcError) as cm:
            self.inspect({"kind": "output", "path": "nope"})
        self.assertEqual(cm.exception.kind, "unknownPath")
        with self.assertRaises(RpcError) as cm:
            self.inspect({"kind": "parameter", "name": "nope.weight"})
        self.assertEqual(cm.exception.kind, "unknownPath")


class ContiguityUnitTest(unittest.TestCase):
    def test_cases(self):
        import torch

        from model_lens_engine.tensors import tensor_info

        sliced = tensor_info(torch.zeros(4, 6)[:, ::2])
        self.assertEqual(sliced["contiguity"]["breaksAt"], 1)
        self.assertFalse(
            sliced["view"]["wouldFail"]
        )  # view(-1) of a (4,3) stride (6,2) works: one stride 2
        self.assertEqual(sliced["view"]["copyBytes"], 12 * 4)
        expanded = tensor_info(torch.zeros(4, 1).expand(4, 5))
        self.assertEqual(expanded["stride"], [1, 0])
        self.assertIn("expanded", expanded["contiguity"]["reason"])
        cl = tensor_info(torch.zeros(2, 3, 4, 5).to(memory_format=torch.channels_last))
        self.assertEqual(cl["contiguity"]["memoryFormat"], "channels_last")
        ones = tensor_info(torch.zeros(1, 5, 1))
        self.assertTrue(ones["contiguous"])
        base = torch.zeros(10)
        tail = base[3:]
        self.assertEqual(tensor_info(tail)["storageOffset"], 3)
        self.assertEqual(tensor_info(tail)["storage"]["bytes"], 40)


if __name__ == "__main__":
    unittest.main()


class StatsUnitTest(unittest.TestCase):
    def test_hand_computed(self):
        import torch

        from model_lens_engine.tensors import finish_stats, quick_stats_vector, tensor_stats

        t = torch.tensor([1.0, 2.0, float("nan"), float("inf"), 0.0])
        # Finite values 1, 2, 0: mean 1, population std sqrt(2/3).
        want = {
            "numel": 5,
            "mean": 1.0,
            "min": 0.0,
            "max": 2.0,
            "nanCount": 1,
            "infCount": 1,
            "zeroCount": 1,
        }
        for got in (tensor_stats(t), finish_stats(quick_stats_vector(t).tolist(), t)):
            self.assertEqual({k: got[k] for k in want}, want)
            self.assertAlmostEqual(got["std"], (2 / 3) ** 0.5, places=6)
        ints = finish_stats(quick_stats_vector(torch.arange(5)).tolist(), None)
        self.assertEqual(
            (ints["mean"], ints["min"], ints["max"], ints["zeroCount"], ints["nanCount"]),
            (2.0, 0.0, 4.0, 1, 0),
        )
        self.assertAlmostEqual(ints["std"], 2**0.5, places=6)
