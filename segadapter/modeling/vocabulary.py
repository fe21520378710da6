"""The classes a model segments by name: one `Vocabulary` per open-vocabulary model
(`model.vocabulary`; None for a model with a fixed set of classes), asked by everyone else
(`predict --classes`, zero-shot `eval`, the `Inferencer`, the web demo, training).

    vocab = vocabulary_of(model)          # None: fixed classes
    vocab.names                           # what it segments now
    vocab.require(names, "--classes")     # validated names, or one ConfigError: why it cannot take them
    model.set_classes(names, "--classes") # check and take them, once (the config, and so saved folders, follow)

`Vocabulary` holds names and their validation (`check_names`, the one check of class names);
`ClipVocabulary` adds how names become classifier rows: CLIP's text tower lent by the model,
the prompt templates, a tokenizer and a cache of embeddings, written into the head's
`class_embeddings` (or deterministic placeholders where no trained text tower is at hand).
"""
from __future__ import annotations

import hashlib
import re
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..runtime.wrappers import bare_model
from .registry import open_vocabulary_models

MAX_NAME_CHARS = 200
BRING_CLIP = ("CLIP weights (OpenAI's ViT-B-16.pt, an open_clip checkpoint, or a Hugging Face CLIP folder), "
              "passed as clip=PATH")
BRING_VOCAB = ("CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz from OpenAI's clip or open_clip, or a "
               "Hugging Face CLIP folder with vocab.json + merges.txt), passed as vocab=PATH")


def parse_class_names(text: str, where: str = "class names") -> list[str]:
    """A comma-separated list of class names (as `predict --classes` and the web demo take them; a
    line break separates names too, with or without a comma before it) -> the names, checked
    (`check_names`); one ConfigError for an empty list or an empty entry (two commas in a row, a
    leading or trailing comma)."""
    parts = [p.strip() for p in re.split(r"\s*,?\s*\n\s*|,", text.strip())]
    if not any(parts):
        raise ConfigError(f"{where}: no class names given (e.g. \"sky,road,car\")")
    for i, p in enumerate(parts, 1):
        if not p:
            raise ConfigError(f"{where} {text!r}: name #{i} is empty (two commas in a row, or a "
                              "leading/trailing comma?)")
    return check_names(parts, where)


def check_names(names: Sequence[str], where: str = "class names", at: Sequence[str] | None = None) -> list[str]:
    """Stripped names, or one ConfigError prefixed by `where`: a single string, an empty list, an
    empty, over-long or duplicate name (case and inner spaces ignored). `at` says where each name
    came from ("line 3"; default "name #i")."""
    if isinstance(names, str):
        raise ConfigError(f"{where}: give a list of names, not one string")
    names = [str(n).strip() for n in names]
    at = list(at) if at is not None else [f"name #{i}" for i in range(1, len(names) + 1)]
    if not names:
        raise ConfigError(f"{where}: the vocabulary is empty: give at least one class name")
    seen: dict[str, tuple[str, str]] = {}
    for place, name in zip(at, names):
        if not name:
            raise ConfigError(f"{where}: {place} is an empty class name")
        if len(name) > MAX_NAME_CHARS:
            raise ConfigError(f"{where}: {place} ({name[:40]!r}...) is longer than {MAX_NAME_CHARS} characters")
        key = " ".join(name.lower().split())
        if key in seen:
            first_at, first = seen[key]
            same = "" if first == name else f" as {first!r}"
            raise ConfigError(f"{where}: {place}: duplicate class name {name!r} (already {first_at}{same}); "
                              "each class must be named once")
        seen[key] = (place, name)
    return names


def placeholder_embeddings(names: Sequence[str], dim: int) -> torch.Tensor:
    """A fixed pseudo-random unit vector per name (seeded by its SHA-256): stands in for text
    embeddings when no CLIP text tower is available; the same name always gets the same vector."""
    rows = []
    for name in names:
        seed = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
    return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, dim)


class Vocabulary:
    """The class names a model segments now and can be given anew. A model whose names need no
    text tower (it maps names to classes itself) uses this class as it is."""

    def __init__(self, names: Sequence[str]):
        self.names = check_names(names)

    def check(self, names: Sequence[str], where: str = "class names", at: Sequence[str] | None = None) -> list[str]:
        return check_names(names, where, at)

    @property
    def stale(self) -> bool:
        """Whether the model could embed its own names better than it holds them now."""
        return False

    def require(self, names: Sequence[str], what: str = "class names") -> list[str]:
        """The validated names, or one ConfigError prefixed by `what` when the model cannot take them."""
        return self.check(names, what)

    def set(self, names: Sequence[str], placeholder: bool = False, what: str = "class names") -> list[str]:
        """Take `names`, checked once here (`require`); errors are prefixed by `what`."""
        self.names = self.require(names, what)
        return self.names

    def refresh(self) -> bool:
        """Embed the current names the best way the model now can; True if anything changed."""
        return False


