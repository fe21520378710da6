"""Registered model variants: one tiny builder each, on top of two family builders."""
from __future__ import annotations

from typing import Sequence

from .convnext import convnext
from .decode_head import AllMLPHead
from .mit import mit
from .registry import register_model
from .segadapter_layer import AdapterOptions, build_adapter_layers
from .segmentor import Segmentor

PAPER_MU_INIT = (1e-5, 1e-4, 1e-3, 1e-2)


def _adapters(kind, dims, num_classes, kernel_size=5, norm="ln", ffn_ratio=3.0,
              blocks_per_stage: Sequence[int] = (1, 1, 1, 1), mu_init: Sequence[float] = PAPER_MU_INIT,
              mu_learnable=True, window_size=7):
    if len(blocks_per_stage) != 4 or len(mu_init) != 4:
        raise ValueError("blocks_per_stage and mu_init need one value per stage (4)")
    opts = AdapterOptions(kernel_size, norm, ffn_ratio, tuple(blocks_per_stage), tuple(mu_init),
                          mu_learnable, window_size)
    return build_adapter_layers(kind, dims, num_classes, opts)


def _segmentor(backbone, num_classes, adapter, decoder_channels, head_act, head_dropout,
               coarse_weight, adapter_opts):
    adapters = None
    if adapter is not None:
        adapters = _adapters(adapter, backbone.out_channels, num_classes, **adapter_opts)
    head = AllMLPHead(backbone.out_channels, num_classes, decoder_channels, head_act, head_dropout)
    return Segmentor(backbone, head, num_classes, adapters, coarse_weight)


def mit_segmentor(variant: str, num_classes: int, adapter: str | None = None, *,
                  decoder_channels: int | None = None, head_act: str | None = None,
                  head_dropout: float = 0.1, drop_path_rate: float = 0.1, layer_norm_eps: float = 1e-6,
                  coarse_weight: float = 0.4, **adapter_opts) -> Segmentor:
    """MiT backbone + All-MLP head, optionally with SegAdapter ('segadapter') or SeMask layers.

    Plain Segformer keeps the published head (ReLU, width 256 for B0/B1 and 768 for B2-B5);
    adapter models use the paper's head (GELU, width 256).
    """
    if adapter is None and adapter_opts:
        raise TypeError(f"unexpected options for a model without adapter: {sorted(adapter_opts)}")
    if decoder_channels is None:
        decoder_channels = 256 if (adapter or variant in ("b0", "b1")) else 768
    if head_act is None:
        head_act = "gelu" if adapter else "relu"
    backbone = mit(variant, drop_path_rate=drop_path_rate, layer_norm_eps=layer_norm_eps)
    return _segmentor(backbone, num_classes, adapter, decoder_channels, head_act, head_dropout,
                      coarse_weight, adapter_opts)


def convnext_segmentor(variant: str, num_classes: int, adapter: str | None = None, *,
                       decoder_channels: int = 256, head_act: str | None = None, head_dropout: float = 0.1,
                       drop_path_rate: float | None = None, coarse_weight: float = 0.4,
                       **adapter_opts) -> Segmentor:
    """ConvNeXt backbone + All-MLP head (C_d 256, as in the paper's table), optionally adapted."""
    if adapter is None and adapter_opts:
        raise TypeError(f"unexpected options for a model without adapter: {sorted(adapter_opts)}")
    if head_act is None:
        head_act = "gelu" if adapter else "relu"
    backbone = convnext(variant, drop_path_rate=drop_path_rate)
    return _segmentor(backbone, num_classes, adapter, decoder_channels, head_act, head_dropout,
                      coarse_weight, adapter_opts)


def _register_variants() -> None:
    for v in ("b0", "b1", "b2", "b3", "b4", "b5"):
        register_model(f"segformer-{v}")(lambda num_classes, _v=v, **kw: mit_segmentor(_v, num_classes, **kw))
        register_model(f"adapt-mit-{v}")(
            lambda num_classes, _v=v, **kw: mit_segmentor(_v, num_classes, "segadapter", **kw))
    for v in ("b0", "b1", "b2", "b3"):
        register_model(f"semask-mit-{v}")(
            lambda num_classes, _v=v, **kw: mit_segmentor(_v, num_classes, "semask", **kw))
    for v in ("t", "s", "b"):
        register_model(f"convnext-{v}")(lambda num_classes, _v=v, **kw: convnext_segmentor(_v, num_classes, **kw))
        register_model(f"adapt-convnext-{v}")(
            lambda num_classes, _v=v, **kw: convnext_segmentor(_v, num_classes, "segadapter", **kw))


_register_variants()
