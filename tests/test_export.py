"""ONNX export: dynamic sizes, same labels as PyTorch on real CamVid frames."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import segadapter
from segadapter.data import IMAGENET_MEAN, IMAGENET_STD, read_image
from segadapter.export import check_onnx, export_onnx

ort = pytest.importorskip("onnxruntime")
CAMVID = Path(os.environ.get("SEGADAPTER_CAMVID", Path(__file__).resolve().parents[2] / "shared/data/camvid"))


def _normalise(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).float().permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return ((x - mean) / std)[None]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = segadapter.create_model("adapt-mit-b0", num_classes=11).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", sample_size=(128, 160))
    return model, path


def test_dynamic_shapes_match_pytorch(exported):
    model, path = exported
    for shape in [(1, 3, 128, 160), (2, 3, 96, 64), (1, 3, 200, 328)]:
        assert check_onnx(model, path, torch.randn(*shape)) < 1e-4


@pytest.mark.skipif(not (CAMVID / "val").is_dir(), reason="CamVid not available (../shared absent)")
def test_same_labels_as_pytorch_on_real_camvid_frames(exported):
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for name in sorted(os.listdir(CAMVID / "val"))[:3]:
        x = _normalise(read_image(CAMVID / "val" / name))  # full 360 x 480 frame
        with torch.no_grad():
            ref = model(x)
        out = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert out.shape == ref.shape == (1, 11, 90, 120)
        # the same label for (virtually) every pixel; ties at fp precision may flip a handful
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        assert agree > 0.999, name


def test_cli_export(tmp_path):
    segadapter.create_model("segformer-b0", num_classes=3).save_pretrained(tmp_path / "m")
    r = subprocess.run([sys.executable, "-m", "segadapter", "export", str(tmp_path / "m"), "--onnx",
                        str(tmp_path / "m.onnx"), "--size", "64", "96"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.onnx").stat().st_size > 100_000
    assert "max abs logit difference" in r.stdout
    r = subprocess.run([sys.executable, "-m", "segadapter", "export", str(tmp_path / "missing"), "--onnx",
                        str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing" in r.stderr and not (tmp_path / "x.onnx").exists()


def test_output_axes_are_named_for_the_models_stride(exported):
    import onnx

    model, path = exported
    dims = [d.dim_param for d in onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim]
    s = model.output_stride
    assert dims[0] == "batch" and dims[2:] == [f"height_over_{s}", f"width_over_{s}"]
