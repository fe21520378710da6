"""Keep freed memory inside the process (glibc), so big tensors stop costing page faults.

glibc hands every allocation above a threshold (at most 32 MB) to `mmap` and gives it back on
free; it also trims the heap top once enough of it is free. A CPU forward/backward allocates and
frees the same large activations every step, so each step pays for fresh zeroed pages from the
kernel again: 4 000-20 000 page faults per segformer-b0 forward at 512x512, which ran in 111 ms
with glibc's defaults and 87 ms with these settings (benchmarks/speed_vs_hf.py, README).
With `mmap` off for the heap and trimming out of reach, freed blocks are reused instead; the
process keeps its high-water memory (what jemalloc/tcmalloc setups for PyTorch do too).

The `segadapter` train/eval/predict/demo commands call `tune_malloc()` themselves;
`SEGADAPTER_TUNE_MALLOC=0` turns that off. Library users may call it once at start-up.
"""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameter number and value (glibc's malloc.h); the trim threshold is an int, so 2 GB
# is its ceiling. Each has an environment twin read at process start: MALLOC_<NAME>_.
SETTINGS = {"MMAP_MAX": (-4, 0), "TRIM_THRESHOLD": (-1, 2**31 - 1)}
ENV_SWITCH = "SEGADAPTER_TUNE_MALLOC"


def environment() -> dict[str, str]:
    """The same settings as environment variables, for a child process started from outside."""
    return {f"MALLOC_{name}_": str(value) for name, (_, value) in SETTINGS.items()}


def tune_malloc() -> bool:
    """Apply the settings (glibc only); True when they took effect."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS.values())
