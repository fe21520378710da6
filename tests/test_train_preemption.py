"""Preemption-safe training: a real signal ends the current step, writes a checkpoint and exits 0;
`--resume auto` then ends with weights bit-identical to the uninterrupted run, and metrics.jsonl
and the TensorBoard events hold every step once. A second Ctrl-C stops at once and leaves the last
complete checkpoint alone. Under DDP a signal to one rank stops every rank at the same step.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from segadapter.cli.main import main
from segadapter.engine import Trainer
from synthetic_run import synthetic_config

MAX_ITERS = 30
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(**train):
    """segformer-b0 on 6 synthetic 40x40 images, batch 2: a run of 30 steps takes ~2 s."""
    return synthetic_config(max_iters=MAX_ITERS, **{"log_interval": 5, "eval_interval": 10, "checkpoint_interval": 10,
                                                    "tensorboard_images": 1, **train})


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def without_timing(recs):
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in recs]


def weights(run):
    return load_file(str(run / "checkpoints" / f"iter_{MAX_ITERS:06d}" / "model.safetensors"))


def latest(run):
    return (run / "checkpoints" / "latest").read_text().strip()


def events(run):
    """{tag: [(step, value), ...]} as TensorBoard shows it (its reader applies the purges)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out.update({tag: [(e.step, None) for e in acc.Images(tag)] for tag in acc.Tags()["images"]})
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    pytest.importorskip("tensorboard")
    run = tmp_path_factory.mktemp("uninterrupted")
    Trainer(tiny_config(), run).fit()
    return run


def assert_same_as_reference(run, reference):
    a, b = weights(reference), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical
    assert without_timing(records(run)) == without_timing(records(reference))
    ev, ref = events(run), events(reference)
    assert ev.keys() == ref.keys()
    for tag in ref:  # every step once, none missing, same values (timing aside)
        assert [s for s, _ in ev[tag]] == [s for s, _ in ref[tag]], tag
        if tag != "perf/images_per_s":
            assert ev[tag] == ref[tag], tag


