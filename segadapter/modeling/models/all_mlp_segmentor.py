"""A staged backbone + the All-MLP head, optionally with adapters after every stage: what the
Segformer, SegAdapter and SeMask families (MiT and ConvNeXt) share."""
from __future__ import annotations

from torch import nn

from ..adapters import AdapterOptions, StageAdapters
from ..heads import AllMLPHead
from ..meta_arch import Segmentor


def all_mlp_segmentor(backbone: nn.Module, num_classes: int, adapter: str | None, decoder_channels: int,
                      head_act: str, head_dropout: float, coarse_weight: float, adapter_opts: dict) -> Segmentor:
    """`adapter`: None, 'segadapter' (HSA) or 'semask'; `adapter_opts`: `AdapterOptions` fields."""
    if adapter is None and adapter_opts:
        raise TypeError(f"unexpected options for a model without adapter: {sorted(adapter_opts)}")
    adapters = None
    if adapter is not None:
        adapters = StageAdapters(adapter, backbone.out_channels, num_classes, AdapterOptions(**adapter_opts),
                                coarse_weight)
    head = AllMLPHead(backbone.out_channels, num_classes, decoder_channels, head_act, head_dropout)
    return Segmentor(backbone, head, num_classes, adapters)


def default_head_act(adapter: str | None) -> str:
    """The published heads use ReLU; the adapter papers' heads GELU."""
    return "gelu" if adapter else "relu"
