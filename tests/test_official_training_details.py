"""Training details that follow the official code rather than timm / NVlabs defaults:

- SegViT (mmseg 0.24 ViT): stochastic depth on the FFN branch only, never on the attention branch
  (`drop_path_mode="ffn"`); `"both"` is timm's, and stays the default of a bare `vit(...)`.
- SegDeformer on MiT (mmseg MiT): LayerNorm eps 1e-6 in every norm (`norm_eps=1e-6`); Segformer
  keeps the NVlabs mix (1e-5 in the patch-embedding and spatial-reduction norms).
Neither changes a parameter or a FLOP, and both options survive save / load."""
import pytest
import torch
from torch import nn

import segadapter
from segadapter.errors import ConfigError
from segadapter.modeling.backbones.vit import ViT, ViTSpec, vit
from segadapter.modeling.models.segvit import SEGVIT_VARIANTS

SPEC = ViTSpec(64, 4, 4)


def _attention_only(m: nn.Module) -> nn.Module:
    """Zero every block's MLP output, so only the attention branch can change the tokens."""
    with torch.no_grad():
        for blk in m.blocks:
            blk.mlp.fc2.weight.zero_()
            blk.mlp.fc2.bias.zero_()
    return m.train()


def _stochastic(m: nn.Module, x: torch.Tensor, calls: int = 4) -> bool:
    with torch.no_grad():
        outs = [m(x)[-1] for _ in range(calls)]
    return not all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("shrink_index", [None, 2])
def test_ffn_mode_never_drops_the_attention_branch(shrink_index):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 64, 64)
    taps = (1, 3) if shrink_index else (3,)
    ffn = _attention_only(ViT(SPEC, img_size=64, out_indices=taps, shrink_index=shrink_index,
                              drop_path_rate=0.9, drop_path_mode="ffn"))
    both = _attention_only(ViT(SPEC, img_size=64, out_indices=taps, shrink_index=shrink_index,
                               drop_path_rate=0.9, drop_path_mode="both"))
    assert not _stochastic(ffn, x)  # train mode, dropout 0: the attention branch is always kept
    assert _stochastic(both, x)
    # the FFN branch is still dropped in "ffn" mode
    with torch.no_grad():
        for blk in ffn.blocks:
            blk.mlp.fc2.bias.fill_(1.0)
    assert _stochastic(ffn, x)


def test_segvit_models_default_to_mmseg_and_bare_vit_to_timm():
    with torch.device("meta"):
        for name in SEGVIT_VARIANTS:
            backbone = segadapter.create_model(name, num_classes=3).backbone
            assert backbone.drop_path_mode == "ffn", name
            assert all(b.drop_path_mode == "ffn" for b in backbone.blocks), name
        assert segadapter.create_model("segvit-vit-b", num_classes=3,
                                       drop_path_mode="both").backbone.drop_path_mode == "both"
        assert vit("t").drop_path_mode == "both"  # other users of the ViT keep timm's behaviour
    torch.manual_seed(0)
    model = _attention_only(segadapter.create_model("segvit-vit-t", num_classes=3, img_size=32,
                                                    drop_path_rate=0.9).backbone)
    assert not _stochastic(model, torch.randn(8, 3, 32, 32))
    with pytest.raises(ConfigError, match="drop_path_mode"):
        ViT(SPEC, drop_path_mode="attn")


def _norm_eps(model: nn.Module) -> dict[str, float]:
    return {n: m.eps for n, m in model.backbone.named_modules() if isinstance(m, nn.LayerNorm)}


def test_segdeformer_mit_uses_mmseg_eps_in_every_norm():
    with torch.device("meta"):
        eps = _norm_eps(segadapter.create_model("segdeformer-mit-b0", num_classes=3))
    assert len(eps) == 4 * 2 + 8 * 2 + 6  # 4 x (patch-embed, stage end), 8 blocks x 2, 6 sr norms
    assert set(eps.values()) == {1e-6}


@pytest.mark.parametrize("name,options", [("segformer-b0", {}), ("adapt-mit-b0", {}), ("semask-mit-b0", {}),
                                          ("segdeformer-mit-b0", {"norm_eps": None})])
def test_nvlabs_eps_mix_where_it_was(name, options):
    """NVlabs: torch's default 1e-5 in the patch-embedding and sr norms, 1e-6 in the blocks and
    at the end of each stage."""
    with torch.device("meta"):
        eps = _norm_eps(segadapter.create_model(name, num_classes=3, **options))
    for n, e in eps.items():
        if not n.startswith("stages."):
            continue  # adapter / SeMask layers are not the MiT's
        default = n.endswith("patch_embed.norm") or n.endswith("attn.norm")
        assert e == (1e-5 if default else 1e-6), n


def test_norm_eps_is_a_mit_option_only():
    with pytest.raises(ConfigError, match="norm_eps"):
        segadapter.create_model("segdeformer-convnext-t", num_classes=3, norm_eps=1e-6)


@pytest.mark.parametrize("name,options,check", [
    ("segvit-vit-t", {"img_size": 32, "drop_path_mode": "both"}, lambda m: m.backbone.drop_path_mode == "both"),
    ("segdeformer-mit-b0", {"norm_eps": None}, lambda m: _norm_eps(m)["stages.0.patch_embed.norm"] == 1e-5),
    ("segdeformer-mit-b0", {"norm_eps": 1e-5}, lambda m: set(_norm_eps(m).values()) == {1e-5}),
])
def test_options_round_trip_through_save_pretrained(tmp_path, name, options, check):
    model = segadapter.create_model(name, num_classes=3, **options)
    assert model.config["options"] == options and check(model)
    model.save_pretrained(tmp_path)
    again = segadapter.from_pretrained(tmp_path)
    assert again.config["options"] == options and check(again)


@pytest.mark.parametrize("name,a,b", [
    ("segvit-vit-t", {"drop_path_mode": "ffn"}, {"drop_path_mode": "both"}),
    ("segvit-shrunk-vit-b", {}, {"drop_path_mode": "both"}),
    ("segdeformer-mit-b0", {}, {"norm_eps": None}),
])
def test_parameters_and_flops_unchanged(name, a, b):
    from segadapter.analysis.flops import complexity_of  # what `segadapter flops` prints

    assert complexity_of(name, 150, (128, 128), **a) == complexity_of(name, 150, (128, 128), **b)
