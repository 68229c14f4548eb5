"""torchinfo (1.8.0, from PyPI) as the oracle on models like its own test fixtures (LSTM, packed
sequences, parameter lists, shared and recursive modules, frozen layers, dict outputs), and where
torchinfo is wrong: tied weights. Torchvision models are in vision_test_torchinfo_oracle.py."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchinfo  # noqa: E402
from engine_process import FIXTURES  # noqa: E402
from in_process import rows_by_path, summary  # noqa: E402
from torchinfo_compare import compare  # noqa: E402

sys.path.insert(0, FIXTURES)
import torchinfo_like  # noqa: E402


class TorchinfoFixturesTest(unittest.TestCase):
    def test_fixture_models_match_torchinfo(self):
        for name, build, inputs in torchinfo_like.CASES:
            with self.subTest(model=name):
                torch.manual_seed(0)
                compare(self, build().eval(), inputs())

    def test_shared_module_counted_once(self):
        ours, ti = compare(
            self, torchinfo_like.SiameseNets().eval(), (torch.randn(4, 10), torch.randn(4, 10))
        )
        self.assertEqual(rows_by_path(ours)["encoder"]["aliases"], ["other"])
        self.assertEqual(ours["totals"]["params"], (10 * 16 + 16) + (16 * 8 + 8) + (8 + 1))

    def test_frozen_layers_are_not_trainable(self):
        ours, ti = compare(self, torchinfo_like.FrozenLayers().eval(), (torch.randn(2, 3, 12, 12),))
        self.assertEqual(ours["totals"]["trainableParams"], 6 * 2 + 2)

    def test_tied_weights_counted_once_where_torchinfo_counts_twice(self):
        class TiedLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(50, 16)
                self.body = nn.Linear(16, 16)
                self.lm_head = nn.Linear(16, 50, bias=False)
                self.lm_head.weight = self.embed.weight

            def forward(self, ids):
                return self.lm_head(torch.tanh(self.body(self.embed(ids))))

        model = TiedLM().eval()
        ids = torch.randint(0, 50, (2, 5))
        ti = torchinfo.summary(model, input_data=[ids], verbose=0, device="cpu")
        ours = summary(model, (ids,))
        right = sum(p.numel() for p in model.parameters())  # each Parameter object once
        self.assertEqual(right, 50 * 16 + 16 * 16 + 16)
        # torchinfo 1.8.0 adds every leaf's parameters: the tied 50·16 matrix is counted under
        # embed and again under lm_head. The right count is torch's own deduplicated one.
        self.assertEqual(ti.total_params, right + 50 * 16)
        self.assertEqual(ours["totals"]["params"], right)


if __name__ == "__main__":
    unittest.main()
