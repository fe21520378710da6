"""Files written atomically (checkpoints, configs, results) get the permissions a plain write would
give them: mkstemp's private 0600 made a run's checkpoints unreadable to a server or a teammate
running as another user."""
from __future__ import annotations

import os
import stat

import pytest

from segadapter.utils.io import current_umask, write_text_atomic


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)
    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    write_text_atomic(tmp_path / "atomic.json", "{}")
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    assert mode(tmp_path / "atomic.json") == mode(tmp_path / "plain.json") == 0o666 & ~mask


@pytest.mark.parametrize("kept", [0o640, 0o444])  # 0444: a read-only file is replaced and stays read-only
def test_a_replaced_file_keeps_its_mode(tmp_path, umask, kept):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    os.chmod(target, kept)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and mode(target) == kept
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left


def test_a_checkpoint_folder_and_its_files_are_as_readable_as_any_other(tmp_path, umask):
    import segadapter
    from segadapter.engine.checkpoint import save_checkpoint

    umask(0o022)
    model = segadapter.create_model("segformer-b0", num_classes=2)
    folder = save_checkpoint(tmp_path / "run", 10, model, {"iteration": 10})
    (tmp_path / "plain").mkdir()
    assert mode(folder) == mode(tmp_path / "plain") == 0o755  # mkdtemp's 0700 locked others out
    assert {p.name: mode(p) for p in folder.iterdir()} == {p.name: 0o644 for p in folder.iterdir()}
    assert mode(folder.parent / "latest") == 0o644
