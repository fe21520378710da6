"""Model shapes, training outputs, gradients, and the adapter's identity property."""
import pytest
import torch

import segadapter
from segadapter.errors import ConfigError

K = 5


SMALL = ["segformer-b0", "adapt-mit-b0", "semask-mit-b0", "convnext-t", "adapt-convnext-t"]


@pytest.mark.parametrize("name", SMALL)
def test_small_models_give_finite_stride4_logits(name):
    torch.manual_seed(0)
    model = segadapter.create_model(name, num_classes=K).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 96))
    assert logits.shape == (1, K, 16, 24)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", segadapter.list_models())
def test_every_registered_model_gives_logits_at_its_declared_stride(name):
    # On the meta device: the whole forward runs shape-only, so even B5 costs no compute.
    with torch.device("meta"):
        model = segadapter.create_model(name, num_classes=K).eval()
        logits = model(torch.randn(2, 3, 64, 96))
        out = model.train()(torch.randn(2, 3, 64, 96))
    stride = model.output_stride
    assert logits.shape == (2, K, 64 // stride, 96 // stride)
    assert out["logits"].shape == logits.shape
    assert ("coarse" in out) == (getattr(model, "adapters", None) is not None)


@pytest.mark.parametrize("name", ["adapt-mit-b0", "semask-mit-b0", "adapt-convnext-t"])
def test_adapter_side_outputs_and_coarse_map_shapes(name):
    model = segadapter.create_model(name, num_classes=K).eval()  # eval: no dropout, repeatable
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats, sides = model.extract_features(x)
        out = model(x, labels=torch.zeros(2, 64, 64, dtype=torch.long), predictions=True)
        losses_only = model(x, labels=torch.zeros(2, 64, 64, dtype=torch.long))
    assert set(losses_only) == {"loss", "loss_main", "loss_coarse"}  # predictions only on request
    assert [tuple(s.shape) for s in sides] == [(2, K, 64 // 2 ** (i + 2), 64 // 2 ** (i + 2)) for i in range(4)]
    assert [f.shape[1] for f in feats] == list(model.backbone.out_channels)
    assert {"logits", "coarse", "loss", "loss_main", "loss_coarse"} == set(out)
    assert set(model.train()(x)) == {"logits", "coarse"}
    assert out["coarse"].shape == out["logits"].shape == (2, K, 16, 16)
    # the coarse map is the sum of the upsampled side outputs
    expected = sum(torch.nn.functional.interpolate(s, size=(16, 16), mode="bilinear", align_corners=False)
                   for s in sides)
    assert torch.allclose(out["coarse"], expected, atol=1e-5)


def test_plain_model_has_no_coarse_output():
    model = segadapter.create_model("segformer-b0", num_classes=K).train()
    out = model(torch.randn(2, 3, 64, 64), labels=torch.randint(0, K, (2, 64, 64)))
    assert "coarse" not in out and "loss_coarse" not in out
    assert torch.equal(out["loss"], out["loss_main"])


def test_loss_is_main_plus_weighted_coarse_and_ignores_255():
    torch.manual_seed(0)
    model = segadapter.create_model("adapt-mit-b0", num_classes=K, coarse_weight=0.25).train()
    labels = torch.randint(0, K, (2, 64, 64))
    labels[:, :10] = 255
    out = model(torch.randn(2, 3, 64, 64), labels=labels, predictions=True)
    # every loss term comes already weighted; the total is their sum
    assert torch.allclose(out["loss"], out["loss_main"] + out["loss_coarse"])
    ref_coarse = torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(out["coarse"], size=(64, 64), mode="bilinear", align_corners=False),
        labels, ignore_index=255)
    assert torch.allclose(out["loss_coarse"], 0.25 * ref_coarse, atol=1e-5)
    up = torch.nn.functional.interpolate(out["logits"], size=(64, 64), mode="bilinear", align_corners=False)
    ref = torch.nn.functional.cross_entropy(up, labels, ignore_index=255)
    assert torch.allclose(out["loss_main"], ref, atol=1e-5)
    all_ignored = torch.full((2, 64, 64), 255)
    assert model(torch.randn(2, 3, 64, 64), labels=all_ignored)["loss"].item() == 0.0


@pytest.mark.parametrize("name", ["adapt-mit-b0", "adapt-convnext-t", "semask-mit-b0"])
def test_gradients_reach_every_adapter_parameter(name):
    torch.manual_seed(0)
    model = segadapter.create_model(name, num_classes=K).train()
    out = model(torch.randn(2, 3, 64, 64), labels=torch.randint(0, K, (2, 64, 64)))
    out["loss"].backward()
    dead = [n for n, p in model.adapters.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"no gradient reaches: {dead}"


@pytest.mark.parametrize("adapted,plain", [("adapt-mit-b0", "segformer-b0"), ("adapt-convnext-t", "convnext-t")])
def test_zero_mu_adapter_is_exactly_the_plain_model(adapted, plain):
    torch.manual_seed(0)
    a = segadapter.create_model(adapted, num_classes=K).eval()
    p = segadapter.create_model(plain, num_classes=K, head_act="gelu").eval()
    shared = {k: v for k, v in a.state_dict().items() if not k.startswith("adapters.")}
    p.load_state_dict(shared, strict=True)
    with torch.no_grad():
        for layer in a.adapters:
            for blk in layer.blocks:
                blk.mu.zero_()
        x = torch.randn(2, 3, 64, 64)
        fa, _ = a.extract_features(x)
        fp, _ = p.extract_features(x)
        for u, v in zip(fa, fp):
            assert torch.equal(u, v)
        assert torch.equal(a(x), p(x))
        # and with the paper's mu the adapter does change the features
        for i, layer in enumerate(a.adapters):
            for blk in layer.blocks:
                blk.mu.fill_(0.5)
        assert not torch.equal(a(x), p(x))


def test_ablation_options_build_and_run():
    x = torch.randn(1, 3, 64, 64)
    variants = [
        dict(kernel_size=3), dict(kernel_size=7), dict(norm="bn"), dict(norm="in"), dict(ffn_ratio=2.0),
        dict(ffn_ratio=4.0), dict(blocks_per_stage=[1, 2, 2, 1]), dict(mu_init=[1.0] * 4, mu_learnable=False),
        dict(coarse_weight=0.0), dict(head_act="relu"),
    ]
    for opts in variants:
        m = segadapter.create_model("adapt-mit-b0", num_classes=K, **opts).eval()
        with torch.no_grad():
            assert m(x).shape == (1, K, 16, 16), opts
    m = segadapter.create_model("adapt-mit-b0", num_classes=K, kernel_size=7)
    assert m.adapters[0].blocks[0].attn.feat_attn.dwconv.kernel_size == (7, 7)
    m = segadapter.create_model("adapt-mit-b0", num_classes=K, blocks_per_stage=[1, 2, 2, 1])
    assert [len(layer.blocks) for layer in m.adapters] == [1, 2, 2, 1]
    assert m.adapters[1].blocks[0].attn.cls is not m.adapters[1].blocks[1].attn.cls
    m = segadapter.create_model("adapt-mit-b0", num_classes=K, mu_init=[1.0] * 4, mu_learnable=False)
    assert not any("mu" in n for n, _ in m.named_parameters())
    m = segadapter.create_model("adapt-mit-b0", num_classes=K)
    assert [layer.blocks[0].mu[0].item() for layer in m.adapters] == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2])


def test_bad_options_give_config_errors():
    with pytest.raises(ConfigError, match="kernel_size"):
        segadapter.create_model("segformer-b0", num_classes=K, kernel_size=3)
    with pytest.raises(ConfigError, match="norm"):
        segadapter.create_model("adapt-mit-b0", num_classes=K, norm="gn")
    with pytest.raises(ConfigError, match="num_classes"):
        segadapter.create_model("adapt-mit-b0", num_classes=0)
    with pytest.raises(segadapter.SegAdapterError, match="unknown model"):
        segadapter.create_model("segformer-b9", num_classes=K)


def test_list_models_pattern():
    assert segadapter.list_models("adapt-convnext-*") == ["adapt-convnext-b", "adapt-convnext-s", "adapt-convnext-t"]
    names = set(segadapter.list_models())
    expected = {f"segformer-b{i}" for i in range(6)} | {f"adapt-mit-b{i}" for i in range(6)} | \
        {f"semask-mit-b{i}" for i in range(4)} | {f"{p}convnext-{v}" for p in ("", "adapt-") for v in "tsb"}
    assert expected <= names


@pytest.mark.parametrize("name", ["segformer-b0", "adapt-convnext-t", "adapt-mit-b0"])  # ReLU / GELU heads
def test_factored_head_equals_the_published_order(name):
    torch.manual_seed(0)
    model = segadapter.create_model(name, num_classes=K, head_dropout=0.0)
    head = model.decode_head
    with torch.no_grad():  # non-trivial BN statistics, so folding them is exercised
        head.fuse_norm.running_mean.normal_()
        head.fuse_norm.running_var.uniform_(0.5, 2.0)
        head.fuse_norm.weight.normal_()
        head.fuse_norm.bias.normal_()
    feats = [f.detach().requires_grad_() for f in model.eval().extract_features(torch.randn(2, 3, 96, 64))[0]]
    for mode in ("eval", "train"):  # eval folds BN into the weights; train keeps batch-statistics BN
        head.train(mode == "train")
        fast = head(feats)
        ref = head.forward_reference(feats)
        assert torch.allclose(fast, ref, atol=1e-4, rtol=1e-4), mode
        # gradients, w.r.t. weights and inputs, are those of the published order too
        g_fast = torch.autograd.grad(fast.square().sum(), [head.fuse.weight, head.proj[2].weight, feats[3]])
        g_ref = torch.autograd.grad(ref.square().sum(), [head.fuse.weight, head.proj[2].weight, feats[3]])
        for a, b in zip(g_fast, g_ref):
            assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), mode
    head.eval()
    with torch.inference_mode():  # the in-place inference path (activation and sums in place)
        assert torch.allclose(head(feats), head.forward_reference(feats), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("queries, heads", [(4096, 1), (256, 5)])
def test_bf16_inference_attention_matches_the_fused_kernel(queries, heads):
    """MiT's bf16 CPU inference path (explicit matmuls + softmax) against fp32 SDPA, and the
    grad-enabled path is the fused kernel itself."""
    import torch.nn.functional as F

    from segadapter.modeling.layers import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, 32, generator=g) for n in (queries, 64, 64))
    ref = F.scaled_dot_product_attention(q, k, v)
    with torch.no_grad():
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
        fused = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16
    # bf16 rounding of inputs and scores: same order of error as the fused bf16 kernel
    assert (out.float() - ref).abs().max() < 4 * (fused.float() - ref).abs().max() + 1e-3
    assert (out.float() - ref).abs().mean() < 0.02
    assert torch.equal(attention(q, k, v), ref)  # fp32 and training: the fused kernel


def test_unknown_option_is_one_line_naming_what_the_model_takes():
    from segadapter.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown option window_size for model 'segformer-b0'; it takes: .*head_act"):
        segadapter.create_model("segformer-b0", num_classes=3, window_size=4)  # an adapter option
    segadapter.create_model("semask-mit-b0", num_classes=3, window_size=4)  # where it belongs
    with pytest.raises(ConfigError, match="unknown options bogus, drop_path_mode"):
        segadapter.create_model("segdeformer-mit-b0", num_classes=3, bogus=1, drop_path_mode="ffn")


def test_a_builder_bug_keeps_its_traceback():
    """A TypeError inside a builder is a bug, not a user's bad option: it is not turned into
    "invalid options" (the option names are checked against the declared ones instead)."""
    from segadapter.modeling import registry

    def broken(num_classes, depth=2):
        return len(depth)  # a bug: TypeError

    registry.register_model("broken-test-model", options=registry.option_names(broken))(broken)
    try:
        with pytest.raises(TypeError, match="has no len"):
            segadapter.create_model("broken-test-model", num_classes=3, depth=3)
    finally:
        for table in (registry._MODELS, registry._OPTIONS, registry._WEIGHT_OPTIONS):
            table.pop("broken-test-model", None)
