"""The model inside the wrappers training and inference put around it (DistributedDataParallel,
torch.compile), so its declared attributes are read from the model itself, never probed."""
from __future__ import annotations

import sys

from torch import nn


def bare_model(model: nn.Module) -> nn.Module:
    """`model` without its DDP and torch.compile wrappers (in any order); the model itself otherwise.
    For reading what a model declares: run the wrapper, not this."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
            continue
        # torch.compile's wrapper class; only a process that compiled something has loaded it
        eval_frame = sys.modules.get("torch._dynamo.eval_frame")
        if eval_frame is not None and isinstance(model, eval_frame.OptimizedModule):
            model = model._orig_mod
            continue
        return model
