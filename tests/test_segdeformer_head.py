"""SegDeformer decode head: shapes, gradients, loss, parameter counts, attention against explicit
softmax(QK^T)V references, FLOPs against the analytic count, memory at 1024^2, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segadapter.analysis.flops import MacCounter
from segadapter.errors import ConfigError
from segadapter.modeling.heads import segdeformer as sd
from segadapter.modeling.layers import attention_kernels as attention_layers
from segadapter.modeling.heads.segdeformer import SegDeformerHead, attend
from segadapter.modeling.backbones.mit import mit
from segadapter.modeling.models.segdeformer import SEGDEFORMER_VARIANTS, build_segdeformer, build_segdeformer_by_name

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (8, 12, 16, 20)
B1_WIDTHS = (64, 128, 320, 512)


def _feats(size=32, batch=2, widths=WIDTHS, seed=0):
    """Stride 4, 8, 16, 32 maps of a `size` x `size` stride-4 grid (i.e. a 4*size image)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size // 2 ** i, size // 2 ** i, generator=g) for i, c in enumerate(widths)]


def _head(**kw):
    torch.manual_seed(0)
    kw.setdefault("channels", 16)
    return SegDeformerHead(WIDTHS, 5, **kw)


def _randomise_bn(head):
    """Non-trivial BN statistics and affine parameters, so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in head.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return head


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------ explicit references
def _tokens(x):  # (B, C, h, w) -> (B, N, C)
    return x.flatten(2).transpose(1, 2)


def _explicit_block(blk, query, source):
    """mmseg's SelfAttentionBlock written out: softmax(Q K^T / sqrt(C)) V with the full matrix."""
    if blk.kv_reduce is not None:
        source = blk.kv_reduce(source)
    q, k, v = _tokens(blk.query_project(query)), _tokens(blk.key_project(source)), _tokens(blk.value_project(source))
    a = torch.softmax(torch.einsum("bnc,bmc->bnm", q, k) / q.shape[-1] ** 0.5, dim=-1)
    y = torch.einsum("bnm,bmc->bnc", a, v)
    return blk.out_project(y.transpose(1, 2).reshape(query.shape))


def _explicit_head(head, feats):
    """The whole head in the published order with explicit attention: (logits, Attn_mid map)."""
    size = feats[0].shape[-2:]
    ups = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size else p(f)
           for f, p in zip(feats, head.convs)]
    x = head.fusion_conv(torch.cat(ups, dim=1))
    out = x
    attn_mid = None
    if head.internal_attn is not None:
        out = out + _explicit_block(head.internal_attn, x, x)
    if head.external_attn is not None:
        c = x.shape[1]
        attn_mid = head.mid_query(_tokens(x)) @ head.mid_key(head.class_tokens).T / c ** 0.5
        x_mid = (torch.softmax(attn_mid, -1) @ head.info_tokens).transpose(1, 2).reshape(x.shape)
        out = out + _explicit_block(head.external_attn, x, x_mid)
        attn_mid = attn_mid.transpose(1, 2).reshape(x.shape[0], -1, *x.shape[-2:])
    return head.conv_seg(head.dropout(out)), attn_mid


# ------------------------------------------------------------------ shapes, predict, gradients
def test_shapes_train_and_eval():
    head = _head()
    feats = _feats(size=32)
    raw = head(feats)
    assert raw.logits.shape == (2, 5, 32, 32)
    assert raw.attn_mid.shape == (2, 5, 32, 32)
    head.eval()
    raw = head(feats)
    assert raw.logits.shape == (2, 5, 32, 32) and raw.attn_mid is None  # no aux output at inference
    assert head.output_stride == 4 and head.num_classes == 5


