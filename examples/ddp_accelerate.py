"""The same small regression as ddp_train.py, written for Hugging Face accelerate: `Accelerator`,
`accelerator.prepare`, `accelerator.backward`. Runs as one process (`python` or `model-lens run`)
or as several (`accelerate launch --num_processes 2`, `torchrun --nproc-per-node 2`, `model-lens
run --nproc-per-node 2`); on CPU, accelerate picks gloo.

Options (after `--` under model-lens run):  --steps N (default 30)
"""

import argparse

import torch
import torch.nn as nn
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--batch", type=int, default=16)
opts = parser.parse_args()

accelerator = Accelerator(cpu=True)
torch.manual_seed(0)
g = torch.Generator().manual_seed(1234)
x = torch.randn(opts.batch * 2 * opts.steps, 16, generator=g)
y = x @ torch.linspace(-1, 1, 16).unsqueeze(1) + 0.1 * torch.randn(len(x), 1, generator=g)
loader = DataLoader(TensorDataset(x, y), batch_size=opts.batch)

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
loss_fn = nn.MSELoss()

step = 0
for xb, yb in loader:
    step += 1
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    accelerator.backward(loss)
    optimizer.step()
    accelerator.print("step %d loss %r" % (step, loss.item()))
    if step >= opts.steps:
        break
accelerator.wait_for_everyone()
accelerator.print("done: %d steps on %d processes" % (step, accelerator.num_processes))
