"""`segadapter env`: what this machine gives PyTorch, and what `amp: auto` and `--compile` pick on it.

Speed figures only carry between machines whose answers here agree; paste this into bug reports.
"""
from __future__ import annotations

import argparse
import json
import os
import platform


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="print torch, the CPU's ISA level, threads, allocator and what amp auto picks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="device to report amp auto for (default: CUDA when there is one)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    return p


def environment(device: str | None = None) -> dict[str, object]:
    """The report as a dict (also what the benchmarks print as their machine line)."""
    import torch

    from ..runtime.amp import choose_precision
    from ..runtime.device import resolve_device
    from ..utils.compile import compiler_missing, cxx_compiler
    from ..utils.cpu_isa import cpu_model, describe_isa, onednn_isa_limit
    from ..utils.malloc import ENV_SWITCH, environment as malloc_settings

    dev = resolve_device(device)
    precision = choose_precision("auto", dev)
    missing = compiler_missing(dev)
    tuned = os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}
    return {
        "segadapter": _version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_flags": describe_isa(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": onednn_isa_limit() or "not set (all the CPU has)",
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "allocator": (f"glibc, tuned by segadapter's commands ({', '.join(f'{k}={v}' for k, v in malloc_settings().items())}; "
                      f"{ENV_SWITCH}=0 turns it off)") if tuned else f"glibc defaults ({ENV_SWITCH}=0)",
        "ld_preload": os.environ.get("LD_PRELOAD") or "none",
        "device": str(dev),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available",
        "amp_auto": precision.describe(),
        "compile": f"available ({cxx_compiler() or 'Triton'})" if missing is None else f"unavailable: {missing}",
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("segadapter")
    except PackageNotFoundError:
        return "not installed"


def run(args) -> int:
    report = environment(args.device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
    return 0
