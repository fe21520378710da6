"""A frozen CLIP as the backbone of an open-vocabulary head (SAN).

Stages (the backbone contract; what the head receives from each `stage_output`):
  0  the input image, re-normalised from the pipeline's mean/std (ImageNet) to CLIP's: (B, 3, H, W)
     - the side network runs on it at full resolution;
  1  pad to a multiple of `size_divisor`, bilinear resize by `clip_scale`, patchify, class token +
     position embedding (resized bicubically to the grid), `ln_pre`: tokens (B, 1 + h*w, C);
  2.. CLIP blocks up to each tap (for ViT-B/16: after blocks 3, 6, 9): tokens (B, 1 + h*w, C).
Token outputs keep the class token first (the recognition blocks need it); `clip_grid` gives
(h, w). The remaining blocks are not run here: `recognize` runs them for the head with [SLS]
tokens and an attention bias. The whole CLIP, text tower included, is held as `clip` (its
parameters load 1:1 from OpenAI names under `backbone.clip.`) and frozen except the visual
position embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.padding import pad_to_multiple
from .base import Backbone
from .clip import CLIP

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # 0-255 scale, the data pipeline's
IMAGENET_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # 0-1 scale, OpenAI's
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SLS_MASK = -100.0  # the additive bias that shuts an attention path (as the official code)


def sls_attention_bias(bias: torch.Tensor, num_cls: int = 1) -> torch.Tensor:
    """Full additive bias for the sequence [Q SLS tokens, class token, L patches].

    bias: (B, heads, Q, L), the predicted SLS -> patch biases. SLS columns are shut (-100) for
    every row except each SLS token's own diagonal; SLS -> class token is shut; class token and
    patches attend to each other freely (bias 0), so CLIP's own path is unchanged."""
    b, n, q, l = bias.shape
    dev, dt = bias.device, bias.dtype
    sls_sls = SLS_MASK * (1 - torch.eye(q, device=dev, dtype=dt))
    top = torch.cat([sls_sls.expand(b, n, q, q), torch.full((b, n, q, num_cls), SLS_MASK, device=dev, dtype=dt),
                     bias], dim=-1)
    rest = torch.cat([torch.full((num_cls + l, q), SLS_MASK, device=dev, dtype=dt),
                      torch.zeros(num_cls + l, num_cls + l, device=dev, dtype=dt)], dim=-1)
    return torch.cat([top, rest.expand(b, n, -1, -1)], dim=-2)


class ClipBackbone(Backbone):
    def __init__(self, clip: CLIP, taps: tuple[int, ...] = (0, 3, 6, 9), clip_scale: float = 0.5,
                 size_divisor: int = 32, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD,
                 trainable: tuple[str, ...] = ("visual.positional_embedding",)):
        super().__init__()
        if list(taps) != sorted(taps) or taps[-1] >= len(clip.visual.transformer.resblocks):
            raise ValueError(f"taps {taps} must be increasing block counts below CLIP's depth")
        self.clip = clip
        self.taps = tuple(taps)
        self.clip_scale = clip_scale
        self.size_divisor = size_divisor
        width = clip.visual.width
        self.out_channels = (3,) + (width,) * len(taps)
        stride = round(clip.visual.patch_size / clip_scale)
        self.out_strides = (1,) + (stride,) * len(taps)
        # pipeline-normalised x -> CLIP-normalised: x * scale + shift, per channel
        mean_in, std_in = torch.tensor(input_mean), torch.tensor(input_std)
        mean_c, std_c = torch.tensor(CLIP_MEAN) * 255, torch.tensor(CLIP_STD) * 255
        self.register_buffer("renorm_scale", (std_in / std_c).view(3, 1, 1), persistent=False)
        self.register_buffer("renorm_shift", ((mean_in - mean_c) / std_c).view(3, 1, 1), persistent=False)
        # whether `clip` holds trained weights (saved with the model): only then can new class
        # names be embedded with its text tower
        self.register_buffer("clip_pretrained", torch.tensor(False))
        self.trainable = tuple(trainable)
        self.freeze()

    def freeze(self) -> None:
        for name, p in self.clip.named_parameters():
            p.requires_grad_(name in self.trainable)

    @property
    def text_trained(self) -> bool:
        """Whether CLIP's text tower holds trained weights: only then can names be embedded."""
        return not self.clip_pretrained.is_meta and bool(self.clip_pretrained)

    @property
    def visual(self):
        return self.clip.visual

    @property
    def blocks(self) -> nn.ModuleList:
        return self.clip.visual.transformer.resblocks

    def clip_grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """CLIP's patch grid for an input of `size` (H, W), as stage 1 computes it."""
        p = self.visual.patch_size
        padded = [s + (-s % self.size_divisor) for s in size]
        stride = p / self.clip_scale
        if stride == int(stride) and self.size_divisor % int(stride) == 0:
            return tuple(s // int(stride) for s in padded)  # integer arithmetic: traceable (ONNX)
        return tuple(int(s * self.clip_scale) // p for s in padded)

    def stage_forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return x * self.renorm_scale.to(x.dtype) + self.renorm_shift.to(x.dtype)
        if i == 1:
            x = pad_to_multiple(x, self.size_divisor)
            x = F.interpolate(x, scale_factor=self.clip_scale, mode="bilinear", align_corners=False)
            x, _ = self.visual.embed(x)
            start, stop = 0, self.taps[0]
        else:
            start, stop = self.taps[i - 2], self.taps[i - 1]
        for blk in self.blocks[start:stop]:
            x = blk(x)
        return x

    def recognize(self, tokens: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Run the blocks after the last tap on [SLS x Q, class token, patches]; the SLS tokens
        start as copies of the class token and see the patches only through `bias`
        (B, heads, Q, h*w). Returns the SLS embeddings after ln_post and the projection,
        L2-normalised: (B, Q, embed_dim)."""
        q = bias.shape[2]
        x = torch.cat([tokens[:, :1].expand(-1, q, -1), tokens], dim=1)
        full = sls_attention_bias(bias)
        for blk in self.blocks[self.taps[-1]:]:
            x = blk(x, full)
        return F.normalize(self.visual.pool(x[:, :q]), dim=-1)

    def no_weight_decay(self) -> set[str]:
        return {"clip.visual.positional_embedding"}
