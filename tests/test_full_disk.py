"""A disk that really fills: a tmpfs of a set size (root only: mount(8); skipped elsewhere, where
tests/test_train_faults.py injects ENOSPC instead). A checkpoint or prediction PNGs that do not fit
end with one clear error, every earlier file intact; with space again, the work goes on."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference_helpers import save_tiny
from segadapter import Inferencer, Preprocessing, from_pretrained
from segadapter.engine import Trainer
from segadapter.errors import DiskFullError
from test_train_faults import config, latest, make_folder, records

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class SmallDisk:
    def __init__(self, path: Path):
        self.path = path

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)

    def used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.fixture
def small_disk(tmp_path):
    path = tmp_path / "disk"
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_checkpoint_that_does_not_fit(tmp_path, small_disk):
    root = make_folder(tmp_path / "data")
    run = small_disk.path / "run"
    Trainer(config(root, max_iters=4), run).fit()
    checkpoint = sum(p.stat().st_size for p in latest(run).rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in latest(run).rglob("*") if p.is_file()}
    small_disk.resize(small_disk.used() + checkpoint // 2)  # room for half of the next one
    with pytest.raises(DiskFullError) as e:
        Trainer(config(root, max_iters=8), run, resume=True).fit()
    message = str(e.value)
    assert "No space left on device" in message and "iter_000004, is intact" in message
    assert "--resume auto" in message and "training stopped at iteration 8" in message
    assert latest(run).name == "iter_000004"
    assert {p: p.read_bytes() for p in latest(run).rglob("*") if p.is_file()} == before
    from_pretrained(latest(run))
    torch.load(latest(run) / "train_state.pt", weights_only=True)
    records(run)

    small_disk.resize(256 * 2**20)
    resumed = Trainer(config(root, max_iters=8), run, resume=True)
    assert resumed.iteration == 4
    resumed.fit()
    assert latest(run).name == "iter_000008"
    assert not [p for p in run.rglob("*") if p.name.startswith(".")]  # no temporary left


def test_predictions_that_do_not_fit(tmp_path, small_disk):
    pre = Preprocessing(scale=(64, 64), classes=["a", "b", "c"], palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    inferencer = Inferencer(save_tiny(tmp_path / "model", preprocessing=pre), device="cpu")
    rng = np.random.default_rng(0)
    images = tmp_path / "frames"
    images.mkdir()
    for i in range(12):  # noise: its overlays hardly compress (~0.2 MB each)
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(images / f"frame{i:02d}.png")
    out = small_disk.path / "predictions"
    inferencer.save(images / "frame00.png", out)
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    small_disk.resize(small_disk.used() + 1 * 2**20)
    with pytest.raises(DiskFullError) as e:
        inferencer.save(images, out)
    assert str(e.value).startswith(f"{out}: No space left on device") and "intact" in str(e.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # nothing half-written, no staging

    small_disk.resize(256 * 2**20)
    inferencer.save(images, out)
    assert len(list(out.glob("frame??.png"))) == 12


def test_model_weights_that_do_not_fit(tmp_path, small_disk):
    """safetensors words a full disk as its own error: it is named as one all the same."""
    from inference_helpers import tiny_model

    model = tiny_model()
    folder = small_disk.path / "model"
    model.save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    small_disk.resize(small_disk.used() + 2**20)
    with torch.no_grad():
        next(model.parameters()).add_(1)
    with pytest.raises(DiskFullError, match=r"model\.safetensors: No space left on device"):
        model.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    from_pretrained(folder)
