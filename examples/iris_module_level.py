"""Iris MLP trained at module level, as study notes are written: no `if __name__ == "__main__":`,
a CrossEntropyLoss next to the model, and a tqdm progress bar over the epochs (when tqdm is
installed).

`model-lens run examples/iris_module_level.py` trains it with the bar drawn in your terminal;
`model-lens inspect examples/iris_module_level.py` stops the import at its first backward() and
shows the model that was about to be trained, without running the 20,000 epochs.
"""

import csv
import os

import torch
import torch.nn as nn

try:
    from tqdm import tqdm
except ImportError:  # the bar is optional; the training is the same

    def tqdm(iterable, **kwargs):
        return iterable


EPOCHS = 20000
DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "iris.csv")


class MLP(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


with open(DATA_FILE, newline="") as f:
    rows = [r for r in list(csv.reader(f))[1:] if r]
x = torch.tensor([[float(v) for v in r[:4]] for r in rows])
y = torch.tensor([int(r[4]) for r in rows])
x = (x - x.mean(0)) / x.std(0)

torch.manual_seed(0)
model = MLP()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

for _epoch in tqdm(range(EPOCHS), desc="train"):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()

with torch.no_grad():
    accuracy = (model(x).argmax(1) == y).float().mean().item()
print("final loss %.4f, accuracy %.3f" % (loss.item(), accuracy))
