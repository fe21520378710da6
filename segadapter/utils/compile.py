"""`torch.compile` set up for inference.

Inductor with weight freezing treats the weights as constants: they are packed once for the CPU's
matmul/conv kernels and the pointwise ops around them (norms, activations, softmax, the head's
in-place sums) are fused into generated C++ loops. On the 2-core CPU of our benchmarks this takes
a bf16 segformer-b0 forward at 512x512 from 65.7 to 49.2 ms (`benchmarks/speed_vs_hf.py`). The
first call for each input shape compiles (~30 s for segformer-b0 on 2 cores); on CPU that needs a
C++ compiler.
"""
from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from ..errors import ConfigError


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU (`$CXX`, else g++/clang++/c++), or None."""
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def compile_for_inference(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """`model` compiled for inference (use under `torch.inference_mode()` / `no_grad()`, in eval
    mode). Switches on inductor's weight freezing for this process: compiled graphs that record
    no gradients read the weights once, at compile time - recompile after changing them."""
    if torch.device(device).type == "cpu" and cxx_compiler() is None:
        raise ConfigError("--compile on CPU needs a C++ compiler (g++ or clang++; or set CXX); "
                          "install one or run without --compile")
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model)
