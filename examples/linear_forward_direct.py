"""Linear regression that calls `model.forward(x)` directly, as study notes do to show what
`model(x)` (Module.__call__) adds: hooks. `model-lens run` times this forward all the same and
says that calling forward() directly skips the module's hooks.

Run: model-lens run examples/linear_forward_direct.py
"""

import torch
import torch.nn as nn

WIDTH = 256
BATCH = 128
STEPS = 30


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(WIDTH, WIDTH),
            nn.ReLU(),
            nn.Linear(WIDTH, WIDTH),
            nn.ReLU(),
            nn.Linear(WIDTH, WIDTH),
            nn.ReLU(),
        )
        self.head = nn.Linear(WIDTH, 1)

    def forward(self, x):
        return self.head(self.body(x))


torch.manual_seed(0)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = Regressor().to(device)
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.randn(BATCH, WIDTH, device=device)
y = x[:, :1] * 2.0 + 1.0
for _step in range(STEPS):
    opt.zero_grad()
    pred = model.forward(x)  # on purpose: model(x) would run hooks, forward() does not
    loss = nn.functional.mse_loss(pred, y)
    loss.backward()
    opt.step()
print("final loss %.4f" % loss.item())
