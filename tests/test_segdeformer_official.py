"""A checkpoint of the official SegDeformer code (lygsbw/segdeformer, mmseg 0.29): mmseg's MiT
backbone keys and the `SegDeformerHead3` decode head, whose names differ from ours in the external
module (`class_token.{q,k,cls_token,prop_token}`) and the attention blocks (`trans.attn`,
`trans.cross_attn`). The test writes our perturbed model under those names (the inverse mapping is
written here, from the official module tree) and loads it back whole."""
import functools
import re

import torch

import segadapter
from test_checkpoints_mit import X, randomized, to_openmmlab

# our head module -> the official one (SegDeformerHead3 with its Class_Token_Seg3 and
# TransformerClassToken3 children)
OFFICIAL = {"mid_query": "class_token.q", "mid_key": "class_token.k", "internal_attn": "trans.attn",
            "external_attn": "trans.cross_attn"}


@functools.cache
def official_checkpoint():
    """(our perturbed segdeformer-mit-b0, the same weights as an official mmseg checkpoint)."""
    model = randomized("segdeformer-mit-b0", num_classes=19)
    checkpoint = to_openmmlab(model.state_dict())
    state = checkpoint["state_dict"]
    for k in [k for k in state if k.startswith("decode_head.")]:  # to_openmmlab's stand-in head
        del state[k]
    for k, v in model.state_dict().items():
        if not k.startswith("decode_head."):
            continue
        rest = k[len("decode_head."):]
        if rest in ("class_tokens", "info_tokens"):  # (K, C) parameters, (1, K, C) in the official code
            rest, v = ("class_token.cls_token" if rest == "class_tokens" else "class_token.prop_token"), v[None]
        elif m := re.fullmatch(r"(mid_query|mid_key|internal_attn|external_attn)\.(.+)", rest):
            rest = f"{OFFICIAL[m[1]]}.{m[2]}"
        state["decode_head." + rest] = v
    return model, checkpoint


def test_official_checkpoint_gives_the_same_model(tmp_path):
    source, checkpoint = official_checkpoint()
    assert sum(k.startswith("decode_head.") for k in checkpoint["state_dict"]) == 86
    torch.save(checkpoint, tmp_path / "segdeformer_mit-b0.pth")
    model = segadapter.create_model("segdeformer-mit-b0", num_classes=19,
                                    pretrained=tmp_path / "segdeformer_mit-b0.pth").eval()
    assert model.load_report.layout == "openmmlab" and model.load_report.fresh == []
    assert model.load_report.ignored == {}
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(model(X), source.eval()(X))


def test_official_head_with_other_options_is_named(tmp_path):
    """A model built without the external module cannot take the official head: one clear error
    naming the head tensors it has no place for."""
    _, checkpoint = official_checkpoint()
    torch.save(checkpoint, tmp_path / "segdeformer_mit-b0.pth")
    model = segadapter.create_model("segdeformer-mit-b0", num_classes=19, external=False,
                                    pretrained=tmp_path / "segdeformer_mit-b0.pth")
    report = model.load_report
    assert "decode_head.class_token.cls_token" in report.ignored
    assert all("another kind" in report.ignored[k] for k in report.ignored if k.startswith("decode_head."))
