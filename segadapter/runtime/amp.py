"""Mixed precision: autocast context and grad scaler chosen from `train.amp` and the device."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from ..errors import ConfigError

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device`; ConfigError where the pair does not work."""
    if amp not in AMP_DTYPES:
        raise ConfigError(f"train.amp: expected one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    dtype = AMP_DTYPES[amp]
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; use train.amp=bf16 on CPU")
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp=bf16: this GPU has no bfloat16 support; use train.amp=fp16")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling only for fp16 (bf16 has fp32's exponent range); disabled scalers are no-ops."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
