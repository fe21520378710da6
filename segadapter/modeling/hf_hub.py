"""Published weights from the Hugging Face Hub by name, through `huggingface_hub` (its cache,
`HF_HOME`, `HF_HUB_OFFLINE`, `HF_ENDPOINT`, revisions and tokens); nothing is downloaded unless a
user names a repository or asks for `pretrained=True`, and never at import time.

    hub_id("hf-hub:nvidia/mit-b0@main")  -> ("nvidia/mit-b0", "main")
    fetch("nvidia/mit-b0")              -> the cached snapshot folder (config.json + weights)

A repository is read as a folder: our `save_pretrained` folders, transformers' and timm's
`model.safetensors` / `pytorch_model.bin` (sharded or not), open_clip's files, and CLIP's
tokenizer files beside them. safetensors is taken when a repository has both; `.bin` files are
read only with `torch.load(weights_only=True)` (weights/io.py); no repository code is ever run.
A cached snapshot is used without asking the network (`refresh=True` asks again).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import CheckpointError

PREFIX = "hf-hub:"
# weight files, in order of preference (safetensors first); index files bring their shards
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "open_clip_model.safetensors",
                "pytorch_model.bin", "pytorch_model.bin.index.json", "open_clip_pytorch_model.bin")
# small files read beside the weights when a repository has them (config, CLIP's tokenizer, card)
EXTRA_FILES = ("config.json", "vocab.json", "merges.txt")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_id(spec: str | os.PathLike) -> tuple[str, str | None] | None:
    """(repo id, revision or None) for `hf-hub:ORG/NAME[@REV]`, or for a bare `ORG/NAME[@REV]`
    that is not a local path (local paths win); None otherwise."""
    text = str(spec)
    explicit = text.startswith(PREFIX)
    if explicit:
        text = text[len(PREFIX):]
    elif Path(text).exists():
        return None
    repo, _, revision = text.partition("@")
    if not _REPO_ID.fullmatch(repo):
        if explicit:
            raise CheckpointError(f"{spec}: not a hub id (expected hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION)")
        return None
    return repo, revision or None


def local_path(spec: str | os.PathLike) -> Path:
    """A local file or folder for a path or a hub id (fetched into the cache)."""
    found = hub_id(spec)
    if found is None:
        return Path(spec)
    try:
        return fetch(*found)
    except CheckpointError as e:
        if str(spec).startswith(PREFIX):
            raise
        raise CheckpointError(f"{spec}: no such local file or folder; as a hub id: {e}") from None


def describe(repo: str, revision: str | None) -> str:
    return f"hf-hub:{repo}" + (f"@{revision}" if revision else "")


def source_name(spec: str | os.PathLike, loaded_from: str) -> str:
    """How a load report names its source: the hub id and the cache folder, or the path as given."""
    found = hub_id(spec)  # None for a local path
    return f"{describe(*found)} ({loaded_from})" if found is not None else loaded_from


def fetch(repo: str, revision: str | None = None, *, refresh: bool = False) -> Path:
    """The local snapshot folder of `repo` at `revision` holding its weights (and config /
    tokenizer files where it has them), downloaded into the Hugging Face cache if needed.
    CheckpointError naming the repository for a missing repository, revision or weights file,
    for a file missing offline, and for a failed download."""
    from huggingface_hub import constants

    if not refresh:
        cached = _cached_snapshot(repo, revision, offline=constants.HF_HUB_OFFLINE)
        if cached is not None:
            return cached
    if constants.HF_HUB_OFFLINE:
        _refuse_partial_download(repo, revision)
        raise CheckpointError(
            f"{describe(repo, revision)}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE=1; fetch it on a connected machine with `segadapter download {repo}"
            + (f" --revision {revision}" if revision else "") + "` (same HF_HOME), or give a local path")
    weights = None
    for name in WEIGHT_FILES:
        path = _download(repo, revision, name, required=False)
        if path is not None:
            weights = path
            break
    if weights is None:
        raise CheckpointError(f"{describe(repo, revision)}: holds none of the weight files the toolkit reads "
                              f"({', '.join(WEIGHT_FILES)}); it holds: {_listing(repo, revision)}")
    for shard in _shards(weights):
        _download(repo, revision, shard, required=True)
    for name in EXTRA_FILES:
        _download(repo, revision, name, required=False)
    return weights.parent


def _download(repo: str, revision: str | None, filename: str, required: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    where = describe(repo, revision)
    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except RepositoryNotFoundError:
        raise CheckpointError(f"{where}: no such repository on the Hub (or it is private or gated: log in with "
                              "`hf auth login` or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{where}: the repository has no revision {revision!r}") from None
    except LocalEntryNotFoundError as e:  # offline, or the Hub unreachable
        raise CheckpointError(f"{where}: {filename} is not in the Hugging Face cache and the Hub cannot be "
                              f"reached ({_first_line(e)}); fetch it with `segadapter download {repo}` on a "
                              "connected machine") from None
    except EntryNotFoundError:
        if required:
            raise CheckpointError(f"{where}: {filename} (named by its shard index) is missing") from None
        return None
    except (HfHubHTTPError, OSError, *_transport_errors()) as e:  # a failed or cut download: no broken file cached
        raise CheckpointError(f"{where}: downloading {filename} failed ({_first_line(e)}); run it again to "
                              "resume") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's own connection errors (httpx2 in huggingface_hub 2, httpx in 1, requests
    before): a connection cut mid-file surfaces as one of these."""
    import importlib

    found = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _cached_snapshot(repo: str, revision: str | None, offline: bool = False) -> Path | None:
    """The snapshot folder when it holds a weights file and its shards; None when the network must
    be asked. Online, every better-preferred weights file and every extra file must also be known
    absent (our `download` records that), else a cache holding only the .bin of a repository that
    has safetensors too would stand in for it. Offline there is no one to ask: whatever weights the
    snapshot holds serve, whichever tool (snapshot_download, transformers, timm, by hand) filled it."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(repo, name, revision=revision) for name in WEIGHT_FILES]
    weights = next((Path(p) for p in found if isinstance(p, str)), None)
    if weights is None:
        return None
    if not offline and any(p is None for p in found[:WEIGHT_FILES.index(weights.name)]):
        return None
    shards = _shards(weights)
    if any(not isinstance(try_to_load_from_cache(repo, s, revision=revision), str) for s in shards):
        return None
    if not offline and any(try_to_load_from_cache(repo, name, revision=revision) is None for name in EXTRA_FILES):
        return None
    return weights.parent


def _refuse_partial_download(repo: str, revision: str | None) -> None:
    """Offline, with no complete weights cached: name a download cut short (huggingface_hub keeps
    its bytes as `blobs/<etag>.incomplete` until the file is whole; it is never read)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    partial = sorted(folder.glob("blobs/*.incomplete"))
    if partial:
        raise CheckpointError(
            f"{describe(repo, revision)}: the Hugging Face cache holds only a partial download "
            f"({partial[0]}, {partial[0].stat().st_size} bytes) and HF_HUB_OFFLINE=1; finish it with "
            f"`segadapter download {repo}` on a connected machine (same HF_HOME)")


def _shards(weights: Path) -> list[str]:
    if not weights.name.endswith(".index.json"):
        return []
    try:
        return sorted(set(json.loads(weights.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise CheckpointError(f"{weights}: not a valid shard index ({e})") from None


def _listing(repo: str, revision: str | None) -> str:
    from huggingface_hub import list_repo_files

    try:
        files = list_repo_files(repo, revision=revision)
    except Exception as e:  # the listing only words the error: never hide the real one behind it
        return f"(its file list could not be read: {_first_line(e)})"
    return ", ".join(sorted(files)[:12]) + (f", ... {len(files) - 12} more" if len(files) > 12 else "") \
        if files else "no files"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
