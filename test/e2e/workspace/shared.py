# Inspected by the e2e scenario on shared modules: layers[2] is layers[0], registered twice.
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
    def forward(self, x):
        return torch.relu(self.lin(x))

class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        b = Block()
        self.layers = nn.ModuleList([b, Block(), b])
        self.head = nn.Linear(8, 2)
    def forward(self, x):
        for l in self.layers:
            x = l(x)
        return self.head(x)

model = Shared()
example_input = torch.randn(1, 8)
