"""No tensor is dropped in silence: for every published layout of every family, each tensor of the
file is either loaded or listed in `load_report.ignored` with a reason, and each model tensor not
loaded is listed as fresh.

How it is checked without trusting the converters: every tensor of the file is filled with its own
tag (2, 3, 4, ...), the file is loaded through `create_model(..., pretrained=)`/`load_pretrained`,
and the tags found in the model's loaded tensors say which file tensors arrived (renamed, fused,
transposed or resampled, a tag survives). The file layouts are written by the other checkpoint
tests' inverse mappings."""
import numpy as np
import pytest
import torch

import segadapter
from segadapter.modeling.segmentor import Segmentor
from segadapter.modeling.weights.load import load_pretrained

transformers = pytest.importorskip("transformers")

import test_checkpoints_convnext as convnext_files  # noqa: E402
import test_checkpoints_mit as mit_files  # noqa: E402
import test_clip as clip_files  # noqa: E402
import test_san as san_files  # noqa: E402
import test_weights_vit as vit_files  # noqa: E402


def tagged(state: dict) -> tuple[dict, dict]:
    """(the state with tensor i filled with i + 2, {tag: key}); nested dicts (`state_dict`,
    `model`) and metadata pass through."""
    tags: dict[int, str] = {}

    def walk(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and k in ("state_dict", "model"):
                out[k] = walk(v)
            elif isinstance(v, torch.Tensor):
                tag = len(tags) + 2  # from 2: a loaded flag (True = 1) is no tag
                tags[tag] = k
                out[k] = torch.full_like(v, tag)
            else:
                out[k] = v
        return out

    return walk(state), tags


def tags_in(model, keys) -> set[int]:
    found = set()
    own = model.state_dict()
    for k in keys:
        found |= {int(round(x)) for x in own[k].double().unique().tolist()}
    return found


def check_accounting(model, path, tags: dict[int, str], report=None):
    report = report or model.load_report
    file_keys = set(tags.values())
    arrived = {tags[t] for t in tags_in(model, report.loaded) if t in tags}
    ignored = set(report.ignored)
    assert ignored <= file_keys, f"listed as ignored but not in the file: {sorted(ignored - file_keys)[:5]}"
    assert not arrived & ignored, f"loaded and also listed as ignored: {sorted(arrived & ignored)[:5]}"
    silent = file_keys - arrived - ignored
    assert not silent, f"{len(silent)} file tensors neither loaded nor listed: {sorted(silent)[:8]}"
    assert all(isinstance(why, str) and why for why in report.ignored.values())
    own = set(model.state_dict())
    assert set(report.loaded) | set(report.fresh) == own and not set(report.loaded) & set(report.fresh)
    return report


def save(tmp_path, name, state):
    path = tmp_path / name
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------------ cases
def mit_cases():
    sd = mit_files.randomized("segformer-b0", num_classes=19).state_dict()
    return {
        "mit-nvlabs-encoder": ("segformer-b0", lambda: mit_files.to_nvlabs(sd, full=False)),
        "mit-nvlabs-full": ("segformer-b0", lambda: mit_files.to_nvlabs(sd, full=True)),
        "mit-nvlabs-full-into-adapter": ("adapt-mit-b0", lambda: mit_files.to_nvlabs(sd, full=True)),
        "mit-huggingface": ("segformer-b0", lambda: mit_files.to_hf(sd)),
        "mit-openmmlab": ("segformer-b0", lambda: mit_files.to_openmmlab(sd)),
        "mit-openmmlab-into-segdeformer": ("segdeformer-mit-b0", lambda: mit_files.to_openmmlab(sd)),
    }


def convnext_cases():
    return {
        "convnext-facebook": ("convnext-t", lambda: convnext_files.to_facebook(False)),
        "convnext-facebook-segmentation": ("convnext-t", lambda: convnext_files.to_facebook(True)),
        "convnext-timm": ("convnext-t", lambda: convnext_files.to_timm()),
        "convnext-huggingface": ("convnext-t", lambda: convnext_files.to_huggingface()),
        "convnext-mmpretrain": ("convnext-t", lambda: convnext_files.to_mmpretrain()),
    }


CASES = {**mit_cases(), **convnext_cases()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mit_and_convnext_layouts_account_for_every_tensor(tmp_path, case):
    name, make = CASES[case]
    state, tags = tagged(make())
    model = segadapter.create_model(name, num_classes=19, pretrained=save(tmp_path, f"{case}.pth", state))
    check_accounting(model, None, tags)


def tiny_vit_segmentor(num_classes=vit_files.K):
    from segadapter.modeling.backbones.vit import ViT, ViTSpec
    from segadapter.modeling.heads.segvit import ATMHead

    C, depth, heads = vit_files.C, vit_files.DEPTH, vit_files.HEADS
    model = Segmentor(ViT(ViTSpec(C, depth, heads), img_size=64, out_indices=(1, depth - 1)),
                      ATMHead((C, C), num_classes, embed_dim=vit_files.D, num_heads=vit_files.NH), num_classes)
    model.config = {"name": "tiny-segvit"}
    return model


@pytest.mark.parametrize("layout", ["timm", "mmseg", "huggingface", "jax", "segvit"])
def test_vit_layouts_account_for_every_tensor(tmp_path, hf, layout):
    if layout == "huggingface":  # a transformers folder, tagged in place
        hf = transformers.ViTModel(hf.config, add_pooling_layer=False)
        state, tags = tagged(hf.state_dict())
        hf.load_state_dict(state)
        hf.save_pretrained(tmp_path / "hf")
        path = tmp_path / "hf"
    elif layout == "jax":
        p = vit_files.hf_params(hf)
        arrays = vit_files.jax_arrays(p)
        tags = {i + 2: k for i, k in enumerate(arrays)}
        path = tmp_path / "vit.npz"
        np.savez(path, **{k: np.full_like(v, i + 2) for i, (k, v) in enumerate(arrays.items())})
    elif layout == "segvit":
        torch.manual_seed(0)
        source = tiny_vit_segmentor()
        state = vit_files.mmseg_backbone(source.backbone)
        for i in range(2):
            state.update(vit_files.atm_keys(f"decode_head.decoder_{i + 1}.", vit_files.torch_decoder()))
            state[f"decode_head.input_proj_{i + 1}.weight"] = torch.randn(vit_files.D, vit_files.C)
            state[f"decode_head.input_proj_{i + 1}.bias"] = torch.randn(vit_files.D)
            state[f"decode_head.proj_norm_{i + 1}.weight"] = torch.randn(vit_files.D)
            state[f"decode_head.proj_norm_{i + 1}.bias"] = torch.randn(vit_files.D)
        k, d = vit_files.K, vit_files.D
        state.update({"decode_head.q.weight": torch.randn(k, d), "decode_head.class_embed.weight": torch.randn(k + 1, d),
                      "decode_head.class_embed.bias": torch.randn(k + 1),
                      "decode_head.loss_decode.criterion.empty_weight": torch.ones(k + 1)})
        state, tags = tagged({"state_dict": state})
        path = save(tmp_path, "segvit.pth", state)
    else:
        p = vit_files.hf_params(hf)
        raw = vit_files.timm_state(p) if layout == "timm" else vit_files.mmseg_state(p)
        state, tags = tagged(raw)
        path = save(tmp_path, f"{layout}.pth", state)
    model = tiny_vit_segmentor()
    report = load_pretrained(model, path)
    check_accounting(model, path, tags, report)


@pytest.fixture(scope="module")
def hf():
    config = transformers.ViTConfig(hidden_size=vit_files.C, num_hidden_layers=vit_files.DEPTH,
                                    num_attention_heads=vit_files.HEADS, intermediate_size=4 * vit_files.C,
                                    image_size=64, patch_size=16, layer_norm_eps=1e-6)
    return transformers.ViTModel(config, add_pooling_layer=False).eval()


# ------------------------------------------------------------------------------------ CLIP and SAN
SAN_SMALL = dict(side_width=48, side_heads=2, side_depth=4, num_queries=10)


@pytest.fixture(scope="module")
def tiny_clip_name():
    from segadapter.modeling.backbones import clip as clip_module

    name = "tiny-clip-accounting"
    clip_module.CLIP_CONFIGS[name] = clip_module.ClipConfig(
        32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2), clip_module.ClipTextConfig(77, 600, 32, 2, 2))
    yield name
    clip_module.CLIP_CONFIGS.pop(name, None)


def tiny_san(name, **kw):
    return segadapter.create_model("san-vit-b16", classes=["sky", "road", "car"], clip_config_override=name,
                                   **SAN_SMALL, **kw)


@pytest.mark.parametrize("layout", ["openai", "torchscript", "open_clip", "huggingface", "san"])
def test_clip_and_san_layouts_account_for_every_tensor(tmp_path, tiny_clip_name, layout):
    torch.manual_seed(0)
    source = tiny_san(tiny_clip_name)
    clip = source.backbone.clip
    if layout == "san":  # the official release: CLIP split in two + the side network + criterion buffers
        ours = {k: v for k, v in source.state_dict().items()
                if k not in ("backbone.clip_pretrained", "decode_head.class_embeddings", "decode_head.text_embedded")}
        official = _san_release_names(ours, split=9)
        official.update({"criterion.empty_weight": torch.ones(4), "pixel_mean": torch.zeros(3, 1, 1)})
        state, tags = tagged({"model": official, "iteration": 5})
        path = save(tmp_path, "san_vit_b_16.pth", state)
    elif layout == "torchscript":
        with torch.no_grad():
            for i, t in enumerate(clip.state_dict().values()):
                t.fill_(i + 2)
        archive = clip_files._Archive(clip).eval()
        path = tmp_path / "ViT-tiny.pt"
        torch.jit.trace(archive, (torch.randn(1, 3, 32, 32),), check_trace=False).save(str(path))
        from segadapter.modeling.weights.io import read_checkpoint

        state = read_checkpoint(path)
        tags = {}
        for k, v in state.items():  # the archive's own attributes (resolution, ...) get no tag
            if k in dict(clip.state_dict()):
                tags[int(v.flatten()[0])] = k
            else:
                tags[-len(tags) - 1] = k
    elif layout == "huggingface":
        hf = transformers.CLIPModel(transformers.CLIPConfig(
            text_config=dict(vocab_size=600, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=77),
            vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=12, num_attention_heads=2,
                               image_size=32, patch_size=16), projection_dim=32))
        state, tags = tagged(hf.state_dict())
        hf.load_state_dict(state, strict=False)
        hf.save_pretrained(tmp_path / "hf")
        from segadapter.modeling.weights.io import read_checkpoint

        saved = read_checkpoint(tmp_path / "hf")  # what the folder holds (buffers such as position ids too)
        tags = {t: k for t, k in tags.items() if k in saved}
        for k in saved:
            if k not in tags.values():
                tags[-len(tags) - 1] = k
        path = tmp_path / "hf"
    else:  # OpenAI state dict; open_clip checkpoints use the same names, under a `state_dict`
        state, tags = tagged(clip.state_dict())
        path = save(tmp_path, f"{layout}.pt", {"state_dict": state} if layout == "open_clip" else state)
    model = tiny_san(tiny_clip_name, pretrained=str(path))
    report = check_accounting(model, path, tags)
    if layout == "san":  # the whole release loads: CLIP, side network, mask decoder, no-object embedding
        assert not [k for k in report.fresh if k not in ("decode_head.class_embeddings", "decode_head.text_embedded")]
        assert set(report.ignored) == {"criterion.empty_weight", "pixel_mean"}


