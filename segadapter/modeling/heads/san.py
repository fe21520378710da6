"""SAN (Xu et al., CVPR 2023): open-vocabulary segmentation with a side adapter network on a
frozen CLIP.

Structure (backbone + head, as every model here):
  backbone  `ClipBackbone` (backbones/clip_backbone.py): the frozen CLIP; its stages hand the
            head the CLIP-normalised image and CLIP's tokens after ln_pre and after blocks 3, 6, 9
            (ViT-B/16), and it offers `recognize(tokens, bias)`, which runs blocks 10-12 with
            [SLS] tokens. CLIP is frozen except its visual position embedding.
  head      `SANHead` (this file): the side network (heads/san_side.py) on the full-resolution
            image, fused with the CLIP taps, proposes masks and per-CLIP-head attention biases
            (max-pooled to CLIP's grid); the backbone's `recognize` turns the biases into one
            embedding per query, classified by cosine against the class-name text embeddings
            plus a learnable no-object embedding (x CLIP's logit scale, 100).
The head holds no reference to the backbone: the side-adapter meta-architecture
(`meta_arch/san.py`) runs the backbone, hands the head its taps (`forward` -> mask
proposals and pooled attention biases), runs CLIP's recognition blocks on those biases, and gives
the [SLS] embeddings back to the head (`classify`).

Raw output `SANOutput`: class logits (B, Q, K+1) and mask logits (B, Q, H/16, W/16) of each
decoded side block (training: blocks 7 and 8, each matched and supervised; inference: block 8).
`predict` = sum_q softmax(cls_q)[:K] * sigmoid(mask_q), the mask logits first upsampled to the
padded input, cropped and resized to the output size (the official order, detectron2's
`sem_seg_postprocess` before `semantic_inference`): probabilities, averaged as they are over
test-time passes (detectron2's TTA).

Classes: `class_embeddings` is a buffer (saved with the model) of one row per class name,
written by the model's vocabulary (modeling/vocabulary.py `ClipVocabulary`): CLIP's text tower
and the 14 prompt templates, or deterministic placeholders (one pseudo-random unit vector per
name) when no CLIP text weights or vocabulary are at hand, so the model builds and runs anywhere
(FLOPs, tests, a random-CLIP baseline). The head knows rows, not names.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip_backbone import ClipBackbone
from ..layers import tokens_to_map
from ..layers.padding import pad_to_multiple, unpad_masks
from ..losses.mask_criterion import MaskClassificationCriterion, padded_targets
from .base import DETECTRON2_MASK_SCORES, MaskClassificationHead
from .san_side import MaskDecoder, SideConfig, SideViT

@dataclass
class SideOutput:
    """What the side network proposes, before CLIP recognises it: per decoded side block, mask
    logits (B, Q, h, w) and attention biases max-pooled to CLIP's grid (B, heads, Q, hc * wc)."""
    masks: list[torch.Tensor]
    biases: list[torch.Tensor]
    image_size: tuple[int, int]


@dataclass
class SANOutput:
    logits: list[torch.Tensor]  # (B, Q, K+1) per decoded side block, the final one last
    masks: list[torch.Tensor]  # (B, Q, h, w) mask logits on the padded image's stride-16 grid
    image_size: tuple[int, int]  # (H, W) of the input before padding


def max_pool_to(x: torch.Tensor, size: tuple[int, int], ratio: int | None = None) -> torch.Tensor:
    """Adaptive max-pool to `size`. With `ratio` (the side grid is exactly `ratio` x CLIP's, as
    for ViT-B/16 on padded inputs) a plain max-pool: the same result, and its fixed kernel
    exports to ONNX with dynamic sizes."""
    if ratio is not None:
        return F.max_pool2d(x, ratio, ratio)
    return F.adaptive_max_pool2d(x, size)


