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
(`meta_arch/side_adapter.py`) runs the backbone, hands the head its taps (`forward` -> mask
proposals and pooled attention biases), runs CLIP's recognition blocks on those biases, and gives
the [SLS] embeddings back to the head (`classify`). CLIP's text tower reaches the head only as an
argument (`set_classes(..., text_encoder=)`).

Raw output `SANOutput`: class logits (B, Q, K+1) and mask logits (B, Q, H/16, W/16) of each
decoded side block (training: blocks 7 and 8, each matched and supervised; inference: block 8).
`predict` = sum_q softmax(cls_q)[:K] * sigmoid(mask_q), the mask logits first upsampled to the
padded input, cropped and resized to the output size (the official order, detectron2's
`sem_seg_postprocess` before `semantic_inference`): probabilities, averaged as they are over
test-time passes (detectron2's TTA).

Vocabulary: `class_embeddings` is a buffer (saved with the model), computed from class names
through CLIP's text tower and the 14 prompt templates (`set_classes`), or deterministic
placeholders (one pseudo-random unit vector per name) when no CLIP text weights or vocabulary are
at hand, so the model builds and runs anywhere (FLOPs, tests, a random-CLIP baseline).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..backbones.clip_backbone import ClipBackbone, pad_to_multiple
from ..losses.mask_criterion import MaskClassificationCriterion, semantic_to_targets
from .base import DETECTRON2_MASK_SCORES, MaskClassificationHead
from .san_side import MaskDecoder, SideConfig, SideViT, tokens_to_map

MAX_NAME_CHARS = 200
BRING_CLIP = ("CLIP weights (OpenAI's ViT-B-16.pt, an open_clip checkpoint, or a Hugging Face CLIP folder), "
              "passed as clip=PATH")
BRING_VOCAB = ("CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz from OpenAI's clip or open_clip, or a "
               "Hugging Face CLIP folder with vocab.json + merges.txt), passed as vocab=PATH")


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


def placeholder_embeddings(names: Sequence[str], dim: int) -> torch.Tensor:
    """A fixed pseudo-random unit vector per name (seeded by its SHA-256): stands in for text
    embeddings when no CLIP text tower is available; the same name always gets the same vector."""
    rows = []
    for name in names:
        seed = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
    return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, dim)


def max_pool_to(x: torch.Tensor, size: tuple[int, int], ratio: int | None = None) -> torch.Tensor:
    """Adaptive max-pool to `size`. With `ratio` (the side grid is exactly `ratio` x CLIP's, as
    for ViT-B/16 on padded inputs) a plain max-pool: the same result, and its fixed kernel
    exports to ONNX with dynamic sizes."""
    if ratio is not None:
        return F.max_pool2d(x, ratio, ratio)
    return F.adaptive_max_pool2d(x, size)


def validate_class_names(names: Sequence[str], tokenizer=None, templates: Sequence[str] = (),
                         context_length: int = 77) -> list[str]:
    """Stripped names, or ConfigError for an empty list, empty/duplicate/over-long names."""
    if isinstance(names, str):
        raise ConfigError("class names must be a list of names, not one string")
    names = [str(n).strip() for n in names]
    if not names:
        raise ConfigError("the vocabulary is empty: give at least one class name")
    if any(not n for n in names):
        raise ConfigError("the vocabulary has an empty class name")
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise ConfigError(f"duplicate class name {n!r} (as {seen[n.lower()]!r})")
        seen[n.lower()] = n
        if len(n) > MAX_NAME_CHARS:
            raise ConfigError(f"class name {n[:40]!r}... is longer than {MAX_NAME_CHARS} characters")
    if tokenizer is not None:
        for n in names:
            longest = max((len(tokenizer.encode(t.format(n))) + 2 for t in templates), default=0)
            if longest > context_length:
                raise ConfigError(f"class name {n[:40]!r} is too long: a prompt with it takes {longest} "
                                  f"tokens, CLIP's text context holds {context_length}")
    return names


