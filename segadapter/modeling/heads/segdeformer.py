"""SegDeformer decode head (Li et al., ECCV 2022), as in the official mmseg 0.29 code.

fusion (per stage 1x1 conv + BN + ReLU to C, upsample to stride 4, concat, 1x1 conv + BN + ReLU)
  -> X_inter (N = h * w tokens of width C)
internal: Y_inter = one single-head attention block over X_inter (query, key and value X_inter)
external: Attn_mid = q(X_inter) k(X_class)^T / sqrt(C)   (N x K, also the auxiliary logits)
          X_mid = softmax_K(Attn_mid) X_info;  Y_exter = attention block (query X_inter, key/value X_mid)
F = X_inter + Y_inter + Y_exter -> Dropout2d -> 1x1 conv to K classes.

Both attention blocks attend over all N tokens (N = 16,384 at 512^2; the N x N score matrix alone
would be 1 GiB of fp32). It is never built: `attend` runs the fused kernel, and where that kernel
would fall back to the score-matrix path, a query-chunked loop. `attention_reduction` R > 1 is the
paper's "efficient self-attention" (not in the official code): a stride-R R x R conv + BN shrinks
the key/value source of both blocks (the paper's Eq. 5 and 7) by R^2.

Module names follow the official code where it has them (`convs.i.conv/bn`, `fusion_conv`,
`*_project.conv/bn`, `conv_seg`); the concat runs in stage order 1..n as in mmseg's SegformerHead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..layers.attention_kernels import attend
from ..layers.channel_dropout import dropout2d_conv1x1
from ..losses import IGNORE_INDEX, seg_cross_entropy, upsample_logits
from .base import DecodeHead, resize_scores

LOSS_AVERAGES = ("valid", "all")


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 1, N, C) with a unit-stride last dim (a view for channels-last maps)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, 1, h * w, c)


def _to_map(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, [1,] N, C) tokens -> (B, C, h, w), a channels-last view."""
    return t.reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2)


