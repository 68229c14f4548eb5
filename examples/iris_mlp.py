"""The classic 4 → 10 → 3 MLP on Fisher's Iris data (examples/data/iris.csv).

Model Lens imports this file without running the `__main__` block: it finds `IrisMLP` and
`example_input`. Run it directly (`python iris_mlp.py`) to train it.
"""

import csv
import os

import torch
import torch.nn as nn

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "iris.csv")
FEATURES = 4
HIDDEN = 10
CLASSES = 3


class IrisMLP(nn.Module):
    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.fc1 = nn.Linear(FEATURES, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, CLASSES)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def load_iris(path=DATA_FILE):
    """Features (150×4, float32) and species labels (150, int64)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    x = torch.tensor([[float(v) for v in r[:FEATURES]] for r in rows], dtype=torch.float32)
    y = torch.tensor([int(r[FEATURES]) for r in rows], dtype=torch.int64)
    return x, y


# One batch of real flowers: what the model sees during training.
example_input = load_iris()[0][:8]


def train(epochs=200, lr=0.05, seed=0):
    torch.manual_seed(seed)
    x, y = load_iris()
    x = (x - x.mean(0)) / x.std(0)
    perm = torch.randperm(len(x))
    train_idx, test_idx = perm[:120], perm[120:]
    model = IrisMLP()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        opt.zero_grad()
        loss = loss_fn(model(x[train_idx]), y[train_idx])
        loss.backward()
        opt.step()
        if (epoch + 1) % 20 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()
            print("epoch %d loss %.4f test accuracy %.3f" % (epoch + 1, loss.item(), acc))
    return model


if __name__ == "__main__":
    train()
