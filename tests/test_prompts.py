"""Class-name embeddings: the template average, computed one prompt at a time, and the cache."""
import torch
import torch.nn.functional as F

from segadapter.modeling.backbones.clip import CLIP, ClipConfig, ClipTextConfig, ClipVisionConfig
from segadapter.text.prompts import VILD_TEMPLATES, ClassEmbedder, embed_class_names
from segadapter.text.tokenizer import ClipTokenizer


def _setup():
    tok = ClipTokenizer([("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "r</w>")])
    torch.manual_seed(0)
    clip = CLIP(ClipConfig(16, ClipVisionConfig(16, 8, 32, 1, 2), ClipTextConfig(77, tok.vocab_size, 32, 2, 2))).eval()
    return clip, tok


def test_templates():
    assert len(VILD_TEMPLATES) == 14 and len(set(VILD_TEMPLATES)) == 14
    assert VILD_TEMPLATES[0] == "a photo of a {}." and VILD_TEMPLATES[1] == "This is a photo of a {}"
    assert all(t.count("{}") == 1 for t in VILD_TEMPLATES)


def test_embedding_is_normalised_template_mean():
    clip, tok = _setup()
    names = ["car", "the sky", "traffic light"]
    got = embed_class_names(clip, tok, names, batch_size=5)  # batches cut across names
    for k, name in enumerate(names):
        per = [F.normalize(clip.encode_text(tok.tokenize(t.format(name))), dim=-1)[0] for t in VILD_TEMPLATES]
        want = F.normalize(torch.stack(per).mean(0), dim=-1)
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=0)
    assert torch.allclose(got.norm(dim=-1), torch.ones(3))


def test_cache_per_vocabulary():
    clip, tok = _setup()
    emb = ClassEmbedder(clip, tok)
    a = emb(["car", "sky"])
    assert emb(["car", "sky"]) is a and len(emb.cache) == 1
    b = emb(["sky", "car"])
    assert len(emb.cache) == 2 and torch.allclose(a.flip(0), b)
    emb.clear()
    assert not emb.cache
