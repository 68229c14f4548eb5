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


if __name__ == "__main__":
    unittest.main()
