"""Distributed runs: the collective timer on a real gloo process group, the job's view and the
straggler finding from reports made by hand, train/start's `distributed` checks on the engine.
The launched 2-rank jobs themselves are tested end to end in test/distributedRun.test.ts."""

import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
from engine_process import EXAMPLES, EngineProcess, RpcError  # noqa: E402

from model_lens_engine.distributed.aggregate import JobView, job_findings  # noqa: E402
from model_lens_engine.distributed.collectives import CollectiveTimer  # noqa: E402
from model_lens_engine.distributed.job import launcher_args  # noqa: E402
from model_lens_engine.distributed.rank import smi_identity  # noqa: E402
from model_lens_engine.errors import EngineFault, UserScope  # noqa: E402

HERE = os.path.abspath(__file__)
# A 2-rank launch imports torch in three processes: seconds, many on a loaded machine.
RUN_TIMEOUT_S = 240


def line_here(needle):
    with open(HERE) as f:
        for i, text in enumerate(f, 1):
            if needle in text and "line_here" not in text:
                return i
    raise AssertionError(needle)


class CollectiveTimerTest(unittest.TestCase):
    """A one-rank gloo group in this process: the ops are real, the wait is the op itself."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        dist.init_process_group(
            "gloo", init_method="file://" + os.path.join(cls.tmp, "store"), rank=0, world_size=1
        )

    @classmethod
    def tearDownClass(cls):
        dist.destroy_process_group()

    def setUp(self):
        self.original = dist.all_reduce
        self.steps = 0
        self.timer = CollectiveTimer(UserScope(os.path.dirname(HERE)), lambda: self.steps)
        self.timer.install()

    def tearDown(self):
        self.timer.uninstall()

    def test_ops_are_timed_at_the_callers_line_and_restored(self):
        t = torch.ones(4)
        dist.all_reduce(t)  # the all_reduce site
        dist.barrier()  # the barrier site
        self.steps = 1
        for _ in range(3):
            dist.all_reduce(t)  # the steady all_reduce site
        work = dist.all_reduce(t, async_op=True)  # the async site
        work.wait()
        sites = {(s["op"], s["line"]): s for s in self.timer.snapshot()}
        first = sites[("all_reduce", line_here("# the all_reduce site"))]
        self.assertEqual(first["count"], 1)
        self.assertGreater(first["seconds"], 0.0)
        self.assertEqual(first["steadySeconds"], 0.0, "before the first optimizer step")
        self.assertEqual(first["file"], HERE)
        self.assertEqual(sites[("barrier", line_here("# the barrier site"))]["count"], 1)
        steady = sites[("all_reduce", line_here("# the steady all_reduce site"))]
        self.assertEqual(steady["count"], 3)
        self.assertEqual(steady["steadySeconds"], steady["seconds"])
        self.assertEqual(sites[("all_reduce", line_here("# the async site"))]["count"], 1)
        self.assertEqual(t.tolist(), [1.0] * 4, "a one-rank sum changes nothing")
        self.timer.uninstall()
        self.assertIs(dist.all_reduce, self.original, "torch.distributed restored")

    def test_ddp_gradient_all_reduce_is_timed_at_the_backward_line(self):
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(nn.Linear(4, 2))
        x = torch.randn(8, 4)
        for _ in range(2):
            model(x).sum().backward()  # the backward site
        sites = [s for s in self.timer.snapshot() if s["op"] == "all_reduce"]
        self.assertEqual(len(sites), 1, sites)
        self.assertEqual(sites[0]["line"], line_here("# the backward site"))
        self.assertGreaterEqual(sites[0]["count"], 2)
        # DDP's average of one rank's gradient is that gradient: the hook kept DDP's semantics.
        ref = nn.Linear(4, 2)
        ref.load_state_dict(model.module.state_dict())
        ref(x).sum().backward()
        model.zero_grad()
        model(x).sum().backward()
        self.assertTrue(torch.allclose(model.module.weight.grad, ref.weight.grad))


def rank_report(rank, data_ms, backward_ms, wait_ms, steps=21, line=57):
    """One rank's rank/stats: forward 1, optimizer 0.5, other 0.5 ms; DDP's wait is in backward."""
    per = steps - 1
    return {
        "rank": rank,
        "state": "done",
        "steps": steps,
        "stepMs": data_ms + 1.0 + backward_ms + 0.5 + 0.5,
        "breakdown": {
            "dataMs": data_ms,
            "forwardMs": 1.0,
            "backwardMs": backward_ms,
            "optimizerMs": 0.5,
            "otherMs": 0.5,
        },
        "collectives": [
            {
                "op": "all_reduce",
                "file": "/w/train.py",
                "line": line,
                "function": "<module>",
                "count": steps,
                "seconds": wait_ms * per / 1e3,
                "steadySeconds": wait_ms * per / 1e3,
            }
        ],
    }


class JobViewTest(unittest.TestCase):
    def view(self, reports):
        v = JobView()
        for r in reports:
            v.on_message(
                "rank/hello", {"rank": r["rank"], "worldSize": len(reports), "pid": 100 + r["rank"]}
            )
            v.on_message("rank/stats", r)
            v.on_message("rank/end", {"rank": r["rank"], "state": "done"})
        return v

    def test_straggler_named_with_its_phase_and_the_others_wait(self):
        # Rank 1's data takes 4.5 ms more; ranks 0, 2, 3 wait for it in the all-reduce, so every
        # rank's step takes 11 ms.
        reports = [
            rank_report(0, 0.5, 8.5, 4.9),
            rank_report(1, 5.0, 4.0, 0.4),
            rank_report(2, 0.5, 8.6, 5.0),
            rank_report(3, 0.5, 8.4, 4.8),
        ]
        d = self.view(reports).diagnosis("r1")
        f = d["findings"][0]
        busy = 11.0 - 0.4
        others = sorted([11.0 - 4.9, 11.1 - 5.0, 10.9 - 4.8])[1]
        self.assertEqual(
            f["message"],
            "rank 1 is %.0f%% slower per step than the others (%.1f vs %.1f ms of work per "
            "step; data 4.5 ms more); ranks 0, 2, 3 wait 4.9 ms per step in all_reduce at "
            "train.py:57." % ((busy / others - 1) * 100, busy, others),
        )
        self.assertEqual(f["severity"], "warning")
        self.assertEqual(f["source"], {"file": "/w/train.py", "line": 57, "function": "<module>"})
        self.assertEqual([r["rank"] for r in d["ranks"]], [0, 1, 2, 3])
        self.assertAlmostEqual(d["ranks"][0]["waitMsPerStep"], 4.9)

    def test_balanced_ranks_have_no_straggler(self):
        reports = [rank_report(0, 0.5, 13.0, 1.0), rank_report(1, 0.6, 13.1, 1.1)]
        findings = job_findings(self.view(reports).diagnosis("r1")["ranks"])
        self.assertFalse([f for f in findings if "slower" in f["message"]], findings)
        self.assertEqual(len(findings), 2)  # each rank's collective time, as information

    def test_the_first_failed_rank_is_the_failure_and_the_others_were_stopped(self):
        v = JobView()
        for r in (0, 1):
            v.on_message("rank/hello", {"rank": r, "worldSize": 2, "localWorldSize": 2})
        v.on_message(
            "train/progress",
            {
                "rank": 1,
                "state": "failed",
                "step": 4,
                "loss": [[4, 1.0]],
                "error": {"kind": "userCodeError", "message": "boom"},
            },
        )
        v.on_message(
            "train/progress",
            {
                "rank": 0,
                "state": "failed",
                "step": 4,
                "loss": [[4, 2.0]],
                "error": {"kind": "userCodeError", "message": "Connection closed by peer"},
            },
        )
        self.assertEqual(v.first_failure().rank, 1)
        p = v.progress("r1", "failed")
        self.assertEqual(
            [(r["rank"], r["state"]) for r in p["ranks"]], [(0, "stopped"), (1, "failed")]
        )
        self.assertEqual(p["lossSpread"], {"step": 4, "min": 1.0, "max": 2.0})
        self.assertEqual(p["loss"], [[4, 2.0]], "rank 0's curve")
        self.assertEqual(v.progress("r1", "failed")["loss"], [], "each point is passed on once")

    def test_a_node_sees_its_own_ranks(self):
        v = JobView()
        v.on_message("rank/hello", {"rank": 1, "worldSize": 2, "localWorldSize": 1})
        self.assertFalse(v.all_ended())
        v.on_message("rank/end", {"rank": 1, "state": "done"})
        self.assertTrue(v.all_ended())


class LauncherArgsTest(unittest.TestCase):
    def test_launcher_options(self):
        own = launcher_args({"nprocPerNode": 2})
        self.assertEqual(own[:3], ["--nproc_per_node", "2", "--master_port"])
        self.assertTrue(1024 <= int(own[3]) <= 65535, own)
        multi = ["--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", "127.0.0.1:29400"]
        self.assertEqual(
            launcher_args({"nprocPerNode": 1, "launcherArgs": multi}),
            ["--nproc_per_node", "1"] + multi,
        )
        with self.assertRaisesRegex(
            EngineFault, r"nprocPerNode. must be a whole number from 1 to 256, got 0"
        ):
            launcher_args({"nprocPerNode": 0})
        with self.assertRaisesRegex(EngineFault, r"-m is set by Model Lens"):
            launcher_args({"launcherArgs": ["-m"]})


class GpuIdentityTest(unittest.TestCase):
    def test_cuda_visible_devices_maps_torch_devices_to_nvidia_smi(self):
        self.assertEqual(smi_identity(1, None), {"index": 1})
        self.assertEqual(smi_identity(0, "2,3"), {"index": 2})
        self.assertEqual(smi_identity(1, "2, 3"), {"index": 3})
        self.assertEqual(smi_identity(0, "GPU-8f2a"), {"uuid": "GPU-8f2a"})
        self.assertEqual(smi_identity(2, "0,1"), {})


def wait_for(what, check, timeout_s=RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


class TrainStartDistributedTest(unittest.TestCase):
    def test_hooks_on_one_rank_or_all_and_events_carry_the_rank(self):
        engine = EngineProcess(cwd=EXAMPLES)
        try:
            script = os.path.join(EXAMPLES, "ddp_train.py")
            args = ["--steps", "1000000", "--slow-rank", "1", "--slow-ms", "5"]
            run_id = engine.request(
                "train/start", {"file": script, "args": args, "distributed": {"nprocPerNode": 2}}
            )["runId"]

            def training():
                last = [p for p in engine.notes("train/progress") if p["runId"] == run_id]
                ranks = last[-1].get("ranks", []) if last else []
                return len(ranks) == 2 and all(r["step"] > 0 for r in ranks)

            wait_for("both ranks to train", training)
            with self.assertRaises(RpcError) as cm:
                engine.request("hook/attach", {"path": "module.9", "kind": "forward", "rank": 1})
            self.assertIn("rank 1: ", str(cm.exception))
            one = engine.request(
                "hook/attach", {"path": "module.0", "kind": "forward", "rank": 1, "intervalMs": 50}
            )
            self.assertEqual(one["ranks"], [1])
            both = engine.request(
                "hook/attach", {"path": "module.2", "kind": "forward", "intervalMs": 50}
            )
            self.assertEqual(both["ranks"], [0, 1])

            def seen():
                return {(e["hookId"], e.get("rank")) for e in engine.notes("hook/event")}

            expected = {(one["hookId"], 1), (both["hookId"], 0), (both["hookId"], 1)}
            wait_for("events of both hooks", lambda: expected <= seen(), 60)
            self.assertEqual(seen(), expected, "rank 0 has no event of the rank-1 hook")
            event = [e for e in engine.notes("hook/event") if e["hookId"] == both["hookId"]][-1]
            self.assertEqual(event["path"], "module.2")
            self.assertEqual(event["tensor"]["shape"], [16, 1], "the DDP model's last Linear")
            self.assertGreater(event["step"], 0)
            self.assertEqual(
                engine.request("hook/detach", {"hookId": one["hookId"]}),
                {"detached": 1, "remaining": 1},
            )
            self.assertEqual(engine.request("train/stop", {"runId": run_id}), {"stopped": True})
        finally:
            engine.close()

    def test_bad_distributed_params_are_refused_by_name(self):
        engine = EngineProcess(cwd=EXAMPLES)
        try:
            with self.assertRaises(RpcError) as cm:
                engine.request(
                    "train/start",
                    {
                        "file": os.path.join(EXAMPLES, "ddp_train.py"),
                        "distributed": {"nprocPerNode": "two"},
                    },
                )
            self.assertEqual(cm.exception.kind, "badRequest")
            self.assertIn("distributed.nprocPerNode", str(cm.exception))
        finally:
            engine.close()


if __name__ == "__main__":
    unittest.main()