def test_sigterm_to_the_cli_then_resume_auto_equals_the_uninterrupted_run(reference, tmp_path, capsys):
    """SIGTERM goes to the whole process group, as a scheduler signals every process of a job: the
    DataLoader worker gets it too and must not die of it."""
    cfg = tiny_config()
    cfg.data.num_workers = 1  # batches do not depend on the workers: the reference has none
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(json.dumps(cfg.to_dict()))  # JSON is YAML
    run = tmp_path / "run"
    # the command a requeued job runs every time: --resume auto starts the run the first time
    command = [sys.executable, "-m", "segadapter", "train", str(cfg_file), "--work-dir", str(run), "--resume", "auto"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # as the reference: bit-identical
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, which the signal targets
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file() or not any(r["iter"] >= 5 for r in records(run)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not log its first steps in time"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err  # a requeue sees success
    stopped_at = int(latest(run).removeprefix("iter_"))
    assert 5 <= stopped_at < MAX_ITERS, (out, err)  # stopped mid-run, on its own checkpoint
    assert f"stopped: {run} (iteration {stopped_at}, by SIGTERM)" in out
    assert "received SIGTERM" in err
    assert max(r["iter"] for r in records(run)) <= stopped_at  # nothing logged past the checkpoint

    # The requeued job: the same command again (here in this process, to save a start-up).
    assert main(command[3:]) == 0
    out = capsys.readouterr().out
    assert f"resumed from {run / 'checkpoints' / f'iter_{stopped_at:06d}'} at iteration {stopped_at}" in out
    assert f"done: {run} (iteration {MAX_ITERS})" in out
    assert_same_as_reference(run, reference)


def test_a_run_killed_after_its_checkpoint_shows_each_step_once(reference, tmp_path, monkeypatch):
    """SIGKILL (no chance to save) after the checkpoint at 10 and the logs of 15: the resumed run
    logs 11..15 again; metrics.jsonl drops and TensorBoard hides the first copies."""
    class Killed(Exception):
        pass

    step = Trainer.train_step

    def dying_step(self, micro_batches):
        if self.iteration == 16:
            raise Killed
        return step(self, micro_batches)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(Killed):
        Trainer(tiny_config(), tmp_path).fit()
    monkeypatch.undo()
    assert latest(tmp_path) == "iter_000010" and max(r["iter"] for r in records(tmp_path)) == 15
    Trainer(tiny_config(), tmp_path, resume=True).fit()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert_same_as_reference(tmp_path, reference)


def signal_at(iteration, sig, trainer_cls=Trainer):
    """A Trainer.train_step that sends `sig` to this process while it runs step `iteration`."""
    step = trainer_cls.train_step

    def train_step(self, micro_batches):
        if self.iteration == iteration - 1:
            os.kill(os.getpid(), sig)  # handled between two bytecodes of this step
        return step(self, micro_batches)

    return train_step


def test_sigusr1_between_log_steps_resumes_with_identical_logs(reference, tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGUSR1)
    trainer = Trainer(tiny_config(), tmp_path)
    monkeypatch.setattr(Trainer, "train_step", signal_at(23, signal.SIGUSR1))
    trainer.fit()
    monkeypatch.undo()
    assert (trainer.stopped_by, trainer.iteration, trainer.exit_code) == ("SIGUSR1", 23, 0)
    assert latest(tmp_path) == "iter_000023"  # the step in progress was finished, then saved
    assert signal.getsignal(signal.SIGUSR1) is before  # handlers restored after fit
    # The record at 25 averages steps 21..25: the sums of 21..23 travel in the checkpoint.
    resumed = Trainer(tiny_config(), tmp_path, resume=True)
    assert resumed.iteration == 23 and resumed.window.count == 3
    resumed.fit()
    assert resumed.stopped_by is None
    assert_same_as_reference(tmp_path, reference)


def test_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(), tmp_path)
    monkeypatch.setattr(Trainer, "train_step", signal_at(13, signal.SIGINT))
    save_pretrained = type(trainer.net).save_pretrained

    def second_ctrl_c_while_saving(model, folder):
        if trainer.iteration == 13:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again while iter 13 is written
        return save_pretrained(model, folder)

    monkeypatch.setattr(type(trainer.net), "save_pretrained", second_ctrl_c_while_saving)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()
    assert trainer.stop_signals.name == "SIGINT" and trainer.iteration == 13
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["iter_000010", "latest"] and latest(tmp_path) == "iter_000010"  # no temp folder left
    resumed = Trainer(tiny_config(), tmp_path, resume=True)  # the last good checkpoint loads
    assert resumed.iteration == 10


def test_a_single_ctrl_c_saves_and_asks_for_exit_code_130(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(checkpoint_interval=0, eval_interval=0), tmp_path)
    monkeypatch.setattr(Trainer, "train_step", signal_at(4, signal.SIGINT))
    trainer.fit()
    assert (trainer.stopped_by, trainer.exit_code, latest(tmp_path)) == ("SIGINT", 130, "iter_000004")


def test_resume_auto_starts_a_new_run_and_is_not_a_folder_name(tmp_path, capsys, monkeypatch):
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(json.dumps(tiny_config().to_dict()))
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # a folder called "auto" would appear here if the word were taken as a path
    assert main(["train", str(cfg_file), "--resume", "auto", "--work-dir", str(run),
                 "schedule.max_iters=6", "train.loggers=[jsonl]"]) == 0
    assert latest(run) == "iter_000006" and not (tmp_path / "auto").exists()
    assert "no checkpoint" in capsys.readouterr().out
    assert main(["train", "--resume", "auto"]) == 2
    assert "--resume auto needs a CONFIG" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from segadapter.runtime.distributed import cleanup, init_distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu", init_method=f"file://{init_file}", timeout=timedelta(seconds=60))
    try:
        cfg = tiny_config(log_interval=1, eval_interval=0, checkpoint_interval=0)
        cfg.schedule.max_iters, cfg.data.val_split = 8, None
        trainer = Trainer(cfg, os.path.join(out_dir, "run"), dist_info=info)
        if rank == 1:  # only rank 1 is signalled; rank 0 must learn of it and stop at the same step
            Trainer.train_step = signal_at(4, signal.SIGTERM)
        trainer.fit()
        result = {"iteration": trainer.iteration, "stopped_by": trainer.stopped_by, "exit_code": trainer.exit_code}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        cleanup()


def test_ddp_ranks_agree_on_the_stop_step_and_only_rank0_logs(tmp_path):
    pytest.importorskip("tensorboard")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1 == {"iteration": 4, "stopped_by": "SIGTERM", "exit_code": 0}
    assert rank0 == {"iteration": 4, "stopped_by": "a stop signal to another process", "exit_code": 0}
    run = tmp_path / "run"
    assert latest(run) == "iter_000004"
    from segadapter.engine.checkpoint import load_train_state

    state = load_train_state(run / "checkpoints" / "iter_000004")
    assert state["world_size"] == 2 and len(state["log_window"]) == 2
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes logs
    assert [r["iter"] for r in records(run)] == [1, 2, 3, 4]
    assert [s for s, _ in events(run)["train/loss"]] == [1, 2, 3, 4]