class ConvBNReLU(nn.Module):
    """1x1 conv (no bias) + BN + ReLU, mmcv's ConvModule with its init (kaiming normal, fan-out,
    i.e. normal(0, sqrt(2 / fan_out)))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class AttentionBlock(nn.Module):
    """Single-head attention, mmseg's SelfAttentionBlock as SegDeformer configures it: query, key,
    value and output projections each a ConvBNReLU, scale C^-0.5, no FFN, no residual."""

    def __init__(self, channels: int, reduction: int = 1):
        super().__init__()
        self.query_project = ConvBNReLU(channels, channels)
        self.key_project = ConvBNReLU(channels, channels)
        self.value_project = ConvBNReLU(channels, channels)
        self.out_project = ConvBNReLU(channels, channels)
        self.reduction = reduction
        self.kv_reduce = None
        if reduction > 1:
            self.kv_reduce = nn.Sequential(nn.Conv2d(channels, channels, reduction, reduction, bias=False),
                                           nn.BatchNorm2d(channels))
            nn.init.kaiming_normal_(self.kv_reduce[0].weight, mode="fan_out", nonlinearity="relu")

    def forward(self, query: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """`query` (B, C, h, w) attends to the tokens of `source` (B, C, h, w)."""
        h, w = query.shape[-2:]
        if self.kv_reduce is not None:
            source = self.kv_reduce(source)
        q = _to_tokens(self.query_project(query))
        k = _to_tokens(self.key_project(source))
        v = _to_tokens(self.value_project(source))
        y = attend(q, k, v, q.shape[-1] ** -0.5)
        return self.out_project(_to_map(y, h, w))


@dataclass
class SegDeformerOutput:
    """Raw head output: stride-4 class logits and, in training with the external module, the
    auxiliary logits Attn_mid (B, K, h, w) for the token loss."""

    logits: torch.Tensor
    attn_mid: torch.Tensor | None = None


class SegDeformerHead(DecodeHead):
    """SegDeformer decode head (see the module docstring). `loss_average`: 'valid' averages the
    pixel CE over non-ignored pixels (the toolkit's usual mean, default); 'all' over all pixels,
    ignored ones adding 0 (the official mmseg 0.x loss)."""

    output_stride = 4
    # The fusion runs each stage's share of the 4C -> C conv at the stage's own resolution
    # before upsampling (a 1x1 conv commutes with bilinear resizing): the same function, no
    # 4C-channel stride-4 concat. The FLOPs counter sets this False to count the published order.
    fused_inference: bool = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256, *,
                 internal: bool = True, external: bool = True, attention_reduction: int = 1,
                 aux_weight: float = 0.4, dropout: float = 0.1, loss_average: str = "valid",
                 ignore_index: int = IGNORE_INDEX):
        super().__init__()
        _check_options(in_channels, num_classes, channels, attention_reduction, aux_weight, dropout,
                       loss_average)
        self.in_channels = tuple(int(c) for c in in_channels)
        self.num_classes = num_classes
        self.channels = channels
        self.attention_reduction = attention_reduction
        self.aux_weight = aux_weight
        self.loss_average = loss_average
        self.ignore_index = ignore_index
        self.convs = nn.ModuleList(ConvBNReLU(c, channels) for c in self.in_channels)
        self.fusion_conv = ConvBNReLU(channels * len(self.in_channels), channels)
        self.internal_attn = AttentionBlock(channels, attention_reduction) if internal else None
        self.external_attn = None
        if external:
            self.class_tokens = nn.Parameter(torch.empty(num_classes, channels))  # X_class
            self.info_tokens = nn.Parameter(torch.empty(num_classes, channels))  # X_info
            nn.init.trunc_normal_(self.class_tokens, std=0.02)
            nn.init.trunc_normal_(self.info_tokens, std=0.02)
            self.mid_query = nn.Linear(channels, channels)  # default init, as the official code
            self.mid_key = nn.Linear(channels, channels)
            self.external_attn = AttentionBlock(channels, attention_reduction)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[torch.Tensor]) -> SegDeformerOutput:
        self._check_feats(feats)
        # channels-last from here on: every token view of a map is then free
        x = self.fuse(feats).contiguous(memory_format=torch.channels_last)  # X_inter
        b, c, h, w = x.shape
        self._check_reduction(h, w)
        out = x
        if self.internal_attn is not None:
            out = out + self.internal_attn(x, x)  # + Y_inter
        attn_mid = None
        if self.external_attn is not None:
            tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
            # q(X_inter) (k(X_class) / sqrt(C))^T: the same product with the scale on the small side
            attn_mid = self.mid_query(tokens) @ (self.mid_key(self.class_tokens) * c ** -0.5).T  # (B, N, K)
            x_mid = torch.softmax(attn_mid, dim=-1) @ self.info_tokens.to(attn_mid.dtype)
            out = out + self.external_attn(x, _to_map(x_mid, h, w))  # + Y_exter
            # the auxiliary output only feeds the training loss: dropped at inference
            attn_mid = _to_map(attn_mid, h, w) if self.training else None
        return SegDeformerOutput(dropout2d_conv1x1(out, self.dropout, self.conv_seg), attn_mid)

    def fuse(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """X_inter as a (B, C, h, w) map at the first stage's resolution."""
        if not self.fused_inference:
            return self.fuse_reference(feats)
        size = feats[0].shape[-2:]
        weight = self.fusion_conv.conv.weight
        x = None
        for i, (f, proj) in enumerate(zip(feats, self.convs)):
            y = F.conv2d(proj(f), weight[:, i * self.channels:(i + 1) * self.channels])
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            # in place: no backward needs a conv's or an upsample's output
            x = y if x is None else x.add_(y)
        return F.relu(self.fusion_conv.bn(x), inplace=True)

    def fuse_reference(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fusion in the published order: upsample, concat (stage order), 4C -> C conv."""
        size = feats[0].shape[-2:]
        ups = []
        for f, proj in zip(feats, self.convs):
            y = proj(f)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            ups.append(y)
        return self.fusion_conv(torch.cat(ups, dim=1))

    def predict(self, raw: SegDeformerOutput, size=None) -> torch.Tensor:
        """(B, K, h, w) class logits at stride 4, or bilinearly resized to `size`."""
        return resize_scores(raw.logits, size)

    # ------------------------------------------------------------------ loss
    def loss(self, raw: SegDeformerOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """'loss_main': CE of the logits; 'loss_aux': aux_weight x CE of Attn_mid (when the
        forward produced it: training with the external module). Both upsampled to the labels."""
        ce = seg_cross_entropy if self.loss_average == "valid" else cross_entropy_all_pixels
        losses = {"loss_main": ce(raw.logits, labels, self.ignore_index)}
        if raw.attn_mid is not None and self.aux_weight > 0:
            losses["loss_aux"] = self.aux_weight * ce(raw.attn_mid, labels, self.ignore_index)
        return losses

    # ------------------------------------------------------------------ checks
    def _check_feats(self, feats: Sequence[torch.Tensor]) -> None:
        widths = tuple(int(f.shape[1]) for f in feats)
        if widths != self.in_channels:
            raise ConfigError(f"SegDeformer head expects {len(self.in_channels)} feature maps with channels "
                              f"{self.in_channels}, got {len(widths)} with channels {widths}")

    def _check_reduction(self, h: int, w: int) -> None:
        r = self.attention_reduction
        if r > 1 and (h % r or w % r):
            raise ConfigError(f"attention_reduction {r} must divide the head's stride-4 feature map, "
                              f"got {h} x {w} (input about {4 * h} x {4 * w}); use an input size that is "
                              f"a multiple of {4 * r}, or another attention_reduction")


def cross_entropy_all_pixels(logits: torch.Tensor, labels: torch.Tensor,
                             ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel CE (logits bilinearly upsampled to the labels) summed over valid pixels and divided
    by the number of *all* pixels: the official mmseg 0.x averaging, ignored pixels adding 0."""
    logits = upsample_logits(logits, labels.shape[-2:])
    return F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum") / labels.numel()


def _check_options(in_channels, num_classes, channels, attention_reduction, aux_weight, dropout,
                   loss_average) -> None:
    def positive_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if not positive_int(channels):
        raise ConfigError(f"SegDeformer channels must be a positive integer, got {channels!r}")
    if not positive_int(num_classes):
        raise ConfigError(f"SegDeformer num_classes must be a positive integer, got {num_classes!r}")
    if len(in_channels) == 0 or not all(positive_int(c) for c in in_channels):
        raise ConfigError(f"SegDeformer in_channels must be positive integers, one per stage, got {in_channels!r}")
    if not positive_int(attention_reduction):
        raise ConfigError(f"attention_reduction must be a positive integer (1 = off), got {attention_reduction!r}")
    if not aux_weight >= 0:
        raise ConfigError(f"aux_weight must be >= 0, got {aux_weight!r}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if loss_average not in LOSS_AVERAGES:
        raise ConfigError(f"loss_average must be one of {LOSS_AVERAGES}, got {loss_average!r}")
