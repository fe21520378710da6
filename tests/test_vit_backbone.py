"""The in-tree ViT against Hugging Face transformers' ViTModel (same weights, saved by transformers
itself), the class-token drop, position-embedding resampling, the Shrunk QD block, and the
backbone contract."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segadapter.errors import ConfigError
from segadapter.modeling.weights import vit as weights_vit
from segadapter.modeling.backbones.vit import ViT, ViTSpec, vit
from segadapter.modeling.weights.io import read_checkpoint

transformers = pytest.importorskip("transformers")

SPEC = ViTSpec(64, 4, 4)
TAPS = (0, 1, 2, 3)


def hf_vit(image_size=64):
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                    intermediate_size=256, image_size=image_size, patch_size=16,
                                    layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu")
    model = transformers.ViTModel(config, add_pooling_layer=False)
    torch.manual_seed(0)
    with torch.no_grad():  # HF init leaves biases 0 and norms 1: randomise everything
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


class Holder(nn.Module):
    """A model with a `backbone`, as the weight converters expect."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def load(backbone, path):
    state = read_checkpoint(path)
    layout = weights_vit.detect_layout(state)
    converted, ignored = weights_vit.convert(state, layout)
    holder = Holder(backbone)
    removed, notes = weights_vit.fit(converted, holder)
    holder.load_state_dict(converted, strict=True)
    return layout, ignored, notes


def our_tokens(model, x):
    """Token sequences (cls first when kept) after every tapped block, via the stage contract."""
    outs, flow = [], x
    for i in range(len(model.out_indices)):
        flow = model.stage_forward(i, flow)
        grid, cls = flow if isinstance(flow, tuple) else (flow, None)
        assert torch.equal(model.stage_output(i, flow), grid)
        t = grid.flatten(2).transpose(1, 2)
        outs.append(t if cls is None else torch.cat([cls, t], 1))
    return outs


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_vit")
    hf_vit().save_pretrained(d)
    return d


def test_hidden_states_match_transformers(hf_dir):
    hf = transformers.ViTModel.from_pretrained(hf_dir, add_pooling_layer=False).eval()
    ours = ViT(SPEC, img_size=64, out_indices=TAPS, keep_cls_token=True).eval()
    layout, ignored, notes = load(ours, hf_dir)
    assert layout == "huggingface" and "layernorm.weight" in ignored and notes == []
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True).hidden_states
        got = our_tokens(ours, x)
    for i, tap in enumerate(TAPS):
        assert (got[i] - ref[tap + 1]).abs().max() <= 1e-4


def test_other_input_size_resamples_like_transformers(hf_dir):
    hf = transformers.ViTModel.from_pretrained(hf_dir, add_pooling_layer=False).eval()
    ours = ViT(SPEC, img_size=64, out_indices=TAPS, keep_cls_token=True).eval()
    load(ours, hf_dir)
    x = torch.randn(1, 3, 96, 128)  # 6 x 8 grid from a 4 x 4 position embedding
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states
        got = our_tokens(ours, x)
    assert (got[-1] - ref[-1]).abs().max() <= 1e-4


def test_class_token_dropped_after_position_embedding(hf_dir):
    """Without the class token, the blocks see the patch tokens + their position embedding only:
    run transformers' own embedding and layers on that sequence as the reference."""
    hf = transformers.ViTModel.from_pretrained(hf_dir, add_pooling_layer=False).eval()
    ours = ViT(SPEC, img_size=64, out_indices=TAPS).eval()
    _, _, notes = load(ours, hf_dir)
    assert not hasattr(ours, "cls_token") and any("class token" in n for n in notes)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        h = hf.embeddings(x)[:, 1:]
        layers = getattr(hf, "layers", None) or hf.encoder.layer
        ref = []
        for layer in layers:
            h = layer(h)
            h = h[0] if isinstance(h, tuple) else h
            ref.append(h)
        got = our_tokens(ours, x)
    for i in range(4):
        assert (got[i] - ref[i]).abs().max() <= 1e-4


def test_shrunk_qd_block_against_multihead_attention():
    """QD: queries = the map subsampled ::2, keys/values = every token, norm1 on both, residual =
    subsampled x (torch's nn.MultiheadAttention with our weights as the reference)."""
    torch.manual_seed(0)
    m = ViT(SPEC, img_size=64, out_indices=(1, 3), shrink_index=2).eval()
    with torch.no_grad():  # norms and biases away from 1 / 0, so that swapping them shows
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    assert m.out_strides == (16, 32)
    x = torch.randn(1, 3, 96, 80)  # 6 x 5 grid -> 3 x 3 after QD
    with torch.no_grad():
        f16 = m.stage_forward(0, x)
        f32 = m.stage_forward(1, f16)
        blk = m.blocks[2]
        mha = nn.MultiheadAttention(64, 4, batch_first=True).eval()
        mha.in_proj_weight.copy_(blk.attn.qkv.weight)
        mha.in_proj_bias.copy_(blk.attn.qkv.bias)
        mha.out_proj.load_state_dict(blk.attn.proj.state_dict())
        t = f16.flatten(2).transpose(1, 2)
        sub = f16[:, :, ::2, ::2].flatten(2).transpose(1, 2)
        y = sub + mha(blk.norm1(sub), blk.norm1(t), blk.norm1(t), need_weights=False)[0]
        y = y + blk.mlp(blk.norm2(y))
        y = m.blocks[3](y, (3, 3), 0)[0]
    assert f32.shape == (1, 64, 3, 3)
    torch.testing.assert_close(f32.flatten(2).transpose(1, 2), y, atol=1e-5, rtol=1e-5)


def test_input_padded_to_patch_multiple():
    m = ViT(SPEC, img_size=64, out_indices=(3,)).eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        a = m(x)[0]
        b = m(F.pad(x, (0, 6, 0, 10)))[0]
    assert a.shape == (1, 64, 5, 6)
    torch.testing.assert_close(a, b)


def test_contract_and_gradients():
    m = ViT(SPEC, img_size=64, out_indices=(1, 3), keep_cls_token=True, drop_path_rate=0.2).train()
    assert m.out_channels == (64, 64) and m.out_strides == (16, 16)
    outs = m(torch.randn(2, 3, 64, 48))
    assert [o.shape for o in outs] == [(2, 64, 4, 3)] * 2
    sum(o.square().mean() for o in outs).backward()
    assert [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []


def test_layer_id_and_no_weight_decay():
    m = ViT(SPEC, img_size=64, out_indices=(3,))
    assert m.layer_id("pos_embed") == (0, 5)
    assert m.layer_id("patch_embed.proj.weight") == (0, 5)
    assert m.layer_id("blocks.2.mlp.fc1.weight") == (3, 5)
    assert m.no_weight_decay() == {"pos_embed"}


def test_variants_and_bad_options():
    b = vit("b", img_size=512)
    assert b.out_indices == (5, 7, 11) and b.out_channels == (768,) * 3 and b.pos_embed.shape == (1, 1024, 768)
    assert b.blocks[-1].drop_path.p == pytest.approx(0.1)
    with torch.device("meta"):
        assert vit("l").out_indices == (7, 15, 23)
    with pytest.raises(ConfigError, match="last block"):
        ViT(SPEC, out_indices=(1, 2))
    with pytest.raises(ConfigError, match="increasing"):
        ViT(SPEC, out_indices=(2, 1, 3))
