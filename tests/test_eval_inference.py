"""Whole / slide / flip / multi-scale inference on tiny models that follow the model contract."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segadapter.errors import ConfigError
from segadapter.inference.segment import _starts, check_inference_args, eval_mode, inference


class PixelModel(nn.Module):
    """1x1 conv at full resolution: each output pixel depends on its input pixel only, so any
    tiling of the image must give exactly the whole-image logits."""

    def __init__(self, k=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 1)
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.conv(x)


class Stride4Model(nn.Module):
    """Contract-shaped: logits at H/4 (ceil), dict in training mode."""

    def __init__(self, k=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 3, padding=1)
        self.num_classes = k

    def forward(self, x):
        out = F.avg_pool2d(self.conv(x), 4, ceil_mode=True)
        return {"logits": out} if self.training else out


def test_slide_equals_whole_for_per_pixel_model():
    model = PixelModel()
    img = torch.randn(2, 3, 37, 53)  # sizes not multiples of crop or stride
    whole = inference(model, img, mode="whole")
    model.calls.clear()
    slide = inference(model, img, mode="slide", crop_size=(16, 24), stride=(10, 15), crop_batch_size=3)
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)
    assert whole.shape == (2, 5, 37, 53)
    # 4 x 3 windows of full crop size, 3 windows (x 2 images) per forward
    assert model.calls == [(6, 3, 16, 24)] * 4


def test_slide_on_image_smaller_than_crop_pads():
    model = PixelModel()
    img = torch.randn(3, 10, 12)
    slide = inference(model, img, mode="slide", crop_size=(16, 16), stride=(8, 8))
    assert model.calls == [(1, 3, 16, 16)]  # one padded window
    torch.testing.assert_close(slide, inference(model, img), rtol=1e-5, atol=1e-5)
    assert slide.shape == (5, 10, 12)


def test_window_starts_cover_every_pixel():
    for size, crop, stride in [(37, 16, 10), (16, 16, 5), (100, 33, 33), (34, 33, 1), (50, 7, 3)]:
        covered = torch.zeros(size, dtype=torch.bool)
        for s in _starts(size, crop, stride):
            assert 0 <= s <= size - crop
            covered[s : s + crop] = True
        assert covered.all(), (size, crop, stride)
    assert _starts(37, 16, 10) == [0, 10, 20, 21]


def test_whole_resizes_stride4_logits_to_out_size():
    model = Stride4Model()
    img = torch.randn(3, 34, 41)
    out = inference(model, img)
    ref = F.interpolate(model.eval()(img[None]), size=(34, 41), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, ref)
    assert inference(model, img, out_size=(68, 82)).shape == (4, 68, 82)


def test_flip_tta_on_mirror_symmetric_input():
    # a model that is NOT flip-equivariant: a horizontal gradient feature
    class Lopsided(nn.Module):
        def forward(self, x):
            ramp = torch.linspace(0, 1, x.shape[-1]).expand_as(x[:, :1])
            return torch.cat([x[:, :1] + ramp, x[:, :1] - ramp], 1)

    img = torch.randn(1, 3, 8, 10)
    img = (img + img.flip(-1)) / 2  # mirror-symmetric
    model = Lopsided()
    probs = inference(model, img, flip=True, min_size=1)
    # averaged over an image and its mirror, the result must be mirror-symmetric itself
    torch.testing.assert_close(probs, probs.flip(-1))
    # and equal to the mean of the two softmaxes, computed by hand
    p1 = model(img).softmax(1)
    p2 = model(img.flip(-1)).flip(-1).softmax(1)
    torch.testing.assert_close(probs, (p1 + p2) / 2)
    assert not torch.allclose(p1, probs)  # flip really changed something
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 8, 10))


def test_multiscale_averages_probabilities_at_original_size():
    model = PixelModel()
    img = torch.randn(1, 3, 20, 30)
    out = inference(model, img, scales=(0.5, 1.0, 1.5), min_size=1)
    assert out.shape == (1, 5, 20, 30)
    # ratio kept: the passes saw 10x15, 20x30 and 30x45 images
    assert model.calls == [(1, 3, 10, 15), (1, 3, 20, 30), (1, 3, 30, 45)]
    manual = 0
    for s in (0.5, 1.0, 1.5):
        x = F.interpolate(img, size=(round(20 * s), round(30 * s)), mode="bilinear", align_corners=False) if s != 1 else img
        manual = manual + F.interpolate(model(x), size=(20, 30), mode="bilinear", align_corners=False).softmax(1)
    torch.testing.assert_close(out, manual / 3)


def test_restores_training_mode_and_no_grad():
    model = Stride4Model()
    model.train()
    model.conv.eval()  # a sub-module deliberately in eval stays so
    out = inference(model, torch.randn(3, 16, 16), mode="slide", crop_size=(8, 8))
    assert model.training and not model.conv.training
    assert not out.requires_grad
    with eval_mode(model):
        assert not model.training
    assert model.training


def test_bf16_autocast_accumulates_in_fp32():
    model = PixelModel()
    img = torch.randn(1, 3, 24, 24)
    ref = inference(model, img, mode="slide", crop_size=(16, 16), stride=(8, 8))
    out = inference(model, img, mode="slide", crop_size=(16, 16), stride=(8, 8), amp_dtype=torch.bfloat16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.05)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="crop size"):
        check_inference_args("slide", None, None, (1.0,))
    with pytest.raises(ConfigError, match="larger than the crop"):
        check_inference_args("slide", (8, 8), (9, 4), (1.0,))
    with pytest.raises(ConfigError, match="mode"):
        check_inference_args("tiles", None, None, (1.0,))
    with pytest.raises(ConfigError, match="scales"):
        check_inference_args("whole", None, None, (0.0,))
    assert check_inference_args("slide", (512, 512), None, (1.0,)) == ((512, 512), (341, 341))


def test_small_images_are_padded_for_strided_models():
    # a model that, like the real backbones, cannot run below 32 pixels
    class NeedsThirtyTwo(Stride4Model):
        def forward(self, x):
            assert min(x.shape[-2:]) >= 32, x.shape
            return super().forward(x)

    model = NeedsThirtyTwo()
    img = torch.randn(3, 7, 45)
    out = inference(model, img, scales=(0.5, 1.0))
    assert out.shape == (4, 7, 45)
    padded = F.pad(img, (0, 0, 0, 25))
    ref = F.interpolate(model.eval()(padded[None]), size=(32, 45), mode="bilinear", align_corners=False)
    torch.testing.assert_close(inference(model, img), ref[0, :, :7])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_matches_cpu(dtype):
    model = Stride4Model()
    img = torch.randn(1, 3, 70, 90)
    ref = inference(model, img, mode="slide", crop_size=(32, 32), flip=True)
    out = inference(model.cuda(), img.cuda(), mode="slide", crop_size=(32, 32), flip=True, amp_dtype=dtype)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), ref, atol=0.02, rtol=0.02)
