"""An exported `.onnx` file as the network the Inferencer, `predict` and `eval` run: ONNX Runtime
in place of the torch model, and nothing else changed.

`segadapter export` writes a graph `images (B, 3, H, W) -> logits (B, K, h, w)` - what the model's
eval forward returns - and, in the file's metadata, the model's preprocessing record
(`PREPROCESSING_KEY`) and what its output is (`MODEL_KEY`: name, class count, stride, output
space). `OnnxNetwork` is an `nn.Module` whose forward runs that graph, so preprocessing, sliding
windows, flip / multi-scale passes and the output space's averaging are the very code paths a
torch model takes. No torch model is built, and the file's weights never pass through torch.

One difference from the torch model: a head that resizes its masks to the output size itself
(SAN, `takes_output_size`) was exported without that input, so its graph combines at the input
size and the scores are resized afterwards, like every other head's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runtime.amp import Precision, choose_precision
from ..errors import CheckpointError, ConfigError, SegAdapterError
from ..modeling.heads.base import LOGITS, DecodeHead, OutputSpace
from ..modeling.meta_arch.base import SegmentationModel

PREPROCESSING_KEY = "segadapter.preprocessing"  # the preprocessing record, JSON (inference/preprocess.py)
MODEL_KEY = "segadapter.model"  # {"name", "num_classes", "output_stride", "output_space": {"kind", "tta"}}
QUANTIZATION_KEY = "segadapter.quantization"  # int8 files: how they were quantized (export/quantize.py)
INPUT, OUTPUT = "images", "logits"
ONNX_SUFFIX = ".onnx"
INSTALL = "pip install 'segadapter[export]'"


def is_onnx_path(path: Any) -> bool:
    """Whether a model argument names an ONNX file (by its suffix) rather than a model folder."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() == ONNX_SUFFIX


class RecordedHead(DecodeHead):
    """Stands where a torch model's decode head is read (`output_space`, `takes_output_size`):
    declares what the exported graph's output is, as the file's metadata says. It never runs."""

    def __init__(self, num_classes: int, output_stride: int, space: OutputSpace):
        super().__init__()
        self.num_classes, self.output_stride, self.output_space = num_classes, output_stride, space


class OnnxNetwork(SegmentationModel):
    """`OnnxNetwork(path)(images)` -> the graph's fp32 output, as a torch tensor on the input's
    device (ONNX Runtime runs on the CPU). `config` holds the name, class count and, when the file
    has one, the preprocessing record, as a model folder's config.json does; the rest of the
    model contract (`SegmentationModel`) is read from its `decode_head`, which declares the output."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = open_session(self.path, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        model = _json_entry(meta, MODEL_KEY, self.path) or {}
        num_classes = _num_classes(model, self.session, self.path)
        stride = int(model.get("output_stride") or 1)
        space = OutputSpace(**model["output_space"]) if model.get("output_space") else LOGITS
        self.decode_head = RecordedHead(num_classes, stride, space)
        self.quantization = _json_entry(meta, QUANTIZATION_KEY, self.path)
        self.config = {"name": f"{model.get('name', 'model')} ({self.path.name}, ONNX: classes "
                                               "fixed at export)", "num_classes": num_classes}
        record = _json_entry(meta, PREPROCESSING_KEY, self.path)
        if record is not None:
            self.config["preprocessing"] = record
        # where inputs come from; a buffer so `.to(device)` and the device look-ups work as for a model
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    @property
    def precision(self) -> str:
        return "int8" if self.quantization else "fp32"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run([OUTPUT], {INPUT: x})[0]
        return torch.from_numpy(out).to(images.device)


def open_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session on a segadapter export; one SegAdapterError naming the file
    when it is missing, unreadable, or another kind of graph."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SegAdapterError(f"{path}: running an ONNX model needs onnxruntime: {INSTALL}") from None
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())  # as many as torch would use
    options.log_severity_level = 3  # errors only: ORT's notes on fused nodes are not the user's business
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own classes (InvalidProtobuf, Fail, InvalidGraph, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({first})") from None
    _check_signature(path, session)
    return session


def _check_signature(path: Path, session) -> None:
    """Ours take `images` (B, 3, H, W) float and return `logits` (B, K, h, w) float."""
    ins, outs = session.get_inputs(), session.get_outputs()
    ours = (len(ins) == 1 and ins[0].name == INPUT and len(ins[0].shape) == 4 and ins[0].type == "tensor(float)"
            and ins[0].shape[1] in (3, "3") and len(outs) == 1 and outs[0].name == OUTPUT
            and len(outs[0].shape) == 4 and outs[0].type == "tensor(float)")
    if not ours:
        show = lambda args: ", ".join(f"{a.name} {a.type} {list(a.shape)}" for a in args)  # noqa: E731
        raise CheckpointError(
            f"{path}: not a segadapter export (it takes {show(ins) or 'nothing'} and returns "
            f"{show(outs) or 'nothing'}); segadapter runs graphs written by `segadapter export`: input "
            f"'{INPUT}' (batch, 3, H, W) float, output '{OUTPUT}' (batch, K, h, w) float")


def _json_entry(meta: dict[str, str], key: str, path: Path) -> Any:
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: metadata {key} is not valid JSON ({e})") from None


def _num_classes(model: dict, session, path: Path) -> int:
    """The recorded class count, else the output's channel axis (files exported before it was recorded)."""
    k = model.get("num_classes") or session.get_outputs()[0].shape[1]
    if not isinstance(k, int) or k < 1:
        raise CheckpointError(f"{path}: cannot tell how many classes the model predicts (no {MODEL_KEY} "
                              "metadata and no fixed class axis in its output); export it again")
    return k


def load_onnx_network(path: str | os.PathLike, threads: int | None = None) -> OnnxNetwork:
    """The network of an ONNX file, in eval mode."""
    return OnnxNetwork(path, threads).eval()


def check_torch_only_options(model: nn.Module, amp: Any = None, compile: bool = False, what: str = "") -> None:
    """One ConfigError when autocast or torch.compile is asked of an ONNX network: the graph runs
    in the precision it was exported with. `what` names the options as the caller's user knows them."""
    if isinstance(model, OnnxNetwork) and (amp not in (None, "none", "auto") or compile):
        asked = what or ("amp" if amp not in (None, "none", "auto") else "compile")
        raise ConfigError(f"{model.path}: {asked} applies to PyTorch models; an ONNX model runs in the precision "
                          f"it was exported with ({model.precision})")


def network_precision(model: nn.Module, amp: Any, device: torch.device, what: str = "amp") -> Precision:
    """What `amp` resolves to for running `model` on `device` (`runtime.amp.choose_precision`);
    an ONNX network runs as exported, so `auto` means no autocast for it."""
    if isinstance(model, OnnxNetwork):
        return Precision(str(amp), None, f"ONNX Runtime runs the graph as exported ({model.precision})")
    return choose_precision(amp, device, what)
