"""Our CLIP tokenizer on the real vocabulary against references written elsewhere: ids published for
OpenAI's CLIP, open_clip's tokenizer (loaded from its wheel, see clip_reference.py) and transformers'
CLIPTokenizer. The vocabulary is bpe_simple_vocab_16e6.txt.gz from the open_clip wheel; the Hugging
Face folder is made from open_clip's own encoder, so none of the expected ids come from our code.
Skipped without open_clip_torch (installed with --no-deps) or ftfy."""
import html

import pytest
import torch

from clip_reference import bpe_path, open_clip_tokenizer, write_hf_tokenizer_folder
from segadapter.errors import ConfigError
from segadapter.text.tokenizer import END, START, ClipTokenizer, byte_symbols, clean

# "a photo of a sky." through OpenAI's clip.tokenize (start, a, photo, of, a, sky, ., end)
PUBLISHED = [49406, 320, 1125, 539, 320, 2390, 269, 49407]
# open_clip names the two special tokens differently; the ids are the same
OPEN_CLIP_NAMES = {"<start_of_text>": START, "<end_of_text>": END}

LONG_NAME = "a photo of a " + "very " * 80 + "long class name."
TEXTS = [
    "a photo of a sky.",
    "This is a photo of a small tree in the scene",
    "There is the pedestrian, the bicyclist & the sign-symbol!!! (really?)",
    "it's they're WE'VE i'm you'll he'd",
    "photos of 2023 cars: 1,234.56 km/h -- 100% @#$^*_+=[]{}|\\/<>~`",
    "Café naïve über Straße résumé Ærøskøbing",
    "cafÃ© mojibake",  # ftfy repairs it to "café"
    "emoji 🚗🌳👍🏽 and 中文字符 日本語のテキスト 한국어 and Ελληνικά русский",  # bytes 0x80-0xa0, 0xad
    "Tom &amp;amp; Jerry &lt;3 &quot;quoted&quot; &#233;t&eacute;",
    "tabs\tand\n\nnewlines   and    spaces\u00a0nbsp  ",
    "control\x07 chars\x7f and soft\u00adhyphen",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "traffic light, fire hydrant, stop sign, parking meter",
    "",
    "   ",
    " ".join(["the large road and the building"] * 30),
    LONG_NAME,
]


@pytest.fixture(scope="module")
def oc():
    return open_clip_tokenizer()


@pytest.fixture(scope="module")
def ref(oc):
    """open_clip's SimpleTokenizer (what its tokenize() calls) on the same gz file."""
    return oc.SimpleTokenizer(str(bpe_path()))


