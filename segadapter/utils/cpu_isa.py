"""What the CPU offers int8 and bf16 inference, from /proc/cpuinfo's flags (Linux): AVX-512 VNNI
(int8 dot products), AMX (int8 / bf16 tile matrix multiply), AVX-512 BF16. Speeds measured on one
machine only carry to another with the same answers."""
from __future__ import annotations

from pathlib import Path

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