def test_predict_is_identity_and_resizes():
    head = _head().eval()
    raw = head(_feats(size=16))
    assert head.predict(raw) is raw.logits
    assert head.predict(raw, size=(16, 16)) is raw.logits
    ref = F.interpolate(raw.logits, size=(64, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(head.predict(raw, size=(64, 48)), ref)


@pytest.mark.parametrize("reduction", [1, 2])
def test_gradients_reach_every_parameter(reduction):
    head = _head(attention_reduction=reduction)
    feats = [f.requires_grad_() for f in _feats(size=16)]
    labels = torch.randint(0, 5, (2, 64, 64))
    losses = head.loss(head(feats), labels)
    assert set(losses) == {"loss_main", "loss_aux"}
    sum(losses.values()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert all(f.grad.abs().sum() > 0 for f in feats)


# ------------------------------------------------------------------ against explicit references
@pytest.mark.parametrize("reduction", [1, 2, 4])
def test_attention_block_equals_explicit_softmax(reduction):
    head = _randomise_bn(_head(attention_reduction=reduction)).eval()
    g = torch.Generator().manual_seed(3)
    query, source = torch.randn(2, 16, 8, 12, generator=g), torch.randn(2, 16, 8, 12, generator=g)
    for blk in (head.internal_attn, head.external_attn):
        torch.testing.assert_close(blk(query, source), _explicit_block(blk, query, source), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("reduction", [1, 2])
def test_head_equals_explicit_reference(reduction):
    head = _randomise_bn(_head(attention_reduction=reduction)).eval()
    feats = _feats(size=16)
    logits, _ = _explicit_head(head, feats)
    torch.testing.assert_close(head(feats).logits, logits, atol=1e-5, rtol=1e-4)
    head.fused_inference = False  # the published order, as the FLOPs counter runs it
    torch.testing.assert_close(head(feats).logits, logits, atol=1e-5, rtol=1e-4)


def test_training_forward_and_aux_equal_explicit_reference():
    """Training mode (BN on batch statistics), dropout off: logits, Attn_mid and gradients.
    In float64: through training-mode BN the class-token gradient is ill-conditioned enough that
    two fp32 evaluations (either one vs float64) differ by ~0.3%."""
    head = _head(dropout=0.0).double()
    feats = [f.double() for f in _feats(size=16)]
    raw = head(feats)
    logits, attn_mid = _explicit_head(head, feats)
    torch.testing.assert_close(raw.logits, logits)
    torch.testing.assert_close(raw.attn_mid, attn_mid)
    params = [head.class_tokens, head.info_tokens, head.mid_key.weight, head.convs[3].conv.weight]
    grads = torch.autograd.grad(raw.logits.square().sum() + raw.attn_mid.sum(), params)
    ref_grads = torch.autograd.grad(logits.square().sum() + attn_mid.sum(), params)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["fused", "chunked", "strided-auto"])
def test_attend_equals_explicit_softmax_with_gradients(mode, monkeypatch):
    monkeypatch.setattr(attention_layers, "_CHUNK_SCORES", 200)  # several query chunks of a 60 x 50 problem
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 1, n, 8, generator=g, dtype=torch.float64) for n in (60, 50, 50))
    if mode == "strided-auto":  # a strided last dim makes torch's SDPA take its full-matrix path
        q = q.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert attention_layers._sdpa_would_materialise(q, k, v, 0.3)
    else:
        assert not attention_layers._sdpa_would_materialise(q, k, v, 0.3)  # CPU: fused kernel for contiguous tokens
    ins = [t.clone().requires_grad_() for t in (q, k, v)]
    out = attend(*ins, scale=0.3, chunked={"fused": False, "chunked": True, "strided-auto": None}[mode])
    ref_ins = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = torch.softmax(torch.einsum("bhnc,bhmc->bhnm", ref_ins[0], ref_ins[1]) * 0.3, -1) @ ref_ins[2]
    torch.testing.assert_close(out, ref)
    w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), ins)
    ref_grads = torch.autograd.grad((ref * w).sum(), ref_ins)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------ loss
def _reference_ce(logits, labels, average):
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(up, labels, ignore_index=255, reduction="none")  # 0 where ignored
    count = (labels != 255).sum() if average == "valid" else labels.numel()
    return per_pixel.sum() / count


@pytest.mark.parametrize("average", ["valid", "all"])
def test_loss_equals_direct_computation(average):
    head = _head(loss_average=average)
    raw = head(_feats(size=16))
    labels = torch.randint(0, 5, (2, 64, 64))
    labels[:, :20] = 255
    losses = head.loss(raw, labels)
    torch.testing.assert_close(losses["loss_main"], _reference_ce(raw.logits, labels, average))
    torch.testing.assert_close(losses["loss_aux"], 0.4 * _reference_ce(raw.attn_mid, labels, average))
    assert set(losses) == {"loss_main", "loss_aux"}


def test_loss_averages_differ_by_valid_fraction():
    raw = _head()(_feats(size=16))
    labels = torch.randint(0, 5, (2, 64, 64))
    labels[:, :16] = 255  # a quarter ignored
    valid = _head(loss_average="valid").loss(raw, labels)
    every = _head(loss_average="all").loss(raw, labels)
    for key in valid:
        torch.testing.assert_close(every[key], 0.75 * valid[key])


def test_loss_without_external_has_no_aux_term():
    head = _head(external=False)
    losses = head.loss(head(_feats(size=16)), torch.randint(0, 5, (2, 64, 64)))
    assert set(losses) == {"loss_main"}


# ------------------------------------------------------------------ parameter counts
def _meta_count(fn):
    with torch.device("meta"):
        return _nparams(fn())