@pytest.fixture(scope="module")
def ours():
    return ClipTokenizer.from_bpe_file(bpe_path())


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A Hugging Face CLIP folder: vocab.json from open_clip's encoder, merges.txt from the gz."""
    folder = write_hf_tokenizer_folder(tmp_path_factory.mktemp("hf_clip"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert len(merges) == 48894 and all(len(m.split()) == 2 for m in merges)
    return folder


@pytest.fixture(scope="module")
def ours_hf(hf_folder):
    return ClipTokenizer.from_hf_folder(hf_folder)


@pytest.fixture(scope="module")
def transformers_tok(hf_folder):
    transformers = pytest.importorskip("transformers")
    return transformers.CLIPTokenizer.from_pretrained(str(hf_folder))


# -- the vocabulary ---------------------------------------------------------------------------


def test_byte_symbols_in_clips_order(oc):
    # same mapping AND same order: ids 0-255 are assigned in this order
    assert list(byte_symbols().items()) == list(oc.bytes_to_unicode().items())
    built = ClipTokenizer([])  # the 512 single-symbol ids need no vocabulary file
    assert (built.encoder["!"], built.encoder["a"], built.encoder["a</w>"], built.encoder[".</w>"]) == (0, 64, 320, 269)


def test_whole_vocabulary_matches_open_clip(ours, ours_hf, ref):
    want = {OPEN_CLIP_NAMES.get(t, t): i for t, i in ref.encoder.items()}
    assert len(want) == 49408
    for tok in (ours, ours_hf):
        wrong = [t for t, i in list(want.items())[:512] if tok.encoder.get(t) != i]
        assert not wrong, f"{len(wrong)} of the 512 single-symbol ids differ from open_clip's, e.g. {wrong[:5]}"
        assert tok.encoder == want
        assert (tok.start_id, tok.end_id, tok.vocab_size) == (49406, 49407, 49408)
        assert (tok.encoder["a</w>"], tok.encoder[".</w>"]) == (320, 269)


def test_published_ids(ours, ours_hf, oc, transformers_tok):
    assert oc.tokenize("a photo of a sky.")[0, :9].tolist() == PUBLISHED + [0]  # the reference agrees
    for tok in (ours, ours_hf):
        assert tok.tokenize("a photo of a sky.")[0, :9].tolist() == PUBLISHED + [0]
    assert transformers_tok("a photo of a sky.")["input_ids"] == PUBLISHED


# -- encoding against open_clip ---------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_open_clip(ours, ours_hf, ref, text):
    want = ref.encode(text)
    assert ours.encode(text) == want
    assert ours_hf.encode(text) == want


def test_tokenize_matches_open_clip(ours, ours_hf, ref):
    want = ref(TEXTS, context_length=77)
    assert torch.equal(ours.tokenize(TEXTS), want) and torch.equal(ours_hf.tokenize(TEXTS), want)
    assert torch.equal(ours.tokenize(TEXTS, context_length=8), ref(TEXTS, context_length=8))


def test_truncation_keeps_end_token(ours, ref):
    assert len(ref.encode(LONG_NAME)) + 2 > 77
    row = ours.tokenize(LONG_NAME)[0]
    assert row[76] == 49407 and row.ne(0).all()
    assert row[:76].tolist() == [49406, *ref.encode(LONG_NAME)[:75]]
    # the end token is the largest id of each row (CLIP reads its text feature there)
    out = ours.tokenize(["a photo of a sky.", LONG_NAME])
    assert out.argmax(-1).tolist() == [7, 76] and out[0, 8:].eq(0).all()


def test_special_tokens_in_text(ours, ours_hf, ref, transformers_tok):
    text = "<|startoftext|> special <|endoftext|> tokens"
    got = ours.encode(text)
    assert got[0] == 49406 and 49407 in got
    # open_clip only knows its own spelling of the two tokens
    assert got == ref.encode("<start_of_text> special <end_of_text> tokens")
    assert ours_hf.encode(text) == got
    assert transformers_tok(text)["input_ids"][1:-1] == got


# -- the Hugging Face folder against transformers ---------------------------------------------


def _hf_input(text: str) -> str:
    """HF's CLIPTokenizer does no ftfy and no HTML unescaping: where those change the text, give it the
    text as our cleaning leaves it (its own NFC, whitespace collapsing and lowercasing are kept)."""
    import ftfy

    return text if html.unescape(ftfy.fix_text(text)) == text else clean(text)


@pytest.mark.parametrize("text", TEXTS)
def test_hf_folder_matches_transformers(ours_hf, transformers_tok, text):
    ids = transformers_tok(_hf_input(text))["input_ids"]
    assert ids[0] == transformers_tok.bos_token_id == 49406 and ids[-1] == transformers_tok.eos_token_id == 49407
    assert ours_hf.encode(text) == ids[1:-1]


def test_html_entities_unescaped_twice(ours, ref):
    assert clean("Tom &amp;amp; Jerry &lt;3  ") == "tom & jerry <3"
    assert ours.encode("a &amp; b &quot;c&quot;") == ref.encode('a & b "c"') == ours.encode('a & b "c"')


# -- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_decode_matches_open_clip(ours, ref, text):
    ids = ref.encode(text)
    assert ours.decode(ids) == ref.decode(ids).strip()


def test_decode_round_trip(ours):
    text = "there is a small tree in the scene café 中文 🚗"
    assert ours.decode(ours.tokenize(text)[0]) == text
    # CLIP's end-of-word marks split digits and punctuation apart, as in OpenAI's decoder
    assert ours.decode(ours.encode("scene, 2023")) == "scene , 2 0 2 3"


# -- bad files (tiny self-made files: only the error paths) -----------------------------------


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such vocabulary"):
        ClipTokenizer.from_path(tmp_path / "missing.txt.gz")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ConfigError, match="merges.txt"):
        ClipTokenizer.from_path(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(ConfigError, match="no <\\|startoftext\\|> token"):
        ClipTokenizer.from_path(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ClipTokenizer.from_path(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("header\na b c\n")
    with pytest.raises(ConfigError, match="not a pair"):
        ClipTokenizer.from_path(bad)
