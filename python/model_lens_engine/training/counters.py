"""What a training run measured, as plain numbers: the instrumentation writes them, the
diagnosis (diagnosis.py) only reads them. No torch here, so a diagnosis can be unit-tested from
counters made by hand."""

import threading


class Counters:
    def __init__(self):
        self.lock = threading.Lock()  # guards `syncs` (written by the script, read by the RPC side)
        # One clock for everything: time.perf_counter() seconds, wall time.
        self.t_script = None  # when the script started
        self.t_last_step = None  # when the last optimizer step returned
        self.steps = 0
        # Seconds spent in each phase, summed over all steps.
        self.t_data = 0.0
        self.t_fwd = 0.0  # sampled: only over `fwd_steps` steps
        self.t_bwd = 0.0
        self.t_opt = 0.0
        self.fwd_steps = 0
        # True when forward() itself is timed on every call (the script calls model.forward(x)
        # directly): t_fwd then covers every step, not `fwd_steps` sampled ones.
        self.fwd_every_step = False
        # (time, t_data, t_fwd, t_bwd, t_opt, fwd_steps) when step 1 ended: the first step (model
        # discovery, lazy initialisation, allocator warm-up) is excluded from per-step figures.
        self.snap = None
        self.h2d = [0, 0]  # host→device copies: count, bytes
        self.d2h = [0, 0]
        # (kind, file, line) -> [count, seconds waited, function, first step, last step]
        self.syncs = {}
        # The sampled op count: steps sampled, ops in them.
        self.op_steps = 0
        self.op_count = 0
        self.batch_size = None
        # The DataLoader the script iterated last: {"workers", "pinMemory", "persistent", "rows"}
        # (rows None when the dataset has no len()).
        self.loader = None
        self.device_findings = []

    def take_snapshot(self, now):
        self.snap = (now, self.t_data, self.t_fwd, self.t_bwd, self.t_opt, self.fwd_steps)
