"""Class-name embeddings for open-vocabulary classifiers: prompt templates through CLIP's text tower.

Per class name, every template is filled in, encoded, L2-normalised; the template embeddings are
averaged and normalised again. The 14 templates are the ViLD set that SAN uses.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

VILD_TEMPLATES = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)


@torch.no_grad()
def embed_class_names(clip, tokenizer, names: Sequence[str], templates: Sequence[str] = VILD_TEMPLATES,
                      batch_size: int = 256) -> torch.Tensor:
    """(K, embed_dim) unit-norm text embeddings of `names` (`clip`: our CLIP, `tokenizer`: ClipTokenizer)."""
    device = clip.text_projection.device
    prompts = [t.format(name) for name in names for t in templates]  # name-major: K x T
    ids = tokenizer.tokenize(prompts, clip.context_length)
    feats = torch.cat([clip.encode_text(ids[i:i + batch_size].to(device)).float()
                       for i in range(0, len(prompts), batch_size)])
    feats = F.normalize(feats, dim=-1).view(len(names), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1)


class ClassEmbedder:
    """embed_class_names with a cache per vocabulary (keyed by the tuple of names)."""

    def __init__(self, clip, tokenizer, templates: Sequence[str] = VILD_TEMPLATES):
        self.clip, self.tokenizer, self.templates = clip, tokenizer, tuple(templates)
        self.cache: dict[tuple[str, ...], torch.Tensor] = {}

    def __call__(self, names: Sequence[str]) -> torch.Tensor:
        key = tuple(names)
        if key not in self.cache:
            self.cache[key] = embed_class_names(self.clip, self.tokenizer, key, self.templates)
        return self.cache[key]

    def clear(self) -> None:
        """Forget cached embeddings (after the text tower's weights changed)."""
        self.cache.clear()