def _san_release_names(ours: dict, split: int) -> dict:
    """Our SAN state under the release's names (test_san's inverse mapping, for a 12-block CLIP
    split after block `split`)."""
    out = {}
    for k, v in san_files._official_names(ours).items():
        if k.startswith(("clip_visual_extractor.resblocks.", "clip_rec_head.resblocks.")):
            i = int(k.split(".")[2]) + (2 if k.startswith("clip_rec_head.") else 0)
            rest = k.split(".", 3)[3]
            k = (f"clip_visual_extractor.resblocks.{i}.{rest}" if i < split
                 else f"clip_rec_head.resblocks.{i - split}.{rest}")
        out[k] = v
    return out


def test_segdeformer_official_checkpoint_loads_whole(tmp_path):
    """A whole checkpoint of the official SegDeformer code (mmseg MiT + `SegDeformerHead3`): the
    head loads too (86 tensors), nothing is left fresh."""
    from test_segdeformer_official import official_checkpoint

    _, checkpoint = official_checkpoint()
    state, tags = tagged(checkpoint)
    model = segadapter.create_model("segdeformer-mit-b0", num_classes=19,
                                    pretrained=save(tmp_path, "segdeformer_b0.pth", state))
    report = check_accounting(model, None, tags)
    assert report.fresh == [] and report.ignored == {}
    assert sum(k.startswith("decode_head.") for k in report.loaded) == 86


def test_san_release_through_pretrained_gives_the_same_model(tmp_path, tiny_clip_name):
    """A SAN model with every tensor perturbed, saved in the release's key layout and loaded with
    `pretrained=`: the same state and the same scores (the side network and decoder included)."""
    torch.manual_seed(0)
    source = tiny_san(tiny_clip_name).eval()
    with torch.no_grad():
        for k, t in source.state_dict().items():
            if t.is_floating_point() and k != "decode_head.class_embeddings":
                t.add_(torch.randn_like(t) * 0.05)
    ours = {k: v for k, v in source.state_dict().items()
            if k not in ("backbone.clip_pretrained", "decode_head.class_embeddings", "decode_head.text_embedded")}
    path = save(tmp_path, "san_vit_b_16.pth", {"model": _san_release_names(ours, split=9)})
    model = tiny_san(tiny_clip_name, pretrained=str(path)).eval()
    assert len(model.load_report.loaded) == len(ours) + 1  # + the "CLIP is trained" flag
    for k, v in ours.items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
