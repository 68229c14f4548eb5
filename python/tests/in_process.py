"""The engine's summary pass on a model built in the test process (the torchvision zoo and Hugging
Face models are built here, not through a model file): the same loader, summary and tree code the
engine runs for model/summary and model/tree."""

import os
import sys

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

from model_lens_engine.errors import UserScope  # noqa: E402
from model_lens_engine.inputs import Inputs  # noqa: E402
from model_lens_engine.loader import LoadedModel, unwrap  # noqa: E402


def loaded(module, args=(), kwargs=None, name="model"):
    lm = LoadedModel()
    lm.model_id = "m1"
    lm.name = name
    lm.file = __file__
    lm.scope = UserScope(os.path.dirname(__file__))
    lm.module, lm.wrapper = unwrap(module)
    kwargs = kwargs or {}
    lm.inputs = Inputs(list(args) + list(kwargs.values()), [None] * len(args) + list(kwargs))
    lm.input_specs = [
        {"shape": list(t.shape), "dtype": str(t.dtype), "source": "request"} for t in lm.inputs
    ]
    return lm


def summary(module, args=(), kwargs=None):
    from model_lens_engine.summary import run_summary

    lm = loaded(module, args, kwargs)
    return run_summary(lm, lm.inputs, lm.input_specs, [])


def tree(module, args=(), kwargs=None):
    from model_lens_engine.tree import build_tree

    return build_tree(loaded(module, args, kwargs))


def rows_by_path(s):
    return {r["path"]: r for r in s["rows"]}
