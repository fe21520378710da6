"""Published weights by name, through `huggingface_hub`, against a local Hub (tests/hub_server.py)
on 127.0.0.1: `pretrained=True`, hub ids and revisions, `segadapter download`, the cache and
offline mode, and the errors. Every client runs in a fresh process with the environment a user
would set (HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE): huggingface_hub reads it at import."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

import segadapter
from hub_server import LocalHub, folder_files
from segadapter.modeling import published
from segadapter.modeling.registry import list_models

pytest.importorskip("huggingface_hub")
ROOT = Path(__file__).resolve().parent.parent


def client(hub: LocalHub, home: Path, code: str, offline: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1" if offline else "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def cli(hub: LocalHub, home: Path, *args: str, offline: bool = False) -> subprocess.CompletedProcess:
    return client(hub, home, f"import sys; from segadapter.cli.main import main; sys.exit(main({list(args)!r}))",
                  offline)


def error_line(proc: subprocess.CompletedProcess) -> str:
    return (proc.stderr.strip().splitlines() or [""])[-1]


SAVE_STATE = """
import segadapter
from safetensors.torch import save_file
m = segadapter.create_model({args})
save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, {out!r})
print(m.load_report.source, m.load_report.layout, sep="\\n")
"""


def create(hub, home, out: Path, args: str, offline=False):
    return client(hub, home, SAVE_STATE.format(args=args, out=str(out)), offline)


@pytest.fixture(scope="module")
def mit_b0(tmp_path_factory):
    """`nvidia/mit-b0` as transformers writes it (random weights at the real B0 size)."""
    torch.manual_seed(0)
    hf = transformers.SegformerModel(transformers.SegformerConfig())
    folder = tmp_path_factory.mktemp("mit-b0")
    hf.save_pretrained(folder)
    return hf, folder


def test_pretrained_true_download_cache_and_offline(tmp_path, mit_b0):
    _, folder = mit_b0
    home = tmp_path / "hf"
    with LocalHub() as hub:
        hub.add("nvidia/mit-b0", folder_files(folder))
        proc = cli(hub, home, "download", "segformer-b0")
        assert proc.returncode == 0, proc.stderr
        assert "nvidia/mit-b0" in proc.stdout
        assert "/nvidia/mit-b0/resolve/main/model.safetensors" in hub.downloads()
        seen = len(hub.requests)

        # warm cache: pretrained=True loads without a single request
        proc = create(hub, home, tmp_path / "a.safetensors", "'segformer-b0', num_classes=3, pretrained=True")
        assert proc.returncode == 0, proc.stderr
        assert len(hub.requests) == seen
        source, layout = proc.stdout.split("\n")[-3:-1]
        assert source.startswith("hf-hub:nvidia/mit-b0 (") and layout == "huggingface"
        ours = load_file(tmp_path / "a.safetensors")
        theirs = load_file(folder / "model.safetensors")  # the published file, in transformers' names
        torch.testing.assert_close(ours["backbone.stages.0.patch_embed.proj.weight"],
                                   theirs["encoder.patch_embeddings.0.proj.weight"], rtol=0, atol=0)
        kv = torch.cat([theirs["encoder.block.3.1.attention.self.key.weight"],
                        theirs["encoder.block.3.1.attention.self.value.weight"]])
        torch.testing.assert_close(ours["backbone.stages.3.blocks.1.attn.kv.weight"], kv, rtol=0, atol=0)

        # offline with the warm cache: the same model; with a cold one: one line naming the way out
        proc = create(hub, home, tmp_path / "b.safetensors", "'segformer-b0', num_classes=3, pretrained=True",
                      offline=True)
        assert proc.returncode == 0, proc.stderr
        assert torch.equal(load_file(tmp_path / "b.safetensors")["backbone.stages.3.blocks.1.attn.kv.weight"], kv)
        proc = create(hub, tmp_path / "cold", tmp_path / "c.safetensors",
                      "'segformer-b0', num_classes=3, pretrained=True", offline=True)
        assert proc.returncode != 0
        line = error_line(proc)
        assert "hf-hub:nvidia/mit-b0" in line and "HF_HUB_OFFLINE=1" in line and "segadapter download nvidia/mit-b0" in line
        assert len(hub.requests) == seen


def _tiny_folder(path: Path, seed: int, **extra) -> Path:
    torch.manual_seed(seed)
    model = segadapter.create_model("segformer-b0", num_classes=3, decoder_channels=32)
    model.save_pretrained(path, classes=["sky", "road", "car"], **extra)
    return path


def test_uploaded_folder_revisions_and_model_card(tmp_path):
    from huggingface_hub import ModelCard

    old = _tiny_folder(tmp_path / "old", 1)
    new = _tiny_folder(tmp_path / "new", 2, dataset="camvid", metrics={"mIoU": 61.25, "aAcc": 90.5, "split": "val"})
    card = ModelCard.load(new / "README.md")  # huggingface_hub's own reader of the Hub's metadata
    assert card.data.library_name == "segadapter" and card.data.datasets == ["camvid"]
    assert {(r.metric_name, r.metric_value) for r in card.data.eval_results} == {("mIoU", 61.25), ("aAcc", 90.5)}
    home = tmp_path / "hf"
    with LocalHub() as hub:
        first = hub.add("user/tiny-segformer", folder_files(old))
        hub.add("user/tiny-segformer", folder_files(new))
        code = ("import segadapter, torch\n"
                "a = segadapter.from_pretrained('hf-hub:user/tiny-segformer')\n"
                f"b = segadapter.create_model('segformer-b0', num_classes=3, decoder_channels=32, "
                f"pretrained='user/tiny-segformer@{first}')\n"
                "x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))\n"
                "torch.save({'a': a.eval()(x), 'b': b.eval()(x)}, %r)\n"
                "print(b.load_report.source)" % str(tmp_path / "out.pt"))
        proc = client(hub, home, code)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith(f"hf-hub:user/tiny-segformer@{first} (")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(out["a"], segadapter.from_pretrained(new).eval()(x))
    torch.testing.assert_close(out["b"], segadapter.from_pretrained(old).eval()(x))
    assert not torch.allclose(out["a"], out["b"])


def test_clip_weights_and_tokenizer_from_one_repository(tmp_path):
    """SAN's CLIP from a hub id: the weights and the real vocabulary from the same repository, so
    the class names are embedded by text."""
    from clip_reference import write_hf_tokenizer_folder

    folder = write_hf_tokenizer_folder(tmp_path / "clip")
    torch.manual_seed(0)
    hf = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=12, num_attention_heads=2,
                           image_size=32, patch_size=16), projection_dim=32))
    hf.save_pretrained(folder)
    code = ("from segadapter.modeling.backbones import clip as c\n"
            "import segadapter\n"
            "cfg = c.ClipConfig(32, c.ClipVisionConfig(32, 16, 32, 12, 2), c.ClipTextConfig(77, 49408, 32, 2, 2))\n"
            "m = segadapter.create_model('san-vit-b16', classes=['sky', 'road'], clip='hf-hub:test/tiny-clip', "
            "vocab='hf-hub:test/tiny-clip', clip_config_override=cfg, side_width=48, side_heads=2, side_depth=4, "
            "num_queries=10)\n"
            "print(m.load_report.source.split(' ')[0], m.vocabulary.embedded_by_text, m.vocabulary.tokenizer.encode('sky'))")
    with LocalHub() as hub:
        hub.add("test/tiny-clip", folder_files(folder))
        proc = client(hub, tmp_path / "hf", code)
    assert proc.returncode == 0, proc.stderr
    source, embedded, ids = proc.stdout.strip().splitlines()[-1].split(" ", 2)
    assert source == "hf-hub:test/tiny-clip" and embedded == "True"
    assert json.loads(ids) == [2390]  # "sky</w>" in CLIP's real vocabulary


def test_missing_repository_revision_layout_and_a_truncated_download(tmp_path, mit_b0):
    _, folder = mit_b0
    home = tmp_path / "hf"
    with LocalHub() as hub:
        hub.add("user/notes", {"README.md": b"# notes\n", "notes.txt": b"nothing to load\n"})
        hub.add("nvidia/mit-b0", folder_files(folder))
        proc = cli(hub, home, "download", "nobody/nothing")
        assert proc.returncode != 0 and "hf-hub:nobody/nothing: no such repository" in error_line(proc)
        proc = cli(hub, home, "download", "nvidia/mit-b0@v9")
        assert proc.returncode != 0 and "has no revision 'v9'" in error_line(proc)
        proc = cli(hub, home, "download", "user/notes")
        line = error_line(proc)
        assert proc.returncode != 0 and "holds none of the weight files" in line and "README.md, notes.txt" in line

        hub.truncate["nvidia/mit-b0/model.safetensors"] = 1000  # the client's own retries fail too
        proc = cli(hub, home, "download", "nvidia/mit-b0")
        assert proc.returncode != 0 and "downloading model.safetensors failed" in error_line(proc)
        repo = home / "hub" / "models--nvidia--mit-b0"
        # no complete file was left: no snapshot entry, no finished blob of the weights' size
        assert not list(repo.glob("snapshots/*/model.safetensors"))
        size = (folder / "model.safetensors").stat().st_size
        assert not [b for b in repo.glob("blobs/*") if not b.name.endswith(".incomplete") and b.stat().st_size == size]
        hub.truncate.clear()
        proc = cli(hub, home, "download", "nvidia/mit-b0")  # the server is fine again: it completes
        assert proc.returncode == 0, proc.stderr
        got = next(repo.glob("snapshots/*/model.safetensors"))
        assert got.read_bytes() == (folder / "model.safetensors").read_bytes()


def test_local_paths_win_over_hub_ids(tmp_path, monkeypatch):
    folder = _tiny_folder(tmp_path / "user" / "tiny", 3)
    monkeypatch.chdir(tmp_path)
    model = segadapter.create_model("segformer-b0", num_classes=3, decoder_channels=32, pretrained="user/tiny")
    assert model.load_report.source == "user/tiny"  # read from disk, no Hub involved
    assert segadapter.from_pretrained("user/tiny").config["classes"] == ["sky", "road", "car"]
    assert folder.is_dir()


def test_every_variant_has_default_weights():
    """pretrained=True means something for every registered variant (the table covers the registry)."""
    for name in list_models():
        rows = published.choices(name)
        assert rows, f"{name}: no default published weights"
        assert rows[-1].part in ("backbone", "clip"), name  # a last row that fits any class count
        choice = published.default_weights(name, 7)
        assert choice.part != "model" and "/" in choice.repo
    assert published.default_weights("segformer-b2", 150).repo == "nvidia/segformer-b2-finetuned-ade-512-512"
    assert published.default_weights("segformer-b5", 150).repo == "nvidia/segformer-b5-finetuned-ade-640-640"
    assert published.default_weights("segformer-b1", 19).repo == "nvidia/segformer-b1-finetuned-cityscapes-1024-1024"
    assert published.default_weights("convnext-b", 7, "in22k").repo == "facebook/convnext-base-224-22k"


def test_config_takes_pretrained_true_and_hub_ids():
    from segadapter.engine import load_config

    assert load_config("segformer_camvid-cpu", ["model.pretrained=true"]).model.pretrained is True
    cfg = load_config("segformer_camvid-cpu", ["model.pretrained=hf-hub:nvidia/mit-b0@main"])
    assert cfg.model.pretrained == "hf-hub:nvidia/mit-b0@main"
