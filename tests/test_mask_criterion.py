"""Hungarian matcher and the Mask2Former criterion against direct computations."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from segadapter.modeling.losses.mask_criterion import (MaskClassificationCriterion, importance_points,
                                                  semantic_to_targets)
from segadapter.modeling.losses.matcher import HungarianMatcher, point_sample


def _pixel_centres(h, w):
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], -1)  # (h*w, 2) as (x, y)


def _dense_cost(logits, masks, labels, tgt_masks, wc=2.0, wm=5.0, wd=5.0):
    """Cost written out entry by entry over all pixels."""
    q, t = masks.shape[0], tgt_masks.shape[0]
    prob = logits.softmax(-1)
    cost = torch.zeros(q, t)
    for i in range(q):
        for j in range(t):
            x, y = masks[i].flatten(), tgt_masks[j].flatten()
            bce = F.binary_cross_entropy_with_logits(x, y)
            p = x.sigmoid()
            dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            cost[i, j] = -wc * prob[i, labels[j]] + wm * bce + wd * dice
    return cost


def test_point_sample_at_pixel_centres_reads_pixels():
    x = torch.randn(2, 3, 5, 7)
    got = point_sample(x, _pixel_centres(5, 7).expand(2, -1, -1))
    torch.testing.assert_close(got, x.flatten(2))


def test_cost_matrix_against_dense_formula():
    torch.manual_seed(0)
    logits, masks = torch.randn(6, 5), torch.randn(6, 4, 5) * 3
    labels, tgt = torch.tensor([1, 3, 0]), (torch.rand(3, 4, 5) > 0.5).float()
    m = HungarianMatcher()
    coords = _pixel_centres(4, 5)[None]
    pred = point_sample(masks[:, None], coords.expand(6, -1, -1))[:, 0]
    tp = point_sample(tgt[:, None], coords.expand(3, -1, -1))[:, 0]
    torch.testing.assert_close(m.cost_matrix(logits, pred, labels, tp), _dense_cost(logits, masks, labels, tgt),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("q,t,seed", [(5, 3, 0), (4, 4, 1), (6, 2, 2), (5, 5, 3), (3, 1, 4)])
def test_assignment_is_brute_force_optimum(q, t, seed):
    cost = torch.randn(q, t, generator=torch.Generator().manual_seed(seed))
    rows, cols = HungarianMatcher.assign(cost)
    assert len(set(rows.tolist())) == t and sorted(cols.tolist()) == list(range(t))
    best = min(sum(cost[r, c] for c, r in enumerate(perm)) for perm in itertools.permutations(range(q), t))
    torch.testing.assert_close(cost[rows, cols].sum(), torch.as_tensor(best))


def test_matcher_finds_the_planted_assignment():
    g = torch.Generator().manual_seed(0)
    tgt = (torch.rand(3, 16, 16, generator=g) > 0.5).float()
    labels = torch.tensor([2, 0, 1])
    masks = torch.randn(1, 5, 16, 16, generator=g)
    logits = torch.zeros(1, 5, 4)
    planted = {4: 0, 1: 1, 3: 2}  # query -> target
    for qi, tj in planted.items():
        masks[0, qi] = (tgt[tj] * 2 - 1) * 8
        logits[0, qi, labels[tj]] = 6
    rows, cols = HungarianMatcher()(logits, masks, [(labels, tgt)], generator=g)[0]
    assert dict(zip(rows.tolist(), cols.tolist())) == planted


def test_semantic_to_targets():
    labels = torch.tensor([[[0, 0, 255], [2, 2, 255]], [[255, 255, 255], [255, 255, 255]]])
    (c0, m0), (c1, m1) = semantic_to_targets(labels, num_classes=3)
    assert c0.tolist() == [0, 2] and m0.tolist() == [[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [1, 1, 0]]]
    assert c1.numel() == 0 and m1.shape == (0, 2, 3)
    with pytest.raises(ValueError, match="out of range"):
        semantic_to_targets(labels, num_classes=2)


def test_class_loss_against_direct_weighted_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4)  # K = 3
    targets = [(torch.tensor([2, 0]), None), (torch.tensor([1]), None)]
    indices = [(torch.tensor([1, 3]), torch.tensor([1, 0])), (torch.tensor([2]), torch.tensor([0]))]
    got = MaskClassificationCriterion().class_loss(logits, indices, targets)
    want_cls = [[3, 0, 3, 2], [3, 3, 1, 3]]  # matched queries get their target's class, others no-object (3)
    num, den = 0.0, 0.0
    for b in range(2):
        for q in range(4):
            w = 0.1 if want_cls[b][q] == 3 else 1.0
            num += -w * logits[b, q].log_softmax(-1)[want_cls[b][q]]
            den += w
    torch.testing.assert_close(got, num / den)


def test_importance_points_pick_the_most_uncertain():
    logits = torch.randn(3, 1, 8, 8) * 4
    coords = importance_points(logits, 40, 3.0, 0.75, generator=torch.Generator().manual_seed(5))
    assert coords.shape == (3, 40, 2) and ((coords >= 0) & (coords <= 1)).all()
    cand = torch.rand(3, 120, 2, generator=torch.Generator().manual_seed(5))
    unc = point_sample(logits, cand)[:, 0].abs()
    picked = point_sample(logits, coords[:, :30])[:, 0].abs()
    # the 30 importance points are the 30 candidates of smallest |logit|
    torch.testing.assert_close(picked.sort(-1).values, unc.sort(-1).values[:, :30])


def test_mask_losses_approach_dense_losses_with_uniform_points():
    """Uniform point sampling estimates BCE and dice over the continuous (bilinear, zero-padded
    as grid_sample reads it) mask; the reference averages the same function on a fine grid."""
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(1, 4, 8, 8, generator=g) * 2
    tgt = torch.zeros(2, 64, 64)
    tgt[0, :40, :30] = 1
    tgt[1, 20:, 25:] = 1
    crit = MaskClassificationCriterion(num_points=200_000, importance=0.0)
    indices = [(torch.tensor([1, 3]), torch.tensor([0, 1]))]
    bce, dice = crit.mask_losses(masks, indices, [(torch.tensor([0, 1]), tgt)], num_masks=2, generator=g)
    grid = _pixel_centres(128, 128)[None].expand(2, -1, -1)
    up = point_sample(masks[0, [1, 3]][:, None], grid)[:, 0]
    tgt = point_sample(tgt[:, None], grid)[:, 0]
    want_bce = F.binary_cross_entropy_with_logits(up, tgt, reduction="none").mean(1).sum() / 2
    p = up.sigmoid()
    # dice sums scale with the number of points: compare per-point densities
    n = 200_000 / grid.shape[1]
    want_dice = (1 - (2 * n * (p * tgt).sum(1) + 1) / (n * p.sum(1) + n * tgt.sum(1) + 1)).sum() / 2
    assert abs(bce / want_bce - 1) < 0.02 and abs(dice / want_dice - 1) < 0.02


def test_deep_supervision_outputs_matched_separately():
    g = torch.Generator().manual_seed(0)
    outs = [(torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 8, 8, generator=g)) for _ in range(2)]
    labels = torch.randint(0, 3, (2, 32, 32), generator=g)
    targets = semantic_to_targets(labels, 3)
    crit = MaskClassificationCriterion(num_points=500)
    both = crit(outs, targets, generator=torch.Generator().manual_seed(1))
    first = crit(outs[:1], targets, generator=torch.Generator().manual_seed(1))
    assert set(both) == {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"}
    for k in ("loss_ce", "loss_mask", "loss_dice"):
        torch.testing.assert_close(both[k + "_0"], first[k])
    # the weights: CE x2, BCE x5, dice x5
    idx = crit.matcher(*outs[0], targets, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first["loss_ce"], 2 * crit.class_loss(outs[0][0], idx, targets))
