"""`benchmarks/gpu_check.py` is run only where a GPU is lent, which is rare: its dry run on a CPU
keeps it from rotting between those runs (same code paths, toy sizes)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_trains_every_asked_family_and_matches_transformers(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cpu", "--quick",
                           "--families", "segadapter-mit", "san", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [(r["family"], r["amp"]) for r in report["train"]] == [("segadapter-mit", "bf16"), ("san", "bf16")]
    for row in report["train"]:
        assert row["finite"] and row["ms_per_step"] > 0
        assert row["loss_last"] < row["loss_first"]  # two AdamW steps on one batch lower its loss
    assert {(r["model"], r["precision"]) for r in report["vs_hf"]} == {
        (f"segformer-{v}", p) for v in ("b0", "b1") for p in ("fp32", "bf16")}
    assert all(r["max_abs_logit_diff_fp32"] < 1e-4 for r in report["vs_hf"])
