"""ConvNeXt published layouts: write our random weights in each layout (the inverse mapping is
written here, independently of the converter), load them back, compare."""
import functools
import json
import re

import pytest
import torch
from safetensors.torch import save_file

import segadapter
from segadapter import CheckpointError

X = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))  # small: 7x7 dwconvs are slow on CPU


@functools.cache  # shared by the tests, which only read it
def source():
    """convnext-t with every tensor perturbed (layer scales, norms included)."""
    torch.manual_seed(0)
    model = segadapter.create_model("convnext-t", num_classes=19).eval()
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point() and not k.endswith("running_var"):
                t.add_(torch.randn_like(t) * 0.05)
    return model


@torch.no_grad()
def stage_maps(model):
    """Un-normalised maps flowing between stages, then the normalised outputs to the head."""
    x, flow = X, []
    for i in range(4):
        x = model.backbone.stage_forward(i, x)
        flow.append(x)
    return flow, [model.backbone.stage_output(i, f) for i, f in enumerate(flow)]


reference_maps = functools.cache(stage_maps)


def check_loaded(model, with_out_norms):
    src, dst = source().state_dict(), model.state_dict()
    keys = [k for k in src if k.startswith("backbone.") and (with_out_norms or ".out_norms." not in k)]
    for k in keys:
        assert torch.equal(dst[k], src[k]), k
    (flow, outs), (ref_flow, ref_outs) = stage_maps(model.eval()), reference_maps(source())
    assert all(torch.equal(a, b) for a, b in zip(flow, ref_flow, strict=True))
    if with_out_norms:
        assert all(torch.equal(a, b) for a, b in zip(outs, ref_outs, strict=True))


def ours():
    """(original key without 'backbone.', tensor) for the backbone of the source model."""
    return [(k[len("backbone."):], v) for k, v in source().state_dict().items() if k.startswith("backbone.")]


def out_norm_index(k):
    m = re.fullmatch(r"out_norms\.(\d)\.(\w+)", k)
    return (int(m[1]), m[2]) if m else None


# --- inverse mappings: our names -> each published layout --------------------------------------

def to_facebook(segmentation):
    out = {}
    for k, v in ours():
        if idx := out_norm_index(k):
            if segmentation:  # mmseg-style backbone keeps its output norms as norm{i}
                out[f"norm{idx[0]}.{idx[1]}"] = v
            continue
        out[k] = v
    if segmentation:
        out = {"backbone." + k: v for k, v in out.items()}
        out["decode_head.psp_modules.0.1.conv.weight"] = torch.randn(512, 768, 1, 1)
        out["auxiliary_head.conv_seg.weight"] = torch.randn(150, 256, 1, 1)
        return {"meta": {"iter": 160000}, "state_dict": out}
    out["norm.weight"], out["norm.bias"] = torch.randn(768), torch.randn(768)
    out["head.weight"], out["head.bias"] = torch.randn(1000, 768), torch.randn(1000)
    return {"model": out}


def to_timm(conv_mlp=False):
    out = {"head.norm.weight": torch.randn(768), "head.fc.weight": torch.randn(1000, 768)}
    for k, v in ours():
        if out_norm_index(k):
            continue
        if m := re.fullmatch(r"downsample_layers\.(\d)\.([01])\.(\w+)", k):
            i, j, p = m.groups()
            out[f"stem.{j}.{p}" if i == "0" else f"stages.{i}.downsample.{j}.{p}"] = v
        else:
            i, j, rest = re.fullmatch(r"stages\.(\d)\.(\d+)\.(.+)", k).groups()
            for a, b in (("dwconv", "conv_dw"), ("pwconv1", "mlp.fc1"), ("pwconv2", "mlp.fc2")):
                rest = rest.replace(a, b)
            if conv_mlp and rest.startswith("mlp.") and rest.endswith("weight"):
                v = v[:, :, None, None]
            out[f"stages.{i}.blocks.{j}.{rest}"] = v
    return out


def to_huggingface():
    out = {"convnext.layernorm.weight": torch.randn(768), "classifier.weight": torch.randn(1000, 768)}
    for k, v in ours():
        if out_norm_index(k):
            continue
        if m := re.fullmatch(r"downsample_layers\.(\d)\.([01])\.(\w+)", k):
            i, j, p = m.groups()
            if i == "0":
                out[f"convnext.embeddings.{['patch_embeddings', 'layernorm'][int(j)]}.{p}"] = v
            else:
                out[f"convnext.encoder.stages.{i}.downsampling_layer.{j}.{p}"] = v
        else:
            i, j, rest = re.fullmatch(r"stages\.(\d)\.(\d+)\.(.+)", k).groups()
            rest = "layer_scale_parameter" if rest == "gamma" else rest.replace("norm.", "layernorm.")
            out[f"convnext.encoder.stages.{i}.layers.{j}.{rest}"] = v
    return out


