"""`benchmarks/int8.py --quick` end to end on a tiny trained run and a few real CamVid frames: the
fp32 / int8 exports, val mIoU of every path, parity, the interleaved timing workers, the table with
the CPU's ISA, and the JSON results (the real run trains the CamVid study's models and takes about
2 h with its training, about 30 min with --runs; this takes seconds and times nothing worth reading)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from onnx_helpers import CAMVID, mini_camvid, tiny_trained_run

pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(CAMVID is None, reason="CamVid not found (../shared/data/camvid)"),
              pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="workers need Linux /proc")]
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PATHS = ["torch-fp32", "torch-bf16", "ort-fp32", "ort-int8", "ort-int8-all"]


def _script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as when the script runs: worker_process, camvid_study
    spec = importlib.util.spec_from_file_location("int8_benchmark", BENCHMARKS / "int8.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_quick_mode_measures_every_path_and_writes_the_results(monkeypatch, tmp_path, capsys):
    data = mini_camvid(tmp_path / "camvid", train=8, val=3)
    run = tiny_trained_run(tmp_path / "run", data, steps=10)
    script = _script(monkeypatch)
    out = tmp_path / "results"
    code = script.main(["--runs", str(run), "--data", str(data), "--quick", "--paths", *PATHS, "--batch", "1", "2",
                        "--size", "120", "160", "--threads", "1", "--work", str(tmp_path / "work"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["machine"]["isa"]) >= {"AVX-512 VNNI", "AMX-INT8", "AMX-BF16"}
    row = results["models"]["segformer-b0"]
    assert json.loads((out / "segformer-b0.json").read_text())["speed"] == row["speed"]
    for path in PATHS:
        for role, batch in (("latency", 1), ("throughput", 2)):
            timing = row["speed"][path][role]
            assert timing["median_ms"] > 0 and timing["rounds"] == 2 and timing["batch"] == batch
        assert 0 <= row["accuracy"]["miou"][path] <= 100
    assert row["accuracy"]["val_images"] == 3
    assert row["accuracy"]["ort_fp32_vs_torch_max_abs_diff"] < 1e-4
    for path in ("torch", "ort"):  # float32 rounding against the float64 model: small, never zero
        assert 0 < row["accuracy"][f"{path}_fp32_vs_fp64_max_abs_diff"] < 1e-3
    assert row["accuracy"]["ort-int8_vs_ort_fp32"]["pixels_agree"] > 0.9
    assert row["export"]["calibration_inputs"] == 8
    assert {"int8_vs_ort_fp32_latency", "int8_vs_best_torch_throughput", "miou_drop", "ort_fp32_diff"} <= set(row["targets"])
    ceiling = row["int8_ceiling"]  # ORT's profile of the fp32 graph: weighted products take part of the time
    assert 0 < ceiling["weighted_share"] < 1 and ceiling["speedup"] == pytest.approx(1 / (1 - ceiling["weighted_share"]))
    assert row["targets"]["int8_vs_ort_fp32_latency"]["ceiling"] == ceiling["speedup"]
    table = (out / "table.md").read_text()
    assert table.strip() in printed and "AVX-512 VNNI" in table and "| `segformer-b0` | ort-int8 |" in table
    assert "int8 ceiling" in table
    assert sorted(p.name for p in (tmp_path / "work" / "segformer-b0").glob("*.onnx")) == [
        "fp32.onnx", "int8-all.onnx", "int8.onnx"]


def test_the_throughput_batch_shrinks_to_what_fits_in_memory(monkeypatch):
    script = _script(monkeypatch)
    assert script._fitting_batch(8, 100.0, 10_000.0) == 8
    assert script._fitting_batch(8, 3_000.0, 10_000.0) == 3  # 2 more frames of 3 GB fit in 70% of 10 GB
    assert script._fitting_batch(8, 20_000.0, 10_000.0) == 1
    assert script._available_mb() > 0


def test_a_run_without_its_checkpoint_is_named(monkeypatch, tmp_path):
    """A study run whose result.json came through git without the (ignored) checkpoint."""
    script = _script(monkeypatch)
    (tmp_path / "segformer-b0_seed0").mkdir()
    (tmp_path / "segformer-b0_seed0" / "result.json").write_text("{}")
    with pytest.raises(SystemExit, match="delete result.json to retrain"):
        script.model_folder(tmp_path / "segformer-b0_seed0")


def test_the_weighted_share_counts_convolutions_under_the_names_ort_gives_them(monkeypatch, tmp_path):
    """ORT runs a Conv in blocked layout under a new name (its output's, + `_nchwc`); its time must
    still count as weighted, and time under names the graph's weighted nodes lack must not."""
    import torch

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from ort_profile import kernel_times, weighted_share

    path = tmp_path / "conv.onnx"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1)).eval()
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), str(path), input_names=["images"], output_names=["logits"],
                      dynamo=False)
    calls = kernel_times(str(path), runs=2, size=(64, 64), threads=1)
    assert any(c["op"] == "Conv" and c["node"] == "logits" for c in calls)  # renamed by ORT's layout pass
    assert weighted_share(str(path), calls=calls) > 0.5
    assert weighted_share(str(path), calls=[{**c, "node": "elsewhere"} for c in calls]) == 0
