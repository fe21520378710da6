"""Open vocabulary on the command line: `predict --classes / --classes-file`, `eval` zero-shot on a
dataset's class names, and the one-line refusals (bad vocabularies, fixed-class models, a SAN whose
CLIP is random). Tiny SAN models of the real structure (12-block CLIP 32 wide, 4-block side network
48 wide): one with a random CLIP, one with a "pretrained" CLIP (random weights loaded from a file,
which is what marks a CLIP as trained) and a small BPE vocabulary of our own; ~10 s in all."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import segadapter
from segadapter.cli.main import main
from segadapter.data.metainfo import CAMVID_CLASSES
from segadapter.errors import ConfigError
from segadapter.modeling.backbones import clip as clip_module

TINY = "tiny-san-cli-test"
TINY_CLIP = clip_module.ClipConfig(32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2),
                                   clip_module.ClipTextConfig(77, 600, 32, 2, 2))
SMALL = dict(clip_config_override=TINY, side_width=48, side_heads=2, side_depth=4, num_queries=10)
TRAINED_ON = ["grass", "water", "wall"]  # what the tiny models were "trained" on: none of CamVid's


@pytest.fixture(scope="module", autouse=True)
def tiny_clip_config():
    clip_module.CLIP_CONFIGS[TINY] = TINY_CLIP  # from_pretrained rebuilds from the saved option's name
    yield
    clip_module.CLIP_CONFIGS.pop(TINY, None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("san_cli")
    torch.manual_seed(0)
    random = segadapter.create_model("san-vit-b16", classes=TRAINED_ON, **SMALL)
    random.save_pretrained(d / "random")
    torch.save(random.backbone.clip.state_dict(), d / "clip.pt")  # OpenAI layout: our CLIP's own names
    (d / "bpe.txt").write_text("#version: 0.2\ns k\nsk y</w>\nc a\nca r</w>\nr o\n")
    text = segadapter.create_model("san-vit-b16", classes=TRAINED_ON, clip=str(d / "clip.pt"), vocab=str(d / "bpe.txt"),
                                   **SMALL)
    assert bool(text.backbone.clip_pretrained) and text.decode_head.embeddings_source == "text"
    text.save_pretrained(d / "text")
    # CLIP loaded through `pretrained=` after the names were set: the names are embedded by text once
    # the weights arrive (the model's on_weights_loaded)
    late = segadapter.create_model("san-vit-b16", classes=CAMVID_CLASSES, pretrained=str(d / "clip.pt"),
                                   vocab=str(d / "bpe.txt"), **SMALL)
    assert bool(late.backbone.clip_pretrained) and not late.vocabulary.stale
    assert late.decode_head.embeddings_source == "text"
    late.save_pretrained(d / "late")
    segadapter.create_model("segformer-b0", num_classes=3, decoder_channels=32).save_pretrained(
        d / "closed", classes=["a", "b", "c"])
    return {"random": d / "random", "text": d / "text", "late": d / "late", "closed": d / "closed", "root": d}


@pytest.fixture(scope="module")
def images(models):
    d = models["root"] / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 56), (64, 48)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    return d


@pytest.fixture(scope="module")
def camvid(models):
    """A CamVid-layout folder with three small val frames (labels 0-10, 11 = void)."""
    root = models["root"] / "camvid"
    rng = np.random.default_rng(1)
    for split in ("val",):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / split / f"f{i}.png")
            label = rng.integers(0, 12, (48, 64), dtype=np.uint8)
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")
    return root


def _run(capsys, *argv):
    code = main([*map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _predict(capsys, models, which, images, out, *extra):
    return _run(capsys, "predict", models[which], images, "--out", out, "--device", "cpu", *extra)


def _error_line(err: str) -> str:
    """The command's error: one line, the last one."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("segadapter "), err
    return lines[-1]


# -- predict ---------------------------------------------------------------------------------


def test_predict_with_classes_and_with_a_classes_file_agree(capsys, models, images, tmp_path):
    names = ["sky", "road", "car", "tree"]
    code, out, err = _predict(capsys, models, "text", images, tmp_path / "a", "--classes", " sky, road,car ,tree")
    assert code == 0, err
    f = tmp_path / "names.txt"
    f.write_text("# my street scenes\nsky\n\nroad\n  car  \n# trees too\ntree\n")
    code, out, err = _predict(capsys, models, "text", images, tmp_path / "b", "--classes-file", f)
    assert code == 0, err
    for i in range(2):
        a = np.array(Image.open(tmp_path / "a" / f"img{i}.png"))
        assert np.array_equal(a, np.array(Image.open(tmp_path / "b" / f"img{i}.png")))
        assert a.max() < len(names)
    # a comma inside a name is fine in a file (one name a line)
    f.write_text("sky\nroad, paved\n")
    code, _, err = _predict(capsys, models, "text", images, tmp_path / "c", "--classes-file", f)
    assert code == 0, err


def test_predict_reads_the_names_once_and_the_model_checks_them_once(capsys, models, images, tmp_path, monkeypatch):
    """`--classes` goes through two steps with two jobs: reading the text (where each name came
    from) and the model taking them (`set_classes`: its one check, tokens included) - not four."""
    from segadapter.cli import inference_args
    from segadapter.modeling import vocabulary

    calls = []
    real = vocabulary.check_names

    def counted(names, where="class names", at=None):
        if [str(n).strip() for n in names][:1] == ["sky"]:  # the user's names, not the model's own at loading
            calls.append(where)
        return real(names, where, at)

    monkeypatch.setattr(vocabulary, "check_names", counted)
    monkeypatch.setattr(inference_args, "check_names", counted)
    code, _, err = _predict(capsys, models, "text", images, tmp_path / "a", "--classes", "sky,road,car")
    assert code == 0, err
    assert calls == ["--classes", "--classes"], calls  # read (parse_class_names), then taken by the model
    calls.clear()
    f = tmp_path / "names.txt"
    f.write_text("sky\nroad\n")
    code, _, err = _predict(capsys, models, "text", images, tmp_path / "b", "--classes-file", f)
    assert code == 0, err
    assert calls == [f"--classes-file {f}", "--classes-file"], calls


def test_classes_and_classes_file_are_mutually_exclusive(capsys, models, images, tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("sky\n")
    with pytest.raises(SystemExit) as e:
        _predict(capsys, models, "text", images, tmp_path / "o", "--classes", "sky", "--classes-file", f)
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("spec,message", [
    (("--classes", ""), "no class names given"),
    (("--classes", " , "), "no class names given"),
    (("--classes", "sky,,car"), "name #2 is empty"),
    (("--classes", "sky,car,"), "name #3 is empty"),
    (("--classes", "sky,car,Sky"), "name #3: duplicate class name 'Sky' (already name #1 as 'sky')"),
    (("--classes", "sky," + "x" * 201), "name #2 ('xxxx"),
    (("--classes", ",".join(f"c{i}" for i in range(65536))), "65536 class names, but 16-bit class-id PNGs hold ids 0-65534"),
    (("--classes", ",".join(CAMVID_CLASSES + ["lamp"]), "--palette", "camvid"),
     "--palette camvid has 11 colours but --classes names 12 classes"),
    (("--classes-file", "FILE:# only a comment\n\n"), "no class names in it"),
    (("--classes-file", "FILE:sky\nroad\n\nsky \n"), "line 4: duplicate class name 'sky' (already line 1)"),
    (("--classes-file", "FILE:" + "y" * 300 + "\n"), "line 1 ('yyyy"),
    (("--classes-file", "MISSING"), "no such file"),
    (("--classes-file", "BINARY"), "cannot read it as UTF-8 text"),
])
def test_bad_vocabularies_get_one_clear_line(capsys, models, images, tmp_path, spec, message):
    flag, value, *rest = spec
    if flag == "--classes-file":
        path = tmp_path / "names.txt"
        if value.startswith("FILE:"):
            path.write_text(value[5:])
        elif value == "BINARY":
            path.write_bytes(b"\xff\xfe\x00sky\x80\n")
        value = path
    out = tmp_path / "out"
    code, _, err = _predict(capsys, models, "text", images, out, flag, value, *rest)
    assert code == 2
    line = _error_line(err)
    assert message in line, line
    if "longer than" in message or message.endswith("('xxxx") or message.endswith("('yyyy"):
        assert "longer than 200 characters" in line
    assert not out.exists()  # refused before anything was written


def test_names_too_long_for_clip_context(capsys, models, images, tmp_path):
    """Under 200 characters but over CLIP's 77 tokens once in a prompt: the model's own check."""
    code, _, err = _predict(capsys, models, "text", images, tmp_path / "o", "--classes", "sky," + "a " * 60)
    assert code == 2 and "too long" in _error_line(err) and "77" in _error_line(err)


def test_classes_on_a_fixed_class_model(capsys, models, images, tmp_path):
    code, _, err = _predict(capsys, models, "closed", images, tmp_path / "o", "--classes", "sky,road")
    assert code == 2
    line = _error_line(err)
    assert "--classes: only open-vocabulary models (san-vit-b16, san-vit-l14) take class names" in line
    assert "segformer-b0 segments the fixed set of 3 classes" in line


def test_random_clip_says_what_to_bring(capsys, models, images, tmp_path):
    code, _, err = _predict(capsys, models, "random", images, tmp_path / "o", "--classes", "sky,road,car")
    assert code == 2
    line = _error_line(err)
    for needed in ("without CLIP weights", "random", "cannot recognise anything by name", "ViT-B-16.pt",
                   "open_clip", "Hugging Face CLIP folder", "bpe_simple_vocab_16e6.txt.gz", "vocab.json + merges.txt",
                   "nothing is downloaded"):
        assert needed in line, needed
    assert not (tmp_path / "o").exists()
    # the names it was trained on (its placeholders) need no text tower
    code, _, err = _predict(capsys, models, "random", images, tmp_path / "o", "--classes", ",".join(TRAINED_ON))
    assert code == 0, err
    # the Python API says the same
    with pytest.raises(ConfigError, match="bpe_simple_vocab_16e6.txt.gz"):
        segadapter.Inferencer(models["random"], device="cpu", classes=["sky", "road"])


# -- eval ------------------------------------------------------------------------------------


def test_eval_zero_shot_on_the_datasets_class_names(capsys, models, camvid):
    code, out, err = _run(capsys, "eval", models["text"], "--data", camvid, "--dataset", "camvid", "--device", "cpu")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("zero-shot: segmenting camvid's 11 class names instead of the model's 3 "
                               "(grass, water, wall)"), out
    for name in CAMVID_CLASSES:
        assert name in out
    assert "mIoU" in out
    code, out, err = _run(capsys, "eval", models["text"], "--data", camvid, "--dataset", "camvid", "--device", "cpu",
                          "--json")
    assert code == 0, err
    result = json.loads(out)  # the zero-shot line goes to stderr: stdout stays one JSON object
    assert result["zero_shot"] is True and "zero-shot" in err
    assert list(result["per_class"]) == CAMVID_CLASSES


def test_eval_zero_shot_refused_without_clip_weights(capsys, models, camvid):
    code, _, err = _run(capsys, "eval", models["random"], "--data", camvid, "--dataset", "camvid", "--device", "cpu")
    assert code == 2
    line = _error_line(err)
    assert "zero-shot evaluation on camvid:" in line and "without CLIP weights" in line
    assert "ViT-B-16.pt" in line and "bpe_simple_vocab_16e6.txt.gz" in line


def test_eval_closed_set_mismatch_keeps_its_error(capsys, models, camvid):
    code, _, err = _run(capsys, "eval", models["closed"], "--data", camvid, "--dataset", "camvid", "--device", "cpu")
    assert code == 2
    line = _error_line(err)
    assert "predicts 3 classes but camvid has 11" in line and "zero-shot" not in line


def test_clip_weights_through_pretrained_embed_the_names_and_the_folder_remembers(models):
    """A model whose CLIP came through `pretrained=` (or the SAN release) embeds its class names by
    text as the weights arrive, and a saved folder reloads with those text embeddings, so named."""
    model = segadapter.from_pretrained(models["late"])
    assert not model.vocabulary.stale and model.decode_head.embeddings_source == "text"
    rebuilt = segadapter.create_model("san-vit-b16", classes=CAMVID_CLASSES, **SMALL)
    rebuilt.vocabulary.set(CAMVID_CLASSES, placeholder=True)
    assert not torch.equal(rebuilt.decode_head.class_embeddings, model.decode_head.class_embeddings)
    inf = segadapter.Inferencer(model, device="cpu")
    assert inf.classes == CAMVID_CLASSES

def test_coco_stuff_recipe_config():
    """san_coco-stuff164k: SAN's recipe, and every trainable parameter at lr 1e-4 (weight decay 1e-4,
    none for norms, position and query embeddings). A tiny model of the same structure stands in."""
    from segadapter.engine import load_config
    from segadapter.engine.optim import param_groups

    cfg = load_config("san_coco-stuff164k")
    assert cfg.model.name == "san-vit-b16" and cfg.data.dataset == "coco-stuff164k"
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.grad_clip) == (1e-4, 1e-4, 0.01)
    assert (cfg.schedule.max_iters, cfg.schedule.warmup_iters, cfg.schedule.power) == (60000, 0, 0.9)
    assert cfg.data.batch_size == 32 and cfg.data.crop_size == (640, 640) and cfg.train.amp == "fp16"
    short = [cfg.data.scale[1] * r for r in cfg.data.ratio_range]
    assert short == [320, 960] and cfg.data.scale[0] / cfg.data.scale[1] == 4  # the test's 640 x 2560 cap
    model = segadapter.create_model("san-vit-b16", classes=TRAINED_ON, **SMALL)
    groups = param_groups(model, cfg.optim)
    assert {g["lr"] for g in groups} == {1e-4}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for g in groups for n in g["names"]} == trainable
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    for name in ("decode_head.side.pos_embed", "decode_head.side.query_embed", "decode_head.side.query_pos_embed",
                 "backbone.clip.visual.positional_embedding"):
        assert name in no_decay, name
    norms = {n for n in trainable if "norm" in n}
    assert norms and norms <= no_decay  # linear biases decay, as in detectron2's defaults
    assert "decode_head.side.blocks.0.attn.qkv.weight" in trainable - no_decay
