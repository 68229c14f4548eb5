"""The ddp_train.py regression sharded with FSDP (FullyShardedDataParallel) instead of DDP: each
rank holds a shard of the parameters, gathers them for forward and backward (all_gather) and
reduces the gradients to their owners (reduce_scatter). gloo on CPU works with torch 2.x.

    model-lens run --nproc-per-node 2 examples/fsdp_train.py [-- --steps N]
"""

import argparse

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--batch", type=int, default=16)
opts = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = FSDP(
    nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1)), device_id=torch.device("cpu")
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
loss_fn = nn.MSELoss()
g = torch.Generator().manual_seed(1234 + rank)
w = torch.linspace(-1, 1, 16).unsqueeze(1)

for step in range(1, opts.steps + 1):
    x = torch.randn(opts.batch, 16, generator=g)
    y = x @ w + 0.1 * torch.randn(opts.batch, 1, generator=g)
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    if rank == 0:
        print("step %d loss %r" % (step, loss.item()), flush=True)

dist.barrier()
dist.destroy_process_group()
