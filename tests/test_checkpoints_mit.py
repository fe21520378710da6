"""MiT / Segformer published layouts: write our random weights in each layout (the inverse
mapping is written here, independently of the converter), load them back, compare."""
import argparse
import functools
import json
import re

import pytest
import torch
from safetensors.torch import save_file

import segadapter
from segadapter import CheckpointError

X = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))


@functools.cache  # shared by the tests, which only read it
def randomized(name, num_classes=19):
    """A model whose every tensor is perturbed (layer scales, norms, BN statistics too)."""
    torch.manual_seed(0)
    model = segadapter.create_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if k.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
    return model


def assert_same(dst, src, prefix=""):
    """Every tensor of `src` under `prefix` equals the one in `dst`."""
    d, s = dst.state_dict(), src.state_dict()
    keys = [k for k in s if k.startswith(prefix)]
    assert keys
    for k in keys:
        assert torch.equal(d[k], s[k]), k


@torch.no_grad()
def outputs(model, backbone_only):
    return tuple(model.eval().backbone(X)) if backbone_only else (model.eval()(X),)


reference_outputs = functools.cache(outputs)  # of the shared source models


def assert_same_outputs(dst, src, backbone_only=False):
    for a, b in zip(outputs(dst, backbone_only), reference_outputs(src, backbone_only), strict=True):
        assert torch.equal(a, b)


def ours(sd):
    """(stage, rest) for every backbone key; ('head', rest) for decode-head keys."""
    for k, v in sd.items():
        if m := re.fullmatch(r"backbone\.stages\.(\d)\.(.+)", k):
            yield int(m[1]), m[2], v
        elif k.startswith("decode_head."):
            yield "head", k[len("decode_head."):], v


# --- inverse mappings: our names -> each published layout --------------------------------------

def to_nvlabs(sd, full):
    out = {}
    for s, rest, v in ours(sd):
        if s == "head":
            if not full:
                continue
            if m := re.fullmatch(r"proj\.(\d)\.(\w+)", rest):
                rest, v = f"linear_c{int(m[1]) + 1}.proj.{m[2]}", v.flatten(1) if v.ndim == 4 else v
            else:
                module, param = rest.split(".")
                rest = {"fuse_norm": "linear_fuse.bn", "fuse": "linear_fuse.conv", "classifier": "linear_pred"}[module] \
                    + "." + param
            out["decode_head." + rest] = v
            continue
        if rest.startswith("patch_embed."):
            rest = f"patch_embed{s + 1}." + rest[len("patch_embed."):]
        elif rest.startswith("blocks."):
            rest = f"block{s + 1}." + rest[len("blocks."):].replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        else:
            rest = f"norm{s + 1}." + rest[len("norm."):]
        out[("backbone." if full else "") + rest] = v
    if full:  # the original head also carries mmseg's unused conv_seg
        k = out["decode_head.linear_pred.weight"].shape[0]
        out["decode_head.conv_seg.weight"], out["decode_head.conv_seg.bias"] = torch.randn(k, 256, 1, 1), torch.randn(k)
        return {"state_dict": out, "meta": {"CLASSES": ("wall", "building"), "iter": 160000}}
    out["head.weight"], out["head.bias"] = torch.randn(1000, sd["backbone.stages.3.norm.weight"].shape[0]), torch.randn(1000)
    return out


HF_BLOCK = [("norm1.", "layer_norm_1."), ("norm2.", "layer_norm_2."), ("attn.q.", "attention.self.query."),
            ("attn.sr.", "attention.self.sr."), ("attn.norm.", "attention.self.layer_norm."),
            ("attn.proj.", "attention.output.dense."), ("mlp.fc1.", "mlp.dense1."),
            ("mlp.fc2.", "mlp.dense2."), ("mlp.dwconv.", "mlp.dwconv.dwconv.")]


def to_hf(sd, prefix="segformer."):
    """transformers v4 names (SegformerForImageClassification when prefix='segformer.')."""
    out = {}
    for s, rest, v in ours(sd):
        if s == "head":
            continue
        if rest.startswith("patch_embed."):
            out[f"{prefix}encoder.patch_embeddings.{s}." + rest[12:].replace("norm.", "layer_norm.")] = v
        elif rest.startswith("norm."):
            out[f"{prefix}encoder.layer_norm.{s}." + rest[5:]] = v
        else:
            j, inner = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest).groups()
            base = f"{prefix}encoder.block.{s}.{j}."
            if inner.startswith("attn.kv."):
                c = v.shape[0] // 2
                out[base + "attention.self.key." + inner[8:]] = v[:c]
                out[base + "attention.self.value." + inner[8:]] = v[c:]
                continue
            for a, b in HF_BLOCK:
                if inner.startswith(a):
                    inner = b + inner[len(a):]
                    break
            out[base + inner] = v
    if prefix:  # SegformerForImageClassification's ImageNet head
        c = sd["backbone.stages.3.norm.weight"].shape[0]
        out["classifier.weight"], out["classifier.bias"] = torch.randn(1000, c), torch.randn(1000)
    return out


