"""system/info's torch view, checked against what torch itself answers in this interpreter."""

import os
import unittest

import torch

from tests.engine_process import EngineProcess


class TorchViewTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess()

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_torch_view_is_torchs_own(self):
        view = self.engine.request("system/info")["torch"]
        self.assertEqual(view["version"], torch.__version__)
        self.assertEqual(view["cudaBuild"], torch.version.cuda)
        self.assertEqual(view["cudaAvailable"], torch.cuda.is_available())
        if torch.cuda.is_available():
            self.assertEqual(view["deviceCount"], torch.cuda.device_count())
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            self.assertEqual([d["name"] for d in view["devices"]], names)
            self.assertNotIn("cudaUnavailableReason", view)
        else:
            self.assertEqual(view["deviceCount"], 0)
            self.assertEqual(view["devices"], [])
            reason = view["cudaUnavailableReason"]
            if torch.version.cuda is None and not getattr(torch.version, "hip", None):
                self.assertIn("CPU-only build", reason)
                self.assertIn("torch.version.cuda is None", reason)

    def test_engine_stays_usable_and_cpu_facts_remain(self):
        info = self.engine.request("system/info")
        self.assertEqual(info["cpu"]["logicalCores"], os.cpu_count())
        self.assertGreater(info["memory"]["rssBytes"], 1e6)
        # A CPU-only torch answers no GPUs through torch.cuda, and says nothing it cannot know.
        if not torch.cuda.is_available():
            self.assertEqual(info["gpus"], [])
            self.assertNotIn("torchAllocatedBytes", info["memory"])


class NvidiaSmiMemoryTest(unittest.TestCase):
    """GPU memory as nvidia-smi counts it, read from a stand-in nvidia-smi on PATH that prints the
    real H200's figures (test/fixtures/gpu-run/h200-2026-12-04/query-gpu.csv)."""

    def test_reads_total_and_used_by_uuid(self):
        import tempfile

        from model_lens_engine import system

        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "nvidia-smi")
            with open(fake, "w") as f:
                f.write(
                    "#!/bin/sh\necho 'GPU-0111c661-05ab-caee-e6d0-d2925b71f626, 143771, 4'\n"
                    "echo 'GPU-deadbeef, [N/A], [N/A]'\n"
                )
            os.chmod(fake, 0o755)
            old = os.environ["PATH"]
            os.environ["PATH"] = d + os.pathsep + old
            try:
                got = system.nvidia_smi_memory()
            finally:
                os.environ["PATH"] = old
        self.assertEqual(got, {"0111c661-05ab-caee-e6d0-d2925b71f626": (143771.0, 4.0)})

    def test_no_nvidia_smi_is_empty(self):
        from model_lens_engine import system

        old = os.environ["PATH"]
        os.environ["PATH"] = "/nonexistent"
        try:
            self.assertEqual(system.nvidia_smi_memory(), {})
        finally:
            os.environ["PATH"] = old


class DriverVersionTest(unittest.TestCase):
    """The driver version comes from /proc/driver/nvidia/version; both kernel-module banners."""

    def test_proprietary_and_open_kernel_module_banners(self):
        from model_lens_engine import system

        banners = {
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  "
            "Tue Mar  5 22:23:56 UTC 2024\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n": "550.54.15",
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  "
            "(dvs-builder@U16-I3-B03-4-3)  Thu Jan 23 23:28:53 UTC 2025\n": "570.86.15",
            "": None,
        }
        real_read = system._read
        try:
            for text, version in banners.items():
                system._read = lambda path, text=text: text
                self.assertEqual(system._driver_version(), version)
        finally:
            system._read = real_read


if __name__ == "__main__":
    unittest.main()
