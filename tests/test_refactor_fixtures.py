"""The restructured code computes what the code before it did (`tests/fixtures/refactor/record.py`,
run on the commit before the restructuring): eval logits, loss terms, one training step's gradients,
optimizer parameter groups, state-dict layouts and parameter / FLOP counts of every model that
existed then."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import segadapter
from tests.fixtures.refactor import record

HERE = Path(record.__file__).parent
# Loss terms are already weighted now (the Segmentor sums them); the recorded coarse term was not.
WEIGHTED_NOW = {"loss_coarse": 0.4}


@pytest.mark.parametrize("name", sorted(record.FAMILIES))
def test_family_computes_what_it_did(name):
    want = load_file(str(HERE / f"{name}.safetensors"))
    got = record.compute(name, record.FAMILIES[name])
    assert set(got) == set(want)
    # Gradients that are mathematically zero (a bias before a norm, an attention key bias) hold
    # only rounding noise, which differs between CPUs: tolerate 1e-3 of the family's median sum |g|.
    noise = 1e-3 * torch.stack([v[1] for k, v in want.items() if k.startswith("grad.")]).median()
    for key, expected in want.items():
        value = got[key].to(expected.dtype)
        if key in WEIGHTED_NOW:
            expected = expected * WEIGHTED_NOW[key]
        if key.startswith("grad."):  # (sum, sum |g|, projection): within 1e-4 of the tensor's sum |g|
            assert ((value - expected).abs() <= 1e-4 * expected[1].abs() + noise).all(), key
        else:
            assert torch.allclose(value, expected, rtol=1e-6, atol=1e-6), key
    groups = json.loads((HERE / "groups.json").read_text())[name]
    assert record.GROUPS[name] == groups  # optimizer state of old training runs still lines up


def test_layouts_and_counts_of_every_earlier_model_are_unchanged():
    layouts = json.loads((HERE / "layouts.json").read_text())
    counts = json.loads((HERE / "counts.json").read_text())
    assert set(layouts) <= set(segadapter.list_models())
    for name, want in layouts.items():
        with torch.device("meta"):
            model = segadapter.create_model(name, num_classes=150)
        assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == want, name
    from segadapter.analysis.flops import complexity_of

    for name, want in counts.items():
        c = complexity_of(name, 150, (512, 512))
        e = complexity_of(name, 150, (512, 512), executed=True)
        with torch.device("meta"):
            params = sum(p.numel() for p in segadapter.create_model(name, num_classes=150).parameters())
        assert (params, round(c["gflops"] * 1e9), round(e["gflops"] * 1e9)) == \
            (want["params"], want["macs"], want["executed_macs"]), name
