"""`segadapter eval RUN` takes the dataset, root and test-time scale from the run's own config."""
import json
import subprocess
import sys

import pytest

from segadapter.engine import load_config
from segadapter.engine.trainer import Trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("evalrun") / "run"
    cfg = load_config("synthetic", ["schedule.max_iters=2", "schedule.warmup_iters=0", "data.crop_size=[64,64]",
                                    "data.options={size: 96}", "data.val_options={num_samples: 2}",
                                    "data.scale=[64,64]", "train.progress=false", "train.eval_interval=100"])
    Trainer(cfg, run).fit()
    return run


def _eval(*args):
    return subprocess.run([sys.executable, "-m", "segadapter", "eval", *args, "--json", "--no-progress",
                           "--workers", "0"], capture_output=True, text=True)


def test_eval_defaults_to_the_runs_data_and_scale(run_dir):
    r = _eval(str(run_dir))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dataset"] == "synthetic" and out["images"] == 2 and out["scale"] == [64, 64]
    r2 = _eval(str(run_dir), "--scale", "96", "96")
    assert json.loads(r2.stdout)["scale"] == [96, 96]


def test_plain_model_folder_needs_data_arguments(run_dir, tmp_path):
    import segadapter

    segadapter.from_pretrained(run_dir).save_pretrained(tmp_path / "m")
    r = _eval(str(tmp_path / "m"))
    assert r.returncode == 2 and "--data" in r.stderr
