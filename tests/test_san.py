"""SAN: sizes and FLOPs of the published model (built on the meta device), and a tiny random CLIP
of the right structure for behaviour: shapes, gradients, SLS recognition against the official
cross-attention formulation, vocabulary, normalisation."""

import pytest
import torch
import torch.nn.functional as F

from segadapter.analysis.flops import MacCounter
from segadapter.errors import ConfigError
from segadapter.modeling.backbones.clip import CLIP, ClipConfig, ClipTextConfig, ClipVisionConfig
from segadapter.modeling.backbones.clip_backbone import CLIP_MEAN, CLIP_STD, ClipBackbone, sls_attention_bias
from segadapter.modeling.heads.san import SANHead
from segadapter.modeling.heads.san_side import SideConfig
from segadapter.modeling.meta_arch import SideAdapterSegmentor
from segadapter.modeling.models.san import build_san
from segadapter.text.prompts import embed_class_names
from segadapter.text.tokenizer import ClipTokenizer

TINY_CLIP = ClipConfig(32, ClipVisionConfig(32, 8, 64, 4, 4), ClipTextConfig(77, 600, 32, 2, 2))
TINY_SIDE = SideConfig(width=48, depth=4, heads=2, grid=4, num_queries=10, fusion_blocks=(0, 1, 2),
                       deep_supervision=(3, 4), mlp_channels=32, embed_channels=32)
NAMES = ["sky", "road", "car"]


def _trainable(*modules):
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


_MODELS: dict[int, SideAdapterSegmentor] = {}


def _tiny(names=NAMES, seed=0, tokenizer=None):
    torch.manual_seed(seed)
    bb = ClipBackbone(CLIP(TINY_CLIP), taps=(0, 1, 2))
    head = SANHead(bb, len(names), TINY_SIDE)
    _MODELS[id(head)] = SideAdapterSegmentor(bb, head, class_names=names, tokenizer=tokenizer)
    return bb, head


def _model(bb, head):
    """The side-adapter model that runs the two (the head holds no backbone) and owns the names."""
    if id(head) not in _MODELS:
        _MODELS[id(head)] = SideAdapterSegmentor(bb, head)
    return _MODELS[id(head)]


def _raw(bb, head, x):
    return _model(bb, head).forward_raw(x)[0]


# -- the published model ---------------------------------------------------------------------


def test_trainable_parameters_vit_b16():
    with torch.device("meta"):
        model = build_san("san-vit-b16")
        bb, head = model.backbone, model.decode_head
        _MODELS[id(head)] = model
    assert _trainable(bb, head) == 8_370_866
    # CLIP: only the visual position embedding (197 x 768) trains
    assert [n for n, p in bb.named_parameters() if p.requires_grad] == ["clip.visual.positional_embedding"]
    assert _trainable(bb) == 197 * 768
    assert head.num_classes == 171 and head.class_embeddings.shape == (171, 512)


@pytest.mark.parametrize("width,millions", [(144, 4.21), (192, 6.07), (288, 11.12)])
def test_side_widths(width, millions):
    with torch.device("meta"):
        model = build_san("san-vit-b16", side_width=width)
        bb, head = model.backbone, model.decode_head
        _MODELS[id(head)] = model
    assert round(_trainable(bb, head) / 1e6, 2) == millions


def test_gflops_at_640():
    """Multiply-adds of one 640x640 forward (CLIP at 320), text encoder and the final
    class-mask combination excluded, as the published 64.3."""
    with torch.device("meta"):
        model = build_san("san-vit-b16", num_classes=171)
        bb, head = model.backbone, model.decode_head
        _MODELS[id(head)] = model
    bb.eval(), head.eval()
    with torch.no_grad(), MacCounter() as counter:
        _raw(bb, head, torch.zeros(1, 3, 640, 640, device="meta"))
    assert abs(counter.total / 1e9 - 64.3) / 64.3 < 0.03


def test_vit_l14_builds():
    with torch.device("meta"):
        model = build_san("san-vit-l14")
        bb, head = model.backbone, model.decode_head
        _MODELS[id(head)] = model
    assert bb.taps == (0, 6, 12, 18) and bb.clip.config.vision.image_size == 336
    assert head.mask_decoder.attn_mlp.layers[-1].out_channels == 256 * 16
    bb.eval(), head.eval()
    with torch.no_grad():  # shapes only (meta tensors): CLIP at 0.7x, a 600 x 900 input padded to 608 x 928
        raw = _raw(bb, head, torch.zeros(1, 3, 600, 900, device="meta"))
        assert head.predict(raw).shape == (1, 171, 600, 900)
    assert raw.masks[0].shape == (1, 100, 38, 58) and bb.clip_grid((600, 900)) == (30, 46)