def to_mmpretrain(linear_pw=True):
    out = {"head.fc.weight": torch.randn(1000, 768), "head.fc.bias": torch.randn(1000)}
    for k, v in ours():
        if idx := out_norm_index(k):
            if idx[0] == 3:  # the classifier's final norm, kept by mmpretrain as norm3
                out[f"backbone.norm3.{idx[1]}"] = v
            continue
        if k.startswith("stages."):
            for a, b in (("dwconv", "depthwise_conv"), ("pwconv", "pointwise_conv")):
                k = k.replace(a, b)
            if not linear_pw and "pointwise_conv" in k and k.endswith("weight"):
                v = v[:, :, None, None]
        out["backbone." + k] = v
    return {"meta": {"dataset_meta": {"classes": ["tench", "goldfish"]}}, "state_dict": out}


# --- round trips ---------------------------------------------------------------------------------

def test_facebook_classification_weights(tmp_path):
    torch.save(to_facebook(segmentation=False), tmp_path / "convnext_tiny_1k_224_ema.pth")
    model = segadapter.create_model("convnext-t", num_classes=19, pretrained=tmp_path / "convnext_tiny_1k_224_ema.pth")
    check_loaded(model, with_out_norms=False)
    report = model.load_report
    assert report.layout == "facebook"
    assert sorted(report.ignored) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in report.fresh} == {"backbone.out_norms", "decode_head.proj",
                                                                               "decode_head.fuse", "decode_head.fuse_norm",
                                                                               "decode_head.classifier"}


def test_facebook_segmentation_backbone_keeps_output_norms(tmp_path):
    torch.save(to_facebook(segmentation=True), tmp_path / "upernet_convnext_tiny_512_160k_ade20k.pth")
    model = segadapter.create_model("adapt-convnext-t", num_classes=19,
                                    pretrained=tmp_path / "upernet_convnext_tiny_512_160k_ade20k.pth")
    check_loaded(model, with_out_norms=True)
    assert {k.split(".")[0] for k in model.load_report.fresh} == {"decode_head", "adapters"}
    assert sorted(model.load_report.ignored) == ["auxiliary_head.conv_seg.weight", "decode_head.psp_modules.0.1.conv.weight"]


@pytest.mark.parametrize("conv_mlp", [False, True])
def test_timm(tmp_path, conv_mlp):
    save_file(to_timm(conv_mlp), str(tmp_path / "model.safetensors"))
    model = segadapter.create_model("convnext-t", num_classes=19, pretrained=tmp_path / "model.safetensors")
    assert model.load_report.layout == "timm"
    check_loaded(model, with_out_norms=False)
    assert sorted(model.load_report.ignored) == ["head.fc.weight", "head.norm.weight"]


def test_huggingface_folder(tmp_path):
    save_file(to_huggingface(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "convnext"}))
    model = segadapter.create_model("adapt-convnext-t", num_classes=19, pretrained=tmp_path)
    assert model.load_report.layout == "huggingface"
    check_loaded(model, with_out_norms=False)
    assert sorted(model.load_report.ignored) == ["classifier.weight", "convnext.layernorm.weight"]


@pytest.mark.parametrize("linear_pw", [True, False])
def test_mmpretrain(tmp_path, linear_pw):
    torch.save(to_mmpretrain(linear_pw), tmp_path / "convnext-tiny_3rdparty_32xb128-noema_in1k.pth")
    model = segadapter.create_model("adapt-convnext-t", num_classes=19,
                                    pretrained=tmp_path / "convnext-tiny_3rdparty_32xb128-noema_in1k.pth")
    assert model.load_report.layout == "mmpretrain"
    check_loaded(model, with_out_norms=False)
    dst = model.state_dict()
    assert torch.equal(dst["backbone.out_norms.3.weight"], source().state_dict()["backbone.out_norms.3.weight"])
    fresh_norms = {k for k in model.load_report.fresh if ".out_norms." in k}
    assert fresh_norms == {f"backbone.out_norms.{i}.{p}" for i in range(3) for p in ("weight", "bias")}


def test_our_own_file_is_strict_about_out_norms(tmp_path):
    torch.save(source().state_dict(), tmp_path / "ours.pth")
    model = segadapter.create_model("convnext-t", num_classes=19, pretrained=tmp_path / "ours.pth").eval()
    assert model.load_report.layout == "segadapter" and model.load_report.fresh == []
    assert torch.equal(model(X), source()(X))


# --- readable errors -----------------------------------------------------------------------------

def test_tiny_weights_into_small_model(tmp_path):
    torch.save(to_facebook(segmentation=False), tmp_path / "t.pth")
    with pytest.raises(CheckpointError) as e:
        segadapter.create_model("convnext-s", pretrained=tmp_path / "t.pth")
    assert "(ConvNeXt-T)" in str(e.value) and "(ConvNeXt-S)" in str(e.value) and "missing (" in str(e.value)


def test_wrong_family(tmp_path):
    torch.save(to_facebook(segmentation=False), tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match=r"t\.pth: this is a ConvNeXt checkpoint \(facebook layout\), "
                                              r"but segformer-b0 has a MiT/Segformer backbone"):
        segadapter.create_model("segformer-b0", pretrained=tmp_path / "t.pth")
    save_file({"segformer.encoder.patch_embeddings.0.proj.weight": torch.zeros(32, 3, 7, 7)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match=r"MiT/Segformer checkpoint \(huggingface layout\).*ConvNeXt backbone"):
        segadapter.create_model("convnext-t", pretrained=tmp_path / "m.safetensors")
