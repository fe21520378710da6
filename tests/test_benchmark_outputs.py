"""A benchmark asked to write `--json` checks the path before it measures anything: a run of many
minutes must not end in a traceback that loses its figures (as `time_to_accuracy.py --json
missing/folder/x.json` once did after 10 minutes of training)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segadapter.utils.io import unwritable_reason

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WRITING_JSON = ["clip_speed", "gpu_check", "predict_throughput", "san_zero_shot", "segdeformer_speed", "serve_load",
                "speed_vs_hf", "time_to_accuracy", "vit_speed"]


def test_a_missing_folder_is_created_and_nothing_is_left_in_it(tmp_path):
    target = tmp_path / "results" / "new" / "run.json"
    assert unwritable_reason(target) is None
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []


def test_unwritable_paths_are_named_with_the_problem(tmp_path):
    (tmp_path / "a-file").write_text("x")
    assert unwritable_reason(tmp_path) == f"{tmp_path}: cannot be written (is a folder, not a file); choose another path"
    under_a_file = tmp_path / "a-file" / "run.json"
    assert unwritable_reason(under_a_file) == (f"{under_a_file}: cannot be written (a folder on its path is a file); "
                                               "choose another path")


@pytest.mark.parametrize("script", WRITING_JSON)
def test_each_benchmark_refuses_a_bad_json_path_before_measuring(tmp_path, script):
    (tmp_path / "a-file").write_text("x")
    bad = tmp_path / "a-file" / "out.json"
    required = {"san_zero_shot": ["--roots", str(tmp_path), str(tmp_path / "run")],
                "serve_load": [str(tmp_path / "run")]}.get(script, [])
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), "--json", str(bad), *required],
                          capture_output=True, text=True, timeout=120, cwd=BENCHMARKS.parent)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (f"{script}.py: error: {bad}: cannot be written "
                                                    "(a folder on its path is a file); choose another path")