class TextTower(Protocol):
    """What a `ClipVocabulary` borrows from its model's backbone."""
    clip: nn.Module  # has encode_text and context_length

    @property
    def text_trained(self) -> bool: ...


class EmbeddingTable(Protocol):
    """What a `ClipVocabulary` writes to: the head's class-embedding rows."""
    class_embeddings: torch.Tensor

    @property
    def embeddings_source(self) -> str: ...

    def set_embeddings(self, embeddings: torch.Tensor, from_text: bool) -> None: ...


class ClipVocabulary(Vocabulary):
    """Names embedded with CLIP's text tower and prompt templates into the head's classifier rows.

    The model lends it its parts (`table`: the head's embeddings; `text_tower`: the backbone
    holding CLIP); it keeps the tokenizer, the templates and a cache of embeddings per name."""

    def __init__(self, names: Sequence[str], table: EmbeddingTable, text_tower: TextTower, tokenizer=None,
                 templates: Sequence[str] | None = None):
        from ..text.prompts import VILD_TEMPLATES

        super().__init__(names)
        self.table, self.text_tower, self.tokenizer = table, text_tower, tokenizer
        self.templates = tuple(templates) if templates is not None else VILD_TEMPLATES
        self._embedder = None

    @property
    def problem(self) -> str | None:
        """Why new names cannot be embedded: "clip" (random CLIP), "vocab" (no tokenizer), or None."""
        if not self.text_tower.text_trained:
            return "clip"
        return "vocab" if self.tokenizer is None else None

    @property
    def embedded_by_text(self) -> bool:
        return self.table.embeddings_source == "text"

    @property
    def stale(self) -> bool:
        return not self.embedded_by_text and self.problem is None

    def check(self, names, where="class names", at=None) -> list[str]:
        names = check_names(names, where, at)
        if self.tokenizer is not None:
            context = self.text_tower.clip.context_length
            for n in names:
                longest = max((len(self.tokenizer.encode(t.format(n))) + 2 for t in self.templates), default=0)
                if longest > context:
                    raise ConfigError(f"{where}: class name {n[:40]!r} is too long: a prompt with it takes "
                                      f"{longest} tokens, CLIP's text context holds {context}")
        return names

    def require(self, names, what="class names") -> list[str]:
        names = self.check(names, what)
        if names == self.names and not self.stale:
            return names  # what it segments already: no text tower needed
        if self.problem == "clip":
            raise ConfigError(f"{what}: this model was built without CLIP weights (its CLIP is random), so it "
                              f"cannot recognise anything by name. Bring {BRING_CLIP}, and {BRING_VOCAB}, when "
                              "creating or training the model (model.options.clip / model.options.vocab); "
                              "nothing is downloaded")
        if self.problem == "vocab":
            raise ConfigError(f"{what}: this model has CLIP weights but no CLIP vocabulary to read class names "
                              f"with; bring {BRING_VOCAB} (model.options.vocab); nothing is downloaded")
        return names

    def set(self, names, placeholder: bool = False, what: str = "class names") -> list[str]:
        """Take `names`, checked once here: embedded by text, or with placeholders when
        `placeholder` (tests, a random-CLIP baseline). Errors are prefixed by `what`."""
        if placeholder:
            names = check_names(names, what)
            self.table.set_embeddings(placeholder_embeddings(names, self.table.class_embeddings.shape[1]), False)
        else:
            names = self.require(names, what)
            if names != self.names or not self.embedded_by_text:
                self.table.set_embeddings(self._embed(names), True)
        self.names = names
        return names

    def refresh(self) -> bool:
        if not self.stale:
            return False
        self.set(self.names)
        return True

    def clear_cache(self) -> None:
        """Forget cached embeddings (call after CLIP's weights change)."""
        if self._embedder is not None:
            self._embedder.clear()

    def _embed(self, names: list[str]) -> torch.Tensor:
        from ..text.prompts import ClassEmbedder

        clip = self.text_tower.clip
        if self._embedder is None or self._embedder.tokenizer is not self.tokenizer or self._embedder.clip is not clip:
            self._embedder = ClassEmbedder(clip, self.tokenizer, self.templates)
        return self._embedder(names)


def vocabulary_of(model: nn.Module) -> Vocabulary | None:
    """The model's vocabulary (None: a fixed set of classes); wrapped and compiled models are looked
    through."""
    return bare_model(model).vocabulary


def require_vocabulary(model: nn.Module, what: str = "class names") -> Vocabulary:
    """The model's vocabulary, or one ConfigError naming the model when its classes are fixed."""
    vocab = vocabulary_of(model)
    if vocab is None:
        model = bare_model(model)
        raise ConfigError(f"{what}: only open-vocabulary models ({', '.join(open_vocabulary_models())}) take "
                          f"class names; {model.name} segments the fixed set of {model.num_classes} classes it "
                          "was trained on")
    return vocab
