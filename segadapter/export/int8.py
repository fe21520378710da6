"""A model to an int8 ONNX file in one call: the fp32 export, calibration inputs recorded on the
run-time inference path, ONNX Runtime's static quantization - and how far int8 moves from fp32."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..inference.onnx_network import OnnxNetwork, load_onnx_network
from ..inference.preprocess import Preprocessing
from .calibration import network_inputs
from .onnx_graph import export_onnx
from .quantize import Int8Result, quantize_int8


@dataclass
class Agreement:
    """int8 against fp32 on the same inputs: the share of pixels with the same top class, and the
    largest score difference."""

    pixels: float
    max_abs_diff: float
    inputs: int

    def __str__(self) -> str:
        return (f"labels agree on {100 * self.pixels:.2f}% of pixels, max abs score difference "
                f"{self.max_abs_diff:.3g} ({self.inputs} network inputs)")


def export_int8(model: torch.nn.Module, out_path: str | os.PathLike, images: Iterable[torch.Tensor],
                pre: Preprocessing, *, method: str = "minmax", rule: str = "default", keep: Sequence[str] = (),
                opset: int = 17, sample_size: tuple[int, int] = (512, 512),
                fp32_path: str | os.PathLike | None = None) -> tuple[Int8Result, list[np.ndarray]]:
    """Export `model` in fp32 (to `fp32_path`, or a temporary file), record what the network is
    fed while `images` (preprocessed (3, h, w) tensors) go through `pre`'s inference path, and
    quantize to `out_path` calibrated on those inputs. Returns the result and the inputs."""
    with tempfile.TemporaryDirectory(prefix="segadapter-export-") as tmp:
        fp32 = Path(fp32_path) if fp32_path is not None else Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, opset, sample_size)
        inputs = network_inputs(load_onnx_network(fp32), images, pre)
        return quantize_int8(fp32, out_path, inputs, method, rule, keep), inputs


@dataclass
class Speed:
    """int8 against fp32 on one input on this CPU: median ms a call."""

    fp32_ms: float
    int8_ms: float
    size: tuple[int, int]
    calls: int

    def __str__(self) -> str:
        h, w = self.size
        return (f"{self.int8_ms:.1f} ms int8, {self.fp32_ms:.1f} ms fp32 ({self.fp32_ms / self.int8_ms:.2f}x) at "
                f"{h}x{w}, batch 1 (medians of {self.calls} calls each; benchmarks/int8.py measures properly)")


def speed(fp32: OnnxNetwork, int8: OnnxNetwork, x: np.ndarray, rounds: int = 4, burst: int = 3) -> Speed:
    """A quick look at whether int8 pays on this CPU: it depends on the model (how much of its time
    is in weighted products) and on the CPU (VNNI / AMX), so the export command shows it. The two
    graphs take turns of `burst` timed calls after an untimed one: a session's threads keep spinning
    a while after its call and would slow the other's first call."""
    t = torch.from_numpy(x[:1])
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(rounds):
        for name, net in (("fp32", fp32), ("int8", int8)):
            net(t)
            for _ in range(burst):
                start = time.perf_counter()
                net(t)
                times[name].append(1e3 * (time.perf_counter() - start))
    return Speed(statistics.median(times["fp32"]), statistics.median(times["int8"]), tuple(x.shape[2:]),
                 rounds * burst)


def agreement(fp32: OnnxNetwork, int8: OnnxNetwork, inputs: Sequence[np.ndarray]) -> Agreement:
    same = total = 0
    diff = 0.0
    for x in inputs:
        t = torch.from_numpy(x)
        a, b = fp32(t), int8(t)
        same += int((a.argmax(1) == b.argmax(1)).sum())
        total += a.shape[0] * a.shape[2] * a.shape[3]
        diff = max(diff, float((a - b).abs().max()))
    return Agreement(same / max(total, 1), diff, len(inputs))
