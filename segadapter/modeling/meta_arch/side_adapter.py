"""The side-adapter meta-architecture (SAN, Xu et al. CVPR 2023): a frozen CLIP backbone whose
taps feed a side network (the head); the side network proposes masks and attention biases, CLIP's
last blocks turn the biases into one [SLS] embedding per proposal (`backbone.recognize`), and the
head classifies those against the class-name embeddings. The backbone and the head never hold
each other: this model runs them in turn, and lends CLIP's text tower to the head when class
names are set."""
from __future__ import annotations

from typing import Sequence

import torch

from ..segmentor import Segmentor


class SideAdapterSegmentor(Segmentor):
    def forward_raw(self, images: torch.Tensor):
        feats, _ = self.extract_features(images)
        head, backbone = self.decode_head, self.backbone
        proposals = head(feats, backbone.clip_grid(tuple(images.shape[-2:])))
        sls = [backbone.recognize(feats[-1], bias) for bias in proposals.biases]
        return head.classify(proposals, sls, backbone.clip.logit_scale), []

    def set_classes(self, names: Sequence[str]) -> None:
        self._check_open_vocabulary()
        self.decode_head.set_classes(list(names), text_encoder=self.backbone.clip,
                                     trained=bool(self.backbone.clip_pretrained))
        self._record_classes(names)

    def on_weights_loaded(self) -> None:
        """Published CLIP / SAN weights arrived: embed the class names by text now, if the model
        can (trained CLIP and a tokenizer) and has not."""
        self.decode_head.embed_names_if_due(self.backbone.clip, bool(self.backbone.clip_pretrained))