class SANHead(MaskClassificationHead):
    output_space = DETECTRON2_MASK_SCORES
    takes_output_size = True  # predict(raw, size) resizes the mask logits to the output size itself
    open_vocabulary = True
    # the published GFLOPs leave out the final class-mask combination (predict): count forward only
    count_predict_flops = False
    loads_published_heads = True  # the official SAN release's side network and decoder (weights/san.py)

    def __init__(self, backbone: ClipBackbone, class_names: Sequence[str], side: SideConfig = SideConfig(),
                 class_embeddings: torch.Tensor | None = None, tokenizer=None, ignore_index: int = 255,
                 criterion: MaskClassificationCriterion | None = None):
        """`backbone`: read for its shapes only (CLIP's width, heads, embedding size, grid); the
        head keeps no reference to it."""
        super().__init__()
        clip = backbone.clip
        embed_dim = clip.config.embed_dim
        self.size_divisor = backbone.size_divisor
        self.context_length = clip.context_length
        self.side = SideViT(side, backbone.visual.width)
        self.mask_decoder = MaskDecoder(side.width, backbone.visual.heads, side.embed_channels,
                                        side.mlp_channels, side.mlp_layers)
        self.pool_ratio = _pool_ratio(backbone, side.patch_size)
        self.no_object_embed = nn.Parameter(torch.empty(1, embed_dim))
        if not self.no_object_embed.is_meta:
            nn.init.normal_(self.no_object_embed, std=embed_dim ** -0.5)
        self.criterion = criterion or MaskClassificationCriterion()
        self.ignore_index = ignore_index
        self.tokenizer = tokenizer
        self._embedder = None
        names = validate_class_names(class_names)
        if class_embeddings is None:
            class_embeddings = placeholder_embeddings(names, embed_dim)
        self.register_buffer("class_embeddings", class_embeddings.to(self.no_object_embed.device))
        self.class_names = names
        # saved with the model: whether `class_embeddings` came from CLIP's text tower
        self.register_buffer("text_embedded", torch.tensor(False, device=self.no_object_embed.device))

    @property
    def embeddings_source(self) -> str:
        return "text" if (not self.text_embedded.is_meta and bool(self.text_embedded)) else "placeholder"

    def embed_names_if_due(self, text_encoder, trained: bool) -> None:
        """After published CLIP / SAN weights arrive: embed the class names by text, if the model now
        can (trained CLIP and a tokenizer) and has not."""
        if self.embeddings_source == "placeholder" and trained and self.tokenizer:
            self.set_classes(self.class_names, text_encoder=text_encoder, trained=trained)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def no_weight_decay(self) -> set[str]:
        """Position and query embeddings (the recipe's embedding group: weight decay 0)."""
        return {"side.pos_embed", "side.query_embed", "side.query_pos_embed"}

    # -- vocabulary ------------------------------------------------------------------------------

    def set_classes(self, names: Sequence[str], tokenizer=None, placeholder: bool = False, *,
                    text_encoder=None, trained: bool = False) -> None:
        """Replace the vocabulary: embed `names` with CLIP's text tower (`text_encoder`, a trained
        CLIP: `trained`) and the prompt templates (needs a tokenizer), or with placeholders when
        `placeholder`. The side-adapter model passes its CLIP (`model.set_classes(names)`)."""
        from ...text.prompts import VILD_TEMPLATES, ClassEmbedder

        tok = tokenizer or self.tokenizer
        if placeholder:
            names = validate_class_names(names)
            self._store(names, placeholder_embeddings(names, self.class_embeddings.shape[1]), "placeholder")
            return
        if text_encoder is None or not trained:
            raise ConfigError(f"cannot embed class names: this SAN model has no trained CLIP text tower; bring {BRING_CLIP}")
        if tok is None:
            raise ConfigError(f"cannot embed class names: no CLIP tokenizer; bring {BRING_VOCAB}")
        names = validate_class_names(names, tok, VILD_TEMPLATES, self.context_length)
        if self._embedder is None or self._embedder.tokenizer is not tok or self._embedder.clip is not text_encoder:
            self._embedder = ClassEmbedder(text_encoder, tok, VILD_TEMPLATES)
        self.tokenizer = tok
        self._store(names, self._embedder(names), "text")

    def _store(self, names: list[str], emb: torch.Tensor, source: str) -> None:
        self.class_embeddings = emb.to(self.class_embeddings.device, self.class_embeddings.dtype)
        self.class_names = list(names)
        self.text_embedded.fill_(source == "text")

    def clear_text_cache(self) -> None:
        """Forget cached class embeddings (call after CLIP's weights change)."""
        if self._embedder is not None:
            self._embedder.clear()

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
        maps = [tokens_to_map(t[:, 1:], hc, wc) for t in taps]
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
        h, w = raw.image_size
        padded = (h + (-h % self.size_divisor), w + (-w % self.size_divisor))
        masks = F.interpolate(masks, size=padded, mode="bilinear", align_corners=False)[..., :h, :w]
        if size is not None and tuple(size) != (h, w):
            masks = F.interpolate(masks, size=tuple(size), mode="bilinear", align_corners=False)
        return masks, None

    def loss(self, raw: SANOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hungarian-matched mask-classification losses ('loss_ce', 'loss_mask', 'loss_dice' and
        '_0' for the deep-supervision output), already weighted."""
        h, w = raw.image_size
        if labels.shape[-2:] != (h, w):
            labels = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        labels = pad_to_multiple(labels, self.size_divisor, value=self.ignore_index)
        targets = semantic_to_targets(labels, self.num_classes, self.ignore_index)
        return self.criterion(list(zip(raw.logits, raw.masks)), targets)


def _pool_ratio(backbone: ClipBackbone, side_patch: int) -> int | None:
    """Side grid / CLIP grid when it is the same integer for every padded input size."""
    clip_stride = backbone.visual.patch_size / backbone.clip_scale
    ratio = clip_stride / side_patch
    if ratio == int(ratio) and clip_stride == int(clip_stride) and backbone.size_divisor % int(clip_stride) == 0:
        return int(ratio)
    return None
