"""The MiT family: Segformer-B0..B5, Adapt-MiT-B0..B5 (SegAdapter), SeMask-MiT-B0..B3."""
from __future__ import annotations

from ..backbones import mit
from ..adapters import AdapterOptions
from ..published import Published
from ..registry import option_names, register_model
from ..weights.mit import published_encoder
from ..meta_arch import Segmentor
from .all_mlp_segmentor import all_mlp_segmentor, default_head_act


def mit_segmentor(variant: str, num_classes: int, adapter: str | None = None, *,
                  decoder_channels: int | None = None, head_act: str | None = None,
                  head_dropout: float = 0.1, drop_path_rate: float = 0.1, layer_norm_eps: float = 1e-6,
                  coarse_weight: float = 0.4, **adapter_opts) -> Segmentor:
    """MiT backbone + All-MLP head, optionally with SegAdapter ('segadapter') or SeMask layers.

    Plain Segformer keeps the published head (ReLU, width 256 for B0/B1 and 768 for B2-B5);
    adapter models use the paper's head (GELU, width 256).
    """
    if decoder_channels is None:
        decoder_channels = 256 if (adapter or variant in ("b0", "b1")) else 768
    backbone = mit(variant, drop_path_rate=drop_path_rate, layer_norm_eps=layer_norm_eps)
    return all_mlp_segmentor(backbone, num_classes, adapter, decoder_channels, head_act or default_head_act(adapter),
                             head_dropout, coarse_weight, adapter_opts)


PLAIN_OPTIONS = option_names(mit_segmentor)
ADAPTER_OPTIONS = option_names(mit_segmentor, AdapterOptions)


_ADE_CROP = {"b0": 512, "b1": 512, "b2": 512, "b3": 512, "b4": 512, "b5": 640}


def published_segformer(v: str) -> list[Published]:
    """NVIDIA's fine-tuned Segformers (ADE20K, Cityscapes: whole models where the class count
    matches), then the encoder."""
    ade = _ADE_CROP[v]
    paper = "(the Segformer paper's model)"
    return [Published(f"nvidia/segformer-{v}-finetuned-ade-{ade}-{ade}", "model",
                      f"Segformer-{v.upper()} fine-tuned on ADE20K at {ade} px {paper}", 150, "ade20k"),
            Published(f"nvidia/segformer-{v}-finetuned-cityscapes-1024-1024", "model",
                      f"Segformer-{v.upper()} fine-tuned on Cityscapes at 1024 px {paper}", 19, "cityscapes"),
            published_encoder(v)]


def _register() -> None:
    for v in ("b0", "b1", "b2", "b3", "b4", "b5"):
        register_model(f"segformer-{v}", options=PLAIN_OPTIONS, published=published_segformer(v),
                       card_tags=("segformer",))(
            lambda num_classes, _v=v, **kw: mit_segmentor(_v, num_classes, **kw))
        register_model(f"adapt-mit-{v}", options=ADAPTER_OPTIONS, published=[published_encoder(v)],
                       card_tags=("segadapter",))(
            lambda num_classes, _v=v, **kw: mit_segmentor(_v, num_classes, "segadapter", **kw))
    for v in ("b0", "b1", "b2", "b3"):
        register_model(f"semask-mit-{v}", options=ADAPTER_OPTIONS, published=[published_encoder(v)],
                       card_tags=("semask",))(
            lambda num_classes, _v=v, **kw: mit_segmentor(_v, num_classes, "semask", **kw))


_register()
