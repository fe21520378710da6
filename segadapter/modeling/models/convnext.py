"""The ConvNeXt family: ConvNeXt-T/S/B + All-MLP head, and Adapt-ConvNeXt-T/S/B (SegAdapter)."""
from __future__ import annotations

from ..backbones import convnext
from ..adapters import AdapterOptions
from ..registry import option_names, register_model
from ..weights.convnext import named_encoders, published_encoder
from ..meta_arch import Segmentor
from .all_mlp_segmentor import all_mlp_segmentor, default_head_act


def convnext_segmentor(variant: str, num_classes: int, adapter: str | None = None, *,
                       decoder_channels: int = 256, head_act: str | None = None, head_dropout: float = 0.1,
                       drop_path_rate: float | None = None, coarse_weight: float = 0.4,
                       **adapter_opts) -> Segmentor:
    """ConvNeXt backbone + All-MLP head (C_d 256, as in the paper's table), optionally adapted."""
    backbone = convnext(variant, drop_path_rate=drop_path_rate)
    return all_mlp_segmentor(backbone, num_classes, adapter, decoder_channels, head_act or default_head_act(adapter),
                             head_dropout, coarse_weight, adapter_opts)


def _register() -> None:
    plain, adapted = option_names(convnext_segmentor), option_names(convnext_segmentor, AdapterOptions)
    for v in ("t", "s", "b"):
        weights = dict(published=[published_encoder(v)], named=named_encoders(v))
        register_model(f"convnext-{v}", options=plain, card_tags=("convnext",), **weights)(
            lambda num_classes, _v=v, **kw: convnext_segmentor(_v, num_classes, **kw))
        register_model(f"adapt-convnext-{v}", options=adapted, card_tags=("segadapter",), **weights)(
            lambda num_classes, _v=v, **kw: convnext_segmentor(_v, num_classes, "segadapter", **kw))


_register()
