"""`torch.compile` set up for inference, and for the training step.

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
    missing = compiler_missing(device)
    if missing is not None:
        raise ConfigError(f"--compile needs a compiler here: {missing}; install one or run without --compile")
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    key_compile_cache_by_cpu_isa()
    return torch.compile(model)


def key_compile_cache_by_cpu_isa() -> str:
    """Make inductor's on-disk caches tell CPU instruction sets apart; returns the tag added.

    Inductor (torch 2.13) keys a compiled graph without the vector ISA its C++ was generated for,
    so a cache filled on one CPU (or under `ATEN_CPU_CAPABILITY=avx2`) serves that code to
    another, where it computes NaNs or corrupts memory: an AVX2-limited training run read the
    AVX-512 graphs of an earlier run. A shared TORCHINDUCTOR_CACHE_DIR across machines, a warmed
    cache baked into an image, or the AVX2 check of our CI all do this. torch's
    `cache_key_tag` goes into every cache key, so the ISA in it keeps the entries apart."""
    import torch.compiler.config as compiler_config
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    tag = f"segadapter-cpu-isa={pick_vec_isa() or 'scalar'}"
    current = compiler_config.cache_key_tag
    if tag not in current.split("|"):
        compiler_config.cache_key_tag = f"{current}|{tag}" if current else tag
    return tag


def compiler_missing(device: torch.device | str) -> str | None:
    """Why torch.compile cannot build kernels for `device` here (one phrase), or None when it can."""
    kind = torch.device(device).type
    if kind == "cpu" and cxx_compiler() is None:
        return "no C++ compiler (g++ or clang++; or set CXX)"
    if kind == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "no Triton (pip install triton)"
    return None


def compile_units(model: nn.Module) -> list[nn.Module]:
    """What `train.compile` compiles: the elements of the first `nn.ModuleList` on every path down
    from the model (a backbone's stages or blocks, the adapters, a head's layers), each its own
    graph. One graph for the whole model would compile longer, and inductor (torch 2.13, CPU)
    miscompiles its backward: zero gradients for the decode head of `adapt-mit-b0`, where the
    per-unit graphs match eager to 1e-6 (tests/test_train_compile.py)."""
    units, stack = [], [model]
    while stack:
        module = stack.pop()
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                units += list(child)
            else:
                stack.append(child)
    return units


def compile_for_training(model: nn.Module, device: torch.device | str) -> str:
    """Compile `model`'s units (`compile_units`) in place for training and return one line saying
    so; where no compiler is present, leave it eager and say why. In place: the parameters, the
    state dict's keys and the optimizer see the same model; each unit compiles on its first call
    (and again for a new input size, e.g. validation images)."""
    missing = compiler_missing(device)
    if missing is not None:
        return f"train.compile: {missing}; training runs eager"
    import torch._inductor.config as inductor_config

    # dropout / drop-path draw from torch's generator as in eager mode, not inductor's own: the
    # compiled run takes the same random streams, so it matches eager and resumes exactly
    inductor_config.fallback_random = True
    key_compile_cache_by_cpu_isa()
    units = compile_units(model)
    for unit in units:
        unit.compile(dynamic=False)  # fixed crops: static shapes, no symbolic-size kernels
    return f"train.compile: {len(units)} units compiled (each compiles on its first call)"
