"""Static int8 quantization of an exported fp32 graph with ONNX Runtime's own tools.

`quant_pre_process` first (symbolic shape inference and graph optimisation, as ONNX Runtime
recommends before quantizing), then `quantize_static` in the QDQ format: int8 weights per output
channel, uint8 activations (the U8S8 pair ONNX Runtime's x86 int8 kernels run, with AVX-512 VNNI
or AMX where the CPU has them), activation ranges calibrated on the inputs the network sees at run
time (`calibration.py`), and the nodes `fp32_nodes.py` plans left in fp32. Nothing here computes
a scale or rounds a weight: ONNX Runtime does.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ConfigError, SegAdapterError
from ..inference.onnx_network import INPUT, INSTALL, QUANTIZATION_KEY
from ..utils.io import atomic_path
from .fp32_nodes import Fp32Plan, plan_fp32_nodes
from .onnx_graph import read_metadata, write_metadata

METHODS = ("minmax", "entropy", "percentile")
CHUNK = 8  # calibration merges its ranges / histograms every <= 8 inputs: memory stays that of 8 forwards


@dataclass
class Int8Result:
    path: Path
    method: str
    calibration_inputs: int
    plan: Fp32Plan


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, inputs: Sequence[np.ndarray],
                  method: str = "minmax", rule: str = "default", keep: Sequence[str] = ()) -> Int8Result:
    """Write the int8 (QDQ) version of the exported graph `fp32_path` to `out_path` atomically,
    calibrated on `inputs` (batches the network is fed, (B, 3, H, W) float32), with the fp32 file's
    metadata (preprocessing record, model description) and how it was quantized
    (`QUANTIZATION_KEY`)."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise SegAdapterError(f"int8 export needs onnx and onnxruntime: {INSTALL}") from None
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if not inputs:
        raise ConfigError("int8 calibration needs at least one input")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="segadapter-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        _pre_process(quant_pre_process, fp32_path, prepared)
        plan = plan_fp32_nodes(onnx.load(str(prepared)).graph, rule, keep)
        with atomic_path(out_path) as target, _quiet():
            quantize_static(
                str(prepared), str(target), _Reader(inputs), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=plan.op_types, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=sorted(plan.keep), calibrate_method=calibrate,
                extra_options={**plan.extra_options(),
                               "CalibStridedMinMax": _chunk(len(inputs))},  # (any method, despite its name)
            )
            record = {"format": "QDQ", "weights": "int8, per channel", "activations": "uint8", "method": method,
                      "calibration_inputs": int(sum(a.shape[0] for a in inputs)), "rule": rule,
                      "op_types": plan.op_types, "fp32_outputs": plan.fp32_outputs, "keep_fp32": plan.keep, "onnxruntime": onnxruntime.__version__}
            ours = {k: v for k, v in read_metadata(fp32_path).items() if k.startswith("segadapter.")}
            write_metadata(target, {**ours, QUANTIZATION_KEY: json.dumps(record)})
    return Int8Result(out_path, method, record["calibration_inputs"], plan)


def _pre_process(quant_pre_process, source: Path, target: Path) -> None:
    """ONNX Runtime's pre-processing; where its symbolic shape inference cannot follow a graph
    (it raises "Incomplete symbolic shape inference", e.g. on SeMask's window partitions), ONNX's own
    shape inference and the graph optimisation still run, as its documentation suggests. It runs
    inside `target`'s folder: on that failure ONNX Runtime leaves a debug copy of the model in the
    working directory."""
    source, target = source.resolve(), target.resolve()
    with _quiet(), _working_directory(target.parent):
        try:
            quant_pre_process(str(source), str(target))
            return
        except Exception:  # its symbolic shape inference raises plain exceptions
            pass
        try:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        except Exception as e:
            raise SegAdapterError(f"{source}: ONNX Runtime's quantization pre-processing failed "
                                  f"({type(e).__name__}: {e})") from None


def _chunk(n: int) -> int:
    """The largest divisor of n up to CHUNK: ONNX Runtime's strided calibration wants equal chunks.
    (Its CalibMaxIntermediateOutputs would bound memory too, but its MinMax calibrator drops the
    ranges of every full chunk in onnxruntime 1.32.)"""
    return max(d for d in range(1, min(n, CHUNK) + 1) if n % d == 0)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input batches, in ranges."""

    def __init__(self, inputs: Sequence[np.ndarray]):
        self.inputs = list(inputs)
        self.set_range(0, len(self.inputs))

    def __len__(self) -> int:
        return len(self.inputs)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it: Iterator[np.ndarray] = iter(self.inputs[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT: np.ascontiguousarray(x, dtype=np.float32)}


@contextlib.contextmanager
def _working_directory(folder: Path):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools log warnings per tensor through the root logger (e.g. a
    per-channel axis it falls back from) and print their progress; the command prints its own
    summary instead."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
    finally:
        logging.disable(previous)
