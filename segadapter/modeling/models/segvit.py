"""SegViT builders: a plain ViT backbone + the ATM head, or the Shrunk pair (QD backbone + QU/ATM head).

Defaults follow the official configs: ViT-B at 512 (taps [5, 7, 11], D = 384, 12 heads, drop path
0.1), ViT-L at 640 (taps [7, 15, 23], D = 512, 16 heads, drop path 0.3); D = width / 2 and the
backbone's head count for the small T/S variants. Shrunk: QD at block 8 of ViT-L's 24 (official
config) and at block 6 of the 12-block ViTs - the paper's Table 8 (Shrunk ViT-B at 512: 97.1
GFLOPs) is reproduced with 6 (96.7 here), not with the "1/3 depth" of its text (4: 82.8); taps
[QD block - 1, last], the 1/16 query grid of the crop (40 x 40 at 640).
"""
from __future__ import annotations

from ...errors import ConfigError
from ..backbones.vit import VIT_SPECS, vit
from ..heads.segvit import ATMHead
from ..heads.segvit_shrunk import ShrunkATMHead
from ..registry import option_names, register_model
from ..weights.vit import published_encoder
from ..meta_arch import Segmentor

# The official inference resizes the mask logits to the crop size the model was built for
# (`img_size`), combines them with the class probabilities there, and resizes the scores to the
# input: the heads predict at stride 1 (the Segmentor hands them the input size).
PREDICT_STRIDE = 1

DEFAULT_CROP = {"t": 512, "s": 512, "b": 512, "l": 640}
# what `build_segvit`'s **head_opts pass to the ATM heads
HEAD_OPTIONS = ("dropout", "ce_weight", "focal_weight", "dice_weight", "no_object_weight", "focal_alpha",
                "focal_gamma", "ignore_index")
SEGVIT_VARIANTS = ("segvit-vit-t", "segvit-vit-s", "segvit-vit-b", "segvit-vit-l",
                   "segvit-shrunk-vit-b", "segvit-shrunk-vit-l")


def build_segvit(variant: str, num_classes: int, shrunk: bool = False, *, img_size: int | None = None,
                 out_indices=None, drop_path_rate: float | None = None, drop_path_mode: str = "ffn",
                 keep_cls_token: bool = False, shrink_index: int | None = None, embed_dim: int | None = None,
                 num_heads: int | None = None, num_layers: int = 3, query_grid: int | None = None, **head_opts):
    """(backbone, head) for `variant` in t/s/b/l. `head_opts`: dropout and the loss options of the
    heads (ce_weight, focal_weight, dice_weight, no_object_weight, focal_alpha, focal_gamma, ignore_index).
    `drop_path_mode` "ffn": stochastic depth on the FFN branch only, as the official backbone (mmseg 0.24
    ViT, whose attention has no DropPath); "both" drops the attention branch too (timm)."""
    if variant not in VIT_SPECS:
        raise ConfigError(f"unknown SegViT backbone {variant!r}; expected one of {', '.join(VIT_SPECS)}")
    spec = VIT_SPECS[variant]
    img_size = DEFAULT_CROP[variant] if img_size is None else img_size
    embed_dim = spec.width // 2 if embed_dim is None else embed_dim
    num_heads = spec.heads if num_heads is None else num_heads
    if shrunk:
        if shrink_index is None:
            shrink_index = 8 if variant == "l" else spec.depth // 2
        if out_indices is None:
            out_indices = (shrink_index - 1, spec.depth - 1)
    elif shrink_index is not None:
        raise ConfigError("shrink_index is an option of the Shrunk models (segvit-shrunk-*)")
    backbone = vit(variant, img_size=img_size, out_indices=out_indices, drop_path_rate=drop_path_rate,
                   drop_path_mode=drop_path_mode, keep_cls_token=keep_cls_token, shrink_index=shrink_index)
    crop = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if not shrunk:
        head = ATMHead(backbone.out_channels, num_classes, embed_dim, num_heads, num_layers,
                       output_stride=PREDICT_STRIDE, image_size=crop, **head_opts)
        return backbone, head
    if backbone.out_strides[0] != backbone.patch_size:
        raise ConfigError(f"Shrunk SegViT: the first tap ({out_indices[0]}) must come before the QD "
                          f"block ({shrink_index}), at 1/{backbone.patch_size}")
    if query_grid is None:
        query_grid = backbone.grid_size[0]
    head = ShrunkATMHead(backbone.out_channels, num_classes, embed_dim, num_heads, num_layers,
                         query_grid=query_grid, output_stride=PREDICT_STRIDE, image_size=crop, **head_opts)
    return backbone, head


def _register() -> None:
    for name in SEGVIT_VARIANTS:
        shrunk, variant = "shrunk" in name, name.rsplit("-", 1)[1]
        register_model(name, options=option_names(build_segvit, HEAD_OPTIONS), published=[published_encoder(variant)],
                       card_tags=("segvit",))(
            lambda num_classes, _v=variant, _s=shrunk, **kw:
                             Segmentor(*build_segvit(_v, num_classes, _s, **kw), num_classes))


_register()
