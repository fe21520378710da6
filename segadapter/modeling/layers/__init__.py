"""Building blocks shared by several model families."""
from .attention_kernels import attend, attention
from .drop_path import DropPath, drop_path_rates
from .init import init_weights, trunc_normal_init
from .norms import LayerNorm2d, norm2d
from .pos_embed import resample_abs_pos_embed
from .tokens import map_to_tokens, tokens_to_map

__all__ = ["attend", "attention", "DropPath", "drop_path_rates", "init_weights", "trunc_normal_init", "LayerNorm2d",
           "norm2d", "resample_abs_pos_embed", "map_to_tokens", "tokens_to_map"]
