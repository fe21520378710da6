"""Our CLIP tokenizer against transformers' CLIPTokenizer given the same (small, self-made) files."""
import gzip
import json
from collections import Counter

import pytest
import torch

from segadapter.errors import ConfigError
from segadapter.text.tokenizer import END, EOW, START, ClipTokenizer, byte_symbols, clean

transformers = pytest.importorskip("transformers")

CORPUS = ("a photo of a car . there is a small tree in the scene . this is a photo of the large road "
          "sky building pole sidewalk fence pedestrian bicyclist sign symbol the other thing there is "
          "a medium cat it's they're we've i'm you'll he'd 2023 café naïve über straße photos photographs")


def _learn_merges(corpus: str, n: int) -> list[tuple[str, str]]:
    """A tiny BPE trainer (most frequent adjacent pair first) over CLIP's byte symbols."""
    sym = byte_symbols()
    words = Counter()
    for w in corpus.lower().split():
        chars = [sym[b] for b in w.encode()]
        words[tuple(chars[:-1] + [chars[-1] + EOW])] += 1
    merges = []
    for _ in range(n):
        pairs = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        new = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] += c
        words = new
    return merges


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    merges = _learn_merges(CORPUS, 150)
    symbols = list(byte_symbols().values())
    tokens = symbols + [s + EOW for s in symbols] + ["".join(m) for m in merges] + [START, END]
    hf = root / "hf"
    hf.mkdir()
    (hf / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (hf / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                   encoding="utf-8")
    gz = root / "bpe_tiny.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("bpe header line\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return hf, gz, len(tokens)


@pytest.fixture(scope="module")
def reference(files):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(files[0]))


STRINGS = [
    "a photo of a car.",
    "This is a photo of a small tree in the scene",
    "There is the pedestrian, the bicyclist & the sign-symbol!!! (really?)",
    "it's they're WE'VE i'm you'll he'd",
    "photos of 2023 cars: 1,234.56 km/h -- 100%",
    "Café naïve über Straße résumé",
    "emoji 🚗🌳 and 中文字符 and Ελληνικά",
    "tabs\tand\n\nnewlines   and    spaces",
    "<|startoftext|> special <|endoftext|> tokens",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
    "   ",
    " ".join(["the large road and the building"] * 30),
]


def _reference_ids(reference, text):
    ids = reference(text)["input_ids"]
    assert ids[0] == reference.bos_token_id and ids[-1] == reference.eos_token_id
    return ids[1:-1]


@pytest.mark.parametrize("text", STRINGS)
@pytest.mark.parametrize("source", ["hf", "gz"])
def test_encode_matches_transformers(files, reference, text, source):
    tok = ClipTokenizer.from_hf_folder(files[0]) if source == "hf" else ClipTokenizer.from_bpe_file(files[1])
    # HF's CLIP tokenizer has no HTML unescaping (and no ftfy); give it what our cleaning keeps
    want = _reference_ids(reference, clean(text) if "&" in text else text)
    assert tok.encode(text) == want


def test_html_entities_unescaped_twice(files, reference):
    tok = ClipTokenizer.from_hf_folder(files[0])
    assert clean("Tom &amp;amp; Jerry &lt;3  ") == "tom & jerry <3"
    assert tok.encode("a &amp; b &quot;c&quot;") == _reference_ids(reference, 'a & b "c"')


def test_special_ids_and_vocab(files):
    hf, gz, n = files
    for tok in (ClipTokenizer.from_hf_folder(hf), ClipTokenizer.from_bpe_file(gz)):
        assert (tok.start_id, tok.end_id, tok.vocab_size) == (n - 2, n - 1, n)


def test_tokenize_pads_and_truncates(files, reference):
    tok = ClipTokenizer.from_bpe_file(files[1])
    short, long = "a photo of a car.", " ".join(["the large road and the building"] * 30)
    out = tok.tokenize([short, long], context_length=77)
    assert out.shape == (2, 77) and out.dtype == torch.long
    ids = reference(short)["input_ids"]
    assert out[0, :len(ids)].tolist() == ids and out[0, len(ids):].eq(0).all()
    full = reference(long)["input_ids"]
    assert len(full) > 77
    assert out[1, :76].tolist() == full[:76] and out[1, 76] == tok.end_id
    # the end token is the largest id of each row (CLIP reads its text feature there)
    assert (out.argmax(-1) == torch.tensor([len(ids) - 1, 76])).all()


def test_decode_round_trip(files):
    tok = ClipTokenizer.from_hf_folder(files[0])
    text = "there is a small tree in the scene café"
    assert tok.decode(tok.tokenize(text)[0]) == text
    # CLIP's end-of-word marks split digits and punctuation apart, as in OpenAI's decoder
    assert tok.decode(tok.encode("scene, 2023")) == "scene , 2 0 2 3"


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such vocabulary"):
        ClipTokenizer.from_path(tmp_path / "missing.txt.gz")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ConfigError, match="merges.txt"):
        ClipTokenizer.from_path(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("header\na b c\n")
    with pytest.raises(ConfigError, match="not a pair"):
        ClipTokenizer.from_path(bad)
