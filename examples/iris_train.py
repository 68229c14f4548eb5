"""Train a 4 → 10 → 3 MLP on Fisher's Iris data (examples/data/iris.csv), full batch.

A plain training script, the way people write them: run it with `python iris_train.py [epochs]`,
or with `model-lens run iris_train.py` to watch its progress without changing a line.
"""

import csv
import os
import sys

import torch
import torch.nn as nn

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "iris.csv")
SEED = 0
TRAIN_ROWS = 120
LEARNING_RATE = 0.1


class IrisNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 10)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def load_data(path=DATA_FILE):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)  # header
        rows = [r for r in reader if r]
    x = torch.tensor([[float(v) for v in r[:4]] for r in rows], dtype=torch.float32)
    y = torch.tensor([int(r[4]) for r in rows], dtype=torch.int64)
    return x, y


def main():
    num_epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    torch.manual_seed(SEED)
    x, y = load_data()
    x = (x - x.mean(0)) / x.std(0)
    perm = torch.randperm(len(x))
    x_train, y_train = x[perm[:TRAIN_ROWS]], y[perm[:TRAIN_ROWS]]
    x_test, y_test = x[perm[TRAIN_ROWS:]], y[perm[TRAIN_ROWS:]]

    model = IrisNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)

    for epoch in range(num_epochs):
        model.train()
        optimizer.zero_grad()
        outputs = model(x_train)
        loss = criterion(outputs, y_train)
        loss.backward()
        optimizer.step()
        if epoch % 100 == 0:
            print(f"epoch {epoch} loss {loss.item():.4f}")

    model.eval()
    with torch.no_grad():
        predicted = model(x_test).argmax(dim=1)
        accuracy = (predicted == y_test).float().mean().item()
    print(f"test accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
