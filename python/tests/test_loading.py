"""model/load: candidates, example inputs, inferred inputs, and every bad-input fixture ending in
a protocol error with the right kind and location, the engine answering afterwards."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_process import EXAMPLES, FIXTURES, EngineProcess, RpcError  # noqa: E402


def fx(name):
    return os.path.join(FIXTURES, name)


def line_of(path, needle):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i
    raise AssertionError("%r not in %s" % (needle, path))


class LoadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess(cwd=EXAMPLES)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_iris_example_is_imported_not_run(self):
        e = self.engine
        path = os.path.join(EXAMPLES, "iris_mlp.py")
        r = e.request("model/load", {"file": path})
        self.assertEqual(r["name"], "IrisMLP")
        self.assertEqual(r["type"], "IrisMLP")
        self.assertEqual(
            r["inputs"],
            [
                {
                    "shape": [8, 4],
                    "dtype": "float32",
                    "source": "example",
                    "note": "module-level `example_input`",
                }
            ],
        )
        self.assertEqual(r["location"]["line"], line_of(path, "class IrisMLP"))
        # The __main__ block trains and prints "epoch ..."; inspect mode must not run it.
        self.assertFalse(any("epoch" in n["text"] for n in e.notes("output")))
        s = e.request("model/summary", {"modelId": r["modelId"]})
        # 4·10+10 + 10·3+3 = 83 parameters; mult-adds 8·(40+10) + 8·(30+3) = 664.
        self.assertEqual(s["totals"]["params"], 83)
        self.assertEqual(s["totals"]["macs"], 664)

    def test_input_shapes_param_wins(self):
        r = self.engine.request(
            "model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py"), "inputShapes": [[5, 4]]}
        )
        self.assertEqual(r["inputs"], [{"shape": [5, 4], "dtype": "float32", "source": "request"}])
        f = self.engine.request("model/forward", {"modelId": r["modelId"]})
        self.assertEqual(f["outputShapes"], [[5, 3]])

    def test_inferred_input_from_first_conv(self):
        r = self.engine.request("model/load", {"file": fx("inferred_input.py")})
        spec = r["inputs"][0]
        self.assertEqual(spec["source"], "inferred")
        self.assertEqual(spec["shape"][:2], [1, 3])
        self.assertIn("conv1", spec["note"])
        self.assertIn("in_channels=3", spec["note"])
        self.assertTrue(any("inferred" in w for w in r["warnings"]))
        f = self.engine.request("model/forward", {"modelId": r["modelId"]})
        self.assertEqual(f["outputShapes"], [[1, 2]])

    def test_ambiguous_then_named(self):
        with self.assertRaises(RpcError) as cm:
            self.engine.request("model/load", {"file": fx("two_models.py")})
        self.assertEqual(cm.exception.kind, "ambiguousModel")
        self.assertEqual(sorted(cm.exception.data["candidates"]), ["Classifier", "Encoder"])
        r = self.engine.request(
            "model/load",
            {"file": fx("two_models.py"), "model": "Classifier", "inputShapes": [[2, 5]]},
        )
        self.assertEqual(r["name"], "Classifier")
        self.assertEqual(sorted(c["name"] for c in r["candidates"]), ["Classifier", "Encoder"])

    def test_stale_model_id_is_not_loaded(self):
        a = self.engine.request("model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py")})
        self.engine.request("model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py")})
        with self.assertRaises(RpcError) as cm:
            self.engine.request("model/tree", {"modelId": a["modelId"]})
        self.assertEqual(cm.exception.kind, "notLoaded")
        self.assertEqual(cm.exception.code, -32004)


class BadInputTest(unittest.TestCase):
    """Each case must end in the right error kind and place, and the engine must answer the
    next request (a real load) afterwards."""

    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def fails(self, name, kind, request="model/load", **params):
        e = self.engine
        with self.assertRaises(RpcError) as cm:
            if request == "model/load":
                e.request("model/load", dict({"file": fx(name)}, **params))
            else:
                r = e.request("model/load", dict({"file": fx(name)}, **params))
                e.request(request, {"modelId": r["modelId"]})
        err = cm.exception
        self.assertEqual(err.kind, kind, "%s: %s %s" % (name, err, err.data))
        self.assertEqual(err.code, -32001)
        # Still alive and useful.
        r = e.request("model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py")})
        self.assertEqual(r["name"], "IrisMLP")
        return err

    def test_syntax_error(self):
        err = self.fails("bad_syntax.py", "syntaxError")
        self.assertEqual(err.data["location"]["file"], fx("bad_syntax.py"))
        self.assertEqual(
            err.data["location"]["line"], line_of(fx("bad_syntax.py"), "def forward(self, x)")
        )

    def test_import_error(self):
        err = self.fails("bad_import.py", "importError")
        self.assertEqual(
            err.data["location"]["line"],
            line_of(fx("bad_import.py"), "import model_lens_no_such_package"),
        )
        self.assertEqual(err.data["got"], "model_lens_no_such_package")

    def test_no_module(self):
        err = self.fails("no_module.py", "noModel")
        joined = " ".join(err.data["candidates"])
        self.assertIn("make_tensor", joined)
        self.assertIn("NotAModule", joined)

    def test_constructor_needs_args(self):
        err = self.fails("needs_args.py", "constructorArgs")
        self.assertIn("hidden", str(err))
        self.assertIn("classes", str(err))
        self.assertNotIn("dropout", err.data["expected"])
        self.assertEqual(
            err.data["location"]["line"], line_of(fx("needs_args.py"), "class Configurable")
        )

    def test_wrong_input_shape(self):
        err = self.fails("wrong_shape.py", "shapeMismatch", request="model/summary")
        self.assertEqual(err.data["layer"], "fc1")
        self.assertIn("4", err.data["expected"])  # fc1.in_features
        self.assertIn("[2, 5]", err.data["got"])  # example_input
        self.assertIn("mat1 and mat2", str(err))
        self.assertEqual(
            err.data["location"]["line"],
            line_of(fx("wrong_shape.py"), "x = torch.relu(self.fc1(x))"),
        )

    def test_wrong_shape_also_in_forward(self):
        err = self.fails("wrong_shape.py", "shapeMismatch", request="model/forward")
        self.assertEqual(err.data["layer"], "fc1")

    def test_conv_channels_named(self):
        err = self.fails(
            "resnet18_model.py",
            "shapeMismatch",
            request="model/summary",
            inputShapes=[[1, 4, 64, 64]],
        )
        self.assertEqual(err.data["layer"], "conv1")
        self.assertIn("3 channels", err.data["expected"])  # resnet18.conv1.in_channels
        self.assertIn("[1, 4, 64, 64]", err.data["got"])

    def test_sys_exit_at_import(self):
        err = self.fails("exits_at_import.py", "userExit")
        self.assertEqual(
            err.data["location"]["line"], line_of(fx("exits_at_import.py"), "sys.exit(3)")
        )

    def test_raising_forward(self):
        err = self.fails("raising_forward.py", "userCodeError", request="model/summary")
        self.assertEqual(
            err.data["location"]["line"], line_of(fx("raising_forward.py"), "raise ValueError")
        )
        self.assertEqual(err.data["location"]["function"], "forward")
        self.assertIn("forward refuses to run", str(err))

    def test_device_mismatch(self):
        err = self.fails("device_mismatch.py", "deviceMismatch", request="model/forward")
        self.assertEqual(err.data["layer"], "head")
        self.assertEqual(err.data["expected"], "meta")
        self.assertEqual(err.data["got"], "cpu")
        self.assertEqual(
            err.data["location"]["line"],
            line_of(fx("device_mismatch.py"), "return self.fc(x) + self.offset"),
        )

    def test_input_on_another_device_than_the_model(self):
        # A model on the CPU with an example input on meta: the input is on the wrong device,
        # not the parameters, and it is named as such (was: an engine error, or "its
        # parameters/buffers are on meta").
        err = self.fails("meta_input.py", "deviceMismatch")
        self.assertEqual(err.data["expected"], "cpu")
        self.assertEqual(err.data["got"], "meta")
        self.assertIn("example_input is on meta", str(err))
        self.assertNotIn("parameters/buffers are on meta", str(err))

    def test_input_too_large_is_refused_before_allocating(self):
        # 100000 × 100000 float32 is 40 GB: refused with its size (was an allocator failure from
        # inside torch), and the engine stays usable. Inputs from the editor take this path.
        e = self.engine
        with self.assertRaises(RpcError) as cm:
            e.request(
                "model/load",
                {"file": os.path.join(EXAMPLES, "iris_mlp.py"), "inputShapes": [[100000, 100000]]},
            )
        err = cm.exception
        self.assertEqual(err.kind, "badRequest", "%s %s" % (err, err.data))
        self.assertIn("input too large", str(err))
        self.assertIn("40,000,000,000 bytes", str(err))
        r = e.request("model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py")})
        self.assertTrue(r["modelId"])

    def test_model_file_above_the_engine_package(self):
        # A model in an ancestor folder of the engine (here python/) makes the loader purge that
        # folder's modules from sys.modules; the engine's own modules must survive it.
        from engine_process import PYTHON_DIR

        path = os.path.join(PYTHON_DIR, "_model_lens_test_model_%d.py" % os.getpid())
        with open(path, "w") as f:
            f.write(
                "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def forward(self, x):\n"
                "        raise RuntimeError('boom')\n"
            )
        try:
            for _ in range(2):
                with self.assertRaises(RpcError) as cm:
                    r = self.engine.request("model/load", {"file": path, "inputShapes": [[1, 2]]})
                    self.engine.request("model/summary", {"modelId": r["modelId"]})
                self.assertEqual(cm.exception.kind, "userCodeError")
                self.assertEqual(cm.exception.data["location"]["line"], 6)
        finally:
            os.remove(path)

    def test_missing_file(self):
        err = self.fails("no_such_file.py", "fileNotFound")
        self.assertIn("no_such_file.py", str(err))


if __name__ == "__main__":
    unittest.main()
