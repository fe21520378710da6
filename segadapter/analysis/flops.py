"""FLOPs counted the paper's way: one multiply-add = one FLOP.

Counts multiply-adds of the matrix-like aten ops (convolution incl. grouped/depthwise, linear,
matmul, attention kernels) seen while the model runs forward once, in eval mode. Elementwise
ops, norms and resizing are not counted (as in the FLOPs tables of Segformer and SegAdapter).
torch's FlopCounterMode is not used: it has no formula for the CPU attention kernel.
"""
from __future__ import annotations

from collections import defaultdict
from math import prod

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..modeling.meta_arch.base import declared_model

aten = torch.ops.aten


def _mm(args, out):
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _addmm(args, out):
    return _mm(args[1:], out)


def _mv(args, out):
    return args[0].shape[0] * args[0].shape[1]


def _addmv(args, out):
    return _mv(args[1:], out)


def _bmm(args, out):
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _baddbmm(args, out):
    return _bmm(args[1:], out)


def _conv(args, out):
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    out_t = out[0] if isinstance(out, (tuple, list)) else out
    # each output element of a conv needs (in_ch / groups) * prod(kernel) multiply-adds
    per_out = w.shape[1] * prod(w.shape[2:])
    if transposed:  # weight is (in, out/groups, k...): count per input element instead
        return x.numel() * w.shape[1] * prod(w.shape[2:])
    return out_t.numel() * per_out


def _sdpa(args, out):
    q, k = args[0], args[1]
    v = args[2]
    # QK^T and (softmax) V: two batched matmuls
    batch = prod(q.shape[:-2])
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


_FORMULAS = {
    aten.mm.default: _mm,
    aten.addmm.default: _addmm,
    aten.mv.default: _mv,
    aten.addmv.default: _addmv,
    aten.bmm.default: _bmm,
    aten.baddbmm.default: _baddbmm,
    aten.convolution.default: _conv,
    aten._convolution.default: _conv,
}
for _name in (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_attention_math",
):
    _op = getattr(aten, _name, None)
    if _op is not None:
        _FORMULAS[_op.default] = _sdpa


class MacCounter(TorchDispatchMode):
    """Counts multiply-adds per aten op while active."""

    def __init__(self):
        super().__init__()
        self.by_op: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = _FORMULAS.get(func)
        if formula is not None:
            self.by_op[func.__name__] += int(formula(args, out))
        return out

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: torch.nn.Module, size: tuple[int, int], batch: int = 1, executed: bool = False) -> int:
    """Multiply-adds of one eval-mode forward on a (batch, 3, H, W) input: of the architecture as
    published, or with `executed`, of what our inference actually runs (the folded head)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(batch, 3, *size, device=device)
    # Count the architecture as published, not our algebraically folded inference shortcuts.
    declared = declared_model(model)  # None: a bare network, counted as it runs
    head = declared.decode_head if declared is not None else None
    shortcuts = [head] if head is not None and head.fused_inference and not executed else []
    for m in shortcuts:
        m.fused_inference = False
    # SAN's published figure leaves out the final class-mask combination (`predict`); SegViT's keeps it
    run = declared.forward_raw if head is not None and not head.count_predict_flops else model
    try:
        with MacCounter() as counter:
            run(x)
    finally:
        model.train(was_training)
        for m in shortcuts:
            m.fused_inference = True
    return counter.total


def model_complexity(model: torch.nn.Module, size: tuple[int, int], executed: bool = False) -> dict[str, float]:
    """{"params_m": parameters in millions, "trainable_params_m": those that train (frozen CLIP
    excluded), "gflops": multiply-adds in G} at input `size`."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params_m": count_params(model) / 1e6, "trainable_params_m": trainable / 1e6,
            "gflops": count_flops(model, size, executed=executed) / 1e9}


def complexity_of(name: str, num_classes: int, size: tuple[int, int], executed: bool = False,
                  **options) -> dict[str, float]:
    """Complexity of a registered model, built on the meta device: shapes only, no weights, so
    even the largest variants are counted in about a second."""
    from ..modeling.factory import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **options)
    return model_complexity(model, size, executed=executed)
