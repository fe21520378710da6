"""Offline with a Hugging Face cache that another tool filled: huggingface_hub's own
`snapshot_download`, transformers' `from_pretrained` (both against the local Hub on 127.0.0.1,
tests/hub_server.py), and a snapshot made by hand with only config.json + one weights file. None
of them records the files a repository lacks (`.no_exist`), which only `segadapter download`
does; offline the toolkit must load from them all the same. A partial download gets a clear error."""
import hashlib

import pytest
import torch
import transformers
from safetensors.torch import load_file

from hub_server import LocalHub, folder_files
from test_hub_weights import client, create, error_line

pytest.importorskip("huggingface_hub")
KV = "backbone.stages.3.blocks.1.attn.kv.weight"


@pytest.fixture(scope="module")
def ade_b0(tmp_path_factory):
    """`nvidia/segformer-b0-finetuned-ade-512-512` as transformers writes it (random weights)."""
    torch.manual_seed(0)
    hf = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(num_labels=150))
    folder = tmp_path_factory.mktemp("segformer-b0-ade")
    hf.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    kv = torch.cat([state["segformer.encoder.block.3.1.attention.self.key.weight"],
                    state["segformer.encoder.block.3.1.attention.self.value.weight"]])
    return folder, kv


REPO = "nvidia/segformer-b0-finetuned-ade-512-512"
LOAD = f"'segformer-b0', num_classes=150, pretrained='hf-hub:{REPO}'"


def load_offline(hub, home, tmp_path, kv):
    proc = create(hub, home, tmp_path / "out.safetensors", LOAD, offline=True)
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(load_file(tmp_path / "out.safetensors")[KV], kv)


@pytest.mark.parametrize("tool", ["snapshot_download", "transformers"])
def test_cache_filled_by_another_tool_serves_offline(tmp_path, ade_b0, tool):
    folder, kv = ade_b0
    home = tmp_path / "hf"
    fill = {"snapshot_download": f"import huggingface_hub as h; h.snapshot_download({REPO!r})",
            "transformers": f"import transformers as t; t.SegformerForSemanticSegmentation.from_pretrained({REPO!r})"}
    with LocalHub() as hub:
        hub.add(REPO, folder_files(folder))
        proc = client(hub, home, fill[tool])
        assert proc.returncode == 0, proc.stderr
        assert any(d.startswith(f"/{REPO}/resolve/") and d.endswith("/model.safetensors") for d in hub.downloads())
        seen = len(hub.requests)
        load_offline(hub, home, tmp_path, kv)
        assert len(hub.requests) == seen


def hand_made_snapshot(home, repo: str, files: dict[str, bytes]):
    """The standard layout, written by hand: refs/main -> snapshots/<commit>/ holding real files."""
    commit = hashlib.sha1(repo.encode()).hexdigest()
    root = home / "hub" / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return root


def test_hand_made_snapshot_with_config_and_one_bin_file(tmp_path, ade_b0):
    folder, kv = ade_b0
    bin_file = tmp_path / "pytorch_model.bin"
    torch.save(load_file(folder / "model.safetensors"), bin_file)
    home = tmp_path / "hf"
    hand_made_snapshot(home, REPO, {"config.json": (folder / "config.json").read_bytes(),
                                    "pytorch_model.bin": bin_file.read_bytes()})
    with LocalHub() as hub:  # never asked: offline
        load_offline(hub, home, tmp_path, kv)
        assert hub.requests == []


def test_partial_download_is_named_never_read(tmp_path, ade_b0):
    """huggingface_hub keeps a cut download as blobs/<etag>.incomplete, without a snapshot entry."""
    folder, _ = ade_b0
    home = tmp_path / "hf"
    root = hand_made_snapshot(home, REPO, {"config.json": (folder / "config.json").read_bytes()})
    (root / "blobs").mkdir()
    data = (folder / "model.safetensors").read_bytes()
    (root / "blobs" / (hashlib.sha256(data).hexdigest() + ".incomplete")).write_bytes(data[: len(data) // 3])
    with LocalHub() as hub:
        proc = create(hub, home, tmp_path / "out.safetensors", LOAD, offline=True)
    assert proc.returncode != 0
    line = error_line(proc)
    assert f"hf-hub:{REPO}" in line and "partial download" in line and ".incomplete" in line, line
    assert f"segadapter download {REPO}" in line
    assert not (tmp_path / "out.safetensors").exists()