@pytest.mark.parametrize("variant,expected", [("b1", 14_453_590), ("b2", 25_498_454)])
def test_parameter_counts_match_official_code(variant, expected):
    """peers.md: the official code's counts at K = 150 (the paper prints 14.35M / 25.40M)."""
    n = _meta_count(lambda: mit(variant)) + _meta_count(lambda: SegDeformerHead(B1_WIDTHS, 150))
    assert abs(n - expected) <= 0.005 * expected
    assert n == expected  # exact today: mit() + this head reproduce the official module layout


def test_switches_change_parameter_count_as_expected():
    C, K = 256, 150
    full = _meta_count(lambda: SegDeformerHead(B1_WIDTHS, K))
    block = 4 * (C * C + 2 * C)  # four 1x1 convs without bias, each with a BN
    assert full - _meta_count(lambda: SegDeformerHead(B1_WIDTHS, K, internal=False)) == block
    external = 2 * (C * C + C) + 2 * K * C + block  # q/k Linears, X_class + X_info, second block
    assert full - _meta_count(lambda: SegDeformerHead(B1_WIDTHS, K, external=False)) == external
    baseline = _meta_count(lambda: SegDeformerHead(B1_WIDTHS, K, internal=False, external=False))
    assert baseline + _meta_count(lambda: mit("b1")) == 13_716_822  # peers.md: Segformer-B1 (mmseg head)
    reduce = 2 * (C * C * 2 * 2 + 2 * C)  # one stride-2 conv + BN per attention block
    assert _meta_count(lambda: SegDeformerHead(B1_WIDTHS, K, attention_reduction=2)) - full == reduce


# ------------------------------------------------------------------ FLOPs
def _analytic_macs(widths, size, C, K, R=1):
    n = [(size // 2 ** i) ** 2 for i in range(len(widths))]
    N, M = n[0], n[0] // (R * R)
    fusion = sum(ni * ci * C for ni, ci in zip(n, widths)) + N * len(widths) * C * C
    block = 2 * N * C * C + 2 * M * C * C + 2 * N * M * C + (N * C * C if R > 1 else 0)
    external = N * C * C + K * C * C + 2 * N * K * C + block  # q, k, Attn_mid, X_mid, Y_exter
    return fusion + block + external + N * C * K


@pytest.mark.parametrize("reduction", [1, 2])
def test_eval_flops_equal_analytic_count(reduction):
    """What the FLOPs counter sees in eval (published order): exactly the architecture's
    multiply-adds, nothing for the auxiliary output."""
    head = _head(attention_reduction=reduction).eval()
    head.fused_inference = False
    with torch.no_grad(), MacCounter() as counter:
        head(_feats(size=16, batch=1))
    assert counter.total == _analytic_macs(WIDTHS, 16, 16, 5, reduction)


# ------------------------------------------------------------------ family builder
def test_builder_makes_matching_pairs():
    assert "segdeformer-mit-b1" in SEGDEFORMER_VARIANTS and "segdeformer-convnext-t" in SEGDEFORMER_VARIANTS
    with torch.device("meta"):
        backbone, head = build_segdeformer_by_name("segdeformer-convnext-t", 19, attention_reduction=2)
    assert head.in_channels == backbone.out_channels and head.num_classes == 19 and head.attention_reduction == 2
    torch.manual_seed(0)
    backbone, head = build_segdeformer("mit", "b0", 4, channels=32)
    head.eval()
    with torch.no_grad():
        out = head(backbone(torch.randn(1, 3, 64, 64)))
    assert head.predict(out, size=(64, 64)).shape == (1, 4, 64, 64)
    with pytest.raises(ConfigError, match="unknown SegDeformer options"):
        build_segdeformer("mit", "b0", 4, chanels=32)
    with pytest.raises(ConfigError, match="unknown mit variant"):
        build_segdeformer("mit", "b9", 4)
    with pytest.raises(ConfigError, match="unknown SegDeformer backbone"):
        build_segdeformer("swin", "t", 4)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw,match", [
    (dict(channels=0), "channels must be a positive integer"),
    (dict(channels=-8), "channels must be a positive integer"),
    (dict(attention_reduction=0), "attention_reduction must be a positive integer"),
    (dict(attention_reduction=1.5), "attention_reduction must be a positive integer"),
    (dict(loss_average="mean"), "loss_average must be one of"),
    (dict(aux_weight=-1.0), "aux_weight must be >= 0"),
])
def test_bad_options_raise_config_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        _head(**kw)


def test_feature_mismatch_raises_config_error():
    head = _head()
    with pytest.raises(ConfigError, match=r"expects 4 feature maps with channels \(8, 12, 16, 20\), got 3"):
        head(_feats(size=16)[:3])
    with pytest.raises(ConfigError, match=r"got 4 with channels \(8, 12, 16, 24\)"):
        head(_feats(size=16, widths=(8, 12, 16, 24)))


