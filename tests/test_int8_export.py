"""`segadapter export --int8`: static QDQ int8 by ONNX Runtime's tools, calibrated on the run's own
CamVid frames through its preprocessing record; the file runs through predict / eval / the
Inferencer and agrees with the fp32 graph; the default rule, names kept fp32, the calibration
methods, bad arguments, and every exporting family."""
from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch

import segadapter
from onnx_helpers import CAMVID, RECORD, mini_camvid, miou, read_png, tiny_trained_run
from segadapter import Inferencer
from segadapter.cli.main import main
from segadapter.data import read_image
from segadapter.export import export_onnx, read_metadata
from segadapter.export.calibration import calibration_tensors, network_inputs
from segadapter.export import fp32_nodes
from segadapter.export.fp32_nodes import ACTIVATION_PRODUCT, NARROW_LAYER, OUTPUT_LAYER
from segadapter.export.int8 import agreement, export_int8
from segadapter.export.quantize import quantize_int8
from segadapter.inference.onnx_network import MODEL_KEY, PREPROCESSING_KEY, QUANTIZATION_KEY, OnnxNetwork

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(CAMVID is None, reason="CamVid not found (../shared/data/camvid)")]
CLASSIFIER = "/decode_head/classifier/Conv"
PATCH_EMBED = "/stages.2/patch_embed/proj/Conv"  # 64 -> 160 channels, 3x3: wide enough for int8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """8 train + 3 val CamVid frames, and a tiny segformer trained on them (a run folder)."""
    d = tmp_path_factory.mktemp("int8")
    data = mini_camvid(d / "camvid")
    return d, data, tiny_trained_run(d / "run", data)


@pytest.fixture(scope="module")
def exported(setup):
    """fp32.onnx and int8.onnx of the run through the CLI (the dataset comes from the run's config)."""
    d, data, run = setup
    outputs = []
    for name, extra in (("fp32", []), ("int8", ["--int8", "--calibrate", str(data), "--calib-images", "8"])):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main(["export", str(run), "--onnx", str(d / f"{name}.onnx"), "--size", "120", "160", *extra]) == 0
        outputs.append(stdout.getvalue())
    return d / "fp32.onnx", d / "int8.onnx", outputs[1]


def _graph(path):
    return onnx.load(str(path)).graph


def _quantized(graph) -> set[str]:
    """Nodes (other than Q / DQ) reading any input through a DequantizeLinear: the int8 ones."""
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dequantized for i in n.input)}


def _weight_type(graph, node_name: str) -> int:
    """The element type of the initializer behind a node's weight (input 1), through a DQ if any."""
    node = next(n for n in graph.node if n.name == node_name)
    producer = {o: n for n in graph.node for o in n.output}
    name = node.input[1]
    if name in producer and producer[name].op_type == "DequantizeLinear":
        name = producer[name].input[0]
    return next(t.data_type for t in graph.initializer if t.name == name)


def test_the_int8_file_is_static_qdq_with_its_records(exported):
    fp32, int8, stdout = exported
    graph = _graph(int8)
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 10
    assert _weight_type(graph, PATCH_EMBED) == onnx.TensorProto.INT8  # weights stored in int8
    assert _weight_type(graph, CLASSIFIER) == onnx.TensorProto.FLOAT  # the default rule keeps it fp32
    assert int8.stat().st_size < 0.45 * fp32.stat().st_size
    meta = read_metadata(int8)
    assert json.loads(meta[PREPROCESSING_KEY]) == RECORD.to_dict()
    assert json.loads(meta[MODEL_KEY])["num_classes"] == 11
    record = json.loads(meta[QUANTIZATION_KEY])
    assert (record["method"], record["calibration_inputs"], record["rule"]) == ("minmax", 8, "default")
    assert record["keep_fp32"][CLASSIFIER] == OUTPUT_LAYER
    assert "AVX-512 VNNI" in stdout and "AMX-INT8" in stdout and "labels agree on" in stdout
    timed = re.search(r"int8 vs fp32 speed on this CPU: ([\d.]+) ms int8, ([\d.]+) ms fp32 \(([\d.]+)x\) at 120x160", stdout)
    assert timed, stdout
    int8_ms, fp32_ms, ratio = map(float, timed.groups())
    assert int8_ms > 0 and fp32_ms > 0
    assert (fp32_ms - 0.05) / (int8_ms + 0.05) - 0.005 <= ratio <= (fp32_ms + 0.05) / max(int8_ms - 0.05, 1e-3) + 0.005
    assert f"output layers kept fp32: {CLASSIFIER}" in stdout


