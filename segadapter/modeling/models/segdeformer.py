"""The SegDeformer family: a MiT or ConvNeXt backbone + the SegDeformer decode head
(`segdeformer-mit-b0..b5`, `segdeformer-convnext-t|s|b`). The head width is C = 256 for every backbone, as in the official configs (mmseg's Segformer
configs keep 256 for B2-B5 too).
On MiT every LayerNorm has eps 1e-6 as in the official backbone (mmseg MiT); `norm_eps=None` gives
Segformer's NVlabs mix (1e-5 in the patch-embedding and spatial-reduction norms).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ...errors import ConfigError
from ..backbones.convnext import CONVNEXT_SPECS, convnext
from ..backbones.mit import MIT_SPECS, mit
from ..heads.segdeformer import SegDeformerHead
from ..registry import option_names, register_model
from ..weights import convnext as convnext_weights, mit as mit_weights
from ..meta_arch import Segmentor

# registry name -> (backbone family, variant)
SEGDEFORMER_VARIANTS: dict[str, tuple[str, str]] = {
    **{f"segdeformer-mit-{v}": ("mit", v) for v in MIT_SPECS},
    **{f"segdeformer-convnext-{v}": ("convnext", v) for v in CONVNEXT_SPECS},
}
MMSEG_MIT_NORM_EPS = 1e-6  # mmseg MiT configs: norm_cfg=dict(type='LN', eps=1e-6) in every norm
_HEAD_OPTIONS = ("channels", "internal", "external", "attention_reduction", "aux_weight", "dropout",
                 "loss_average", "ignore_index")


def build_segdeformer(backbone_name: str, variant: str, num_classes: int, *,
                      drop_path_rate: float | None = None, **options: Any) -> tuple[nn.Module, SegDeformerHead]:
    """(backbone, SegDeformer head) for `backbone_name` 'mit' (b0-b5) or 'convnext' (t, s, b).

    `drop_path_rate` defaults to the backbone's usual value (MiT 0.1, ConvNeXt per variant);
    `norm_eps` (MiT only) the eps of every LayerNorm, 1e-6 as mmseg's MiT (None: the NVlabs mix);
    the other `options` are the head's (`SegDeformerHead`: channels, internal, external,
    attention_reduction, aux_weight, dropout, loss_average, ignore_index)."""
    norm_eps_given = "norm_eps" in options
    norm_eps = options.pop("norm_eps", MMSEG_MIT_NORM_EPS)
    unknown = sorted(set(options) - set(_HEAD_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown SegDeformer options {unknown}; expected drop_path_rate, norm_eps or one of "
                          f"{list(_HEAD_OPTIONS)}")
    specs = {"mit": MIT_SPECS, "convnext": CONVNEXT_SPECS}
    if backbone_name not in specs:
        raise ConfigError(f"unknown SegDeformer backbone {backbone_name!r}; expected one of {sorted(specs)}")
    if variant not in specs[backbone_name]:
        raise ConfigError(f"unknown {backbone_name} variant {variant!r}; expected one of "
                          f"{sorted(specs[backbone_name])}")
    if norm_eps_given and backbone_name != "mit":
        raise ConfigError(f"norm_eps is an option of the MiT backbone, not of {backbone_name}")
    if backbone_name == "mit":
        backbone = mit(variant, drop_path_rate=0.1 if drop_path_rate is None else drop_path_rate, norm_eps=norm_eps)
    else:
        backbone = convnext(variant, drop_path_rate=drop_path_rate)
    return backbone, SegDeformerHead(backbone.out_channels, num_classes, **options)


def build_segdeformer_by_name(name: str, num_classes: int, **options: Any) -> tuple[nn.Module, SegDeformerHead]:
    """`build_segdeformer` for a name of `SEGDEFORMER_VARIANTS` (e.g. 'segdeformer-mit-b1')."""
    if name not in SEGDEFORMER_VARIANTS:
        raise ConfigError(f"unknown SegDeformer model {name!r}; known: {', '.join(SEGDEFORMER_VARIANTS)}")
    return build_segdeformer(*SEGDEFORMER_VARIANTS[name], num_classes, **options)


def _register() -> None:
    encoders = {"mit": mit_weights, "convnext": convnext_weights}
    for name, (family, variant) in SEGDEFORMER_VARIANTS.items():
        weights = encoders[family]
        named = weights.named_encoders(variant) if family == "convnext" else {}
        register_model(name, options=option_names(("drop_path_rate", "norm_eps"), _HEAD_OPTIONS),
                       published=[weights.published_encoder(variant)], named=named, card_tags=("segdeformer",))(
            lambda num_classes, _f=family, _v=variant, **kw:
                             Segmentor(*build_segdeformer(_f, _v, num_classes, **kw), num_classes))


_register()