def test_reduction_not_dividing_the_map_raises_config_error():
    head = _head(attention_reduction=4)
    feats = [torch.randn(1, c, 10 // 2 ** i + 1, 10 // 2 ** i + 1) for i, c in enumerate(WIDTHS)]
    with pytest.raises(ConfigError, match=r"attention_reduction 4 must divide .* got 11 x 11"):
        head(feats)


# ------------------------------------------------------------------ memory
_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch
    from segadapter.modeling.heads import segdeformer as sd

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def vm_bytes():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()

    case, size, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    if case.startswith("head"):
        widths = (8, 8, 8, 8)
        external = case != "head-eval"  # at 1024^2 one N x N block is enough to show the point
        head = sd.SegDeformerHead(widths, 4, channels, external=external).train(case == "head-train")
        feats = [torch.randn(1, c, size // 2 ** i, size // 2 ** i) for i, c in enumerate(widths)]
        labels = torch.randint(0, 4, (1, 4 * size, 4 * size))
        run = lambda: head(feats) if case == "head-eval" else sum(head.loss(head(feats), labels).values()).backward()
    else:  # the chunked fallback, forward and backward
        q, k, v = (torch.randn(1, 1, size * size, channels, requires_grad=True) for _ in range(3))
        run = lambda: sd.attend(q, k, v, channels ** -0.5, chunked=True).sum().backward()
    # a materialising bug must fail here, not swap the shared machine: cap the address space
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + 3 * 2**30, resource.RLIM_INFINITY))
    before = rss_mib()
    if case == "head-eval":
        with torch.no_grad():
            run()
    else:
        run()
    # VmHWM is this process image's own high-water mark; ru_maxrss is not: Linux carries it over
    # from the parent at fork, so under a big pytest process it would report the parent's size
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"extra_mib": peak - before}))
""")


def _peak_extra_mib(case, size, channels):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, case, str(size), str(channels)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["extra_mib"]


def test_head_memory_at_1024_never_builds_the_score_matrix():
    """Head alone, eval, no_grad, stride-4 features of a 1024 x 1024 image: N = 256^2 = 65,536
    tokens, C = 32, internal block only (to keep the test ~10 s on one thread: the N^2 work does
    not shrink with C; the external block runs the same `AttentionBlock`, and both run in the
    512 training-step test below).

    Bound: one (1, C, 256, 256) fp32 map is N * C * 4 B = 8 MiB. At any time the head holds at
    most ~16 such maps (stage features and fusion partial sums, X_inter, Q, K, V, the attention
    output and its projection, the sum F, the class scores at K = 4) = 128 MiB, plus 64 MiB for
    allocator slack and kernel scratch: 192 MiB (measured ~60-100 MiB). A single N x N fp32 score
    matrix would be 16 GiB; the address space is capped 3 GiB above the start, so such a bug
    fails with an allocation error instead of swapping the machine."""
    extra = _peak_extra_mib("head-eval", 256, 32)
    assert extra < 192, f"head used {extra:.0f} MiB above its start at N = 65,536"


def test_head_training_step_memory_at_512():
    """Head alone, training forward + both losses + backward, stride-4 features of a 512 x 512
    image: N = 128^2 = 16,384, C = 32, where the N x N fp32 score matrix is 1 GiB per attention
    block (and autograd would keep each block's softmax). Activations kept for backward: ~30
    (1, C, 128, 128) maps of 2 MiB, plus the 512^2 loss terms (the upsampled 4-class logits and
    their gradient, 4 MiB each, for each loss) and the fused kernel's per-row statistics: ~100
    MiB (measured ~130 with the allocator's slack); bound 256 MiB, a quarter of one score matrix."""
    extra = _peak_extra_mib("head-train", 128, 32)
    assert extra < 256, f"head training step used {extra:.0f} MiB above its start at N = 16,384"


def test_chunked_fallback_memory_with_backward():
    """`attend(chunked=True)` forward + backward at N = 128^2 = 16,384, C = 16, where the N x N
    fp32 score matrix is 1 GiB (and an autograd graph would keep its softmax: another 1 GiB).
    The loop holds at most two chunk buffers of 2^22 scores (2 x 16 MiB), q, k, v, the output
    and the gradients (~8 x 1 MiB), plus allocator slack and pages glibc keeps after freeing
    (measured ~40 MiB forward, ~100 MiB with backward): bound 256 MiB, a quarter of one matrix."""
    extra = _peak_extra_mib("chunked-train", 128, 16)
    assert extra < 256, f"chunked attention used {extra:.0f} MiB above its start at N = 16,384"
