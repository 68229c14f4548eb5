"""A small DDP training job: run it with `torchrun --nproc-per-node 2 examples/ddp_train.py` or
`model-lens run --nproc-per-node 2 examples/ddp_train.py`. gloo on CPU, so it runs anywhere.

Every rank draws its own shard of a fixed synthetic regression set (seeded), so the loss curve is
the same from run to run. Rank 0 prints `step N loss X` with the exact float.

Options (after `--` under model-lens run):
  --steps N           optimizer steps (default 40)
  --slow-rank R       that rank's DataLoader sleeps --slow-ms per batch (a straggler)
  --fail-rank R       that rank raises at step --fail-step
"""

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import default_collate
from torch.utils.data.distributed import DistributedSampler

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
parser.add_argument("--slow-rank", type=int, default=-1)
parser.add_argument("--slow-ms", type=float, default=20.0)
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--fail-step", type=int, default=5)
parser.add_argument("--device", default="cpu", help="cpu, or cuda (each rank on cuda:LOCAL_RANK)")
parser.add_argument("--backend", default="gloo", help="gloo (CPU and CUDA tensors) or nccl (CUDA)")
parser.add_argument(
    "--step-times", action="store_true", help="rank 0 prints its step times (bench/)"
)
opts = parser.parse_args()

dist.init_process_group(opts.backend)
rank = dist.get_rank()
device = torch.device("cpu")
if opts.device == "cuda":
    # Ranks beyond the GPUs share them (gloo allows that; nccl needs one GPU per rank).
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    torch.cuda.set_device(device)
torch.manual_seed(0)


class Points(Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 16, generator=g)
        self.y = self.x @ torch.linspace(-1, 1, 16).unsqueeze(1) + 0.1 * torch.randn(
            n, 1, generator=g
        )

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def slow_collate(delay_s):
    """The default batching, with a sleep per batch: a slow data pipeline on one rank."""

    def collate(items):
        time.sleep(delay_s)
        return default_collate(items)

    return collate


data = Points(opts.batch * 2 * opts.steps)
sampler = DistributedSampler(data, shuffle=False)
collate = slow_collate(opts.slow_ms / 1000.0) if rank == opts.slow_rank else None
loader = DataLoader(data, batch_size=opts.batch, sampler=sampler, collate_fn=collate)

model = DDP(
    nn.Sequential(nn.Linear(16, opts.hidden), nn.ReLU(), nn.Linear(opts.hidden, 1)).to(device)
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
loss_fn = nn.MSELoss()

step = 0
step_ends = [(time.perf_counter(), time.process_time())]
for x, y in loader:
    step += 1
    if rank == opts.fail_rank and step == opts.fail_step:
        raise RuntimeError("rank %d gave up at step %d" % (rank, step))
    x, y = x.to(device), y.to(device)
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    if opts.step_times:
        step_ends.append((time.perf_counter(), time.process_time()))
    elif rank == 0:
        print("step %d loss %r" % (step, loss.item()), flush=True)
    if step >= opts.steps:
        break

world = dist.get_world_size()
dist.barrier()
dist.destroy_process_group()
if rank == 0:
    print("done: %d steps on %d ranks" % (step, world))
    if opts.step_times:
        pairs = list(zip(step_ends, step_ends[1:]))
        print("step times ms: %s" % " ".join("%.4f" % ((b[0] - a[0]) * 1e3) for a, b in pairs))
        print("step cpu ms: %s" % " ".join("%.4f" % ((b[1] - a[1]) * 1e3) for a, b in pairs))