class SANHead(MaskClassificationHead):
    output_space = DETECTRON2_MASK_SCORES
    takes_output_size = True  # predict(raw, size) resizes the mask logits to the output size itself
    # the published GFLOPs leave out the final class-mask combination (predict): count forward only
    count_predict_flops = False

    def __init__(self, backbone: ClipBackbone, num_classes: int, side: SideConfig = SideConfig(),
                 ignore_index: int = 255, criterion: MaskClassificationCriterion | None = None):
        """`backbone`: read for its shapes only (CLIP's width, heads, embedding size, grid); the
        head keeps no reference to it. The class-embedding rows start at zero: the model's
        vocabulary fills them (`set_embeddings`)."""
        super().__init__()
        embed_dim = backbone.clip.config.embed_dim
        self.size_divisor = backbone.size_divisor
        self.side = SideViT(side, backbone.visual.width)
        self.mask_decoder = MaskDecoder(side.width, backbone.visual.heads, side.embed_channels,
                                        side.mlp_channels, side.mlp_layers)
        self.pool_ratio = _pool_ratio(backbone, side.patch_size)
        self.no_object_embed = nn.Parameter(torch.empty(1, embed_dim))
        if not self.no_object_embed.is_meta:
            nn.init.normal_(self.no_object_embed, std=embed_dim ** -0.5)
        self.criterion = criterion or MaskClassificationCriterion()
        self.ignore_index = ignore_index
        device = self.no_object_embed.device
        self.register_buffer("class_embeddings", torch.zeros(num_classes, embed_dim, device=device))
        # saved with the model: whether `class_embeddings` came from CLIP's text tower
        self.register_buffer("text_embedded", torch.tensor(False, device=device))

    @property
    def num_classes(self) -> int:
        return self.class_embeddings.shape[0]

    @property
    def embeddings_source(self) -> str:
        return "text" if (not self.text_embedded.is_meta and bool(self.text_embedded)) else "placeholder"

    def set_embeddings(self, embeddings: torch.Tensor, from_text: bool) -> None:
        """New classifier rows (K, E), one per class name (written by the model's vocabulary)."""
        self.class_embeddings = embeddings.to(self.class_embeddings.device, self.class_embeddings.dtype)
        self.text_embedded.fill_(bool(from_text))

    def no_weight_decay(self) -> set[str]:
        """Position and query embeddings (the recipe's embedding group: weight decay 0)."""
        return {"side.pos_embed", "side.query_embed", "side.query_pos_embed"}

    # -- forward ---------------------------------------------------------------------------------

    def classifier(self) -> torch.Tensor:
        """(K+1, E) unit rows: the class-name embeddings, then the no-object embedding."""
        return F.normalize(torch.cat([self.class_embeddings.to(self.no_object_embed.dtype), self.no_object_embed]),
                           dim=-1)

    def forward(self, feats: list[torch.Tensor], clip_grid: tuple[int, int]) -> SideOutput:
        """feats: [CLIP-normalised image (B, 3, H, W), CLIP tokens at each tap (B, 1 + h*w, C)];
        `clip_grid`: CLIP's (h, w) patch grid for this input."""
        image, taps = feats[0], feats[1:]
        size = tuple(image.shape[-2:])
        hc, wc = clip_grid
        maps = [tokens_to_map(t[:, 1:], hc, wc).contiguous() for t in taps]  # the side network runs NCHW
        cfg = self.side.cfg
        decode = cfg.deep_supervision if self.training else (max(cfg.deep_supervision),)
        outs = self.side(pad_to_multiple(image, self.size_divisor), maps, decode)
        masks, biases = [], []
        for query, x in outs:
            mask, bias = self.mask_decoder(query, x)
            b, n, q = bias.shape[:3]
            biases.append(max_pool_to(bias.flatten(1, 2), (hc, wc), self.pool_ratio).view(b, n, q, hc * wc))
            masks.append(mask)
        return SideOutput(masks, biases, size)

    def classify(self, proposals: SideOutput, sls: list[torch.Tensor], logit_scale: torch.Tensor) -> SANOutput:
        """The raw output: each decoded block's [SLS] embeddings (B, Q, E) against the class-name
        embeddings and the no-object embedding (cosine x CLIP's logit scale), with its masks."""
        classifier = self.classifier()
        scale = logit_scale.exp()
        logits = [scale * s @ classifier.t().to(s.dtype) for s in sls]
        return SANOutput(logits, proposals.masks, proposals.image_size)

    def final_output(self, raw: SANOutput) -> tuple[torch.Tensor, torch.Tensor]:
        return raw.logits[-1], raw.masks[-1]

    def masks_at(self, masks: torch.Tensor, raw: SANOutput, size):
        """As the official inference: the mask logits upsampled to the padded input, cropped,
        and resized to `size` (default: the input's) before the class combination."""
        return unpad_masks(masks, raw.image_size, self.size_divisor, size), None

    def loss(self, raw: SANOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hungarian-matched mask-classification losses ('loss_ce', 'loss_mask', 'loss_dice' and
        '_0' for the deep-supervision output), already weighted."""
        targets = padded_targets(labels, raw.image_size, self.size_divisor, self.num_classes, self.ignore_index)
        return self.criterion(list(zip(raw.logits, raw.masks)), targets)


def _pool_ratio(backbone: ClipBackbone, side_patch: int) -> int | None:
    """Side grid / CLIP grid when it is the same integer for every padded input size."""
    clip_stride = backbone.visual.patch_size / backbone.clip_scale
    ratio = clip_stride / side_patch
    if ratio == int(ratio) and clip_stride == int(clip_stride) and backbone.size_divisor % int(clip_stride) == 0:
        return int(ratio)
    return None