def test_int8_runs_through_predict_eval_and_the_inferencer_and_agrees_with_fp32(setup, exported, tmp_path, capsys):
    _, data, _ = setup
    fp32, int8, _ = exported
    for name, path in (("fp32", fp32), ("int8", int8)):
        code = main(["predict", str(path), str(data / "val"), "--out", str(tmp_path / name), "--no-progress",
                     "--workers", "0"])
        assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    frames = sorted((data / "val").iterdir())
    names = sorted(p.name for p in (tmp_path / "int8").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "fp32").iterdir()) == sorted(
        [f.name for f in frames] + [f"{f.stem}_overlay.png" for f in frames])
    preds = [read_png(tmp_path / "int8" / f.name) for f in frames]
    for frame, pred in zip(frames, preds):
        ref = read_png(tmp_path / "fp32" / frame.name)
        assert pred.shape == ref.shape == (360, 480)
        assert len(np.unique(ref)) > 2  # a real segmentation, not one class everywhere
        assert (pred == ref).mean() >= 0.97, f"{frame.name}: {(pred == ref).mean():.4f}"
    # the Inferencer on the file gives predict's labels
    for frame, pred in zip(frames, Inferencer(int8)(list(frames))):
        assert np.array_equal(pred.label, read_png(tmp_path / "int8" / frame.name))
    # eval runs the same graph the same way: its mIoU is the one of predict's labels
    code = main(["eval", str(int8), "--data", str(data), "--dataset", "camvid", "--json", "--no-progress",
                 "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    labels = [read_png(data / "valannot" / f.name) for f in frames]
    assert result["images"] == 3 and result["mIoU"] == pytest.approx(miou(preds, labels), abs=1e-3)


@pytest.fixture(scope="module")
def calibration(setup, exported):
    """The recorded network inputs of 4 train frames (the fp32 graph on the record's inference path)."""
    _, data, _ = setup
    fp32 = exported[0]
    return network_inputs(OnnxNetwork(fp32), calibration_tensors(data, RECORD, 4, "camvid"), RECORD)


def test_the_default_rule_against_all_and_names_kept_fp32(exported, calibration, tmp_path):
    fp32, int8, _ = exported
    default = _graph(int8)
    attention = [n.name for n in default.node if n.name.startswith("/stages.0/blocks.0/attn/MatMul")]
    assert attention and not set(attention) & _quantized(default)  # Q.K^T and attention x V stay fp32
    assert json.loads(read_metadata(int8)[QUANTIZATION_KEY])["keep_fp32"][attention[0]] == ACTIVATION_PRODUCT
    assert PATCH_EMBED in _quantized(default)

    every = quantize_int8(fp32, tmp_path / "all.onnx", calibration, rule="all")
    graph = _graph(every.path)
    assert not every.plan.keep and _weight_type(graph, CLASSIFIER) == onnx.TensorProto.INT8
    assert set(attention) <= _quantized(graph)
    assert any(n.op_type == "LayerNormalization" and n.name in _quantized(graph) for n in graph.node)

    named = quantize_int8(fp32, tmp_path / "named.onnx", calibration, keep=["/stages.1/*", PATCH_EMBED])
    graph = _graph(named.path)
    stage1 = {n.name for n in graph.node if n.name.startswith("/stages.1/")}
    assert stage1 and not stage1 & _quantized(graph)
    assert _weight_type(graph, PATCH_EMBED) == onnx.TensorProto.FLOAT
    assert "/stages.3/patch_embed/proj/Conv" in _quantized(graph)


def test_the_default_rule_keeps_layers_too_narrow_to_pay_for_int8(exported):
    """MiT-b0's first stage is 32 wide and its Mix-FFN convolutions are depthwise (K = 9): fp32.
    Its second stage's 64 -> 256 expansion and 256 -> 64 projection are at the bar: int8."""
    fp32, int8, _ = exported
    graph, kept = _graph(int8), json.loads(read_metadata(int8)[QUANTIZATION_KEY])["keep_fp32"]
    narrow = ["/stages.0/patch_embed/proj/Conv", "/stages.0/blocks.0/attn/q/MatMul", "/stages.0/blocks.0/mlp/fc1/MatMul",
              "/stages.1/blocks.0/mlp/dwconv/Conv", "/stages.3/blocks.1/mlp/dwconv/Conv"]
    assert {kept.get(n) for n in narrow} == {NARROW_LAYER} and not set(narrow) & _quantized(graph)
    wide = ["/stages.1/blocks.0/mlp/fc1/MatMul", "/stages.1/blocks.0/mlp/fc2/MatMul", "/stages.3/blocks.1/attn/q/MatMul"]
    assert set(wide) <= _quantized(graph) and not set(wide) & kept.keys()


def test_calibration_methods_set_other_ranges_and_still_agree(setup, exported, calibration, tmp_path):
    _, data, _ = setup
    fp32, int8, _ = exported
    frames = [RECORD.replace(scale=None)(f)[None].numpy() for f in
              (read_image(p) for p in sorted((data / "val").iterdir()))]

    def scales(graph) -> dict:
        return {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer
                if t.name.endswith("_scale") and "output" not in t.name}
    minmax = scales(_graph(int8))
    for method in ("percentile", "entropy"):
        result = quantize_int8(fp32, tmp_path / f"{method}.onnx", calibration, method=method)
        other = scales(_graph(result.path))
        assert any(not np.allclose(minmax[k], other[k]) for k in minmax.keys() & other.keys()), method
        assert agreement(OnnxNetwork(fp32), OnnxNetwork(result.path), frames).pixels >= 0.97, method


def test_calibration_sees_what_the_network_sees(exported, setup):
    _, data, _ = setup
    net = OnnxNetwork(exported[0])
    whole = network_inputs(net, calibration_tensors(data, RECORD, 2, "camvid"), RECORD)
    assert [a.shape for a in whole] == [(1, 3, 120, 160)] * 2
    slide = RECORD.replace(mode="slide", crop_size=(64, 64), stride=(48, 48), flip=True)
    crops = network_inputs(net, calibration_tensors(data, slide, 2, "camvid"), slide)
    # 120x160 in 64x64 windows every 48: 3 x 3 windows, in batches of 4, for the image and its mirror
    assert {a.shape[1:] for a in crops} == {(3, 64, 64)} and sum(a.shape[0] for a in crops) == 2 * 2 * 9
    files = network_inputs(net, calibration_tensors(data / "train", RECORD, 3), RECORD)  # a plain image folder
    assert len(files) == 3


@pytest.mark.parametrize("extra, message", [
    (["--int8"], "--int8 needs --calibrate DATA"),
    (["--calibrate", "{data}"], "--calibrate without --int8"),
    (["--int8", "--calibrate", "{data}", "--keep-fp32", "/no/such/node"], "'/no/such/node' names no node"),
    (["--int8", "--calibrate", "{data}/missing", "--dataset", "camvid"], "missing"),
    (["--int8", "--calibrate", "{data}", "--calib-images", "0"], "--calib-images must be at least 1"),
])
def test_bad_arguments_get_one_error_and_write_nothing(setup, extra, message, tmp_path, capsys):
    _, data, run = setup
    out = tmp_path / "out.onnx"
    argv = ["export", str(run), "--onnx", str(out), "--size", "120", "160",
            *(a.format(data=data) for a in extra)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.iterdir())  # not the file, nor a temporary one


def _tiny_san():
    from segadapter.modeling.backbones import clip as clip_module

    clip_module.CLIP_CONFIGS.setdefault("tiny-int8-test", clip_module.ClipConfig(
        32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2), clip_module.ClipTextConfig(77, 600, 32, 2, 2)))
    return segadapter.create_model("san-vit-b16", classes=["sky", "road", "car"], clip_config_override="tiny-int8-test",
                                   side_width=48, side_heads=2, side_depth=4, num_queries=10)


FAMILIES = {
    "adapt-mit-b0": lambda: segadapter.create_model("adapt-mit-b0", num_classes=11),
    "semask-mit-b0": lambda: segadapter.create_model("semask-mit-b0", num_classes=11),
    "convnext-t": lambda: segadapter.create_model("convnext-t", num_classes=11),
    "segdeformer-mit-b0": lambda: segadapter.create_model("segdeformer-mit-b0", num_classes=11),
    "segvit-vit-t": lambda: segadapter.create_model("segvit-vit-t", num_classes=11, img_size=64),
    "san-vit-b16 (fixed classes)": _tiny_san,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_exporting_family_quantizes(family, setup, tmp_path, monkeypatch):
    """Random weights (a near tie at many pixels), so the bar is lower than the trained model's;
    the point: ONNX Runtime's pre-processing and quantizer take the family's graph, and the int8
    file runs on a CamVid val frame close to the fp32 one (segformer-b0: the tests above). The test
    SAN is 32 wide, under the default rule's width bar: the bar is lowered so its layers quantize."""
    _, data, _ = setup
    monkeypatch.setattr(fp32_nodes, "MIN_INT8_WIDTH", 16)
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    images = calibration_tensors(data, RECORD, 2, "camvid")
    result, inputs = export_int8(model, tmp_path / "int8.onnx", images, RECORD, sample_size=(120, 160),
                                 fp32_path=tmp_path / "fp32.onnx")
    assert sum(n.op_type == "QuantizeLinear" for n in _graph(result.path).node) > 5
    assert any(why == OUTPUT_LAYER for why in result.plan.keep.values())
    frame = RECORD(read_image(sorted((data / "val").iterdir())[0]))[None]  # 160x120, as the record feeds it
    agree = agreement(OnnxNetwork(tmp_path / "fp32.onnx"), OnnxNetwork(result.path), [frame.numpy()])
    assert agree.pixels >= 0.9, f"{family}: {agree}"
