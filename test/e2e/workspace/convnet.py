# Profiled by the e2e Ops scenario: torchvision's resnet18 (random weights, nothing downloaded),
# or a small conv net where the interpreter has no torchvision.
import torch
from torch import nn

try:
    import torchvision

    model = torchvision.models.resnet18()
except ImportError:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )

example_input = torch.randn(1, 3, 64, 64)
