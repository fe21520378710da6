"""ONNX export with dynamic batch, height and width; the model's preprocessing record travels in
the file's metadata (key `segadapter.preprocessing`, JSON) so a runtime can feed it correctly."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .errors import SegAdapterError
from .utils.io import atomic_path


METADATA_KEY = "segadapter.preprocessing"


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = 17,
                sample_size: tuple[int, int] = (512, 512)) -> Path:
    """Write `model` (eval mode: images -> class scores at the model's output stride) to `path`
    atomically, with the model's preprocessing record (if it has one) in the metadata under
    `METADATA_KEY`. The output's spatial axes are named for what they are: `height_over_{stride}`."""
    path = Path(path)
    model = model.eval()
    stride = getattr(model, "output_stride", None)
    out_h, out_w = (f"height_over_{stride}", f"width_over_{stride}") if stride else ("out_height", "out_width")
    x = torch.zeros(1, 3, *sample_size)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter: dynamic shapes without extra packages (onnxscript).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(tmp), input_names=["images"], output_names=["logits"], opset_version=opset,
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: out_h, 3: out_w}},
            dynamo=False,
        )
        record = getattr(model, "config", {}).get("preprocessing")
        if record is not None:
            _add_metadata(tmp, {METADATA_KEY: json.dumps(record)})
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata properties of an ONNX file (e.g. `METADATA_KEY`)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _add_metadata(path: Path, props: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **props})
    onnx.save(proto, str(path))


def check_onnx(model: torch.nn.Module, path: str | os.PathLike, images: torch.Tensor) -> float:
    """Max abs logit difference between onnxruntime and PyTorch on `images`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SegAdapterError("checking the export needs onnxruntime: pip install 'segadapter[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model.eval()(images)
    out = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    return float((out - ref).abs().max())
