"""Parameter groups on real models: lr multipliers, no-decay membership, ConvNeXt layer decay."""
from __future__ import annotations

import pytest
import torch

import segadapter
from segadapter.engine import build_optimizer, param_groups
from segadapter.engine.config import OptimConfig
from segadapter.errors import ConfigError


def group_of(groups):
    """parameter name -> its group."""
    return {name: g for g in groups for name in g["names"]}


def norm_param_names(model):
    return {f"{mod_name}.{p_name}" if mod_name else p_name
            for mod_name, m in model.named_modules() if "Norm" in type(m).__name__
            for p_name, _ in m.named_parameters(recurse=False)}


@pytest.fixture(scope="module")
def adapt_mit():
    return segadapter.create_model("adapt-mit-b0", num_classes=5)


def test_mit_groups_multipliers_and_decay(adapt_mit):
    model = adapt_mit
    model.backbone.register_parameter("pos_embed", torch.nn.Parameter(torch.zeros(4)))  # position-like
    try:
        cfg = OptimConfig(lr=6e-5, weight_decay=0.01)
        groups = param_groups(model, cfg)
        by_name = group_of(groups)
    finally:
        del model.backbone.pos_embed
    names = [n for n, _ in model.named_parameters()] + ["backbone.pos_embed"]
    assert sorted(by_name) == sorted(names)  # every parameter exactly once
    norms = norm_param_names(model)
    assert any(".norm." in n for n in norms) and "decode_head.fuse_norm.weight" in norms  # LN, LN2d, BN
    for name, g in by_name.items():
        mult = 10.0 if name.startswith("decode_head.") else 7.0 if name.startswith("adapters.") else 1.0
        assert g["lr"] == pytest.approx(6e-5 * mult), name
        no_decay = name in norms or "pos" in name
        assert g["weight_decay"] == (0.0 if no_decay else 0.01), name
    assert by_name["backbone.pos_embed"]["weight_decay"] == 0.0
    assert by_name["adapters.0.blocks.0.mu"]["weight_decay"] == 0.01  # mu is neither a norm nor pos-like
    assert by_name["adapters.0.blocks.0.mu"]["lr"] == pytest.approx(7 * 6e-5)
    assert len(groups) == 6  # {x1, x10, x7} lr x {decay, no decay}


def test_frozen_parameters_are_left_out(adapt_mit):
    adapt_mit.backbone.stages[0].requires_grad_(False)
    try:
        names = set(group_of(param_groups(adapt_mit, OptimConfig())))
    finally:
        adapt_mit.backbone.stages[0].requires_grad_(True)
    assert not any(n.startswith("backbone.stages.0.") for n in names)


def test_optimizer_uses_group_values(adapt_mit):
    opt = build_optimizer(adapt_mit, OptimConfig(lr=1e-4, betas=(0.8, 0.95), weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW)
    assert sorted({round(g["lr"], 12) for g in opt.param_groups}) == sorted({1e-4, 1e-3, 7e-4})
    assert all(g["betas"] == (0.8, 0.95) for g in opt.param_groups)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.05}


def test_convnext_layer_decay():
    model = segadapter.create_model("adapt-convnext-t", num_classes=3)
    by_name = group_of(param_groups(model, OptimConfig(lr=1.0, layer_decay=0.9)))
    # ConvNeXt-T: 6 backbone depths (stage 2's 9 blocks in threes), everything else at 7 (scale 1).
    expected = {
        "backbone.downsample_layers.0.0.weight": 0.9 ** 7,
        "backbone.stages.0.2.pwconv1.weight": 0.9 ** 6,
        "backbone.downsample_layers.1.1.weight": 0.9 ** 5,
        "backbone.stages.1.0.dwconv.weight": 0.9 ** 5,
        "backbone.downsample_layers.2.1.weight": 0.9 ** 4,
        "backbone.stages.2.0.pwconv2.weight": 0.9 ** 4,
        "backbone.stages.2.4.pwconv2.weight": 0.9 ** 3,
        "backbone.stages.2.8.gamma": 0.9 ** 2,
        "backbone.downsample_layers.3.1.weight": 0.9 ** 1,
        "backbone.stages.3.2.pwconv1.weight": 0.9 ** 1,
        "backbone.out_norms.3.weight": 1.0,
        "decode_head.classifier.weight": 10.0,
    }
    for name, scale in expected.items():
        assert by_name[name]["lr"] == pytest.approx(scale), name
    adapter = [n for n in by_name if n.startswith("adapters.")]
    assert adapter and all(by_name[n]["lr"] == pytest.approx(7.0) for n in adapter)
    assert by_name["backbone.stages.1.0.norm.weight"]["weight_decay"] == 0.0  # decay rule still applies
    assert by_name["backbone.stages.1.0.norm.weight"]["lr"] == pytest.approx(0.9 ** 5)


def test_convnext_s_has_twelve_depths():
    model = segadapter.create_model("convnext-s", num_classes=3)
    by_name = group_of(param_groups(model, OptimConfig(lr=1.0, layer_decay=0.9)))
    assert by_name["backbone.downsample_layers.0.0.weight"]["lr"] == pytest.approx(0.9 ** 13)
    assert by_name["backbone.stages.2.26.pwconv1.weight"]["lr"] == pytest.approx(0.9 ** 2)
    assert by_name["backbone.stages.3.0.pwconv1.weight"]["lr"] == pytest.approx(0.9)


def test_layer_decay_needs_convnext(adapt_mit):
    with pytest.raises(ConfigError, match="layer_decay"):
        param_groups(adapt_mit, OptimConfig(layer_decay=0.9))
