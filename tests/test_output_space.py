"""Test-time averaging in the space each family's official code averages in. Mask-classification
heads return probabilities; mmseg (SegViT) averages sliding windows in that space and flip /
multi-scale passes as the mean of each pass's softmax; detectron2 (SAN) averages the passes as
they are and resizes the mask logits to the output size before combining. Per-pixel heads: logits,
softmax-averaged TTA (unchanged). The references below are written out window by window and pass
by pass, as the official loops do."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import segadapter
from segadapter.evaluation.inference import inference
from segadapter.modeling.heads.base import DETECTRON2_MASK_SCORES, LOGITS, MMSEG_MASK_SCORES
from segadapter.modeling.meta_arch.base import output_space


@pytest.fixture(scope="module")
def segvit():
    torch.manual_seed(0)
    model = segadapter.create_model("segvit-vit-t", num_classes=4, img_size=32).eval()
    with torch.no_grad():  # class and mask logits of a trained model's range
        model.decode_head.class_embed.weight.mul_(20)
    return model


def test_heads_declare_their_output_space(segvit):
    assert output_space(segvit) == MMSEG_MASK_SCORES
    assert output_space(segadapter.create_model("segformer-b0", num_classes=3)) == LOGITS
    assert output_space(segadapter.create_model("segdeformer-mit-b0", num_classes=3, channels=16)) == LOGITS
    san = segadapter.create_model("san-vit-b16", num_classes=3, side_width=48, side_heads=2, side_depth=4,
                                  num_queries=10, clip_config_override=_tiny_clip())
    assert output_space(san) == DETECTRON2_MASK_SCORES


@torch.no_grad()
def test_segvit_slide_averages_the_scores_as_mmseg(segvit):
    x = torch.randn(1, 3, 32, 56, generator=torch.Generator().manual_seed(1))
    got = inference(segvit, x, mode="slide", crop_size=(32, 32), stride=(24, 24))
    # mmseg's slide_inference: the sum of each window's head output (scores), divided by the count
    total, count = torch.zeros(1, 4, 32, 56), torch.zeros(1, 1, 32, 56)
    for left in (0, 24):
        total[..., left:left + 32] += segvit(x[..., left:left + 32])
        count[..., left:left + 32] += 1
    want = total / count
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    # averaging log-scores instead (the old behaviour) gives other numbers in the overlap
    log_avg = torch.zeros_like(total)
    for left in (0, 24):
        log_avg[..., left:left + 32] += segvit(x[..., left:left + 32]).clamp_min(1e-6).log()
    assert ((log_avg / count).exp() - want)[..., 24:32].abs().max() > 1e-4


@torch.no_grad()
def test_segvit_flip_averages_softmax_of_scores_as_mmseg(segvit):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got = inference(segvit, x, flip=True)
    # mmseg's aug_test: mean over passes of softmax(output) (inference() applies the softmax)
    want = (segvit(x).softmax(1) + segvit(x.flip(-1)).flip(-1).softmax(1)) / 2
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def _tiny_clip():
    from segadapter.modeling.backbones import clip as clip_module

    return clip_module.ClipConfig(32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2),
                                  clip_module.ClipTextConfig(77, 600, 32, 2, 2))


@pytest.fixture(scope="module")
def san():
    torch.manual_seed(0)
    model = segadapter.create_model("san-vit-b16", classes=["sky", "road", "car"], side_width=48, side_heads=2,
                                    side_depth=4, num_queries=10, clip_config_override=_tiny_clip()).eval()
    with torch.no_grad():  # masks of a trained model's range (the random one's sit where sigmoid is linear)
        model.decode_head.mask_decoder.query_mlp.layers[-1].weight.mul_(50)
    return model


@torch.no_grad()
def test_san_whole_predicts_at_the_output_size_and_flip_averages_scores(san):
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    out_size = (50, 70)
    got = inference(san, x, out_size=out_size)
    # detectron2: mask logits resized to the output (sem_seg_postprocess), then combined
    head = san.decode_head
    raw = san.forward_raw(x)[0]
    want = head.predict(raw, out_size)
    torch.testing.assert_close(got, want)
    combine_first = F.interpolate(head.predict(raw), out_size, mode="bilinear", align_corners=False)
    assert (want - combine_first).abs().max() > 1e-4
    # SemanticSegmentorWithTTA: the mean of the passes' outputs as they are
    flipped = head.predict(san.forward_raw(x.flip(-1))[0], out_size).flip(-1)
    torch.testing.assert_close(inference(san, x, flip=True, out_size=out_size), (want + flipped) / 2)


def test_inferencer_scores_are_probabilities(tmp_path, segvit):
    segvit.save_pretrained(tmp_path / "segvit")
    inferencer = segadapter.Inferencer(tmp_path / "segvit")
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    pred = inferencer(image, scores=True)
    assert pred.scores.shape[0] == 4
    np.testing.assert_allclose(pred.scores.sum(0), 1.0, atol=1e-5)
    assert (pred.scores.argmax(0) == pred.label).all()
