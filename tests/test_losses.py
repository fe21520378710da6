"""The fused upsample + cross-entropy loss computes what F.interpolate + F.cross_entropy compute."""
import pytest
import torch
import torch.nn.functional as F

from segadapter.modeling.losses import cross_entropy as losses
from segadapter.modeling.losses import UpsampledCrossEntropy, bilinear_taps, seg_cross_entropy


def reference(logits, labels, ignore_index=255):
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(up.float(), labels, ignore_index=ignore_index, reduction="sum")
    return loss / (labels != ignore_index).sum().clamp_min(1)


@pytest.mark.parametrize("low,high,classes", [
    ((8, 8), (32, 32), 5),        # the x4 of a stride-4 head
    ((7, 9), (30, 37), 3),        # non-integer scales
    ((16, 12), (12, 10), 4),      # downsampling
    ((4, 4), (64, 16), 150),      # many classes, several row chunks
])
@pytest.mark.parametrize("chunk", [1 << 20, 200])  # one chunk per image / many small chunks
def test_value_and_gradient_match_interpolate_then_cross_entropy(low, high, classes, chunk, monkeypatch):
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    logits = torch.randn(2, classes, *low, requires_grad=True)
    labels = torch.randint(0, classes, (2, *high))
    labels[0, :3] = 255
    labels[1, :, :2] = 255
    ours = UpsampledCrossEntropy.apply(logits, labels, 255)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = reference(logits, labels)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-6)
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-8)


def test_taps_reproduce_torch_bilinear_resize():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 13, 1)
    for out in (13, 40, 52, 6):
        i0, i1, w0, w1 = bilinear_taps(13, out)
        ours = x[0, 0, i0, 0] * w0 + x[0, 0, i1, 0] * w1
        ref = F.interpolate(x, size=(out, 1), mode="bilinear", align_corners=False)[0, 0, :, 0]
        assert torch.allclose(ours, ref, atol=1e-6)


def test_gradcheck_in_double():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (1, 9, 11))
    labels[0, 0] = 255
    assert torch.autograd.gradcheck(lambda t: UpsampledCrossEntropy.apply(t, labels, 255), (logits,))


def test_large_outputs_take_the_fused_path_and_agree():
    torch.manual_seed(0)
    logits = torch.randn(1, 150, 128, 128, requires_grad=True)  # 150 x 512^2 = 39 M upsampled logits
    labels = torch.randint(0, 150, (1, 512, 512))
    loss = seg_cross_entropy(logits, labels)
    assert loss.grad_fn.name() == "UpsampledCrossEntropyBackward"
    small = seg_cross_entropy(logits[:, :19, :64], labels[:, :256].clamp_max(18))  # 19 x 256 x 512: 2.5 M
    assert small.grad_fn.name() != "UpsampledCrossEntropyBackward"
    (g,) = torch.autograd.grad(loss, logits)
    ref = reference(logits, labels)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(loss, ref, rtol=1e-6) and torch.allclose(g, g_ref, rtol=1e-4, atol=1e-9)


def test_all_pixels_ignored_gives_zero_loss_and_gradient():
    logits = torch.randn(1, 4, 4, 4, requires_grad=True)
    labels = torch.full((1, 16, 16), 255)
    loss = UpsampledCrossEntropy.apply(logits, labels, 255)
    loss.backward()
    assert loss.item() == 0.0
    assert not logits.grad.any()


def test_bf16_logits_get_a_bf16_gradient_close_to_fp32():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 8, 8)
    labels = torch.randint(0, 6, (2, 32, 32))
    low = logits.bfloat16().requires_grad_()
    loss = UpsampledCrossEntropy.apply(low, labels, 255)
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    ref = reference(low.detach().float().requires_grad_(), labels)
    assert abs(loss.item() - ref.item()) < 1e-5


def test_segmentor_loss_matches_the_published_formulation():
    import segadapter

    torch.manual_seed(0)
    model = segadapter.create_model("adapt-mit-b0", num_classes=5).train()
    images = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 5, (2, 64, 64))
    torch.manual_seed(1)
    out = model(images, labels=labels, predictions=True)
    expected = reference(out["logits"], labels) + model.adapters.coarse_weight * reference(out["coarse"], labels)
    assert torch.allclose(out["loss"], expected, rtol=1e-5)


@pytest.mark.parametrize("low,high", [((48, 64), (192, 256)), ((7, 9), (30, 37)), ((16, 12), (12, 10))])
def test_upsampling_by_matmul_is_torch_bilinear_forward_and_backward(low, high):
    """The CPU loss path resizes logits with two matrix products: the same values and gradients
    as F.interpolate, also in bf16 (computed in fp32) and whether or not inference mode built the
    cached matrices first."""
    torch.manual_seed(0)
    x = torch.randn(2, 11, *low, requires_grad=True)
    with torch.inference_mode():
        losses.upsample_logits(x.detach(), high)
    labels = torch.randint(0, 11, (2, *high))
    labels[0, :2] = 255
    ours = losses.plain_cross_entropy(x, labels)
    (g_ours,) = torch.autograd.grad(ours, x)
    ref = reference(x, labels)
    (g_ref,) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-8)
    up = losses.upsample_logits(x.bfloat16(), high)
    assert up.dtype == torch.float32
    torch.testing.assert_close(up, F.interpolate(x.bfloat16().float(), size=high, mode="bilinear",
                                                 align_corners=False), rtol=1e-5, atol=1e-5)
    big = torch.randn(1, 2, 300, 8)  # beyond the matmul sides: F.interpolate itself
    assert torch.equal(losses.upsample_logits(big, (600, 16)),
                       F.interpolate(big, size=(600, 16), mode="bilinear", align_corners=False))
