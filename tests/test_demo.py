"""The README's main job: `segadapter demo` trains, evaluates and writes overlays end to end."""
import subprocess
import sys

from PIL import Image

from segadapter.cli.demo import detect_dataset

FAST = ["--iters", "3", "--predictions", "2", "data.crop_size=[64,64]", "data.options={size: 64}",
        "data.val_options={num_samples: 3}", "train.progress=false"]


def test_demo_on_builtin_data(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "segadapter", "demo", "--work-dir", str(run), *FAST]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "mIoU" in r.stdout and "| background" in r.stdout
    overlays = sorted((run / "predictions").glob("*_overlay.png"))
    assert len(overlays) == 2
    assert Image.open(overlays[0]).size == (64, 64)
    assert (run / "curves.png").is_file() and (run / "checkpoints" / "latest").is_file()
    # a second run reuses the finished weights instead of refusing the existing folder
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "mIoU" in r2.stdout


def test_demo_names_a_bad_dataset_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "segadapter", "demo", "--data", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "nope" in r.stderr and "Traceback" not in r.stderr


def test_dataset_layouts_are_recognised(tmp_path):
    for sub, name in [("trainannot", "camvid"), ("leftImg8bit", "cityscapes"), ("images/training", "ade20k")]:
        root = tmp_path / name
        (root / sub).mkdir(parents=True)
        assert detect_dataset(root) == name
