"""scripts/gpu-check.py run as a user runs it, on a machine without a GPU: every GPU check SKIP with
the reason, the CPU checks run and PASS, and nothing is PASS without having run and compared."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch

from tests.engine_process import REPO

SCRIPT = os.path.join(REPO, "scripts", "gpu-check.py")
XML_FIXTURE = os.path.join(REPO, "test", "fixtures", "nvidia-smi", "xml", "q-x-h100.xml")
# The quick checks: everything but the resnet50/GPT-2 timing comparisons, plus 3.1's call counts
# on a two-layer GPT-2 (where transformers is installed).
QUICK = "1,2,3.1,4,5,6"
RUN_TIMEOUT_S = 300
ROW_KEYS = {"id", "section", "title", "gpu", "timing", "ran", "seconds", "status", "reason"}


def run_script(*args):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        # No GPU for the script wherever the test runs: a CUDA torch sees none with this.
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
        r = subprocess.run(
            [sys.executable, SCRIPT, "--out", out] + list(args),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        with open(out, encoding="utf-8") as f:
            return r, json.load(f)


def has(module):
    return importlib.util.find_spec(module) is not None


class GpuCheckWithoutGpuTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc, cls.doc = run_script("--only", QUICK, "--budget-s", "240")

    def test_report_shape(self):
        doc = self.doc
        self.assertEqual(doc["reportVersion"], 1)
        self.assertIs(doc["complete"], True)
        self.assertIs(doc["gpu"], False)
        self.assertEqual(doc["environment"]["torch"], torch.__version__)
        self.assertEqual(doc["environment"]["torchCuda"], torch.version.cuda)
        ids = [c["id"] for c in doc["checks"]]
        self.assertEqual(
            ids,
            [
                "1.1",
                "1.2",
                "1.3",
                "1.4",
                "2.1",
                "2.2",
                "3.1",
                "4.1",
                "4.2",
                "5.1",
                "5.2",
                "5.3",
                "6.1",
                "6.2",
                "1.5",
            ],
        )
        for c in doc["checks"]:
            self.assertLessEqual(ROW_KEYS, set(c), c["id"])
            self.assertIn(c["status"], ("PASS", "FAIL", "SKIP"))
        counts = {
            s: sum(1 for c in doc["checks"] if c["status"] == s) for s in ("PASS", "FAIL", "SKIP")
        }
        self.assertEqual(doc["counts"], counts)
        # The table and the summary on stdout say the same.
        for c in doc["checks"]:
            self.assertRegex(
                self.proc.stdout, r"(?m)^%s\s+%s\s" % (c["status"], c["id"].replace(".", r"\."))
            )
        self.assertIn(
            "%d PASS, %d FAIL, %d SKIP" % (counts["PASS"], counts["FAIL"], counts["SKIP"]),
            self.proc.stdout,
        )
        self.assertEqual(self.proc.returncode, 1 if counts["FAIL"] else 0, self.proc.stderr[-2000:])

    def test_every_gpu_check_is_skip_with_the_reason(self):
        gpu = [c for c in self.doc["checks"] if c["gpu"]]
        self.assertEqual(len(gpu), 10)
        for c in gpu:
            self.assertEqual(c["status"], "SKIP", c)
            self.assertFalse(c["ran"], c)
            self.assertTrue(c["reason"].startswith("no CUDA GPU: "), c["reason"])
            if torch.version.cuda is None:
                self.assertIn("torch %s is a CPU-only build" % torch.__version__, c["reason"])
        self.assertEqual(self.doc["noGpuReason"], gpu[0]["reason"])

    def test_cpu_checks_run_and_pass(self):
        cpu = {c["id"]: c for c in self.doc["checks"] if not c["gpu"]}
        self.assertEqual(sorted(cpu), ["1.1", "3.1", "4.1", "5.1", "6.1"])
        for cid, c in cpu.items():
            if cid == "3.1" and not has("transformers"):
                self.assertEqual(c["status"], "SKIP")
                self.assertEqual(
                    c["reason"], "transformers is not installed in %s" % sys.executable
                )
                continue
            self.assertEqual(
                c["status"], "PASS", "%s: %s\n%s" % (cid, c.get("reason"), c.get("traceback", ""))
            )
        # What they measured is in the report.
        self.assertEqual(cpu["1.1"]["measured"]["torch"]["version"], torch.__version__)
        self.assertEqual(cpu["5.1"]["measured"]["layer"], "head")
        self.assertGreaterEqual(cpu["6.1"]["measured"]["events"], 3)

    def test_nothing_passes_without_running(self):
        for c in self.doc["checks"]:
            if c["status"] == "PASS":
                self.assertTrue(c["ran"], c)
                self.assertGreater(c["compared"], 0, c)
            if not c["ran"]:
                self.assertEqual(c["status"], "SKIP", c)
                self.assertTrue(c["reason"], c)


class GpuCheckBudgetTest(unittest.TestCase):
    def test_a_spent_budget_skips_instead_of_passing(self):
        proc, doc = run_script("--only", "1.1,4.1", "--budget-s", "0")
        self.assertEqual(
            [(c["id"], c["status"], c["ran"]) for c in doc["checks"]],
            [("1.1", "SKIP", False), ("4.1", "SKIP", False)],
        )
        for c in doc["checks"]:
            self.assertRegex(c["reason"], r"^time budget spent \(--budget-s\); needs about \d+ s$")
        self.assertEqual(proc.returncode, 0)


class FakeNvidiaSmiTest(unittest.TestCase):
    """The script's nvidia-smi side against test/fixtures/nvidia-smi's fake `h100` executable: the
    XML report through PATH, and the sampler's -lms stream with the sampler's own arguments."""

    def setUp(self):
        sys.path.insert(0, os.path.join(REPO, "scripts"))
        self.path = os.environ["PATH"]
        os.environ["PATH"] = (
            os.path.join(REPO, "test", "fixtures", "nvidia-smi", "bin", "h100")
            + os.pathsep
            + self.path
        )

    def tearDown(self):
        os.environ["PATH"] = self.path

    def test_xml_report_and_stream(self):
        from gpucheck.truth import SamplerStream, nvidia_smi_xml

        raw, doc = nvidia_smi_xml()
        self.assertTrue(raw.startswith("<?xml"))
        self.assertEqual(doc["gpus"][0]["name"], "NVIDIA H100 80GB HBM3")
        s = SamplerStream(REPO, 2.5).start().join(30)
        self.assertIsNone(s.error)
        # The sampler's fields, as src/system/nvidiaSmiParse.ts lists them, at its 1 s interval.
        self.assertIn("--query-gpu=index,name,uuid,memory.total,memory.used", " ".join(s.args))
        self.assertEqual(s.args[-2:], ["-lms", "1000"])
        rows = s.rows()
        self.assertGreaterEqual(len(rows), 2)
        self.assertEqual(len(rows), len(s.lines))
        self.assertEqual([r["name"] for _, r in rows], ["NVIDIA H100 80GB HBM3"] * len(rows))
        # The fake adds 16 MiB per tick: consecutive ticks, none lost.
        used = [int(r["memory.used"]) for _, r in rows]
        self.assertEqual(used, [1234 + 16 * i for i in range(len(used))])
        self.assertIsNotNone(s.cpu_s)


class NvidiaSmiXmlTest(unittest.TestCase):
    """The `nvidia-smi -q -x` reader, on the recorded H100 report (values read off the file)."""

    def test_recorded_h100(self):
        sys.path.insert(0, os.path.join(REPO, "scripts"))
        from gpucheck.truth import parse_nvidia_smi_xml

        with open(XML_FIXTURE, encoding="utf-8") as f:
            doc = parse_nvidia_smi_xml(f.read())
        self.assertEqual(
            (doc["driverVersion"], doc["cudaVersion"], doc["attachedGpus"]),
            ("550.54.15", "12.4", 1),
        )
        g = doc["gpus"][0]
        self.assertEqual(
            (g["name"], g["busId"], g["migMode"]),
            ("NVIDIA H100 80GB HBM3", "00000000:18:00.0", "Disabled"),
        )
        self.assertEqual(
            (g["memoryTotalMiB"], g["memoryReservedMiB"], g["memoryUsedMiB"], g["utilizationPct"]),
            (81559.0, 328.0, 1234.0, 87.0),
        )
        self.assertEqual(
            g["processes"], [{"pid": 4242, "name": "/usr/bin/python3", "usedMiB": 1224.0}]
        )

    def test_real_h200(self):
        # nvidia-smi -q -x from a real H200 (test/fixtures/gpu-run/h200-2026-12-04/README.md);
        # expected values read off the file and the plain nvidia-smi table captured beside it.
        sys.path.insert(0, os.path.join(REPO, "scripts"))
        from gpucheck.truth import parse_nvidia_smi_xml

        run = os.path.join(REPO, "test", "fixtures", "gpu-run", "h200-2026-12-04")
        with open(os.path.join(run, "nvidia-smi-q.xml"), encoding="utf-8") as f:
            doc = parse_nvidia_smi_xml(f.read())
        self.assertEqual(
            (doc["driverVersion"], doc["cudaVersion"], doc["attachedGpus"]),
            ("580.159.04", "13.0", 1),
        )
        g = doc["gpus"][0]
        self.assertEqual((g["name"], g["busId"]), ("NVIDIA H200", "00000000:00:06.0"))
        self.assertEqual((g["memoryTotalMiB"], g["memoryReservedMiB"]), (143771.0, 616.0))
        with open(os.path.join(run, "query-gpu.csv"), encoding="utf-8") as f:
            csv = f.read().split(", ")
        self.assertEqual((csv[1], csv[3], csv[9]), ("NVIDIA H200", "143771", "9.0"))
        with open(os.path.join(run, "nvidia-smi.txt"), encoding="utf-8") as f:
            self.assertIn("Driver Version: 580.159.04", f.read())


if __name__ == "__main__":
    unittest.main()