# -- behaviour on a tiny CLIP ----------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 96), (60, 90)])
def test_shapes(size):
    bb, head = _tiny()
    x = torch.randn(2, 3, *size)
    head.train()
    raw = _raw(bb, head, x)
    assert len(raw.logits) == 2 and len(raw.masks) == 2  # side blocks 3 and 4 (7 and 8 at full size)
    hp, wp = (s + (-s % 32) for s in size)
    assert raw.logits[0].shape == (2, 10, 4) and raw.masks[0].shape == (2, 10, hp // 16, wp // 16)
    head.eval()
    with torch.no_grad():
        raw = _raw(bb, head, x)
        assert len(raw.logits) == 1
        assert head.predict(raw).shape == (2, 3, *size)
        assert head.predict(raw, size=(20, 30)).shape == (2, 3, 20, 30)


def test_predict_formula():
    bb, head = _tiny()
    head.eval()
    with torch.no_grad():
        raw = _raw(bb, head, torch.randn(1, 3, 64, 64))
        got = head.predict(raw)
        masks = F.interpolate(raw.masks[-1], size=(64, 64), mode="bilinear", align_corners=False).sigmoid()
        probs = raw.logits[-1].softmax(-1)
        want = sum(probs[0, q, :3, None, None] * masks[0, q] for q in range(10))
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)


def test_predict_resizes_masks_to_the_output_before_combining():
    """The official inference (detectron2's sem_seg_postprocess before semantic_inference): mask
    logits upsampled to the padded input, cropped, resized to the output size, then combined."""
    bb, head = _tiny()
    head.eval()
    with torch.no_grad():
        raw = _raw(bb, head, torch.randn(1, 3, 60, 90))
        # mask logits of a trained model's range (the tiny random one's sit where sigmoid is linear)
        raw.masks[-1] = torch.randn(raw.masks[-1].shape, generator=torch.Generator().manual_seed(0)) * 4
        got = head.predict(raw, size=(45, 70))
        padded = F.interpolate(raw.masks[-1], size=(64, 96), mode="bilinear", align_corners=False)[..., :60, :90]
        masks = F.interpolate(padded, size=(45, 70), mode="bilinear", align_corners=False).sigmoid()
        probs = raw.logits[-1].softmax(-1)[..., :3]
        want = torch.einsum("bqk,bqhw->bkhw", probs, masks)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        combine_first = F.interpolate(head.predict(raw), size=(45, 70), mode="bilinear", align_corners=False)
        assert (got - combine_first).abs().max() > 1e-4


def test_class_logits_are_scaled_cosines():
    bb, head = _tiny()
    head.eval()
    with torch.no_grad():
        raw = _raw(bb, head, torch.randn(1, 3, 64, 64))
    cls = torch.cat([head.class_embeddings, head.no_object_embed])
    scale = bb.clip.logit_scale.exp()
    # the embeddings behind the logits are unit vectors: logits / scale are cosines in [-1, 1]
    assert (raw.logits[0].abs() <= scale * (1 + 1e-5)).all()
    assert torch.allclose(head.classifier().norm(dim=-1), torch.ones(4))
    assert torch.allclose(head.classifier(), F.normalize(cls, dim=-1))


def test_gradients_reach_trainable_only():
    bb, head = _tiny()
    head.train()
    raw = _raw(bb, head, torch.randn(2, 3, 64, 64))
    labels = torch.randint(0, 3, (2, 64, 64))
    labels[:, :8] = 255
    losses = head.loss(raw, labels)
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"}
    sum(losses.values()).backward()
    for name, p in list(bb.named_parameters()) + list(head.named_parameters()):
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert bb.clip.visual.positional_embedding.grad is not None
    assert not any(p.requires_grad for n, p in bb.clip.named_parameters() if not n.startswith("visual.pos"))


def test_sls_bias_leaves_clip_path_unchanged_and_isolates_sls():
    bb, _ = _tiny()
    tokens = torch.randn(2, 1 + 16, 64)
    q, heads = 5, 4
    bias = torch.randn(2, heads, q, 16)
    blocks = bb.blocks[2:]
    with torch.no_grad():
        x = torch.cat([tokens[:, :1].expand(-1, q, -1), tokens], 1)
        full = sls_attention_bias(bias)
        plain = tokens
        for blk in blocks:
            x, plain = blk(x, full), blk(plain)
        torch.testing.assert_close(x[:, q:], plain, atol=1e-5, rtol=1e-5)  # class token + patches
        # each SLS token sees only itself and the patches: changing query 2's bias moves only it
        bias2 = bias.clone()
        bias2[:, :, 2] += torch.randn(2, heads, 16)
        a, b = bb.recognize(tokens, bias), bb.recognize(tokens, bias2)
    changed = (a - b).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [False, False, True, False, False]


