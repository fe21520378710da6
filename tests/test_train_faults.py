"""Faults in the middle of long work: a training file that cannot be read (found up front where
cheap; met mid-run: the run ends naming it with a checkpoint of the last good step, or with
data.skip_bad it is skipped, logged and counted), and a disk that fills while a checkpoint,
config.yaml or metrics.jsonl is written (every earlier file intact, one clear error, then
`--resume auto` goes on from the last complete checkpoint)."""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segadapter import from_pretrained
from segadapter.engine import Trainer
from segadapter.engine.config import config_from_dict
from segadapter.engine.config_loader import load_config
from segadapter.errors import DataError, DiskFullError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
TRAIN = 10


def make_folder(root: Path, train: int = TRAIN, val: int = 2) -> Path:
    """A 3-class images + masks folder: 40x40 pictures, 4x4 blocks of class ids."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    for split, n in (("train", train), ("val", val)):
        for i in range(n):
            rng = np.random.default_rng(i + 100 * (split == "val"))
            image, mask = root / "images" / split / f"f{i:02d}.png", root / "masks" / split / f"f{i:02d}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
            Image.fromarray(np.kron(rng.integers(0, 3, (10, 10)), np.ones((4, 4))).astype(np.uint8)).save(mask)
    return root


def config(root: Path, max_iters: int = 12, **data):
    return config_from_dict({
        "model": {"name": "segformer-b0", "options": {"decoder_channels": 32}},
        "data": {"dataset": "folder", "root": str(root), "crop_size": 32, "scale": None, "batch_size": 2,
                 "num_workers": 0, **data},
        "optim": {"lr": 1e-3},
        "schedule": {"max_iters": max_iters, "warmup_iters": 2},
        "train": {"progress": False, "device": "cpu", "log_interval": 2, "eval_interval": 0,
                  "checkpoint_interval": 100, "keep_checkpoints": 1, "loggers": ["jsonl"]},
    })


def truncate(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def latest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def test_files_are_checked_before_training(tmp_path):
    root = make_folder(tmp_path / "data")
    masks = root / "masks" / "train"
    Image.new("L", (40, 30)).save(masks / "f03.png")  # a label of the wrong size
    with pytest.raises(DataError, match=r"f03\.png is 40x30; they must be the same size") as e:
        Trainer(config(root), tmp_path / "run")
    assert "before training" in str(e.value) and "data.skip_bad=true" in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()

    make_folder(root)
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(masks / "f05.png")  # class 7 of 3
    with pytest.raises(DataError, match=r"f05\.png has values \[7\] outside the 3 classes"):
        Trainer(config(root), tmp_path / "run")

    make_folder(root)
    truncate(root / "images" / "train" / "f08.png")
    truncate(root / "images" / "val" / "f01.png")  # validation files are never skipped
    with pytest.raises(DataError, match=r"val/f01\.png: cannot decode .* truncated"):
        Trainer(config(root, skip_bad=True, max_bad_share=0.5), tmp_path / "run")

    make_folder(root)
    truncate(root / "images" / "train" / "f08.png")
    trainer = Trainer(config(root, max_iters=4, skip_bad=True, max_bad_share=0.1), tmp_path / "run")
    assert len(trainer.train_set) == TRAIN - 1 and trainer.bad_files.seen[0].startswith(str(root / "images"))
    trainer.fit()
    state = torch.load(latest(tmp_path / "run") / "train_state.pt", weights_only=True)
    assert len(state["bad_files"]) == 1 and "f08.png" in state["bad_files"][0]

    truncate(root / "images" / "train" / "f02.png")  # two bad of ten: over a share of 0.1
    with pytest.raises(DataError, match=r"2 bad training files of 10, more than data.max_bad_share=0.1"):
        Trainer(config(root, skip_bad=True, max_bad_share=0.1), tmp_path / "run2")


@pytest.mark.parametrize("workers", [0, 1])  # 1: the error comes back from a DataLoader worker
def test_a_bad_file_met_mid_run_ends_it_with_a_checkpoint_of_the_last_good_step(tmp_path, workers):
    root = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    trainer = Trainer(config(root, num_workers=workers), run)  # the files are fine when the run starts ...
    order = np.random.default_rng([0, 0]).permutation(TRAIN)  # the first epoch's order (data/loader.py)
    bad = root / "masks" / "train" / f"f{order[7]:02d}.png"  # in the 4th batch
    good = truncate(bad)  # ... and one is cut short on the shared disk while it runs
    with pytest.raises(DataError) as e:
        trainer.fit()
    # e's traceback still holds the loader's iterator, and the trainer its loader: the workers
    # must have ended all the same (they ignore SIGTERM, and exit would wait on them forever)
    assert multiprocessing.active_children() == []
    message = str(e.value)
    stopped = int(message.split("training stopped at iteration ")[1].split()[0])
    assert message.startswith(f"{bad}: cannot decode") and "--resume auto" in message
    assert stopped == 3 and latest(run).name == "iter_000003"
    assert [r["iter"] for r in records(run) if r["type"] == "train"][-1] <= stopped
    from_pretrained(latest(run))  # the checkpoint loads

    bad.write_bytes(good)  # repaired: the run goes on from there to the end
    resumed = Trainer(config(root), run, resume=True)
    assert resumed.iteration == stopped
    resumed.fit()
    assert latest(run).name == "iter_000012"


EXITS_AFTER_A_BAD_FILE = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train_faults import config, make_folder, truncate
from segadapter.engine import Trainer
from segadapter.errors import DataError

root = make_folder(Path({tmp!r}) / "data")
trainer = Trainer(config(root, num_workers=1), Path({tmp!r}) / "run")
truncate(root / "images" / "train" / "f03.png")
try:
    trainer.fit()
except DataError as e:  # what a caller of the Python API or the CLI does: report, then exit
    print("stopped:", str(e).split(":")[0])
sys.exit(3)
"""