def to_openmmlab(sd, prefix="backbone."):
    out = {}
    for s, rest, v in ours(sd):
        if s == "head":
            continue
        if rest.startswith("patch_embed."):
            out[f"{prefix}layers.{s}.0." + rest[12:].replace("proj.", "projection.")] = v
        elif rest.startswith("norm."):
            out[f"{prefix}layers.{s}.2." + rest[5:]] = v
        else:
            j, inner = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest).groups()
            base = f"{prefix}layers.{s}.1.{j}."
            if inner.startswith("attn.q."):
                kv = sd[f"backbone.stages.{s}.blocks.{j}.attn.kv.{inner[7:]}"]
                out[base + f"attn.attn.in_proj_{inner[7:]}"] = torch.cat([v, kv])
            elif inner.startswith("attn.kv."):
                continue
            elif inner.startswith("attn.proj."):
                out[base + "attn.attn.out_proj." + inner[10:]] = v
            elif inner.startswith("mlp."):
                idx = {"fc1": 0, "dwconv": 1, "fc2": 4}[inner.split(".")[1]]
                out[base + f"ffn.layers.{idx}." + inner.split(".")[2]] = v[:, :, None, None] if v.ndim == 2 else v
            else:
                out[base + inner] = v
    # an mmseg Segformer checkpoint also has mmseg's own head, which we leave out
    out["decode_head.convs.0.conv.weight"] = torch.randn(256, 32, 1, 1)
    out["decode_head.conv_seg.weight"] = torch.randn(19, 256, 1, 1)
    return {"meta": {"CLASSES": ("a", "b")}, "state_dict": out}


# --- round trips ---------------------------------------------------------------------------------

def test_nvlabs_full_segformer_loads_encoder_and_head(tmp_path):
    src = randomized("segformer-b0", num_classes=150)
    torch.save(to_nvlabs(src.state_dict(), full=True), tmp_path / "segformer.b0.512x512.ade.160k.pth")
    model = segadapter.create_model("segformer-b0", num_classes=150,
                                    pretrained=tmp_path / "segformer.b0.512x512.ade.160k.pth").eval()
    assert_same(model, src)
    assert_same_outputs(model, src)
    report = model.load_report
    assert report.layout == "nvlabs" and report.fresh == []
    assert sorted(report.ignored) == ["decode_head.conv_seg.bias", "decode_head.conv_seg.weight"]
    assert "nvlabs layout" in str(report)


@pytest.mark.parametrize("name", ["segformer-b0", "adapt-mit-b0", "semask-mit-b0"])
def test_nvlabs_encoder_into_any_mit_model(tmp_path, name):
    src = randomized("segformer-b0")
    torch.save(to_nvlabs(src.state_dict(), full=False), tmp_path / "mit_b0.pth")
    model = segadapter.create_model(name, num_classes=7, pretrained=tmp_path / "mit_b0.pth").eval()
    assert_same(model, src, "backbone.")
    assert_same_outputs(model, src, backbone_only=True)
    report = model.load_report
    assert report.fresh == sorted(k for k in model.state_dict() if not k.startswith("backbone."))
    assert {k.split(".")[0] for k in report.fresh} == ({"decode_head"} if name == "segformer-b0"
                                                        else {"decode_head", "adapters"})
    assert sorted(report.ignored) == ["head.bias", "head.weight"]
    assert "freshly initialised" in str(report)


def test_full_segformer_into_adapter_model_keeps_only_the_encoder(tmp_path):
    src = randomized("segformer-b0", num_classes=19)
    torch.save(to_nvlabs(src.state_dict(), full=True), tmp_path / "full.pth")
    model = segadapter.create_model("adapt-mit-b0", num_classes=19, pretrained=tmp_path / "full.pth")
    assert_same(model, src, "backbone.")
    assert all(k.startswith(("decode_head.", "adapters.")) for k in model.load_report.fresh)
    assert "decode_head.linear_fuse.conv.weight" in model.load_report.ignored


