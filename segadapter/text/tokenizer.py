"""CLIP's byte-level BPE tokenizer, from a vocabulary file the user points to (nothing downloaded).

Two sources hold the same vocabulary:
  - `bpe_simple_vocab_16e6.txt.gz` (shipped with OpenAI's `clip` and `open_clip`): a header line,
    then merges "a b" one per line, of which the first 48,894 are used; the vocabulary is the 256
    byte symbols (printable bytes first: "a" is 64, "a</w>" 320), the same with the end-of-word
    mark `</w>`, one entry per merge, then
    `<|startoftext|>` and `<|endoftext|>` (ids 49406 and 49407 for the full file);
  - a Hugging Face CLIP folder's `vocab.json` + `merges.txt`.
Text is cleaned (ftfy's fix_text when ftfy is installed, else NFC; HTML entities unescaped
twice; whitespace runs collapsed), lowercased, split with CLIP's regular expression, mapped to
byte symbols and merged pairwise by merge rank. `tokenize` adds start/end, truncates to the
context (the last token stays the end token) and zero-pads.
"""
from __future__ import annotations

import gzip
import html
import json
import os
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import regex
import torch

from ..errors import ConfigError

START, END = "<|startoftext|>", "<|endoftext|>"
MAX_MERGES = 49152 - 256 - 2  # 48,894: the merges OpenAI's tokenizer reads from the gzip file
# CLIP's split: the special tokens, English contractions, letter runs, single digits, other symbols
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
EOW = "</w>"


@lru_cache()
def byte_symbols() -> dict[int, str]:
    """Byte -> printable unicode symbol, in CLIP's id order (ids 0-255 follow this dict's order):
    the printable Latin-1 bytes first, standing for themselves, then the others (controls, space,
    ...) in byte order, shifted to code points 256 and up."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(rest)}}


def clean(text: str) -> str:
    """ftfy (if installed) or NFC, HTML unescaped twice, whitespace collapsed, lowercased."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the BPE vocabulary ({e})") from None


class ClipTokenizer:
    def __init__(self, merges: Sequence[tuple[str, str]], vocab: dict[str, int] | None = None,
                 source: str = "<memory>"):
        """`merges` in rank order; `vocab` None builds CLIP's vocabulary from the merges."""
        if vocab is None:
            symbols = list(byte_symbols().values())  # ids 0-255 (and 256-511 with </w>) in this order
            tokens = symbols + [s + EOW for s in symbols] + ["".join(m) for m in merges] + [START, END]
            vocab = {t: i for i, t in enumerate(tokens)}
        for special in (START, END):
            if special not in vocab:
                raise ConfigError(f"{source}: the vocabulary has no {special} token")
        self.source = source
        self.encoder = vocab
        self.decoder = {i: t for t, i in vocab.items()}
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.start_id, self.end_id = vocab[START], vocab[END]
        self._cache: dict[str, list[str]] = {START: [START], END: [END]}

    # -- construction from files ---------------------------------------------------------------

    @classmethod
    def from_bpe_file(cls, path: str | os.PathLike) -> "ClipTokenizer":
        """OpenAI's `bpe_simple_vocab_16e6.txt.gz` (or a plain text file of the same layout)."""
        path = Path(path)
        lines = _read_lines(path)[1:MAX_MERGES + 1]  # line 0 is a header
        merges = [tuple(line.split()) for line in lines if line.strip()]
        bad = next((m for m in merges if len(m) != 2), None)
        if bad is not None:
            raise ConfigError(f"{path}: not a BPE merges file (line {' '.join(bad)!r} is not a pair)")
        return cls(merges, source=str(path))

    @classmethod
    def from_hf_folder(cls, folder: str | os.PathLike) -> "ClipTokenizer":
        """A Hugging Face CLIP folder's `vocab.json` + `merges.txt`."""
        folder = Path(folder)
        vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
        for f in (vocab_file, merges_file):
            if not f.is_file():
                raise ConfigError(f"{folder}: no {f.name} (a CLIP tokenizer folder holds vocab.json and merges.txt)")
        try:
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ConfigError(f"{vocab_file}: not valid JSON ({e})") from None
        lines = [ln for ln in _read_lines(merges_file) if ln.strip() and not ln.startswith("#version")]
        merges = [tuple(ln.split()) for ln in lines]
        return cls(merges, vocab, source=str(folder))

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "ClipTokenizer":
        """A folder with vocab.json + merges.txt, or a bpe merges file (.txt.gz / .txt)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_hf_folder(path)
        if path.is_file():
            return cls.from_bpe_file(path)
        raise ConfigError(f"{path}: no such vocabulary file or folder (bring bpe_simple_vocab_16e6.txt.gz "
                          "from OpenAI's clip / open_clip, or a Hugging Face CLIP folder with vocab.json + merges.txt)")

    # -- encoding ------------------------------------------------------------------------------

    def _bpe(self, token: str) -> list[str]:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word = list(token[:-1]) + [token[-1] + EOW]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):  # merge every occurrence, left to right
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        if len(self._cache) < 100_000:
            self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without start/end tokens."""
        sym = byte_symbols()
        ids = []
        for piece in PATTERN.findall(clean(text)):
            piece = piece if piece in (START, END) else "".join(sym[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(piece))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (stops at the end token; the start token is skipped)."""
        inverse = {s: b for b, s in byte_symbols().items()}
        data = bytearray()
        for i in map(int, ids):
            if i == self.end_id:
                break
            if i != self.start_id:
                for c in self.decoder[i].replace(EOW, " "):
                    data += b" " if c == " " else bytes([inverse[c]])
        return data.decode("utf-8", errors="replace").strip()

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
        return self.tokenize(texts, context_length)

    def tokenize(self, texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
        """(N, context_length) long tensor: start, ids, end, zeros; over-long rows are cut and
        end with the end token."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.end_id
            out[row, :len(ids)] = torch.tensor(ids)
        return out

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)