def test_a_process_whose_run_met_a_bad_file_exits():
    """Found in CI: the suite passed, then pytest never exited. A DataLoader worker that ignores
    SIGTERM outlived its run, and `multiprocessing` waits for its children at exit."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        script = EXITS_AFTER_A_BAD_FILE.format(tests=str(Path(__file__).parent), tmp=tmp)
        try:
            proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"the process did not exit after its run stopped: {e.stdout}{e.stderr}") from None
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "stopped:" in proc.stdout and "f03.png" in proc.stdout


def test_skip_bad_skips_logs_and_counts_a_file_met_mid_run(tmp_path):
    root = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    trainer = Trainer(config(root, skip_bad=True, max_bad_share=0.1), run)
    truncate(root / "images" / "train" / "f06.png")
    trainer.fit()  # 12 steps of 5 batches an epoch: the file is met twice, counted once
    logged = [r for r in records(run) if r["type"] == "bad_file"]
    assert len(logged) == 1 and logged[0]["count"] == 1 and "f06.png: cannot decode" in logged[0]["problem"]
    assert latest(run).name == "iter_000012"

    truncate(root / "images" / "train" / "f01.png")  # a second one: more than 10% of ten files
    with pytest.raises(DataError, match=r"2 bad training files of 10, more than data.max_bad_share=0.1"):
        Trainer(config(root, max_iters=24, skip_bad=True, max_bad_share=0.1), run, resume=True).fit()


# -- a full disk ---------------------------------------------------------------------------------

def fail_fsync_of(name: str, monkeypatch) -> None:
    """The kernel's answer on a full disk, at the syscall where delayed allocation reports it:
    fsync of the file being written (our atomic writes name it .NAME.*.tmp) fails with ENOSPC."""
    real = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd")
@pytest.mark.parametrize("name", ["model.safetensors", "train_state.pt", "metrics.jsonl", "config.yaml"])
def test_a_full_disk_mid_run_keeps_every_earlier_file_and_resume_goes_on(tmp_path, monkeypatch, name):
    root = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    Trainer(config(root, max_iters=4), run).fit()  # a complete checkpoint at 4
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    at_start = name == "config.yaml"  # rewritten when a run starts or resumes; the others while it runs
    if at_start:
        fail_fsync_of(name, monkeypatch)
    with pytest.raises(DiskFullError) as e:
        trainer = Trainer(config(root, max_iters=8), run, resume=True)
        fail_fsync_of(name, monkeypatch)
        trainer.fit()
    message = str(e.value)
    assert name in message and "No space left on device" in message and "is intact" in message
    if not at_start:
        assert "iter_000004, is intact" in message and "--resume auto" in message
    assert latest(run).name == "iter_000004"
    for path, data in before.items():  # every earlier file as it was (metrics.jsonl: its first lines)
        if path.name == "metrics.jsonl":
            assert path.read_bytes()[: len(data)] == data
        elif path.name == "curves.png":  # redrawn as the run goes: whole all the same
            Image.open(path).load()
        elif path.name == "config.yaml" and not at_start:  # rewritten by the resume (max_iters 4 -> 8)
            assert load_config(path).schedule.max_iters == 8
        else:
            assert path.read_bytes() == data, path
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
    records(run)  # whole lines only
    from_pretrained(latest(run))
    torch.load(latest(run) / "train_state.pt", weights_only=True)

    monkeypatch.undo()  # space again: --resume auto goes on from the last complete checkpoint
    resumed = Trainer(config(root, max_iters=8), run, resume=True)
    assert resumed.iteration == 4
    resumed.fit()
    assert latest(run).name == "iter_000008"
    assert sorted({r["iter"] for r in records(run) if r["type"] == "train"}) == [2, 4, 6, 8]
