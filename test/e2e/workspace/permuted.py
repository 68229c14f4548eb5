# Inspected by the e2e Tensor scenario: `perm` returns a permuted view, which is not contiguous.
import torch
from torch import nn


class Permute(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 1)


model = nn.Sequential()
model.add_module("fc", nn.Linear(4, 6))
model.add_module("unflatten", nn.Unflatten(1, (2, 3)))
model.add_module("perm", Permute())

example_input = torch.randn(1, 4)
