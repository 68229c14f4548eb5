"""Model files and training scripts the checks hand to the engine, written to a temporary folder.
Each is a plain user file; the checks also import the model files themselves (runpy), so the
engine and the reference measure the very same model."""

import os
import runpy

# The line of iris_item.py whose `.item()` syncs every step; the diagnosis must name it.
ITEM_MARKER = "# <- the per-step sync"

IRIS_ITEM = '''"""The seeds' iris MLP, trained the way the notes do it: data moved to `device`
once, `.item()` on the loss every step. argv: device steps repeat sync(0/1) hidden"""
import csv
import sys

import torch
import torch.nn as nn

device = torch.device(sys.argv[1])
steps, repeat, sync, hidden = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with open(%(csv)r, newline="") as f:
    rows = [r for r in list(csv.reader(f))[1:] if r]
x = torch.tensor([[float(v) for v in r[:4]] for r in rows]).repeat(repeat, 1)
y = torch.tensor([int(r[4]) for r in rows]).repeat(repeat)
x = ((x - x.mean(0)) / x.std(0)).to(device)
y = y.to(device)
torch.manual_seed(0)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


model = MLP().to(device)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
total = 0.0
for step in range(steps):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    if sync:
        total += loss.item()  %(marker)s
print("final loss", float(loss))
'''

MISMATCH_TRAIN = '''"""Model moved to {device}, batches left on the CPU: fc1 gets a CPU input."""
import torch
import torch.nn as nn

model = nn.Sequential()
model.add_module("fc1", nn.Linear(4, 8))
model.add_module("relu", nn.ReLU())
model.add_module("fc2", nn.Linear(8, 2))
model = model.to("{device}")
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 4)
for step in range(3):
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
'''

OOM_MODEL = '''"""`huge` asks for far more device memory than there is: a real CUDA OOM."""
import torch
import torch.nn as nn


class Huge(nn.Module):
    def forward(self, x):
        return x.new_empty({elements}) + 1


class OomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.huge = Huge()

    def forward(self, x):
        return self.huge(self.fc(x))


model = OomNet()
example_input = torch.randn(2, 16)
'''

MLP_MODEL = '''"""{layers} Linear({width}, {width}) layers: {param_mib:.0f} MiB of parameters."""
import torch
import torch.nn as nn

model = nn.Sequential(*[nn.Linear({width}, {width}) for _ in range({layers})])
example_input = torch.randn({batch}, {width})
'''

ADAM_TRAIN = '''"""{layers} Linear({width}, {width}) layers trained with Adam on {device} until
stopped: weights, gradients and Adam's two moments are 4x the parameters' memory."""
import torch
import torch.nn as nn

model = nn.Sequential(*[nn.Linear({width}, {width}) for _ in range({layers})]).to("{device}")
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
x = torch.randn({batch}, {width}, device="{device}")
for step in range({steps}):
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()
'''

RESNET50_MODEL = """import torch
from torchvision.models import resnet50

model = resnet50(weights=None)
example_input = torch.randn({batch}, 3, {size}, {size})
"""

GPT2_MODEL = '''"""Hugging Face GPT-2 from its config (random weights, no download): logits."""
import torch
import torch.nn as nn
from transformers import GPT2Config, GPT2LMHeadModel


class GPT2Logits(nn.Module):
    def __init__(self):
        super().__init__()
        config = GPT2Config(n_layer={layers}, n_embd={embd}, n_head={heads}, n_positions={seq})
        self.lm = GPT2LMHeadModel(config)

    def forward(self, ids):
        return self.lm(ids, use_cache=False).logits


torch.manual_seed(0)
model = GPT2Logits()
example_input = torch.randint(0, 50257, ({batch}, {seq}))
'''


class Workloads:
    def __init__(self, folder, repo):
        self.folder = folder
        self.repo = repo

    def write(self, name, text):
        path = os.path.join(self.folder, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def iris_item(self):
        csv_path = os.path.join(self.repo, "examples", "data", "iris.csv")
        path = self.write("iris_item.py", IRIS_ITEM % {"csv": csv_path, "marker": ITEM_MARKER})
        with open(path, encoding="utf-8") as f:
            line = next(i for i, text in enumerate(f, 1) if ITEM_MARKER in text)
        return path, line

    def mismatch_train(self, device):
        return self.write("mismatch_train.py", MISMATCH_TRAIN.format(device=device))

    def oom_model(self, total_bytes):
        # Twice the device's memory in float32 elements: no allocator setting makes this fit.
        return self.write("oom_model.py", OOM_MODEL.format(elements=int(total_bytes * 2 // 4)))

    def mlp_model(self, width, layers, batch):
        return self.write(
            "mlp_model.py",
            MLP_MODEL.format(
                width=width,
                layers=layers,
                batch=batch,
                param_mib=layers * (width * width + width) * 4 / 2**20,
            ),
        )

    def adam_train(self, width, layers, batch, steps, device):
        return self.write(
            "adam_train.py",
            ADAM_TRAIN.format(width=width, layers=layers, batch=batch, steps=steps, device=device),
        )

    def resnet50_model(self, batch, size):
        return self.write("resnet50_model.py", RESNET50_MODEL.format(batch=batch, size=size))

    def gpt2_model(self, layers, embd, heads, batch, seq):
        return self.write(
            "gpt2_model.py",
            GPT2_MODEL.format(layers=layers, embd=embd, heads=heads, batch=batch, seq=seq),
        )


def load_model_file(path):
    """(model, example_input) as the engine would find them, imported here for the reference."""
    ns = runpy.run_path(path, run_name="gpu_check_reference")
    return ns["model"], ns["example_input"]
