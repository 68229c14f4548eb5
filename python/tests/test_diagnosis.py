"""train/diagnosis as pure functions over counters made by hand: no script, no engine."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model_lens_engine.training.counters import Counters  # noqa: E402
from model_lens_engine.training.diagnosis import diagnose  # noqa: E402


def counters(steps=11, step_s=0.002, data_s=0.0005, fwd_s=0.0004, bwd_s=0.0006, opt_s=0.0001):
    """A run whose step 1 ended at t=1.0 s and whose next `steps - 1` steps took `step_s` each."""
    c = Counters()
    c.t_script = 0.5
    c.take_snapshot(1.0)
    c.steps = steps
    n = steps - 1
    c.t_last_step = 1.0 + n * step_s
    c.t_data, c.t_bwd, c.t_opt = data_s * n, bwd_s * n, opt_s * n
    c.t_fwd, c.fwd_steps = fwd_s * 2, 2  # forward is sampled on two steps only
    return c


class DiagnosisTest(unittest.TestCase):
    def test_breakdown_adds_up_to_the_step_time(self):
        d = diagnose(counters(), "r1", "cpu", 2.0)
        b = d["breakdown"]
        self.assertAlmostEqual(d["stepMs"], 2.0)
        self.assertAlmostEqual(b["dataMs"], 0.5)
        self.assertAlmostEqual(b["forwardMs"], 0.4)
        self.assertAlmostEqual(b["backwardMs"], 0.6)
        self.assertAlmostEqual(b["optimizerMs"], 0.1)
        self.assertAlmostEqual(sum(b.values()), d["stepMs"])

    def test_no_step_is_a_warning(self):
        c = Counters()
        d = diagnose(c, "r1", "cpu", 1.0)
        self.assertEqual(d["steps"], 0)
        self.assertIsNone(d["breakdown"])
        self.assertEqual(d["findings"][0]["severity"], "warning")

    def test_ops_share_the_step_time(self):
        c = counters()
        c.op_steps, c.op_count = 2, 92
        d = diagnose(c, "r1", "cpu", 2.0)
        self.assertEqual(d["opsPerStep"], 46)
        # 46 ops × their average is the step time, by construction.
        self.assertAlmostEqual(d["opsPerStep"] * d["avgOpUs"] / 1e3, d["stepMs"])
        text = messages(d)
        self.assertIn(
            "About 46 ops per step (counted over 2 sampled steps): 2.00 ms per step is "
            "43.5 µs per op",
            text,
        )
        self.assertIn("wall clock, mean of steps 2–11; step 1 is warm-up and excluded", text)

    def test_sync_points_are_counted_in_words(self):
        c = counters()
        c.syncs = {("item", None, 0): [12, 0.0, None, 1, 11]}
        self.assertIn(
            "12 sync points and 0 host↔device copies", messages(diagnose(c, "r1", "cpu", 2.0))
        )
        c.syncs = {("print", None, 0): [1, 0.0, None, 1, 1]}
        self.assertIn(
            "1 sync point and 0 host↔device copies", messages(diagnose(c, "r1", "cpu", 2.0))
        )

    def data_bound(self, workers, device, persistent=False):
        c = counters(data_s=0.0015)
        c.loader = {"workers": workers, "pinMemory": False, "persistent": persistent, "rows": 2000}
        return [
            f["message"]
            for f in diagnose(c, "r1", device, 2.0)["findings"]
            if f["message"].startswith("Waiting for data")
        ]

    def test_data_advice_follows_the_device_and_the_loader(self):
        # Issue #10: pin_memory on a CPU run, more workers when the workers are the cost.
        (cpu0,) = self.data_bound(0, "cpu")
        self.assertIn("75% of each step (1.50 of 2.00 ms", cpu0)
        self.assertIn("num_workers > 0", cpu0)
        self.assertNotIn("pin_memory", cpu0)
        (gpu0,) = self.data_bound(0, "cuda:0")
        self.assertIn("pin_memory=True would speed the copies to cuda:0", gpu0)
        (cpu4,) = self.data_bound(4, "cpu")
        self.assertIn("already has 4 workers", cpu4)
        self.assertIn("started again every epoch", cpu4)
        self.assertIn("of 2000 rows", cpu4)
        self.assertIn("num_workers=0 or persistent_workers=True", cpu4)
        self.assertNotIn("num_workers > 0", cpu4)
        self.assertNotIn("pin_memory", cpu4)


def messages(d):
    return " ".join(f["message"] for f in d["findings"])


if __name__ == "__main__":
    unittest.main()
