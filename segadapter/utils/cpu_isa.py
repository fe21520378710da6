"""What the CPU offers int8 and bf16 work, from /proc/cpuinfo's flags (Linux): AVX-512 VNNI
(int8 dot products), AMX (int8 / bf16 tile matrix multiply), AVX-512 BF16; and whether PyTorch
computes bf16 natively as it runs now (`cpu_bf16_native`, behind `amp: auto`). Speeds measured on
one machine only carry to another with the same answers."""
from __future__ import annotations

import os
from pathlib import Path

import torch

FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16",
         "avx512_bf16": "AVX-512 BF16"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first processor's flags (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "unknown CPU"
    return next((line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown CPU")


def isa_summary(flags: set[str] | None = None) -> dict[str, bool]:
    """{"AVX-512 VNNI": True, "AMX-INT8": False, ...} for the flags that matter here."""
    flags = cpu_flags() if flags is None else flags
    return {name: flag in flags for flag, name in FLAGS.items()}


def describe_isa(flags: set[str] | None = None) -> str:
    """One line: 'AVX-512 VNNI yes, AVX-VNNI yes, AMX-INT8 no, ...'."""
    return ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in isa_summary(flags).items())


# oneDNN's ISA levels in order (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA values); bf16 products run
# natively from AVX512_CORE_BF16 on, below it oneDNN converts and computes in fp32.
ONEDNN_ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                    "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                    "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT")


def onednn_isa_limit() -> str | None:
    """The oneDNN ISA cap set in the environment (ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA), or None."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip() else None


def cpu_bf16_native() -> tuple[bool, str]:
    """Whether PyTorch computes bfloat16 natively on this CPU, as it runs now, and why (one phrase).

    Needs bf16 units (AMX-BF16 or AVX-512 BF16) and PyTorch and oneDNN allowed to use them: an
    `ATEN_CPU_CAPABILITY` below avx512 or an `ONEDNN_MAX_CPU_ISA` below AVX512_CORE_BF16 turns
    bf16 into an emulation, ~10x slower than fp32 for a whole model."""
    units = [name for name, on in (("AMX-BF16", torch.cpu._is_amx_tile_supported()),
                                   ("AVX-512 BF16", torch.cpu._is_avx512_bf16_supported())) if on]
    if not units:
        return False, "this CPU has no bfloat16 units (no AMX-BF16 or AVX-512 BF16)"
    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.startswith("AVX512"):
        return False, f"PyTorch's CPU kernels are limited to {capability} (ATEN_CPU_CAPABILITY), below bfloat16"
    limit = onednn_isa_limit()
    if limit in ONEDNN_ISA_ORDER and ONEDNN_ISA_ORDER.index(limit) < ONEDNN_ISA_ORDER.index("AVX512_CORE_BF16"):
        return False, f"oneDNN is limited to {limit} (ONEDNN_MAX_CPU_ISA), below its bfloat16 kernels"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, "oneDNN reports no bfloat16 support"
    return True, f"this CPU computes bfloat16 natively ({' and '.join(units)})"
