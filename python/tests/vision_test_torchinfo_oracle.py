"""torchinfo (1.8.0, from PyPI) as the oracle: torchinfo.summary and the engine's summary pass on
the same torchvision classification models and the same input, compared on parameters, trainable
parameters, mult-adds, "Forward/backward pass size" bytes, and every layer's output shape and
mult-adds by module path.

Runs only on interpreters with torchvision (scripts/test.js: torch1 = Debian torch 1.13 +
torchvision 0.14, vision2 = torch 2.14.1 + torchvision 0.29.1). Inputs are small (64×64) where
the architecture allows: torchinfo's figures scale with the input, and the comparison is exact at
any size. ViT needs its 224×224 and inception_v3 its 299×299.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchinfo_compare import compare  # noqa: E402

SMALL = (1, 3, 64, 64)
# Every model here exists in torchvision 0.14 and 0.29; built with random weights (never
# downloaded), compared at the input size after its name.
ZOO = [
    ("resnet18", SMALL),
    ("resnet34", SMALL),
    ("resnet50", SMALL),
    ("resnext50_32x4d", SMALL),
    ("wide_resnet50_2", SMALL),
    ("alexnet", SMALL),
    ("squeezenet1_0", SMALL),
    ("squeezenet1_1", SMALL),
    ("densenet121", SMALL),
    ("mobilenet_v2", SMALL),
    ("mobilenet_v3_small", SMALL),
    ("mobilenet_v3_large", SMALL),
    ("mnasnet0_5", SMALL),
    ("mnasnet1_0", SMALL),
    ("shufflenet_v2_x0_5", SMALL),
    ("shufflenet_v2_x1_0", SMALL),
    ("efficientnet_b0", SMALL),
    ("efficientnet_b1", SMALL),
    ("efficientnet_v2_s", SMALL),
    ("regnet_x_400mf", SMALL),
    ("regnet_y_400mf", SMALL),
    ("regnet_x_800mf", SMALL),
    ("regnet_y_800mf", SMALL),
    ("regnet_y_1_6gf", SMALL),
    ("convnext_tiny", SMALL),
    ("swin_t", SMALL),
    ("vgg11", SMALL),
    ("googlenet", SMALL),
    ("vit_b_32", (1, 3, 224, 224)),
    ("vit_b_16", (1, 3, 224, 224)),
    ("inception_v3", (1, 3, 299, 299)),
]
# torchvision's documented GFLOPS (its model docs' multiply-add counts of the ops that run) for the
# models compared here at their documented input size: the executed count must be within 1%.
DOCUMENTED_GMACS = {"vit_b_16": 17.56, "vit_b_32": 4.41, "inception_v3": 5.71}
DOCUMENTED_TOLERANCE = 0.01
BUILD_ARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}


class TorchvisionOracleTest(unittest.TestCase):
    def test_zoo_matches_torchinfo(self):
        self.assertGreaterEqual(len(ZOO), 30)
        for name, size in ZOO:
            with self.subTest(model=name):
                torch.manual_seed(0)
                model = getattr(torchvision.models, name)(**BUILD_ARGS.get(name, {}))
                ours, _ = compare(self, model.eval(), (torch.randn(*size),), min_layers=10)
                if name in DOCUMENTED_GMACS:
                    got = ours["totals"]["executedMacs"] / 1e9
                    self.assertLess(
                        abs(got / DOCUMENTED_GMACS[name] - 1),
                        DOCUMENTED_TOLERANCE,
                        "%s executed %.3f G vs documented %.2f"
                        % (name, got, DOCUMENTED_GMACS[name]),
                    )


if __name__ == "__main__":
    unittest.main()
