"""The module kinds users meet beyond plain nn.Modules, through the real engine: TorchScript, lazy,
pruned, a `None` child, structured outputs, wrappers (DataParallel, FX, dynamic quantization,
torch.compile), the fused transformer path, and inputs with dtypes and keyword names. Figures are
checked against torch's own counts and torchinfo where it has one."""

import importlib.util
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from engine_process import FIXTURES, EngineProcess, RpcError  # noqa: E402


def fx(name):
    return os.path.join(FIXTURES, name)


def fixture_module(name):
    """The fixture imported in this process, to count with torch / torchinfo directly."""
    if FIXTURES not in sys.path:
        sys.path.insert(0, FIXTURES)
    spec = importlib.util.spec_from_file_location("fixture_" + name[:-3], fx(name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def torch_count(module):
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


class ModelKindsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def load(self, name, **params):
        return self.engine.request("model/load", dict({"file": fx(name)}, **params))

    def views(self, name, **params):
        r = self.load(name, **params)
        tree = self.engine.request("model/tree", {"modelId": r["modelId"]})
        s = self.engine.request("model/summary", {"modelId": r["modelId"]})
        return (
            r,
            {m["path"]: m for m in tree["modules"]},
            s,
            {row["path"]: row for row in s["rows"]},
        )

    def test_torchscript_whole_model(self):
        r, nodes, s, rows = self.views("scripted_model.py", model="scripted")
        self.assertEqual(r["type"], "MLP")
        self.assertEqual(sorted(nodes), ["", "act", "fc1", "fc2"])
        self.assertTrue(nodes[""]["scripted"])
        self.assertEqual(nodes["fc1"]["type"], "Linear")
        self.assertEqual(s["totals"]["params"], 4 * 8 + 8 + 8 * 3 + 3)
        self.assertEqual(rows[""]["outputShape"], [2, 3])
        # Compiled code calls its submodules without hooks: no shapes, and the reason given.
        self.assertIsNone(rows["fc1"]["outputShape"])
        self.assertIn("TorchScript", rows["fc1"]["note"])
        # The aten ops still run under the dispatcher: 2·4·8 + 2·8·3 executed mult-adds.
        self.assertEqual(s["totals"]["executedMacs"], 2 * 4 * 8 + 2 * 8 * 3)

    def test_torchscript_part_of_a_python_model(self):
        r, nodes, s, rows = self.views(
            "scripted_model.py", model="PartlyScripted", inputShapes=[[2, 6]]
        )
        self.assertTrue(nodes["block"]["scripted"])
        self.assertEqual(nodes["block"]["type"], "MLP")
        self.assertEqual(rows["stem"]["outputShape"], [2, 4])
        self.assertEqual(rows[""]["outputShape"], [2, 3])
        # Python code calls the scripted block: its own output is seen, not its insides.
        self.assertEqual(rows["block"]["outputShape"], [2, 3])
        self.assertTrue(rows["block"]["ran"])
        self.assertEqual(rows["block"]["executedMacs"], 2 * 4 * 8 + 2 * 8 * 3)
        self.assertIsNone(rows["block.fc1"]["outputShape"])
        self.assertIn("TorchScript", rows["block.fc1"]["note"])
        self.assertEqual(s["totals"]["params"], 6 * 4 + 4 + 4 * 8 + 8 + 8 * 3 + 3)

    def test_lazy_modules_are_materialized_then_counted(self):
        r, nodes, s, rows = self.views("lazy_model.py")
        self.assertTrue(any("lazy" in w for w in r["warnings"]))
        # conv: 4·3·3·3 + 4; fc: 4·5 + 5, as torch counts after one forward pass.
        m = fixture_module("lazy_model.py").LazyNet()
        m(torch.randn(2, 3, 8, 8))
        self.assertEqual(nodes[""]["totalParams"], torch_count(m))
        self.assertEqual(s["totals"]["params"], 4 * 27 + 4 + 4 * 5 + 5)
        self.assertEqual(rows["fc"]["outputShape"], [2, 5])

    def test_lazy_modules_summary_first(self):
        # model/load never runs the model; the summary's own forward pass materializes them.
        r = self.load("lazy_model.py")
        s = self.engine.request("model/summary", {"modelId": r["modelId"]})
        self.assertEqual(s["totals"]["params"], 4 * 27 + 4 + 4 * 5 + 5)

    def test_pruned_counts_effective_weights_like_torchinfo(self):
        import torchinfo

        r, nodes, s, rows = self.views("pruned_model.py")
        model = fixture_module("pruned_model.py").model
        ti = torchinfo.summary(model, input_data=[torch.randn(4, 1000)], verbose=0, device="cpu")
        self.assertEqual(s["totals"]["params"], ti.total_params)
        self.assertEqual(s["totals"]["macs"], ti.total_mult_adds)
        stored = torch_count(model)
        self.assertEqual(s["totals"]["storedParams"], stored)
        self.assertEqual(stored, 2 * 1_001_000 + 10_010)
        self.assertEqual(s["totals"]["params"], 2 * (500_000 + 1000) + 10_010)
        self.assertEqual(rows["0"]["storedParams"], 1_001_000)
        self.assertEqual(nodes["0"]["effectiveParams"], 501_000)
        # What ran: the masked weights are still multiplied, 4·1000·1000 twice + 4·1000·10.
        self.assertEqual(s["totals"]["executedMacs"], 2 * 4 * 1000 * 1000 + 4 * 1000 * 10)

    def test_none_child_is_ignored_for_leaves(self):
        r, nodes, s, rows = self.views("none_child_model.py")
        self.assertTrue(nodes["proj"]["isLeaf"])
        self.assertTrue(rows["proj"]["isLeaf"])
        # 3·(16+4) + 3·(8+2), torchinfo's rule with batch 3.
        self.assertEqual(s["totals"]["macs"], 3 * 20 + 3 * 10)

    def test_structured_outputs_have_shapes(self):
        r, nodes, s, rows = self.views("structured_outputs_model.py")
        self.assertEqual(rows["pair"]["outputShape"], [[5, 4], [5, 2]])
        self.assertEqual(rows["pair"]["outputType"], "Pair")
        self.assertEqual(rows["heads"]["outputShape"], [[5, 3], [1, 5, 4]])
        self.assertEqual(rows["heads"]["outputType"], "Heads")
        self.assertEqual(rows["images"]["outputShape"], [5, 1, 2, 2])
        self.assertEqual(rows["images"]["outputType"], "Images")
        # A Normal over a [5, 3] batch: its batch_shape + event_shape.
        self.assertEqual(rows["normal"]["outputShape"], [5, 3])
        self.assertEqual(rows["normal"]["outputType"], "Normal")
        self.assertEqual(rows[""]["outputShape"], [5, 3])

    def test_data_parallel_shows_its_module(self):
        r, nodes, s, rows = self.views("wrapped_models.py", model="parallel")
        self.assertEqual(r["type"], "MLP")
        self.assertEqual(nodes[""]["wrapper"], "DataParallel")
        self.assertEqual(sorted(nodes), ["", "act", "fc1", "fc2"])
        self.assertEqual(rows["fc2"]["outputShape"], [2, 3])

    def test_fx_graph_module(self):
        r, nodes, s, rows = self.views("wrapped_models.py", model="traced")
        traced = fixture_module("wrapped_models.py").traced
        self.assertIsInstance(traced, torch.fx.GraphModule)
        self.assertEqual(sorted(nodes), sorted(p for p, _ in traced.named_modules()))
        self.assertEqual(rows["fc1"]["outputShape"], [2, 8])
        self.assertEqual(s["totals"]["params"], 4 * 8 + 8 + 8 * 3 + 3)

    def test_dynamically_quantized_linear_counts_packed_weights(self):
        r, nodes, s, rows = self.views("wrapped_models.py", model="quantized")
        q = fixture_module("wrapped_models.py").quantized
        packed = sum(
            m.weight().numel() + m.bias().numel()
            for m in q.modules()
            if hasattr(m, "weight") and callable(m.weight)
        )
        self.assertEqual(packed, 4 * 8 + 8 + 8 * 3 + 3)
        self.assertEqual(nodes[""]["packedParams"], packed)
        self.assertEqual(s["totals"]["packedParams"], packed)
        self.assertEqual(rows["fc2"]["outputShape"], [2, 3])

    def test_token_ids_inferred_below_num_embeddings(self):
        r = self.load("token_model.py")
        self.assertEqual(r["inputs"][0]["dtype"], "int64")
        self.assertIn("below 100", r["inputs"][0]["note"])
        s = self.engine.request("model/summary", {"modelId": r["modelId"]})
        self.assertEqual({row["path"]: row for row in s["rows"]}[""]["outputShape"], [1, 4])

    def test_plain_shape_for_an_embedding_model_gives_ids(self):
        # Before: a float tensor and a crash inside Embedding.
        r = self.load("token_model.py", inputShapes=[[2, 16]])
        self.assertEqual(r["inputs"][0]["dtype"], "int64")
        f = self.engine.request("model/forward", {"modelId": r["modelId"]})
        self.assertEqual(f["outputShapes"], [[2, 4]])

    def test_named_inputs_with_dtypes(self):
        r = self.load(
            "token_model.py",
            inputs=[
                {"shape": [2, 7], "dtype": "int64", "name": "input_ids"},
                {"shape": [2, 7], "dtype": "float32", "name": "attention_mask"},
            ],
        )
        self.assertEqual([i["name"] for i in r["inputs"]], ["input_ids", "attention_mask"])
        s = self.engine.request("model/summary", {"modelId": r["modelId"]})
        rows = {row["path"]: row for row in s["rows"]}
        self.assertEqual(rows["embed"]["outputShape"], [2, 7, 16])

    def test_input_dtypes_beside_shapes(self):
        r = self.load("token_model.py", inputShapes=[[2, 5]], inputDtypes=["int32"])
        self.assertEqual(r["inputs"][0]["dtype"], "int32")
        with self.assertRaises(RpcError) as cm:
            self.load("token_model.py", inputShapes=[[2, 5]], inputDtypes=["float32", "int64"])
        self.assertIn("inputDtypes", str(cm.exception))

    def test_example_input_dict_is_keyword_arguments(self):
        r = self.load("kwargs_example_model.py")
        self.assertEqual(
            [(i["name"], i["dtype"]) for i in r["inputs"]],
            [("input_ids", "int64"), ("attention_mask", "float32")],
        )
        f = self.engine.request("model/forward", {"modelId": r["modelId"]})
        self.assertEqual(f["outputShapes"], [[2, 4]])

    def test_bad_input_dtype_is_named(self):
        with self.assertRaises(RpcError) as cm:
            self.load("token_model.py", inputs=[{"shape": [2, 7], "dtype": "int65"}])
        self.assertIn("int65", str(cm.exception))


class MetaDeviceTest(unittest.TestCase):
    """Weights that do not fit: built on the meta device where torch can (torch.device as a
    context manager, torch 2.x); on 1.13 the allocation error names the layer's file and line."""

    def test_weights_that_do_not_fit_are_built_on_meta(self):
        e = EngineProcess()
        try:
            if hasattr(torch.device, "__enter__"):
                r = e.request("model/load", {"file": fx("huge_model.py")})
                self.assertTrue(r["meta"])
                self.assertIn("did not fit in memory", r["warnings"][0])
                self.assertEqual(r["inputs"][0]["shape"], [1, 400_000])
                s = e.request("model/summary", {"modelId": r["modelId"]})
                self.assertEqual(s["totals"]["params"], 400_000 * 400_000 + 400_000)
                self.assertEqual(s["totals"]["executedMacs"], 400_000 * 400_000)
                self.assertEqual(
                    {row["path"]: row for row in s["rows"]}["fc"]["outputShape"], [1, 400_000]
                )
                with self.assertRaises(RpcError) as cm:
                    e.request("profile/run", {"modelId": r["modelId"], "steps": 1})
                self.assertEqual(cm.exception.kind, "unsupported")
            else:
                with self.assertRaises(RpcError) as cm:
                    e.request("model/load", {"file": fx("huge_model.py")})
                self.assertIn("can't allocate memory", str(cm.exception))
                self.assertEqual(cm.exception.data["location"]["line"], 9)
        finally:
            e.close()


class CompiledModelTest(unittest.TestCase):
    """torch.compile exists from torch 2.0; on 1.13 the fixture cannot be built, which the
    other test says in the engine's words."""

    def test_compiled_module_shows_the_original_tree(self):
        e = EngineProcess()
        try:
            if hasattr(torch, "compile"):
                r = e.request("model/load", {"file": fx("compiled_model.py")})
                self.assertEqual(r["type"], "MLP")
                self.assertTrue(any("torch.compile" in w for w in r["warnings"]))
                tree = e.request("model/tree", {"modelId": r["modelId"]})
                nodes = {m["path"]: m for m in tree["modules"]}
                self.assertEqual(sorted(nodes), ["", "act", "fc1", "fc2"])
                self.assertEqual(nodes[""]["wrapper"], "torch.compile")
                s = e.request("model/summary", {"modelId": r["modelId"]})
                self.assertEqual(
                    {row["path"]: row for row in s["rows"]}["fc2"]["outputShape"], [2, 3]
                )
            else:
                with self.assertRaises(RpcError) as cm:
                    e.request("model/load", {"file": fx("compiled_model.py")})
                self.assertIn("compile", str(cm.exception))
        finally:
            e.close()


if __name__ == "__main__":
    unittest.main()
