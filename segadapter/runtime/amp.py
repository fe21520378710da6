"""Mixed precision: the precision chosen from an `amp` setting and the device, its autocast
context and grad scaler.

`amp: auto` (the default everywhere) picks what the device computes fastest without changing the
result beyond a precision's noise: bf16 on CUDA with bf16 support and on CPUs with bf16 units
(AMX / AVX-512 BF16, as PyTorch and oneDNN may use them now), fp16 with loss scaling on other
GPUs, fp32 on other CPUs, where PyTorch only emulates bf16 (~10x slower than fp32: an AVX2 EPYC
ran an `adapt-mit-b0` training step in 6452 ms with bf16, 658 ms in fp32). An explicit `bf16` on
such a CPU is honoured, with one warning.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import ContextManager

import torch

from ..errors import ConfigError
from ..utils.cpu_isa import cpu_bf16_native

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_CHOICES = ("auto", *AMP_DTYPES)
DTYPE_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class EmulatedPrecisionWarning(UserWarning):
    """bf16 asked for on a CPU that only emulates it."""


@dataclass(frozen=True)
class Precision:
    """What an `amp` setting resolved to on a device: the autocast dtype (None: fp32) and why."""

    asked: str  # "auto", "none", "bf16" or "fp16"
    dtype: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        return DTYPE_NAMES[self.dtype]

    def describe(self) -> str:
        """'amp auto -> fp32: this CPU has no bfloat16 units (...)'."""
        return f"amp {self.asked} -> {self.name}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"amp": self.asked, "dtype": self.name, "reason": self.reason}


def choose_precision(amp: str | torch.dtype | None, device: torch.device | str, what: str = "amp") -> Precision:
    """Resolve `amp` ("auto", "none", "bf16", "fp16", a torch dtype, or None for fp32) on `device`.
    ConfigError where the pair cannot work; one EmulatedPrecisionWarning for bf16 on a CPU without
    bf16 units. `what` names the setting in messages (`train.amp`, `--amp`)."""
    device = torch.device(device)
    if amp is None or isinstance(amp, torch.dtype):
        if amp not in DTYPE_NAMES:
            raise ConfigError(f"{what}: the autocast dtype must be bfloat16 or float16, got {amp}")
        amp = {v: k for k, v in AMP_DTYPES.items()}[amp]
    if amp not in AMP_CHOICES:
        raise ConfigError(f"{what}: expected one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "auto":
        return _auto(device)
    dtype = AMP_DTYPES[amp]
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError(f"{what}=fp16 needs a CUDA device; use {what}=auto (or bf16 on a CPU with bf16 units)")
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{what}=bf16: this GPU has no bfloat16 support; use {what}=auto or fp16")
    if dtype is torch.bfloat16 and device.type == "cpu":
        native, why = cpu_bf16_native()
        if not native:
            warnings.warn(f"{what}=bf16 on a CPU that only emulates bfloat16 ({why}): expect it to run about "
                          f"10x slower than fp32 (an AVX2 EPYC: 9.8x for a training step, 11.8x for inference); "
                          f"{what}=auto picks fp32 here", EmulatedPrecisionWarning, stacklevel=2)
            return Precision(amp, dtype, f"asked for; {why}, so it is emulated")
    return Precision(amp, dtype, "asked for")


def _auto(device: torch.device) -> Precision:
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("auto", torch.bfloat16, f"{torch.cuda.get_device_name(device)} computes bfloat16")
        return Precision("auto", torch.float16,
                         f"{torch.cuda.get_device_name(device)} has no bfloat16; fp16 with loss scaling")
    if device.type == "cpu":
        native, why = cpu_bf16_native()
        return Precision("auto", torch.bfloat16 if native else None, why)
    return Precision("auto", None, f"no autocast chosen for {device.type} devices")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device` (see `choose_precision`)."""
    return choose_precision(amp, device, "train.amp").dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling only for fp16 (bf16 has fp32's exponent range); disabled scalers are no-ops."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
