"""SegViT heads: shapes, predict = the formula, the fixed-assignment loss against a direct
reference, gradients everywhere, chunked mask losses, and the published parameters / GFLOPs."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segadapter.analysis.flops import MacCounter
from segadapter.modeling.backbones.vit import ViT, ViTSpec
from segadapter.modeling.meta_arch import Segmentor
from segadapter.modeling.heads.segvit import ATMHead, MaskClassOutput
from segadapter.modeling.heads.segvit_shrunk import ShrunkATMHead
from segadapter.modeling.losses.mask import fixed_assignment_loss, mask_loss_sums, present_classes
from segadapter.modeling.models.segvit import build_segvit

K = 5


def feats(b=2, c=(32, 32, 48), hw=((4, 6), (4, 6), (4, 6)), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, ch, *s, generator=g) for ch, s in zip(c, hw)]


def labels_with_ignore(b=2, size=(20, 24), seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (b, *size), generator=g)
    y[0][y[0] == 3] = 1  # class 3 absent from image 0
    y[:, :3] = 255  # an ignored band
    return y


def SegViT(backbone, head) -> Segmentor:
    """Backbone + head as a model (eval: predict at the input size)."""
    return Segmentor(backbone, head, head.num_classes)


# ------------------------------------------------------------------------------------- shapes
def test_atm_shapes_and_cumulative_grid():
    head = ATMHead((32, 32, 48), K, embed_dim=16, num_heads=4).eval()
    f = feats(hw=((8, 12), (4, 6), (4, 6)))  # the shallowest stage sets the mask grid
    raw = head(f)
    assert len(raw.class_logits) == len(raw.mask_logits) == 3
    assert all(c.shape == (2, K, K + 1) for c in raw.class_logits)
    assert all(m.shape == (2, K, 8, 12) for m in raw.mask_logits)
    assert head.predict(raw).shape == (2, K, 8, 12)
    assert head.predict(raw, (40, 50)).shape == (2, K, 40, 50)
    assert head.output_stride == 16


def test_shrunk_head_shapes_query_grid_resized():
    head = ShrunkATMHead((32, 32), K, embed_dim=16, num_heads=4, query_grid=5).eval()
    raw = head([torch.randn(1, 32, 4, 6), torch.randn(1, 32, 2, 3)])
    assert len(raw.class_logits) == 3 and all(m.shape == (1, K, 4, 6) for m in raw.mask_logits)
    assert head.grid_queries.weight.shape == (25, 16)


# ------------------------------------------------------------------------------------- predict
def test_predict_is_the_formula():
    g = torch.Generator().manual_seed(0)
    raw = MaskClassOutput([torch.randn(2, K, K + 1, generator=g)], [torch.randn(2, K, 3, 4, generator=g) * 3])
    out = ATMHead((8,), K, embed_dim=8, num_heads=2).predict(raw)
    cls, masks = raw.class_logits[0], raw.mask_logits[0]
    ref = torch.zeros(2, K, 3, 4)
    for b in range(2):
        for c in range(K):
            for q in range(K):
                p = torch.exp(cls[b, q, c]) / torch.exp(cls[b, q]).sum()
                ref[b, c] += p / (1 + torch.exp(-masks[b, q]))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)  # probabilities, as the official head
    # without a crop size, the mask logits (not the scores) are resized to the requested size first
    big = ATMHead((8,), K, embed_dim=8, num_heads=2).predict(raw, (6, 8))
    up = F.interpolate(masks, (6, 8), mode="bilinear", align_corners=False)
    ref_big = torch.einsum("bqc,bqhw->bchw", cls.softmax(-1)[..., :K], up.sigmoid())
    torch.testing.assert_close(big, ref_big)


def test_predict_follows_the_official_order_at_other_sizes():
    """The official head resizes the mask logits to its crop (`image_size`), combines there, and
    mmseg resizes the scores to the input: at an input other than the crop this differs from
    resizing the masks straight to the input."""
    g = torch.Generator().manual_seed(1)
    raw = MaskClassOutput([torch.randn(1, K, K + 1, generator=g)], [torch.randn(1, K, 5, 5, generator=g) * 3])
    head = ATMHead((8,), K, embed_dim=8, num_heads=2, image_size=(16, 16))
    got = head.predict(raw, (12, 20))
    cls = raw.class_logits[0].softmax(-1)[..., :K]
    at_crop = F.interpolate(raw.mask_logits[0], (16, 16), mode="bilinear", align_corners=False).sigmoid()
    want = F.interpolate(torch.einsum("bqc,bqhw->bchw", cls, at_crop), (12, 20), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, want)
    straight = F.interpolate(raw.mask_logits[0], (12, 20), mode="bilinear", align_corners=False).sigmoid()
    assert (got - torch.einsum("bqc,bqhw->bchw", cls, straight)).abs().max() > 1e-3
    # the crop size is the model's: the SegViT builders hand it to the head
    import segadapter

    assert segadapter.create_model("segvit-vit-t", num_classes=3, img_size=64).decode_head.image_size == (64, 64)


# ------------------------------------------------------------------------------------- loss
def reference_loss(class_logits, mask_logits, labels, no_obj=0.1, alpha=0.25, gamma=2.0):
    """(CE, 20 x focal, dice) summed over outputs, written out per image and class."""
    b_, size = labels.shape[0], labels.shape[-2:]
    present = [[bool((labels[b] == c).any()) for c in range(K)] for b in range(b_)]
    n_masks = max(sum(map(sum, present)), 1)
    ce = focal = dice = 0.0
    for cls, masks in zip(class_logits, mask_logits):
        up = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        num = den = 0.0
        for b in range(b_):
            for c in range(K):
                target, w = (c, 1.0) if present[b][c] else (K, no_obj)
                num = num - w * (cls[b, c, target] - torch.logsumexp(cls[b, c], 0))
                den = den + w
                if present[b][c]:
                    p, t = torch.sigmoid(up[b, c]), (labels[b] == c).double()  # 255 -> negative
                    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
                    pt = torch.where(t > 0, p, 1 - p)
                    at = torch.where(t > 0, alpha, 1 - alpha)
                    focal = focal + (at * (1 - pt) ** gamma * bce).mean() / n_masks
                    dice = dice + (1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)) / n_masks
        ce = ce + num / den
    return ce, 20 * focal, dice


def test_loss_matches_direct_reference():
    g = torch.Generator().manual_seed(3)
    labels = labels_with_ignore()
    cls = [torch.randn(2, K, K + 1, generator=g, dtype=torch.float64) for _ in range(3)]
    masks = [torch.randn(2, K, 5, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    got = fixed_assignment_loss(cls, masks, labels, K)
    ce, focal, dice = reference_loss(cls, masks, labels)
    torch.testing.assert_close(got["loss_ce"].double(), ce, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got["loss_focal"].double(), focal, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["loss_dice"].double(), dice, rtol=1e-5, atol=1e-7)
    # class 3 is absent from image 0 and present in image 1; ignored pixels are not a class
    assert present_classes(labels, K).tolist()[0] == [True, True, True, False, True]


def test_loss_weights_are_options():
    labels = labels_with_ignore()
    cls = [torch.randn(2, K, K + 1)]
    masks = [torch.randn(2, K, 5, 6)]
    base = fixed_assignment_loss(cls, masks, labels, K)
    other = fixed_assignment_loss(cls, masks, labels, K, ce_weight=2.0, focal_weight=5.0, dice_weight=0.5)
    torch.testing.assert_close(other["loss_ce"], 2 * base["loss_ce"])
    torch.testing.assert_close(other["loss_focal"], base["loss_focal"] / 4)
    torch.testing.assert_close(other["loss_dice"], base["loss_dice"] / 2)


def test_chunked_checkpointed_mask_loss_equals_direct():
    labels = labels_with_ignore(size=(32, 40))
    present = present_classes(labels, K)
    x1 = torch.randn(2, K, 8, 10, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    f1, d1 = mask_loss_sums(x1, labels, present, chunk_elements=32 * 40)  # one mask per chunk
    f2, d2 = mask_loss_sums(x2, labels, present, chunk_elements=1 << 30)  # all at once
    torch.testing.assert_close(f1, f2)
    torch.testing.assert_close(d1, d2)
    (f1 + 3 * d1).backward()
    (f2 + 3 * d2).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    absent = ~present[:, :, None, None].expand_as(x1)
    assert (x1.grad[absent] == 0).all() and (x1.grad[~absent] != 0).any()


def test_all_ignored_image_gives_finite_loss():
    labels = torch.full((1, 8, 8), 255)
    out = fixed_assignment_loss([torch.randn(1, K, K + 1)], [torch.randn(1, K, 2, 2, requires_grad=True)], labels, K)
    assert all(torch.isfinite(v) for v in out.values()) and out["loss_focal"] == 0


def test_bad_labels_are_reported():
    with pytest.raises(ValueError, match="outside"):
        present_classes(torch.tensor([[[0, 7]]]), K)


# ------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("shrunk", [False, True])
def test_gradients_reach_every_parameter(shrunk):
    torch.manual_seed(0)
    spec = ViTSpec(32, 4, 2)
    if shrunk:
        backbone = ViT(spec, img_size=64, out_indices=(1, 3), shrink_index=2, drop_path_rate=0.1)
        head = ShrunkATMHead(backbone.out_channels, K, embed_dim=16, num_heads=2, query_grid=4)
    else:
        backbone = ViT(spec, img_size=64, out_indices=(1, 2, 3), drop_path_rate=0.1)
        head = ATMHead(backbone.out_channels, K, embed_dim=16, num_heads=2)
    model = SegViT(backbone, head).train()
    x, labels = torch.randn(2, 3, 64, 64), labels_with_ignore(size=(64, 64))
    losses = head.loss(head(backbone(x)), labels)
    assert set(losses) == {"loss_ce", "loss_focal", "loss_dice"}
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


# ------------------------------------------------------------------------------------- published numbers
def _meta_model(variant, shrunk):
    with torch.device("meta"):
        return SegViT(*build_segvit(variant, 150, shrunk=shrunk)).eval()


def test_segvit_vit_b_parameters():
    m = _meta_model("b", False)
    count = lambda mod: sum(p.numel() for p in mod.parameters()) / 1e6  # noqa: E731
    assert count(m) == pytest.approx(108.7, rel=0.005)
    assert count(m.backbone) == pytest.approx(86.4, rel=0.005)
    assert count(m.decode_head) == pytest.approx(22.3, rel=0.005)


@pytest.mark.parametrize("variant,shrunk,size,gflops", [("b", False, 512, 120.9), ("l", False, 640, 637.9),
                                                        ("l", True, 640, 373.5),
                                                        ("b", True, 512, 97.1)])  # paper, Table 8
def test_segvit_gflops(variant, shrunk, size, gflops):
    m = _meta_model(variant, shrunk)
    with torch.no_grad(), MacCounter() as counter:
        m(torch.zeros(1, 3, size, size, device="meta"))
    assert counter.total / 1e9 == pytest.approx(gflops, rel=0.02)


def test_final_class_query_einsum_is_counted():
    # K x K x HW multiply-adds: 150 * 150 * 512 * 512 = 5.90 G for ViT-B at 512 (the spec's number)
    head = ATMHead((8,), 150, embed_dim=8, num_heads=2)
    raw = MaskClassOutput([torch.zeros(1, 150, 151, device="meta")], [torch.zeros(1, 150, 32, 32, device="meta")])
    with MacCounter() as counter:
        head.predict(raw, (512, 512))
    assert counter.total == 150 * 150 * 512 * 512


def test_onnx_export_with_dynamic_sizes(tmp_path):
    pytest.importorskip("onnxruntime")
    from segadapter.export import check_onnx, export_onnx

    torch.manual_seed(0)
    for shrunk in (False, True):
        backbone = ViT(ViTSpec(32, 4, 2), img_size=64, out_indices=(1, 3), shrink_index=2 if shrunk else None)
        head = (ShrunkATMHead(backbone.out_channels, K, embed_dim=16, num_heads=2, query_grid=4) if shrunk
                else ATMHead(backbone.out_channels, K, embed_dim=16, num_heads=2))
        model = SegViT(backbone, head).eval()
        path = export_onnx(model, tmp_path / f"segvit_{shrunk}.onnx", sample_size=(64, 64))
        for size in ((64, 64), (72, 100)):  # another grid (resampled embeddings, padding)
            assert check_onnx(model, path, torch.randn(1, 3, *size)) < 1e-4


@pytest.mark.parametrize("variant,shrunk,taps,strides", [
    ("t", False, (5, 7, 11), (16, 16, 16)), ("s", False, (5, 7, 11), (16, 16, 16)),
    ("b", False, (5, 7, 11), (16, 16, 16)), ("l", False, (7, 15, 23), (16, 16, 16)),
    ("b", True, (5, 11), (16, 32)), ("l", True, (7, 23), (16, 32))])
def test_builders(variant, shrunk, taps, strides):
    with torch.device("meta"):
        backbone, head = build_segvit(variant, 150, shrunk=shrunk)
    assert backbone.out_indices == taps and backbone.out_strides == strides
    # predicts at the input size (the official inference): the Segmentor hands it the size
    assert isinstance(head, ShrunkATMHead if shrunk else ATMHead) and head.output_stride == 1
    if shrunk:
        assert backbone.shrink_index == (8 if variant == "l" else 6)
        assert head.grid_queries.weight.shape[0] == (40 * 40 if variant == "l" else 32 * 32)


def test_builder_errors():
    from segadapter.errors import ConfigError

    with pytest.raises(ConfigError, match="Shrunk"):
        build_segvit("b", 150, shrink_index=4)
    with pytest.raises(ConfigError, match="unknown"):
        build_segvit("h", 150)
    with pytest.raises(ConfigError, match="before the QD"):
        build_segvit("t", 150, shrunk=True, out_indices=(7, 11))
