"""train/start, train/stop, train/diagnose on the real engine: a user's script run unchanged."""

import math
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_process import EXAMPLES, FIXTURES, EngineProcess, RpcError  # noqa: E402
from procs import children_of  # noqa: E402

IRIS = os.path.join(EXAMPLES, "iris_train.py")
RUN_TIMEOUT_S = 180
# The promise: a stop ends even an endless Python loop within this.
STOP_LIMIT_S = 2.0
TERMINAL = ("done", "stopped", "failed")


def line_of(path, needle):
    with open(path) as f:
        for i, text in enumerate(f, 1):
            if needle in text:
                return i
    raise AssertionError("%r not in %s" % (needle, path))


class TrainingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess(cwd=EXAMPLES)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def tearDown(self):
        # A failed test must not leave its run going into the next one.
        runs = {p["runId"] for p in self.engine.notes("train/progress")}
        ended = {p["runId"] for p in self.engine.notes("train/progress") if p["state"] in TERMINAL}
        for run_id in runs - ended:
            try:
                self.engine.request("train/stop", {"runId": run_id})
            except RpcError:
                pass

    def progress(self, run_id):
        return [p for p in self.engine.notes("train/progress") if p["runId"] == run_id]

    def wait_for(self, what, timeout=RUN_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = what()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError("timed out; engine stderr:\n" + "".join(self.engine.stderr[-30:]))

    def start(self, file, args=None):
        return self.engine.request("train/start", {"file": file, "args": args or []})["runId"]

    def run_to_end(self, file, args=None):
        run_id = self.start(file, args)
        self.wait_for(lambda: any(p["state"] in TERMINAL for p in self.progress(run_id)))
        return run_id, self.progress(run_id)

    def curve(self, ps):
        return [pt for p in ps for pt in p["loss"]]

    def test_iris_progress_curve_and_sync_line(self):
        epochs = 300
        run_id, ps = self.run_to_end(IRIS, [str(epochs)])
        final = ps[-1]
        self.assertEqual(ps[0]["state"], "starting")
        self.assertEqual(final["state"], "done", final)
        self.assertEqual([p["state"] for p in ps].count("done"), 1)
        # One optimizer step per epoch, full batch.
        self.assertEqual(final["step"], epochs)
        self.assertEqual(
            (final["epoch"], final["totalEpochs"], final["totalSteps"]), (epochs, epochs, epochs)
        )
        self.assertEqual(final["lr"], 0.1)
        curve = self.curve(ps)
        self.assertEqual([s for s, _ in curve], list(range(1, epochs + 1)))
        losses = [v for _, v in curve]
        # Untrained 3-class cross-entropy is about ln 3; training brings it well down.
        self.assertAlmostEqual(losses[0], math.log(3), delta=0.35)
        self.assertLess(sum(losses[-20:]) / 20, 0.5 * sum(losses[:20]) / 20)
        # What the script printed for epoch 0 is the curve's first point.
        out = "".join(o["text"] for o in self.engine.notes("output") if o.get("runId") == run_id)
        printed = float(out.split("epoch 0 loss ")[1].split()[0])
        self.assertAlmostEqual(printed, losses[0], places=4)
        self.assertIn("test accuracy", out)
        self.assertTrue(final["modelId"])
        tree = self.engine.request("model/tree", {"modelId": final["modelId"]})
        self.assertEqual([m["path"] for m in tree["modules"]], ["", "fc1", "relu", "fc2"])
        self.assertEqual(tree["modules"][0]["type"], "IrisNet")

        diag = [d for d in self.engine.notes("train/diagnosis") if d["runId"] == run_id][-1]
        self.assertEqual(diag, self.engine.request("train/diagnose", {"runId": run_id}))
        self.assertEqual(diag["steps"], epochs)
        self.assertEqual(diag["device"], "cpu")
        self.assertEqual(diag["batchSize"], 120)  # TRAIN_ROWS of 150 flowers
        self.assertEqual(diag["hostToDevice"], {"count": 0, "bytes": 0})
        line = line_of(IRIS, "loss.item()")
        items = [
            s
            for s in diag["syncs"]
            if s["kind"] == "item" and s.get("source", {}).get("line") == line
        ]
        self.assertEqual(len(items), 1, diag["syncs"])
        self.assertEqual(items[0]["source"]["file"], IRIS)
        self.assertEqual(items[0]["count"], 3)  # epochs 0, 100, 200
        text = " ".join(f["message"] for f in diag["findings"])
        self.assertIn(
            "loss.item() at iris_train.py:%d forces a device sync every 100 steps" % line, text
        )
        self.assertNotIn("`", text)  # shown as plain text, in the panel and the CLI
        self.assertIn("cost nothing on CPU", text)
        # One clock: the final rate covers the same steps (2 to the last) as stepMs.
        self.assertAlmostEqual(final["stepsPerSec"] * diag["stepMs"] / 1e3, 1.0, places=6)
        self.assertAlmostEqual(diag["opsPerStep"] * diag["avgOpUs"] / 1e3, diag["stepMs"], places=6)
        b = diag["breakdown"]
        self.assertGreater(b["forwardMs"], 0)
        self.assertGreater(b["backwardMs"], 0)
        self.assertGreater(b["optimizerMs"], 0)
        self.assertGreater(diag["opsPerStep"], 10)

    def test_iris_weight_and_grad_histograms(self):
        epochs, every = 220, 50
        run_id = self.engine.request(
            "train/start",
            {
                "file": IRIS,
                "args": [str(epochs)],
                "histogramEverySteps": every,
                "histogramMinIntervalMs": 0,
            },
        )["runId"]
        self.wait_for(lambda: any(p["state"] in TERMINAL for p in self.progress(run_id)))
        final = self.progress(run_id)[-1]
        self.assertEqual(final["state"], "done", final)
        hs = [h for h in self.engine.notes("train/histograms") if h["runId"] == run_id]
        # Every 50th step, then once at the end (step 220 is not a multiple of 50).
        self.assertEqual([h["step"] for h in hs], [50, 100, 150, 200, 220])
        # IrisNet is 4 -> 10 -> 3: weights are out x in.
        numel = {"fc1.weight": 40, "fc1.bias": 10, "fc2.weight": 30, "fc2.bias": 3}
        shapes = {"fc1.weight": [10, 4], "fc1.bias": [10], "fc2.weight": [3, 10], "fc2.bias": [3]}
        for h in hs:
            self.assertEqual([p["name"] for p in h["params"]], list(numel))
            self.assertNotIn("omitted", h)
            for p in h["params"]:
                self.assertEqual(p["shape"], shapes[p["name"]])
                for part in ("weight", "grad"):
                    self.assertIn(part, p, (h["step"], p["name"]))
                    s, hist = p[part]["stats"], p[part]["histogram"]
                    self.assertEqual(s["numel"], numel[p["name"]])
                    self.assertEqual((s["nanCount"], s["infCount"]), (0, 0))
                    self.assertEqual(len(hist["counts"]), 20)
                    self.assertEqual(sum(hist["counts"]), numel[p["name"]])
                    self.assertEqual((hist["min"], hist["max"]), (s["min"], s["max"]))
                    self.assertLessEqual(s["min"], s["mean"])
                    self.assertLessEqual(s["mean"], s["max"])
        # Weights change between snapshots, and the gradient of CrossEntropy w.r.t. the output
        # bias sums to zero over the classes (softmax minus one-hot), so fc2.bias's grad mean is ~0.
        w = lambda h, n: next(p for p in h["params"] if p["name"] == n)  # noqa: E731
        self.assertNotEqual(
            w(hs[0], "fc1.weight")["weight"]["stats"]["mean"],
            w(hs[-1], "fc1.weight")["weight"]["stats"]["mean"],
        )
        self.assertAlmostEqual(w(hs[-1], "fc2.bias")["grad"]["stats"]["mean"], 0.0, places=6)
        # The last snapshot is the trained weights: the same histogram torch.histc gives for them.
        ref = self.engine.request(
            "tensor/inspect",
            {
                "modelId": final["modelId"],
                "stats": True,
                "histogramBins": 20,
                "target": {"kind": "parameter", "name": "fc1.weight"},
            },
        )
        self.assertEqual(
            w(hs[-1], "fc1.weight")["weight"]["histogram"]["counts"], ref["histogram"]["counts"]
        )
        self.assertAlmostEqual(
            w(hs[-1], "fc1.weight")["weight"]["stats"]["std"], ref["stats"]["std"], places=6
        )

        # 0 disables them; a bad value is refused with the field named.
        run_id = self.engine.request(
            "train/start", {"file": IRIS, "args": ["120"], "histogramEverySteps": 0}
        )["runId"]
        self.wait_for(lambda: any(p["state"] in TERMINAL for p in self.progress(run_id)))
        self.assertEqual(
            [h for h in self.engine.notes("train/histograms") if h["runId"] == run_id], []
        )
        with self.assertRaises(RpcError) as cm:
            self.engine.request("train/start", {"file": IRIS, "histogramEverySteps": -1})
        self.assertIn("histogramEverySteps", str(cm.exception))

    def test_histogram_rows_non_finite_and_sampled(self):
        import torch

        from model_lens_engine.training.histograms import (
            HISTOGRAM_SAMPLE_ELEMENTS,
            _tolist,
        )
        from model_lens_engine.training.histograms import (
            summary as _summary,
        )
        from model_lens_engine.training.histograms import (
            summary_rows as _summary_rows,
        )

        ts = [torch.tensor([1.0, float("nan"), float("inf"), 0.0]), torch.arange(100000.0)]
        rows = _tolist(_summary_rows(ts, 3))
        bad, big = [_summary(t, r, 3) for t, r in zip(ts, rows)]
        # The finite values 1 and 0: mean 0.5, std 0.5, one in the first and one in the last bin.
        self.assertEqual((bad["stats"]["nanCount"], bad["stats"]["infCount"]), (1, 1))
        self.assertEqual((bad["stats"]["mean"], bad["stats"]["std"]), (0.5, 0.5))
        self.assertEqual(bad["histogram"], {"min": 0.0, "max": 1.0, "counts": [1, 0, 1]})
        # 0..99999 in thirds of 33333 wide: 33333, 33333, 33334 exactly; the sample estimates them.
        self.assertLessEqual(big["sampled"], HISTOGRAM_SAMPLE_ELEMENTS)
        self.assertEqual(sum(big["histogram"]["counts"]), 100000)
        for got, want in zip(big["histogram"]["counts"], (33333, 33333, 33334)):
            self.assertLess(abs(got - want), 100)
        self.assertEqual(
            (big["stats"]["mean"], big["stats"]["min"], big["stats"]["max"]),
            (49999.5, 0.0, 99999.0),
        )

    def test_hook_mid_run_then_detach_then_stop(self):
        e = self.engine
        run_id = self.start(IRIS, ["100000000"])
        mid = self.wait_for(
            lambda: next((p["modelId"] for p in self.progress(run_id) if p.get("modelId")), None)
        )
        hook = e.request("hook/attach", {"path": "fc1", "kind": "forward", "intervalMs": 50})[
            "hookId"
        ]
        mine = lambda: [ev for ev in e.notes("hook/event") if ev["hookId"] == hook]  # noqa: E731
        self.wait_for(lambda: len(mine()) >= 3)
        self.assertEqual(
            e.request("hook/detach", {"hookId": hook}), {"detached": 1, "remaining": 0}
        )
        n = len(mine())
        evs = mine()
        self.assertTrue(all(ev["step"] >= 1 for ev in evs))
        self.assertEqual(evs[0]["tensor"]["shape"], [120, 10])
        self.assertLessEqual([ev["step"] for ev in evs], sorted(ev["step"] for ev in evs))
        # Requests are answered while the script trains.
        self.assertIn("memory", e.request("system/info"))
        diag = e.request("train/diagnose", {"runId": run_id})
        self.assertGreater(diag["steps"], 0)
        with self.assertRaises(RpcError) as cm:
            e.request("model/summary", {"modelId": mid})
        self.assertIn("busy training", str(cm.exception))
        with self.assertRaises(RpcError) as cm:
            self.start(IRIS)
        self.assertIn("still going", str(cm.exception))
        with self.assertRaises(RpcError) as cm:
            e.request("model/load", {"file": os.path.join(EXAMPLES, "iris_mlp.py")})
        self.assertIn("busy training", str(cm.exception))
        time.sleep(0.5)
        self.assertEqual(len(mine()), n)
        self.assertEqual(e.request("train/stop", {"runId": run_id}), {"stopped": True})
        final = self.progress(run_id)[-1]
        self.assertEqual(final["state"], "stopped")

    def test_gradients_after_stop_are_those_of_the_last_step(self):
        # Issue #10: "0 ± 0" gradients after Stop: the snapshot was taken after zero_grad.
        e = self.engine
        run_id = e.request(
            "train/start",
            {
                "file": IRIS,
                "args": ["100000000"],
                "histogramEverySteps": 10**9,
                "histogramMinIntervalMs": 0,
            },
        )["runId"]
        self.wait_for(lambda: any(p["step"] >= 20 for p in self.progress(run_id)))
        self.assertEqual(e.request("train/stop", {"runId": run_id}), {"stopped": True})
        final = self.progress(run_id)[-1]
        self.assertEqual(final["state"], "stopped")
        hs = [h for h in e.notes("train/histograms") if h["runId"] == run_id]
        self.assertEqual([h["step"] for h in hs], [final["step"]])
        for p in hs[0]["params"]:
            self.assertIn("grad", p, p["name"])
            self.assertGreater(p["grad"]["stats"]["std"], 0, p["name"])

    def test_stop_endless_loop(self):
        e = self.engine
        run_id = self.start(os.path.join(FIXTURES, "train_forever.py"))
        self.wait_for(lambda: any(p["step"] >= 3 for p in self.progress(run_id)))
        t0 = time.monotonic()
        self.assertEqual(e.request("train/stop", {"runId": run_id}), {"stopped": True})
        self.assertLess(time.monotonic() - t0, STOP_LIMIT_S)
        ps = self.progress(run_id)
        final = ps[-1]
        self.assertEqual(final["state"], "stopped")
        self.assertNotIn("error", final)
        curve = self.curve(ps)
        self.assertGreaterEqual(len(curve), 3)  # the partial curve stays
        self.assertEqual(e.request("train/stop", {"runId": run_id}), {"stopped": False})
        self.assertIn("memory", e.request("system/info"))

    def test_exception_mid_run_has_location(self):
        path = os.path.join(FIXTURES, "train_raises.py")
        run_id, ps = self.run_to_end(path)
        final = ps[-1]
        self.assertEqual(final["state"], "failed")
        err = final["error"]
        self.assertEqual(err["kind"], "userCodeError")
        self.assertIn("bad batch at step 6", err["message"])
        self.assertEqual(err["location"]["file"], path)
        self.assertEqual(err["location"]["line"], line_of(path, "raise ValueError"))
        self.assertEqual(
            [f["line"] for f in err["userStack"]],
            [line_of(path, "    check(step)"), line_of(path, "raise ValueError")],
        )
        self.assertEqual(final["step"], 5)
        self.assertEqual(len(self.curve(ps)), 5)

    def test_sys_exit(self):
        path = os.path.join(FIXTURES, "train_exit.py")
        _, ps = self.run_to_end(path, ["0"])
        self.assertEqual((ps[-1]["state"], ps[-1]["step"]), ("done", 3))
        _, ps = self.run_to_end(path, ["3"])
        final = ps[-1]
        self.assertEqual(final["state"], "failed")
        self.assertEqual(final["error"]["kind"], "userExit")
        self.assertIn("sys.exit(3)", final["error"]["message"])
        self.assertEqual(final["error"]["location"]["line"], line_of(path, "sys.exit(int("))

    def test_keyboard_interrupt_is_stopped(self):
        _, ps = self.run_to_end(os.path.join(FIXTURES, "train_interrupt.py"))
        self.assertEqual((ps[-1]["state"], ps[-1]["step"]), ("stopped", 2))

    def test_no_optimizer_warns_and_completes(self):
        run_id, ps = self.run_to_end(os.path.join(FIXTURES, "train_no_optimizer.py"))
        final = ps[-1]
        self.assertEqual((final["state"], final["step"]), ("done", 0))
        warnings = [w for p in ps for w in p.get("warnings", [])]
        self.assertTrue(any("optimizer" in w for w in warnings), warnings)
        out = "".join(o["text"] for o in self.engine.notes("output") if o.get("runId") == run_id)
        self.assertIn("done without an optimizer", out)
        # Losses are still sampled at backward().
        self.assertEqual(len(self.curve(ps)), 5)

    def test_nan_loss_flagged_once_with_step(self):
        _, ps = self.run_to_end(os.path.join(FIXTURES, "train_nan.py"))
        self.assertEqual(ps[-1]["state"], "done")
        warnings = [w for p in ps for w in p.get("warnings", [])]
        nan = [w for w in warnings if "nan" in w.lower()]
        self.assertEqual(len(nan), 1, warnings)
        self.assertIn("step 15", nan[0])  # NAN_STEP in the fixture
        curve = dict((s, v) for s, v in self.curve(ps))
        self.assertIsNone(curve[15])  # NaN crosses the wire as null
        self.assertIsNotNone(curve[14])

    def test_dataloader_workers_leave_no_orphans(self):
        e = self.engine
        pid = e.info["engine"]["pid"]
        self.assertEqual(children_of(pid), [])
        run_id = self.start(os.path.join(FIXTURES, "train_dataloader.py"))
        self.wait_for(lambda: any(p["step"] >= 3 for p in self.progress(run_id)))
        # num_workers=2 (between two epochs there may be none for a moment)
        self.wait_for(lambda: len(children_of(pid)) >= 2, timeout=30)
        p = [p for p in self.progress(run_id) if p["step"] >= 3][-1]
        # 800 samples in batches of 8 is 100 steps per epoch, for EPOCHS = 100000.
        self.assertEqual((p["totalEpochs"], p["totalSteps"]), (100000, 100 * 100000))
        self.assertEqual(e.request("train/stop", {"runId": run_id}), {"stopped": True})
        self.assertEqual(children_of(pid), [])
        self.assertEqual(self.progress(run_id)[-1]["state"], "stopped")
        diag = e.request("train/diagnose", {"runId": run_id})
        self.assertEqual(diag["batchSize"], 8)
        self.assertGreater(diag["breakdown"]["dataMs"], 0)
        text = " ".join(f["message"] for f in diag["findings"])
        self.assertIn("DataLoader: 2 workers, pin_memory=False, 800 rows.", text)
        self.assertNotIn("pin_memory=True", text)  # a CPU run: pinning copies nothing

    def test_model_and_batch_on_different_devices(self):
        # 'meta' stands in for a GPU: torch 1.13 runs meta and CPU tensors together without
        # raising, so only the engine's check can tell.
        run_id, ps = self.run_to_end(os.path.join(FIXTURES, "train_device_mismatch.py"))
        diag = [d for d in self.engine.notes("train/diagnosis") if d["runId"] == run_id][-1]
        errors = [f["message"] for f in diag["findings"] if f["severity"] == "error"]
        self.assertEqual(len(errors), 1, diag["findings"])
        self.assertIn("input batch is on cpu but the model is on meta", errors[0])
        self.assertIn("fc1 (Linear)", errors[0])
        self.assertEqual(diag["device"], "meta")

    def test_script_environment_is_pythons(self):
        # Issue #10: the caller's cwd (the engine's, EXAMPLES), the script's folder as
        # sys.path[0], and the main thread, where signal.signal works.
        path = os.path.join(FIXTURES, "train_environment.py")
        run_id, ps = self.run_to_end(path)
        self.assertEqual((ps[-1]["state"], ps[-1]["step"]), ("done", 3), ps[-1])
        out = "".join(o["text"] for o in self.engine.notes("output") if o.get("runId") == run_id)
        got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.assertEqual(got, {"cwd": EXAMPLES, "path0": FIXTURES, "main": "True", "signals": "1"})
        # The engine is as it was: its cwd, and requests still answered.
        self.assertIn("memory", self.engine.request("system/info"))

    def test_trained_model_is_the_one_the_optimizer_steps(self):
        # Issue #10: a backward() demo on another model before any optimizer is not the run.
        path = os.path.join(FIXTURES, "train_after_demo.py")
        run_id, ps = self.run_to_end(path)
        final = ps[-1]
        self.assertEqual((final["state"], final["step"]), ("done", 20), final)
        tree = self.engine.request("model/tree", {"modelId": final["modelId"]})
        self.assertEqual(tree["modules"][0]["type"], "Sequential")
        curve = self.curve(ps)
        self.assertEqual([s for s, _ in curve], list(range(1, 21)))
        out = "".join(o["text"] for o in self.engine.notes("output") if o.get("runId") == run_id)
        first = float(out.split("first loss ")[1].split()[0])
        self.assertAlmostEqual(curve[0][1], first, places=5)
        diag = self.engine.request("train/diagnose", {"runId": run_id})
        self.assertEqual(diag["batchSize"], 32)

    def test_forward_called_directly_is_timed_and_named(self):
        path = os.path.join(EXAMPLES, "linear_forward_direct.py")
        run_id, ps = self.run_to_end(path)
        final = ps[-1]
        self.assertEqual((final["state"], final["step"]), ("done", 30), final)
        # The model, not its first layer (the first module whose __call__ ran).
        tree = self.engine.request("model/tree", {"modelId": final["modelId"]})
        self.assertEqual(tree["modules"][0]["type"], "Regressor")
        warnings = [w for p in ps for w in p.get("warnings", [])]
        direct = [w for w in warnings if "forward() directly" in w]
        self.assertEqual(len(direct), 1, warnings)
        self.assertIn(
            "linear_forward_direct.py:%d" % line_of(path, "pred = model.forward(x)"), direct[0]
        )
        self.assertIn("skips the module's hooks", direct[0])
        diag = self.engine.request("train/diagnose", {"runId": run_id})
        self.assertEqual(diag["batchSize"], 128)
        # Timed through forward() on every step (no comparison with "other": on a loaded
        # machine either can swing).
        self.assertGreater(diag["breakdown"]["forwardMs"], 0)

    def test_printing_a_parameter_is_a_sync(self):
        path = os.path.join(FIXTURES, "train_prints_parameter.py")
        run_id, ps = self.run_to_end(path)
        self.assertEqual(ps[-1]["state"], "done")
        diag = self.engine.request("train/diagnose", {"runId": run_id})
        prints = [s for s in diag["syncs"] if s["kind"] == "print"]
        self.assertEqual(
            [(s["count"], s["source"]["line"]) for s in prints],
            [(1, line_of(path, "print(model.bias)"))],
            diag["syncs"],
        )
        text = " ".join(f["message"] for f in diag["findings"])
        self.assertIn("1 sync point and 0 host↔device copies", text)

    def test_bad_requests(self):
        with self.assertRaises(RpcError) as cm:
            self.engine.request("train/start", {"file": os.path.join(FIXTURES, "nope.py")})
        self.assertEqual(cm.exception.kind, "fileNotFound")
        with self.assertRaises(RpcError) as cm:
            self.engine.request("train/stop", {"runId": "r999"})
        self.assertEqual(cm.exception.kind, "notLoaded")
        # Issue #10: epochs on a script was silently ignored (1000 epochs ran).
        with self.assertRaises(RpcError) as cm:
            self.engine.request("train/start", {"file": IRIS, "epochs": 5})
        self.assertEqual(cm.exception.kind, "badRequest")
        self.assertIn("reads its own arguments", str(cm.exception))


class ModuleLevelTrainingInspectTest(unittest.TestCase):
    """Issue #10: inspecting scripts that train at module level."""

    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess(cwd=EXAMPLES)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_loss_modules_are_not_models(self):
        r = self.engine.request("model/load", {"file": os.path.join(FIXTURES, "model_and_loss.py")})
        self.assertEqual((r["name"], r["type"]), ("model", "MLP"))
        self.assertNotIn("criterion", [c["name"] for c in r["candidates"]])

    def test_import_stops_where_training_starts(self):
        path = os.path.join(EXAMPLES, "iris_module_level.py")
        r = self.engine.request("model/load", {"file": path})
        self.assertEqual((r["name"], r["type"]), ("model", "MLP"))
        note = [w for w in r["warnings"] if "starts training" in w]
        self.assertEqual(len(note), 1, r["warnings"])
        self.assertIn(
            "backward() at iris_module_level.py:%d" % line_of(path, "loss.backward()"), note[0]
        )
        # The 20,000 epochs did not run: the script's last line never printed.
        out = "".join(o["text"] for o in self.engine.notes("output"))
        self.assertNotIn("final loss", out)
        tree = self.engine.request("model/tree", {"modelId": r["modelId"]})
        self.assertEqual([m["path"] for m in tree["modules"]], ["", "fc1", "relu", "fc2"])
        # The engine's own backward works again after the import.
        fwd = self.engine.request("model/forward", {"modelId": r["modelId"], "backward": True})
        self.assertEqual(fwd["outputShapes"][0][-1], 3)


class UntrustedTrainingTest(unittest.TestCase):
    def test_untrusted_engine_runs_no_script(self):
        e = EngineProcess(cwd=EXAMPLES, trusted=False)
        try:
            self.assertTrue(e.info["engine"]["capabilities"]["train"])
            with self.assertRaises(RpcError) as cm:
                e.request("train/start", {"file": IRIS})
            self.assertEqual(cm.exception.kind, "untrusted")
            time.sleep(0.3)
            self.assertEqual(e.notes("output"), [])
            self.assertEqual(e.notes("train/progress"), [])
        finally:
            e.close()


if __name__ == "__main__":
    unittest.main()
