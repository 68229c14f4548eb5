"""Inspecting a training script that trains at module level (no `if __name__ == "__main__":`,
as most study notes are written): importing it would run the whole training before the engine
sees a model. loader.py runs the file's code through ImportGuard.exec, which stops the import at
the first backward() (training always starts there, before the first optimizer step) and
remembers which model was about to be trained; and drops loss modules from the candidates.

Owned by the training helper; loader.py calls it in one place each (exec, candidates, choice).
"""

import os
import sys

import torch
import torch.nn as nn


class TrainingStarted(BaseException):
    """Raised at the import's first backward(). A BaseException: `except Exception` in the
    script must not swallow it."""


class ImportGuard:
    def __init__(self, scope, file):
        self.scope = scope
        self.file = file
        self.where = None  # (file, line) of the backward() that stopped the import
        self.note = None  # what the inspection should say about it

    def exec(self, code, globals_):
        """exec(code, globals_), stopped at the first backward(): globals_ then holds what the
        script had built up to that line."""
        orig = torch.autograd.backward
        guard = self

        def backward(*a, **k):
            guard.where = guard._user_line(sys._getframe(1))
            raise TrainingStarted()

        torch.autograd.backward = backward
        try:
            exec(code, globals_)
        except TrainingStarted:
            pass
        finally:
            torch.autograd.backward = orig
        if self.where is not None:
            self.note = (
                "Importing %s starts training (backward() at %s:%d): the import was "
                "stopped there, before any optimizer step, and the model about to be trained "
                "is shown."
                % (os.path.basename(self.file), os.path.basename(self.where[0]), self.where[1])
            )
        return self.where is not None

    def _user_line(self, frame):
        f = frame
        while f is not None and not self.scope.is_user_file(f.f_code.co_filename):
            f = f.f_back
        f = f or frame
        return f.f_code.co_filename, f.f_lineno

    @staticmethod
    def without_losses(instances):
        """Loss modules without parameters (CrossEntropyLoss, MSELoss...) are not models."""
        return [
            (c, o)
            for c, o in instances
            if not (isinstance(o, nn.modules.loss._Loss) and not any(True for _ in o.parameters()))
        ]

    def trained(self, instances, globals_):
        """The candidate the script's optimizer steps, when the import stopped at training and
        one optimizer in the module's globals names it; else None."""
        if self.where is None:
            return None
        ids = set()
        for v in list(globals_.values()):
            if isinstance(v, torch.optim.Optimizer):
                for g in v.param_groups:
                    ids.update(id(p) for p in g.get("params", []))
        hits = [c["name"] for c, o in instances if any(id(p) in ids for p in o.parameters())]
        return hits[0] if len(hits) == 1 else None
