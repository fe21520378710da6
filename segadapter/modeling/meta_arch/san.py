"""The side-adapter meta-architecture (SAN, Xu et al. CVPR 2023): a frozen CLIP backbone whose
taps feed a side network (the head); the side network proposes masks and attention biases, CLIP's
last blocks turn the biases into one [SLS] embedding per proposal (`backbone.recognize`), and the
head classifies those against the class-name embeddings. The backbone and the head never hold
each other: this model runs them in turn, and owns the vocabulary (`ClipVocabulary`), to which
it lends CLIP's text tower and the head's class-embedding rows."""
from __future__ import annotations

from typing import Sequence

import torch

from .segmentor import Segmentor
from ..vocabulary import ClipVocabulary


class SideAdapterSegmentor(Segmentor):
    def __init__(self, backbone, decode_head, num_classes: int | None = None, *,
                 class_names: Sequence[str] | None = None, tokenizer=None):
        """`class_names`: what the head's rows stand for (default "class 0", ...), held as
        placeholders until `vocabulary.refresh()` / `set_classes` embeds them by text;
        `tokenizer`: CLIP's BPE tokenizer, if at hand."""
        num_classes = decode_head.num_classes if num_classes is None else num_classes
        super().__init__(backbone, decode_head, num_classes)
        names = list(class_names) if class_names is not None else [f"class {i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        self.vocabulary = ClipVocabulary(names, table=decode_head, text_tower=backbone, tokenizer=tokenizer)
        self.vocabulary.set(names, placeholder=True)

    def forward_raw(self, images: torch.Tensor):
        feats, _ = self.extract_features(images)
        head, backbone = self.decode_head, self.backbone
        proposals = head(feats, backbone.clip_grid(tuple(images.shape[-2:])))
        sls = [backbone.recognize(feats[-1], bias) for bias in proposals.biases]
        return head.classify(proposals, sls, backbone.clip.logit_scale), []