@pytest.mark.parametrize("fmt", ["folder", "bin", "safetensors", "segformer-model"])
def test_huggingface_encoder(tmp_path, fmt):
    src = randomized("segformer-b0")
    sd = to_hf(src.state_dict(), prefix="" if fmt == "segformer-model" else "segformer.")
    if fmt in ("folder", "segformer-model"):
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "segformer"}))
        save_file(sd, str(tmp_path / "model.safetensors"))
        path = tmp_path
    elif fmt == "bin":
        torch.save(sd, path := tmp_path / "pytorch_model.bin")
    else:
        save_file(sd, str(path := tmp_path / "mit-b0.safetensors"))
    model = segadapter.create_model("adapt-mit-b0", num_classes=19, pretrained=path).eval()
    assert model.load_report.layout == "huggingface"
    assert_same(model, src, "backbone.")
    assert_same_outputs(model, src, backbone_only=True)
    assert all(k.startswith(("decode_head.", "adapters.")) for k in model.load_report.fresh)


def test_huggingface_sharded_folder(tmp_path):
    src = randomized("segformer-b0")
    sd = to_hf(src.state_dict())
    keys = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, str(tmp_path / name))
    index = {"weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text("{}")
    model = segadapter.create_model("segformer-b0", num_classes=19, pretrained=tmp_path)
    assert_same(model, src, "backbone.")


@pytest.mark.parametrize("prefix", ["backbone.", ""])
def test_openmmlab_encoder(tmp_path, prefix):
    src = randomized("segformer-b0")
    torch.save(to_openmmlab(src.state_dict(), prefix), tmp_path / "mit_b0_20220624-7e0fe6dd.pth")
    model = segadapter.create_model("semask-mit-b0", num_classes=19,
                                    pretrained=tmp_path / "mit_b0_20220624-7e0fe6dd.pth").eval()
    assert model.load_report.layout == "openmmlab"
    assert_same(model, src, "backbone.")
    assert_same_outputs(model, src, backbone_only=True)
    assert set(model.load_report.ignored) == {"decode_head.convs.0.conv.weight", "decode_head.conv_seg.weight"}


def test_our_own_state_dict_in_a_loose_file(tmp_path):
    src = randomized("adapt-mit-b0", num_classes=5)
    torch.save(src.state_dict(), tmp_path / "whole.pt")
    model = segadapter.create_model("adapt-mit-b0", num_classes=5, pretrained=tmp_path / "whole.pt").eval()
    assert_same(model, src)
    assert_same_outputs(model, src)
    assert model.load_report.fresh == []
    save_file(src.backbone.state_dict(), str(tmp_path / "backbone.safetensors"))
    model = segadapter.create_model("segformer-b0", num_classes=5, pretrained=tmp_path / "backbone.safetensors")
    assert_same(model, src, "backbone.")
    assert {k.split(".")[0] for k in model.load_report.fresh} == {"decode_head"}


# --- readable errors -----------------------------------------------------------------------------

def test_b1_weights_into_b0_model(tmp_path):
    torch.save(to_nvlabs(randomized("segformer-b1").state_dict(), full=False), tmp_path / "mit_b1.pth")
    with pytest.raises(CheckpointError) as e:
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "mit_b1.pth")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'mit_b1.pth'}: holds a MiT/Segformer encoder with widths (64, 128, 320, 512)")
    assert "(MiT-B1)" in msg and "(MiT-B0)" in msg and "segformer-b0" in msg
    assert "shape mismatch (" in msg and "backbone.stages.0.blocks.0.attn.kv.weight: checkpoint (128, 64) vs model (64, 32)" in msg


def test_class_count_mismatch(tmp_path):
    torch.save(to_nvlabs(randomized("segformer-b0", num_classes=150).state_dict(), full=True), tmp_path / "ade.pth")
    with pytest.raises(CheckpointError, match=r"predicts 150 classes.*num_classes=19"):
        segadapter.create_model("segformer-b0", num_classes=19, pretrained=tmp_path / "ade.pth")


def test_missing_tensor_is_named(tmp_path):
    sd = to_nvlabs(randomized("segformer-b0").state_dict(), full=False)
    del sd["block2.1.attn.kv.weight"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"missing \(1\): backbone\.stages\.1\.blocks\.1\.attn\.kv\.weight"):
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "cut.pth")


def test_unknown_layout_names_the_file_and_keys(tmp_path):
    torch.save({"encoder.foo.weight": torch.zeros(2)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError) as e:
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "odd.pth")
    assert "odd.pth" in str(e.value) and "encoder.foo.weight" in str(e.value) and "nvlabs" in str(e.value)


def test_pickled_objects_are_refused(tmp_path):
    sd = to_nvlabs(randomized("segformer-b0").state_dict(), full=False)
    torch.save({"state_dict": sd, "cfg": argparse.Namespace(lr=0.1)}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace\) and cannot be loaded safely"):
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "unsafe.pth")


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth: cannot read"):
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "nope.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model weights"):
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "empty")