def test_recognize_matches_cross_attention_formulation():
    """The official code's alternative: each SLS token cross-attends to [patches (+ bias), itself];
    patches and class token run CLIP's plain blocks."""
    bb, _ = _tiny()
    torch.manual_seed(3)
    tokens = torch.randn(2, 1 + 16, 64)
    bias = torch.randn(2, 4, 6, 16)
    with torch.no_grad():
        got = bb.recognize(tokens, bias)
        x, sls = tokens, tokens[:, :1].expand(-1, 6, -1)
        for blk in bb.blocks[2:]:
            a = blk.attn
            w, bvec = a.in_proj_weight, a.in_proj_bias
            c, h = 64, a.heads
            s_in, p_in = blk.ln_1(sls), blk.ln_1(x[:, 1:])

            def proj(t, i):
                return F.linear(t, w[i * c:(i + 1) * c], bvec[i * c:(i + 1) * c]).view(*t.shape[:2], h, c // h).transpose(1, 2)

            qs, ks, vs, kp, vp = proj(s_in, 0), proj(s_in, 1), proj(s_in, 2), proj(p_in, 1), proj(p_in, 2)
            scale = (c // h) ** -0.5
            logits_p = qs @ kp.transpose(-1, -2) * scale + bias
            logits_s = (qs * ks).sum(-1, keepdim=True) * scale
            attn = torch.cat([logits_p, logits_s], -1).softmax(-1)
            out = attn[..., :-1] @ vp + attn[..., -1:] * vs
            sls = sls + a.out_proj(out.transpose(1, 2).reshape(2, 6, c))
            sls = sls + blk.mlp(blk.ln_2(sls))
            x = blk(x)
        want = F.normalize(bb.visual.pool(sls), dim=-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_input_renormalised_to_clip():
    bb, _ = _tiny()
    raw = torch.rand(1, 3, 8, 8) * 255
    imagenet = (raw - torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)) / torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    want = (raw / 255 - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(bb.stage_forward(0, imagenet), want, atol=1e-5, rtol=1e-5)


def test_clip_input_is_half_resolution():
    bb, _ = _tiny()
    tokens = bb.stage_forward(1, torch.randn(1, 3, 64, 96))
    assert tokens.shape == (1, 1 + (32 // 8) * (48 // 8), 64) and bb.clip_grid((64, 96)) == (4, 6)
    assert bb.clip_grid((60, 90)) == (4, 6)  # padded to 64 x 96 first


# -- vocabulary --------------------------------------------------------------------------------


def _tokenizer():
    return ClipTokenizer([("s", "k"), ("sk", "y</w>"), ("c", "a"), ("ca", "r</w>"), ("r", "o")])


def test_set_classes_needs_weights_and_vocabulary():
    bb, head = _tiny()
    model = _model(bb, head)
    with pytest.raises(ConfigError, match="CLIP weights"):
        model.set_classes(["cat", "dog"])
    bb.clip_pretrained.fill_(True)
    with pytest.raises(ConfigError, match="bpe_simple_vocab_16e6.txt.gz"):
        model.set_classes(["cat", "dog"])


def test_set_classes_embeds_names_with_templates():
    tok = _tokenizer()
    bb, head = _tiny(tokenizer=tok)
    bb.clip_pretrained.fill_(True)  # a stand-in for loaded weights
    model = _model(bb, head)
    model.set_classes(["cat", "dog", "traffic light", "sky"])
    assert head.num_classes == 4 and head.embeddings_source == "text"
    torch.testing.assert_close(head.class_embeddings, embed_class_names(bb.clip, tok, ["cat", "dog", "traffic light", "sky"]))
    head.eval()
    with torch.no_grad():
        out = head.predict(_raw(bb, head, torch.randn(1, 3, 64, 64)))
    assert out.shape == (1, 4, 64, 64)
    with pytest.raises(ConfigError, match="too long"):
        model.set_classes(["a " * 80])


@pytest.mark.parametrize("names,message", [([], "empty"), (["car", " "], "empty class name"),
                                           (["car", "Car"], "duplicate"), ("car,road", "list of names")])
def test_bad_vocabularies(names, message):
    bb, head = _tiny()
    with pytest.raises(ConfigError, match=message):
        _model(bb, head).vocabulary.set(names, placeholder=True)


def test_placeholders_are_stable_per_name():
    _, a = _tiny(["sky", "road"], seed=0)
    _, b = _tiny(["road", "sky"], seed=1)
    torch.testing.assert_close(a.class_embeddings, b.class_embeddings.flip(0))


def test_loss_ignores_255_and_resizes_labels():
    bb, head = _tiny()
    head.train()
    raw = _raw(bb, head, torch.randn(1, 3, 64, 64))
    all_ignored = torch.full((1, 32, 32), 255)
    losses = head.loss(raw, all_ignored)  # no target: every query is no-object, no mask loss
    assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0
    k = raw.logits[-1].shape[-1] - 1
    want = F.cross_entropy(raw.logits[-1][0].float(), torch.full((10,), k))
    torch.testing.assert_close(losses["loss_ce"], 2 * want)


# -- published weights -------------------------------------------------------------------------


def _official_names(ours: dict) -> dict:
    """Our tiny SAN state under the official release's names (the inverse of the converter)."""
    out = {}
    for k, v in ours.items():
        if k.startswith("backbone.clip.visual.transformer.resblocks."):
            i, rest = k.split(".", 6)[5:]
            out[f"clip_visual_extractor.resblocks.{i}.{rest}" if int(i) < 2 else
                f"clip_rec_head.resblocks.{int(i) - 2}.{rest}"] = v
        elif k.startswith(("backbone.clip.visual.ln_post", "backbone.clip.visual.proj")):
            out["clip_rec_head." + k[len("backbone.clip.visual."):]] = v
        elif k.startswith("backbone.clip.visual."):
            out["clip_visual_extractor." + k[len("backbone.clip.visual."):]] = v
        elif k.startswith("backbone.clip."):
            out["ov_classifier." + k[len("backbone.clip."):]] = v
        elif k.startswith("decode_head.side.fusion_layers."):
            layer, part, p = k.split(".")[3:]
            out[f"side_adapter_network.fusion_layers.{layer}.input_proj.{0 if part == 'norm' else 1}.{p}"] = v
        elif k.startswith("decode_head.side.") and "query" in k:
            out["side_adapter_network." + k[len("decode_head.side."):]] = v
        elif k.startswith("decode_head.side."):
            out["side_adapter_network.vit_model." + k[len("decode_head.side."):]] = v
        elif k.startswith("decode_head.mask_decoder."):
            out["side_adapter_network." + k[len("decode_head."):]] = v
        elif k == "decode_head.no_object_embed":
            out["ov_classifier.bg_embed"] = v
    return out


def test_official_release_keys_convert():
    """The release's keys through the composed converters (SAN head + CLIP backbone), as
    `load_pretrained` uses them: every tensor ours again, criterion and preprocessing buffers
    listed as not used, the class-name rows left to the vocabulary."""
    from segadapter.modeling.weights.load import convert_checkpoint

    bb, head = _tiny()
    model = _model(bb, head)
    ours = {k: v for k, v in model.state_dict().items()
            if k not in ("backbone.clip_pretrained", "decode_head.class_embeddings", "decode_head.text_embedded")}
    official = _official_names(ours)
    official.update({"criterion.empty_weight": torch.ones(4), "pixel_mean": torch.zeros(3, 1, 1)})
    converted, ignored, _, layout, _, fresh = convert_checkpoint(model, official)
    assert layout == "san"
    assert sorted(ignored) == ["criterion.empty_weight", "pixel_mean"]
    assert set(converted) == set(ours) | {"backbone.clip_pretrained"}
    for k, v in ours.items():
        assert torch.equal(converted[k], v), k
    assert fresh == ("decode_head.class_embeddings", "decode_head.text_embedded")


@pytest.mark.filterwarnings("ignore")
def test_onnx_export_with_fixed_vocabulary(tmp_path):
    pytest.importorskip("onnxruntime")
    from segadapter.export import check_onnx, export_onnx

    bb, head = _tiny()

    model = _model(bb, head).eval()  # eval: images -> predict
    path = export_onnx(model, tmp_path / "san.onnx", sample_size=(64, 64))
    for shape in ((1, 3, 64, 64), (2, 3, 96, 64), (1, 3, 60, 90)):  # other sizes, padding included
        assert check_onnx(model, path, torch.randn(*shape)) < 1e-4


def test_tiny_san_learns_a_segmentation():
    """A few AdamW steps on one batch (random frozen CLIP): the loss falls and the prediction fits."""
    bb, head = _tiny()
    torch.manual_seed(0)  # the matcher's and the criterion's random points
    head.train()
    opt = torch.optim.AdamW([p for m in (bb, head) for p in m.parameters() if p.requires_grad], lr=2e-3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 32:] = 1
    labels[:, :, :20] = 2
    history = []
    for _ in range(45):
        loss = sum(head.loss(_raw(bb, head, x), labels).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    head.eval()
    with torch.no_grad():
        pred = head.predict(_raw(bb, head, x)).argmax(1)
    assert history[-1] < 0.3 * history[0]
    assert (pred == labels).float().mean() > 0.9
