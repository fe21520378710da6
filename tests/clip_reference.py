"""open_clip's CLIP tokenizer as an outside reference, without importing the open_clip package.

`import open_clip` needs torchvision and timm, which the tests do not install: open_clip_torch is
installed with --no-deps, and only its standalone `tokenizer.py` (module-level imports: ftfy, numpy,
regex, torch; nothing relative) is loaded from the package folder. Skips when open_clip_torch or
ftfy is absent."""
import importlib.util
from functools import lru_cache
from pathlib import Path

import pytest


def open_clip_folder() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        pytest.skip('open_clip_torch is not installed (pip install --no-deps "open_clip_torch==3.3.0")')
    return Path(next(iter(spec.submodule_search_locations)))


def bpe_path() -> Path:
    """The real CLIP vocabulary, bpe_simple_vocab_16e6.txt.gz, as shipped in the open_clip wheel."""
    path = open_clip_folder() / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@lru_cache()
def open_clip_tokenizer():
    """open_clip's `tokenizer` module: SimpleTokenizer, tokenize(), bytes_to_unicode(), ..."""
    pytest.importorskip("ftfy")
    spec = importlib.util.spec_from_file_location("open_clip_reference_tokenizer", open_clip_folder() / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # builds its default SimpleTokenizer from the wheel's gz (~1 s)
    return module


def write_hf_tokenizer_folder(folder: Path) -> Path:
    """A Hugging Face CLIP tokenizer folder from the real vocabulary: vocab.json from open_clip's
    own encoder (its special tokens under CLIP's names), merges.txt from the wheel's gz."""
    import gzip
    import json

    from segadapter.text.tokenizer import END, MAX_MERGES, START

    ref = open_clip_tokenizer().SimpleTokenizer(str(bpe_path()))
    names = {"<start_of_text>": START, "<end_of_text>": END}
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {names.get(t, t): i for t, i in ref.encoder.items()}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with gzip.open(bpe_path(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:MAX_MERGES + 1]  # line 0 is the gz's header
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder
