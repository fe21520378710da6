"""An exported .onnx run by ONNX Runtime where the torch model ran: `OnnxNetwork` under the
Inferencer, `predict` and `eval` - same preprocessing, sliding windows and TTA code, same outputs
as the model folder; the graph's metadata says what its output is; bad files get one error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import segadapter
from onnx_helpers import CAMVID, RECORD, mini_camvid, read_png
from segadapter import Inferencer
from segadapter.cli.main import main
from segadapter.errors import CheckpointError, ConfigError
from segadapter.export import export_onnx
from segadapter.inference.onnx_network import MODEL_KEY, OnnxNetwork
from segadapter.modeling.heads.base import LOGITS, MMSEG_MASK_SCORES

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
needs_camvid = pytest.mark.skipif(CAMVID is None, reason="CamVid not found (../shared/data/camvid)")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random segformer-b0 (32-channel head) saved with CamVid's record, and its fp32 export."""
    d = tmp_path_factory.mktemp("onnx_runtime")
    torch.manual_seed(0)
    model = segadapter.create_model("segformer-b0", num_classes=11, decoder_channels=32).eval()
    model.save_pretrained(d / "model", preprocessing=RECORD.to_dict())
    model = segadapter.from_pretrained(d / "model").eval()
    return model, d / "model", export_onnx(model, d / "model.onnx", sample_size=(120, 160))


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    if CAMVID is None:
        pytest.skip("CamVid not found (../shared/data/camvid)")
    return mini_camvid(tmp_path_factory.mktemp("camvid"), train=0, val=3)


def _frames(mini) -> list[np.ndarray]:
    from segadapter.data import read_image

    return [read_image(p) for p in sorted((mini / "val").iterdir())]


@needs_camvid
def test_the_fp32_graph_is_within_1e4_of_torch_on_real_frames(tiny, mini):
    model, _, path = tiny
    net = OnnxNetwork(path)
    for image in _frames(mini):
        for pre in (RECORD, RECORD.replace(scale=None)):  # the record's 160x120, and the full 480x360 frame
            x = pre(image)[None]
            with torch.inference_mode():
                ref = model(x)
            out = net(x)
            assert out.shape == ref.shape
            assert float((out - ref).abs().max()) < 1e-4


@needs_camvid
@pytest.mark.parametrize("pre", [RECORD, RECORD.replace(mode="slide", crop_size=(64, 64), stride=(48, 48), flip=True)],
                         ids=["whole", "slide+flip"])
def test_eager_and_onnx_inferencers_agree(tiny, mini, pre):
    """The same Inferencer code on the torch model and on its graph: same scores, same labels."""
    _, folder, path = tiny
    frames = _frames(mini)
    eager = Inferencer(folder, device="cpu", amp="none", preprocessing=pre)(frames, scores=True)  # fp32, as the graph
    graph = Inferencer(path, preprocessing=pre)(frames, scores=True)
    assert isinstance(Inferencer(path).model, OnnxNetwork)
    for a, b in zip(eager, graph):
        assert a.scores.shape == b.scores.shape == (11, 360, 480)
        assert np.abs(a.scores - b.scores).max() < 1e-4
        assert (a.label == b.label).mean() > 0.999  # a near-tie may flip a pixel


@pytest.mark.filterwarnings("ignore::segadapter.inference.LegacyPreprocessingWarning")
def test_a_mask_heads_output_space_travels_in_the_metadata(tmp_path):
    """SegViT's scores are mask probabilities (normalised by their sum, not softmaxed): the graph's
    network declares that space (read from the file), so `scores=True` matches the torch model's."""
    torch.manual_seed(0)
    model = segadapter.create_model("segvit-vit-t", num_classes=4, img_size=64).eval()
    with torch.no_grad():  # non-constant maps (see test_segvit_model.py)
        for name, p in model.named_parameters():
            if name.endswith(("cross_attn.q.weight", "cross_attn.k.weight")):
                p.mul_(8)
    path = export_onnx(model, tmp_path / "segvit.onnx", sample_size=(64, 64))  # no record: the legacy note
    net = OnnxNetwork(path)
    assert net.decode_head.output_space == MMSEG_MASK_SCORES and net.num_classes == 4
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    pre = segadapter.Preprocessing()  # one pass: its probabilities depend on the output space
    a = Inferencer(model, device="cpu", amp="none", preprocessing=pre)(image, scores=True)  # fp32, as the graph
    b = Inferencer(path, preprocessing=pre)(image, scores=True)
    assert len(np.unique(a.label)) > 1
    assert np.abs(a.scores - b.scores).max() < 1e-4 and np.array_equal(a.label, b.label)


@needs_camvid
def test_predict_on_the_onnx_file_writes_what_the_folder_writes(tiny, mini, tmp_path, capsys):
    _, folder, path = tiny
    for name, ckpt in (("folder", folder), ("onnx", path)):
        code = main(["predict", str(ckpt), str(mini / "val"), "--out", str(tmp_path / name), "--no-progress",
                     "--workers", "0", "--amp", "none"])  # the torch model in fp32, as the graph
        assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "folder").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "onnx").iterdir()) and len(names) == 6
    for name in names:
        a, b = read_png(tmp_path / "folder" / name), read_png(tmp_path / "onnx" / name)
        assert a.shape == b.shape
        if not name.endswith("_overlay.png"):
            assert a.shape == (360, 480) and (a == b).mean() > 0.999


@needs_camvid
def test_eval_on_the_onnx_file_scores_as_the_folder(tiny, mini, capsys):
    _, folder, path = tiny
    results = []
    for ckpt in (folder, path):
        code = main(["eval", str(ckpt), "--data", str(mini), "--dataset", "camvid", "--json", "--no-progress",
                     "--workers", "0", "--amp", "none"])  # the torch model in fp32, as the graph
        out, err = capsys.readouterr()
        assert code == 0, err
        results.append(json.loads(out))
    assert results[1]["checkpoint"] == str(path) and results[1]["images"] == 3
    assert results[0]["mIoU"] == pytest.approx(results[1]["mIoU"], abs=0.05)
    assert results[0]["aAcc"] == pytest.approx(results[1]["aAcc"], abs=0.05)


def _foreign(path):
    """A valid ONNX model that is not ours: x -> Identity -> y."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("kind, message", [("corrupt", "not a readable ONNX model"), ("empty", "not a readable ONNX model"),
                                           ("foreign", "not a segadapter export"), ("missing", "no such file")])
def test_a_bad_onnx_file_gets_one_error_naming_it(kind, message, tmp_path, capsys):
    path = tmp_path / f"{kind}.onnx"
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "foreign":
        _foreign(path)
    with pytest.raises(CheckpointError, match=message) as e:
        Inferencer(path)
    assert str(path) in str(e.value)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    for argv in (["predict", str(path), str(image), "--out", str(tmp_path / "out")],
                 ["eval", str(path), "--data", str(tmp_path), "--dataset", "camvid"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_torch_only_options_are_refused_for_an_onnx_file(tiny, tmp_path, capsys):
    from PIL import Image

    _, _, path = tiny
    assert main(["eval", str(path), "--data", str(tmp_path), "--dataset", "camvid", "--amp", "bf16"]) == 2
    assert "--amp bf16 applies to PyTorch models" in capsys.readouterr().err
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(path), str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--compile"]) == 2
    assert "--compile applies to PyTorch models" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="fixed set of 11 classes"):
        Inferencer(path, classes=["sky", "road"])  # a graph's classes are fixed at export


def test_an_export_without_the_model_description_still_runs(tiny, tmp_path):
    """Files exported before `segadapter.model` was written: classes from the output's shape,
    logits, the preprocessing record as before."""
    model, _, path = tiny
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != MODEL_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    net = OnnxNetwork(tmp_path / "old.onnx")
    assert net.num_classes == 11 and net.decode_head.output_space == LOGITS
    assert Inferencer(tmp_path / "old.onnx").preprocessing == RECORD


def test_inference_and_evaluation_never_import_export():
    """export/ sits above inference/ (it writes what inference/onnx_network.py reads), as cli/ does."""
    from test_architecture import _graph

    up = sorted(f"{n} -> {m}" for n, deps in _graph().items()
                if n.startswith(("segadapter.inference", "segadapter.evaluation")) for m in deps
                if m.startswith("segadapter.export"))
    assert not up, up
