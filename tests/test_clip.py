"""In-tree CLIP against Hugging Face's CLIPModel (built from a tiny local config, no download), and
the weight loaders (OpenAI state dict, TorchScript archive, HF folder, SAN release keys)."""
import pytest
import torch

from segadapter.errors import CheckpointError
from segadapter.modeling.backbones.clip import CLIP, ClipConfig, ClipTextConfig, ClipVisionConfig
from segadapter.modeling.backbones.clip_backbone import ClipBackbone
from segadapter.modeling.heads.san import SANHead
from segadapter.modeling.heads.san_side import SideConfig
from segadapter.modeling.meta_arch import SideAdapterSegmentor
from segadapter.modeling.weights import load_pretrained
from segadapter.modeling.weights.clip import clip_act_of, infer_config

transformers = pytest.importorskip("transformers")

VOCAB, CTX = 64, 12
TINY = ClipConfig(24, ClipVisionConfig(32, 8, 48, 2, 4), ClipTextConfig(CTX, VOCAB, 32, 4, 2), "quick_gelu")


def load_clip(path, config=TINY):
    """A CLIP with the weights of `path` through the loader every backbone uses (a SAN model's
    `clip=`: `load_pretrained`, CLIP only), the activation as a Hugging Face folder declares it."""
    config = config.with_act(clip_act_of(path) or config.act)
    backbone = ClipBackbone(CLIP(config), taps=(0, 1))
    side = SideConfig(width=16, depth=2, heads=2, grid=4, num_queries=3, fusion_blocks=(0, 1),
                      deep_supervision=(1, 2), mlp_channels=8, embed_channels=8)
    model = SideAdapterSegmentor(backbone, SANHead(backbone, 2, side))
    report = load_pretrained(model, path, parts=("backbone.",))
    return model.backbone.clip, report


def _hf_model(act="quick_gelu"):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CTX, hidden_act=act,
                         bos_token_id=VOCAB - 2, eos_token_id=VOCAB - 1, pad_token_id=0),
        vision_config=dict(hidden_size=48, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, hidden_act=act),
        projection_dim=24)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():  # HF zero-inits biases and sets LN to identity: make every tensor count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _inputs():
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    ids = torch.zeros(3, CTX, dtype=torch.long)
    for row, n in enumerate((3, 7, CTX - 2)):  # start, n random tokens, end (the largest id), zero padding
        ids[row, 0] = VOCAB - 2
        ids[row, 1:n + 1] = torch.randint(1, VOCAB - 2, (n,), generator=g)
        ids[row, n + 1] = VOCAB - 1
    return pixels, ids


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_hf_folder_parity(tmp_path, act):
    hf = _hf_model(act)
    hf.save_pretrained(tmp_path)
    ours, report = load_clip(tmp_path)
    assert report.layout == "huggingface" and ours.config.act == act
    assert sorted(report.loaded) == sorted(f"backbone.clip.{k}" for k in ours.state_dict()) + ["backbone.clip_pretrained"]
    pixels, ids = _inputs()
    with torch.no_grad():
        want_img = hf.get_image_features(pixel_values=pixels).pooler_output
        want_txt = hf.get_text_features(input_ids=ids).pooler_output
        got_img, got_txt = ours.encode_image(pixels), ours.encode_text(ids)
    torch.testing.assert_close(got_img, want_img, atol=1e-4, rtol=0)
    torch.testing.assert_close(got_txt, want_txt, atol=1e-4, rtol=0)
    # image/text logits too (logit scale carried over)
    logits, _ = ours(pixels, ids)
    want = hf(input_ids=ids, pixel_values=pixels).logits_per_image
    torch.testing.assert_close(logits, want, atol=1e-3, rtol=1e-4)


def test_openai_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    a = CLIP(TINY)
    torch.save(a.state_dict(), tmp_path / "openai.pt")
    b, report = load_clip(tmp_path / "openai.pt")
    assert report.layout == "openai"
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


class _Archive(torch.nn.Module):
    """CLIP's tensors under OpenAI's names plus the TorchScript archive's extra attributes."""

    def __init__(self, clip: CLIP):
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, p in clip.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, value in (("input_resolution", 32), ("context_length", CTX), ("vocab_size", VOCAB)):
            self.register_buffer(name, torch.tensor(value))

    def forward(self, pixels):
        return self.visual(pixels)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_archive_drops_attributes(tmp_path):
    torch.manual_seed(0)
    a = CLIP(TINY).eval()
    pixels, ids = _inputs()
    torch.jit.trace(_Archive(a), (pixels,)).save(str(tmp_path / "ViT-tiny.pt"))
    b, report = load_clip(tmp_path / "ViT-tiny.pt")
    assert report.layout == "openai"
    assert sorted(report.ignored) == ["context_length", "input_resolution", "vocab_size"]
    with torch.no_grad():
        torch.testing.assert_close(b.encode_image(pixels), a.encode_image(pixels))
        torch.testing.assert_close(b.encode_text(ids), a.encode_text(ids))


def test_san_release_keys(tmp_path):
    torch.manual_seed(0)
    a = CLIP(TINY)
    sd = a.state_dict()
    san = {"side_adapter_network.query_embed": torch.zeros(1, 4, 8), "ov_classifier.bg_embed": torch.zeros(1, 24)}
    for k, v in sd.items():
        if k.startswith("visual.transformer.resblocks."):
            i, rest = k.split(".", 4)[3:]
            san[f"clip_visual_extractor.resblocks.{i}.{rest}" if int(i) < 1 else
                f"clip_rec_head.resblocks.{int(i) - 1}.{rest}"] = v
        elif k.startswith(("visual.ln_post", "visual.proj")):
            san["clip_rec_head." + k[len("visual."):]] = v
        elif k.startswith("visual."):
            san["clip_visual_extractor." + k[len("visual."):]] = v
        else:
            san["ov_classifier." + k] = v
    torch.save({"model": san, "iteration": 5}, tmp_path / "san.pth")
    b, report = load_clip(tmp_path / "san.pth")
    assert report.layout == "san"
    assert sorted(report.ignored) == ["ov_classifier.bg_embed", "side_adapter_network.query_embed"]
    for k, v in sd.items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_strict_errors(tmp_path):
    a = CLIP(TINY)
    sd = a.state_dict()
    del sd["visual.ln_post.weight"]
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="missing.*visual.ln_post.weight"):
        load_clip(tmp_path / "broken.pt")
    torch.save(a.state_dict(), tmp_path / "ok.pt")
    other = ClipConfig(24, ClipVisionConfig(32, 8, 64, 2, 4), TINY.text)
    with pytest.raises(CheckpointError, match=r"holds a CLIP encoder with widths \(48, 32, 24\).*has widths \(64"):
        load_clip(tmp_path / "ok.pt", other)
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="no known CLIP layout"):
        load_clip(tmp_path / "foreign.pt")


def test_position_embedding_resized_for_other_sizes():
    torch.manual_seed(0)
    m = CLIP(TINY)
    x, grid = m.visual.embed(torch.randn(1, 3, 48, 64))
    assert grid == (6, 8) and x.shape == (1, 1 + 48, 48)
    m.visual.embed(torch.randn(1, 3, 48, 64))[0].sum().backward()
    assert m.visual.positional_embedding.grad is not None


def test_infer_config_of_full_size_shapes():
    with torch.device("meta"):
        m = CLIP("vit-b16")
    cfg = infer_config(m.state_dict())
    assert cfg.vision == ClipVisionConfig(224, 16, 768, 12, 12) and cfg.text.heads == 8 and cfg.embed_dim == 512
