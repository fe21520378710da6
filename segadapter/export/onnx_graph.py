"""ONNX export with dynamic batch, height and width. The file's metadata carries what a runtime
needs to run it as the model ran: the preprocessing record (`PREPROCESSING_KEY`, JSON) and what
the output is (`MODEL_KEY`: name, class count, stride, output space) - read back by
`segadapter.inference.onnx_network.OnnxNetwork`."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from ..errors import SegAdapterError
from ..inference.onnx_network import INPUT, INSTALL, MODEL_KEY, OUTPUT, PREPROCESSING_KEY
from ..modeling.meta_arch.base import output_space
from ..utils.io import atomic_path

METADATA_KEY = PREPROCESSING_KEY  # the name this module always exported


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = 17,
                sample_size: tuple[int, int] = (512, 512)) -> Path:
    """Write `model` (eval mode: images -> class scores at the model's output stride) to `path`
    atomically, with the model's preprocessing record (if it has one) and its output description
    in the metadata. The output's spatial axes are named for what they are: `height_over_{stride}`."""
    path = Path(path)
    model = model.eval()
    stride = model.output_stride
    out_h, out_w = f"height_over_{stride}", f"width_over_{stride}"
    x = torch.zeros(1, 3, *sample_size)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter: dynamic shapes without extra packages (onnxscript).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(tmp), input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"},
                          OUTPUT: {0: "batch", 2: out_h, 3: out_w}},
            dynamo=False,
        )
        write_metadata(tmp, model_metadata(model))
    return path


def model_metadata(model: torch.nn.Module) -> dict[str, str]:
    """The metadata properties describing `model`'s graph (JSON strings)."""
    space = output_space(model)
    props = {MODEL_KEY: json.dumps({
        "name": model.name,
        "num_classes": int(model.num_classes),
        "output_stride": int(model.output_stride),
        "output_space": {"kind": space.kind, "tta": space.tta},
    })}
    if model.config.get("preprocessing") is not None:
        props[PREPROCESSING_KEY] = json.dumps(model.config["preprocessing"])
    return props


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata properties of an ONNX file (e.g. `METADATA_KEY`)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def write_metadata(path: str | os.PathLike, props: dict[str, str]) -> None:
    """Add (or replace) metadata properties of the ONNX file at `path`, in place."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **props})
    onnx.save(proto, str(path))


def check_onnx(model: torch.nn.Module, path: str | os.PathLike, images: torch.Tensor) -> float:
    """Max abs logit difference between onnxruntime and PyTorch on `images`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SegAdapterError(f"checking the export needs onnxruntime: {INSTALL}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model.eval()(images)
    out = torch.from_numpy(session.run(None, {INPUT: images.numpy()})[0])
    return float((out - ref).abs().max())
