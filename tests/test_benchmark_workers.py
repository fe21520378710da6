"""The speed benchmarks time each contender in its own process (`benchmarks/worker_process.py`):
the child answers `run` with the milliseconds of one call and `mem` with its peak extra memory."""
from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_a_worker_times_calls_and_reports_its_peak_memory(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from worker_process import Worker

    worker = Worker(str(BENCHMARKS / "speed_vs_hf.py"), {"kind": "matmul", "precision": "fp32"})
    try:
        assert worker.read() == "ready"
        times = [float(worker.ask("run")) for _ in range(2)]
        assert all(0 < t < 60_000 for t in times)
        # two 2048 x 2048 fp32 inputs were made before `ready`; a product allocates a 16 MB result
        assert 8 <= float(worker.ask("mem")) < 1024
    finally:
        worker.close()
    assert worker.proc.returncode == 0
