"""ViT / SegViT weights in every published layout. One random transformers ViTModel is the
reference: the test writes its weights in each layout itself (timm, mmseg, AugReg .npz, transformers
5 module names), loads them through the converter and compares hidden states with transformers.
The official SegViT head is checked against torch's own nn.TransformerDecoderLayer."""
import numpy as np
import pytest
import torch
from torch import nn

from segadapter.errors import CheckpointError
from segadapter.modeling.meta_arch import Segmentor
from segadapter.modeling.weights import segvit as weights_segvit
from segadapter.modeling.weights import vit as weights_vit
from segadapter.modeling.weights.load import convert_checkpoint
from segadapter.modeling.backbones.vit import ViT, ViTSpec
from segadapter.modeling.heads.segvit import ATMHead
from segadapter.modeling.heads.segvit_shrunk import ShrunkATMHead
from segadapter.modeling.weights.io import read_checkpoint, read_npz

transformers = pytest.importorskip("transformers")

C, HEADS, DEPTH = 64, 4, 4
X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


class Holder(nn.Module):
    """A bare backbone in a module, under `backbone.` as in a model (the ViT converter alone)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def load(model, state):
    if isinstance(model, Holder):  # a bare backbone: the ViT converter alone
        layout = weights_vit.detect_layout(state)
        converted, ignored = weights_vit.convert(state, layout)
        _, notes = weights_vit.fit(converted, model)
    else:  # head and backbone converters, composed as load_pretrained does
        converted, ignored, notes, layout, _, _ = convert_checkpoint(model, state)
    model.load_state_dict(converted, strict=True)
    return layout, ignored, notes


@pytest.fixture(scope="module")
def hf():
    config = transformers.ViTConfig(hidden_size=C, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                                    intermediate_size=4 * C, image_size=64, patch_size=16, layer_norm_eps=1e-6)
    model = transformers.ViTModel(config, add_pooling_layer=False)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def hf_params(hf):
    """The reference weights in plain terms (torch (out, in) matrices)."""
    s = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    blocks = []
    for i in range(DEPTH):
        p = f"layers.{i}."
        g = lambda n: s[p + n]  # noqa: E731
        blocks.append(dict(q=(g("attention.q_proj.weight"), g("attention.q_proj.bias")),
                           k=(g("attention.k_proj.weight"), g("attention.k_proj.bias")),
                           v=(g("attention.v_proj.weight"), g("attention.v_proj.bias")),
                           o=(g("attention.o_proj.weight"), g("attention.o_proj.bias")),
                           ln1=(g("layernorm_before.weight"), g("layernorm_before.bias")),
                           ln2=(g("layernorm_after.weight"), g("layernorm_after.bias")),
                           fc1=(g("mlp.fc1.weight"), g("mlp.fc1.bias")), fc2=(g("mlp.fc2.weight"), g("mlp.fc2.bias"))))
    patch = "embeddings.patch_embeddings.projection."
    return dict(patch=(s[patch + "weight"], s[patch + "bias"]),
                cls=s["embeddings.cls_token"], pos=s["embeddings.position_embeddings"], blocks=blocks)


def timm_state(p):
    s = {"patch_embed.proj.weight": p["patch"][0], "patch_embed.proj.bias": p["patch"][1],
         "cls_token": p["cls"], "pos_embed": p["pos"], "norm.weight": torch.ones(C), "norm.bias": torch.zeros(C),
         "head.weight": torch.randn(10, C), "head.bias": torch.zeros(10)}
    for i, b in enumerate(p["blocks"]):
        s[f"blocks.{i}.attn.qkv.weight"] = torch.cat([b["q"][0], b["k"][0], b["v"][0]])
        s[f"blocks.{i}.attn.qkv.bias"] = torch.cat([b["q"][1], b["k"][1], b["v"][1]])
        for ours, ref in (("norm1", "ln1"), ("norm2", "ln2"), ("attn.proj", "o"), ("mlp.fc1", "fc1"),
                          ("mlp.fc2", "fc2")):
            s[f"blocks.{i}.{ours}.weight"], s[f"blocks.{i}.{ours}.bias"] = b[ref]
    return s


def mmseg_state(p):
    s = {"patch_embed.projection.weight": p["patch"][0], "patch_embed.projection.bias": p["patch"][1],
         "cls_token": p["cls"], "pos_embed": p["pos"], "ln1.weight": torch.ones(C), "ln1.bias": torch.zeros(C)}
    for i, b in enumerate(p["blocks"]):
        s[f"layers.{i}.attn.attn.in_proj_weight"] = torch.cat([b["q"][0], b["k"][0], b["v"][0]])
        s[f"layers.{i}.attn.attn.in_proj_bias"] = torch.cat([b["q"][1], b["k"][1], b["v"][1]])
        for mm, ref in (("ln1", "ln1"), ("ln2", "ln2"), ("attn.attn.out_proj", "o"), ("ffn.layers.0.0", "fc1"),
                        ("ffn.layers.1", "fc2")):
            s[f"layers.{i}.{mm}.weight"], s[f"layers.{i}.{mm}.bias"] = b[ref]
    return s


def jax_arrays(p, prefix=""):
    """vit_jax / AugReg naming and shapes: kernels (in, out), conv HWIO, attention per head."""
    hd = C // HEADS
    a = {"embedding/kernel": p["patch"][0].permute(2, 3, 1, 0), "embedding/bias": p["patch"][1], "cls": p["cls"],
         "Transformer/posembed_input/pos_embedding": p["pos"],
         "Transformer/encoder_norm/scale": torch.ones(C), "Transformer/encoder_norm/bias": torch.zeros(C),
         "head/kernel": torch.randn(C, 10), "head/bias": torch.zeros(10)}
    for i, b in enumerate(p["blocks"]):
        blk = f"Transformer/encoderblock_{i}/"
        mha = blk + "MultiHeadDotProductAttention_1/"
        for n in ("query", "key", "value"):
            w, bias = b[n[0]]
            a[mha + n + "/kernel"] = w.t().reshape(C, HEADS, hd)
            a[mha + n + "/bias"] = bias.reshape(HEADS, hd)
        a[mha + "out/kernel"] = b["o"][0].t().reshape(HEADS, hd, C)
        a[mha + "out/bias"] = b["o"][1]
        for ln, ref in (("LayerNorm_0", "ln1"), ("LayerNorm_2", "ln2")):
            a[blk + ln + "/scale"], a[blk + ln + "/bias"] = b[ref]
        for r, ref in ((0, "fc1"), (1, "fc2")):
            a[blk + f"MlpBlock_3/Dense_{r}/kernel"] = b[ref][0].t()
            a[blk + f"MlpBlock_3/Dense_{r}/bias"] = b[ref][1]
    return {prefix + k: v.contiguous().numpy() for k, v in a.items()}


def reference_hidden(hf, x, interpolate=False):
    with torch.no_grad():
        return hf(pixel_values=x, output_hidden_states=True, interpolate_pos_encoding=interpolate).hidden_states


def tokens_with_cls(model, x):
    with torch.no_grad():
        flow = x
        for i in range(len(model.out_indices)):
            flow = model.stage_forward(i, flow)
        grid, cls = flow
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], 1)


@pytest.mark.parametrize("layout", ["timm", "mmseg", "jax", "jax-opt-target", "huggingface5"])
def test_layouts_match_transformers(tmp_path, hf, layout):
    p = hf_params(hf)
    if layout == "timm":
        from safetensors.torch import save_file
        path = tmp_path / "vit.safetensors"
        save_file({k: v.contiguous() for k, v in timm_state(p).items()}, str(path))
        state = read_checkpoint(path)
    elif layout == "mmseg":
        path = tmp_path / "vit_mmseg.pth"
        torch.save({"meta": {"iter": 1}, "state_dict": mmseg_state(p)}, path)
        state = read_checkpoint(path)
    elif layout.startswith("jax"):
        path = tmp_path / "augreg.npz"
        np.savez(path, **jax_arrays(p, "opt/target/" if layout == "jax-opt-target" else ""))
        state = read_npz(path)
    else:  # a torch.save(model.state_dict()) of transformers 5: its renamed modules
        path = tmp_path / "hf5.pth"
        torch.save(hf.state_dict(), path)
        state = read_checkpoint(path)
    model = ViT(ViTSpec(C, DEPTH, HEADS), img_size=64, out_indices=(DEPTH - 1,), keep_cls_token=True).eval()
    got_layout, ignored, notes = load(Holder(model), state)
    assert got_layout == layout.split("-")[0].replace("huggingface5", "huggingface")
    assert notes == []
    if layout != "huggingface5":
        assert len(ignored) == {"timm": 4, "mmseg": 2}.get(layout, 4)  # final norm (+ classifier)
    assert (tokens_with_cls(model, X) - reference_hidden(hf, X)[-1]).abs().max() <= 1e-4


def test_position_embedding_resampled_to_model_grid(tmp_path, hf):
    """224/384-style weights at another crop: resampled once at load, noted in the report;
    the result equals transformers resampling at every forward."""
    path = tmp_path / "vit.pth"
    torch.save(mmseg_state(hf_params(hf)), path)
    model = ViT(ViTSpec(C, DEPTH, HEADS), img_size=96, out_indices=(DEPTH - 1,), keep_cls_token=True).eval()
    _, _, notes = load(Holder(model), read_checkpoint(path))
    assert notes == ["position embedding resampled (bicubic) from 4x4 (64 px) to 6x6 (96x96 px)"]
    x = torch.randn(1, 3, 96, 96)
    assert (tokens_with_cls(model, x) - reference_hidden(hf, x, interpolate=True)[-1]).abs().max() <= 1e-4


def test_class_token_and_extra_blocks_dropped_with_notes(tmp_path, hf):
    path = tmp_path / "vit.pth"
    torch.save(timm_state(hf_params(hf)), path)
    model = ViT(ViTSpec(C, DEPTH, HEADS), img_size=64, depth=2, out_indices=(1,)).eval()
    _, _, notes = load(Holder(model), read_checkpoint(path))
    assert any("class token" in n for n in notes) and any("blocks 2-3" in n for n in notes)


def test_bad_npz_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="bad.npz"):
        read_npz(bad)
    obj = tmp_path / "obj.npz"
    np.savez(obj, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="obj.npz"):
        read_npz(obj)


# ------------------------------------------------------------------------------- official SegViT
D, NH, K = 16, 2, 4


def torch_decoder(n_layers=3):
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, NH, 4 * D, dropout=0.1, batch_first=True), n_layers)
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return dec.eval()


def atm_keys(prefix, dec):
    """An official ATM decoder's keys: torch's layer, its cross-attention as separate q/k/v/proj."""
    out = {}
    for k, v in dec.state_dict().items():
        if ".multihead_attn.in_proj_" in k:
            kind = k.rsplit("_", 1)[1]
            for n, t in zip("qkv", v.chunk(3)):
                out[prefix + k.replace(f"multihead_attn.in_proj_{kind}", f"multihead_attn.{n}.{kind}")] = t
        elif ".multihead_attn.out_proj." in k:
            out[prefix + k.replace("multihead_attn.out_proj", "multihead_attn.proj")] = v
        else:
            out[prefix + k] = v
    return out


def reference_atm(dec, q, mem):
    """torch's layers; the last layer's mask = head-mean of its pre-softmax scaled q.k."""
    for layer in dec.layers[:-1]:
        q = layer(q, mem)
    last = dec.layers[-1]
    x1 = last.norm1(q + last.self_attn(q, q, q, need_weights=False)[0])
    wq, wk, _ = last.multihead_attn.in_proj_weight.chunk(3)
    bq, bk, _ = last.multihead_attn.in_proj_bias.chunk(3)
    qq = (x1 @ wq.t() + bq).unflatten(-1, (NH, -1)).transpose(1, 2)
    kk = (mem @ wk.t() + bk).unflatten(-1, (NH, -1)).transpose(1, 2)
    mask = ((qq @ kk.transpose(-1, -2)) * (D // NH) ** -0.5).mean(1)
    return last(q, mem), mask


def mmseg_backbone(model):
    """Our random backbone written with mmseg names (and the class token the release carries)."""
    s = {"backbone.cls_token": torch.randn(1, 1, C)}
    for k, v in model.state_dict().items():
        k = (k.replace("patch_embed.proj", "patch_embed.projection").replace("blocks.", "layers.")
             .replace("norm1", "ln1").replace("norm2", "ln2").replace("attn.qkv.weight", "attn.attn.in_proj_weight")
             .replace("attn.qkv.bias", "attn.attn.in_proj_bias").replace("attn.proj", "attn.attn.out_proj")
             .replace("mlp.fc1", "ffn.layers.0.0").replace("mlp.fc2", "ffn.layers.1"))
        s["backbone." + k] = v
    s["backbone.pos_embed"] = torch.cat([torch.randn(1, 1, C), s["backbone.pos_embed"]], 1)
    return s


def test_official_segvit_release(tmp_path):
    torch.manual_seed(0)
    backbone = ViT(ViTSpec(C, 2, HEADS), img_size=32, out_indices=(0, 1))
    decs = [torch_decoder() for _ in range(2)]  # decoder_1 pairs with the deepest tap
    projs, norms = [nn.Linear(C, D) for _ in range(2)], [nn.LayerNorm(D) for _ in range(2)]
    q, cls = nn.Embedding(K, D), nn.Linear(D, K + 1)
    with torch.no_grad():
        for n in norms:
            n.weight.add_(torch.randn(D) * 0.1)
    state = mmseg_backbone(backbone)
    for i in range(2):
        state.update(atm_keys(f"decode_head.decoder_{i + 1}.", decs[i]))
        for name, mod in (("input_proj", projs[i]), ("proj_norm", norms[i])):
            state.update({f"decode_head.{name}_{i + 1}.{k}": v for k, v in mod.state_dict().items()})
    state.update({"decode_head.q.weight": q.weight.detach(), "decode_head.class_embed.weight": cls.weight.detach(),
                  "decode_head.class_embed.bias": cls.bias.detach(),
                  "decode_head.loss_decode.criterion.empty_weight": torch.ones(K + 1)})
    path = tmp_path / "segvit.pth"
    torch.save({"state_dict": state}, path)

    model = Segmentor(ViT(ViTSpec(C, 2, HEADS), img_size=32, out_indices=(0, 1)),
                      ATMHead((C, C), K, embed_dim=D, num_heads=NH), K).eval()
    layout, ignored, notes = load(model, read_checkpoint(path))
    assert layout == "segvit" and ignored == {
        "backbone.cls_token": "not used after fitting the model (see the notes)",
        "decode_head.loss_decode.criterion.empty_weight": "a training criterion's buffer"}
    assert notes == ["class token and its position embedding not used (dropped after the position embedding)"]
    torch.testing.assert_close(model.backbone.blocks[1].attn.qkv.weight, backbone.blocks[1].attn.qkv.weight)

    feats = [torch.randn(2, C, 3, 4), torch.randn(2, C, 3, 4)]
    with torch.no_grad():
        raw = model.decode_head(feats)
        x = q.weight.expand(2, -1, -1)
        total = 0
        for i, f in enumerate(feats[::-1]):
            mem = norms[i](projs[i](f.flatten(2).transpose(1, 2)))
            x, mask = reference_atm(decs[i], x, mem)
            total = total + mask.reshape(2, K, 3, 4)
            torch.testing.assert_close(raw.class_logits[i], cls(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(raw.mask_logits[i], total, atol=1e-5, rtol=1e-5)


def test_official_shrunk_head(tmp_path):
    torch.manual_seed(1)
    backbone = ViT(ViTSpec(C, 2, HEADS), img_size=32, out_indices=(0, 1), shrink_index=1)
    qu = [torch_decoder() for _ in range(2)]
    atm = torch_decoder()
    projs, norms = [nn.Linear(C, D) for _ in range(2)], [nn.LayerNorm(D) for _ in range(2)]
    grid_q, q, cls = nn.Embedding(4, D), nn.Embedding(K, D), nn.Linear(D, K + 1)
    state = mmseg_backbone(backbone)
    for i in range(2):
        state.update({f"decode_head.decoder_{i + 1}.{k}": v for k, v in qu[i].state_dict().items()})
        for name, mod in (("input_proj", projs[i]), ("proj_norm", norms[i])):
            state.update({f"decode_head.{name}_{i + 1}.{k}": v for k, v in mod.state_dict().items()})
    state.update(atm_keys("decode_head.atm.decoder_1.", atm))
    state.update({"decode_head.q.weight": grid_q.weight.detach(), "decode_head.atm.q.weight": q.weight.detach(),
                  "decode_head.atm.class_embed.weight": cls.weight.detach(),
                  "decode_head.atm.class_embed.bias": cls.bias.detach(),
                  "decode_head.atm.loss_decode.criterion.empty_weight": torch.ones(K + 1)})
    model = Segmentor(ViT(ViTSpec(C, 2, HEADS), img_size=32, out_indices=(0, 1), shrink_index=1),
                      ShrunkATMHead((C, C), K, embed_dim=D, num_heads=NH, query_grid=2), K).eval()
    layout, _, _ = load(model, state)
    assert layout == "segvit"
    feats = [torch.randn(1, C, 2, 2), torch.randn(1, C, 1, 1)]
    with torch.no_grad():
        raw = model.decode_head(feats)
        x = grid_q.weight[None]
        for i, f in enumerate(feats):  # QU: torch's standard decoders, shallow tap first
            x = qu[i](x, norms[i](projs[i](f.flatten(2).transpose(1, 2))))
        cq = q.weight[None]
        for j in range(3):  # every ATM layer's own (not cumulative) mask is an output
            sub = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, NH, 4 * D, batch_first=True), 1).eval()
            sub.layers[0] = atm.layers[j]
            cq, mask = reference_atm(sub, cq, x)
            torch.testing.assert_close(raw.class_logits[j], cls(cq), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(raw.mask_logits[j], mask.reshape(1, K, 2, 2), atol=1e-5, rtol=1e-5)


def test_wrong_class_count_is_explained():
    model = Segmentor(ViT(ViTSpec(C, 2, HEADS), img_size=32, out_indices=(0, 1)),
                      ATMHead((C, C), K, embed_dim=D, num_heads=NH), K)
    state = {k: v for k, v in model.state_dict().items()}
    state["decode_head.class_embed.weight"] = torch.zeros(11, D)
    with pytest.raises(CheckpointError, match="predicts 10 classes"):
        convert_checkpoint(model, state)


def test_shrunk_query_grid_resampled_with_note():
    head = ShrunkATMHead((C, C), K, embed_dim=D, num_heads=NH, query_grid=3)
    model = Segmentor(ViT(ViTSpec(C, 2, HEADS), img_size=48, out_indices=(0, 1), shrink_index=1), head, K)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("decode_head.")}
    state["decode_head.grid_queries.weight"] = torch.randn(4, D)  # a 2 x 2 grid from another crop
    notes = weights_segvit.fit(state, head)
    assert notes == ["QU query grid resampled (bicubic) from 2x2 to 3x3"]
    assert state["decode_head.grid_queries.weight"].shape == (9, D)
