"""The iteration-based training loop (MMSeg style): step, log, evaluate, checkpoint.

Run folder layout (docs/architecture.md): RUN/config.yaml, RUN/metrics.jsonl, RUN/curves.png,
RUN/events.out.tfevents.* (TensorBoard), RUN/checkpoints/iter_XXXXXX/ + RUN/checkpoints/latest.
Only rank 0 writes files.

One iteration is one optimizer step over `optim.accumulate_steps` micro-batches. A step whose loss
or gradient is not finite is skipped (weights, BatchNorm statistics and optimizer state untouched;
the schedule and the data move on), and `train.max_bad_steps` of them in a row end the run. SIGTERM, SIGINT and SIGUSR1
end it after the current step with a checkpoint (stop_signals.py). DDP ranks agree on both.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import CheckpointError, ConfigError, DataError, DiskFullError, SegAdapterError
from . import checkpoint as ckpt
from .bad_files import BadFiles, own_message
from ..runtime.amp import choose_precision, grad_scaler
from ..data.base import BAD_FILE
from ..inference.preprocess import Preprocessing
from .builders import build_datasets, build_model
from .config import Config
from .config_loader import config_changes, save_config
from .data_iter import epoch_batches
from ..runtime.distributed import (DistInfo, all_gather_objects, all_reduce_mean, any_rank, init_distributed,
                                   wrap_model)
from .log_window import LogWindow
from .optim import build_optimizer, lr_by_group
from .rng import derive_seed, get_rng_state, seed_everything, set_rng_state
from .run_log import CURVES_NAME, RunLog, resolve_loggers  # noqa: F401 (CURVES_NAME: part of the layout)
from .schedule import build_scheduler
from .step import RunningStats, StepResult, accumulate_gradients, apply_step, gradient_norm, nonfinite_problem
from .stop_signals import IgnoreStopSignals, StopSignals
from .val_pictures import prediction_grid
from ..utils.compile import compile_for_training

CONFIG_NAME = "config.yaml"
STATE_VERSION = 1


class Trainer:
    """Builds everything from a `Config` and trains into `run_dir`.

    `resume=True` continues from `run_dir/checkpoints/latest` (a fresh start when there is none);
    the continued run reproduces the uninterrupted one: same batches, same RNG streams, same logs.
    After `fit()`, `stopped_by` names the signal that ended it early (None: it ran to the end) and
    `exit_code` is what a command line should exit with.
    """

    def __init__(self, cfg: Config, run_dir: str | os.PathLike, resume: bool = False,
                 dist_info: DistInfo | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist_info or init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.precision = choose_precision(cfg.train.amp, self.device, "train.amp")
        self.amp_dtype = self.precision.dtype
        if cfg.data.batch_size % self.dist.world_size:
            raise ConfigError(f"data.batch_size ({cfg.data.batch_size}) must be divisible by the number "
                              f"of processes ({self.dist.world_size})")
        self.batch_per_process = cfg.data.batch_size // self.dist.world_size
        self.accumulate = cfg.optim.accumulate_steps
        self.loggers = resolve_loggers(cfg.train.loggers)  # refuse a missing logger before writing anything

        seed_everything(cfg.train.seed)  # same initial weights on every rank
        self.train_set, self.val_set = build_datasets(cfg.data, cfg.train.seed)
        # (tqdm.write, not self._say: a bound method would make a reference cycle that keeps the loader's
        # workers alive until the interpreter exits)
        self.bad_files = BadFiles(len(self.train_set), cfg.data.skip_bad, cfg.data.max_bad_share,
                                  tqdm.write if self.dist.is_main else None)
        self.bad_files.check_up_front(self.train_set, self.val_set)  # before the loader counts the batches
        self.train_set.skip_bad = cfg.data.skip_bad
        net = build_model(cfg.model, self.train_set.classes, self.train_set.palette).to(self.device)
        net.config["preprocessing"] = _test_preprocessing(cfg, self.train_set)  # saved with every checkpoint
        net.config["dataset"] = cfg.data.dataset  # and the dataset, for the model card (modeling/model_card.py)
        net.config["training_precision"] = self.precision.to_dict()  # the card says what amp resolved to
        self._say(self.precision.describe())
        if net.load_report is not None:
            self._say(f"pretrained: {net.load_report}")
        if cfg.train.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(net, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule)
        self.scaler = grad_scaler(self.device, self.amp_dtype)
        self.loader = self._build_loader()
        self.iteration = 0
        self.bad_steps = 0  # skipped (non-finite) steps in a row
        self.window = LogWindow()  # loss sums since the last train record
        self.stop_signals = StopSignals()
        self.stopped_by: str | None = None
        self.exit_code = 0
        self._saved_at: int | None = None
        state = self._load_checkpoint(net) if resume else self._refuse_overwrite()
        if cfg.train.compile:
            self._say(compile_for_training(net, self.device))
        self.model = wrap_model(net, self.dist)
        self.net = net
        # Different dropout / drop-path streams per rank, identical on every (re)start.
        seed_everything(derive_seed(cfg.train.seed, self.dist.rank, 1))
        if state is not None:
            self._restore_rng(state)
            self._restore_progress(state)
        self.log = self._prepare_run_dir(resumed=state is not None)
        self.last_eval: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------- setup

    def _build_loader(self):
        from ..data import build_dataloader

        loader = build_dataloader(self.train_set, self.batch_per_process, shuffle=True,
                                  num_workers=self.cfg.data.num_workers, seed=self.cfg.train.seed,
                                  distributed=self.dist.distributed, drop_last=True)
        if len(loader) == 0:
            raise ConfigError(f"the training set has {len(self.train_set)} samples per process, fewer than "
                              f"one batch of {self.batch_per_process}; lower data.batch_size")
        if loader.num_workers > 0:  # a stop signal sent to the whole job must not kill the workers
            loader.worker_init_fn = IgnoreStopSignals(loader.worker_init_fn)
        return loader

    def _refuse_overwrite(self) -> None:
        if (self.run_dir / ckpt.CHECKPOINT_DIR / ckpt.LATEST).is_file():
            raise CheckpointError(f"{self.run_dir} already holds a training run; pass --resume (or --resume auto) "
                                  "to continue it, or choose another --work-dir / train.run_name")
        return None

    def _load_checkpoint(self, net: torch.nn.Module) -> dict[str, Any] | None:
        folder = ckpt.latest_checkpoint(self.run_dir)
        if folder is None:
            self._say(f"no checkpoint in {self.run_dir}; starting from scratch")
            return None
        from ..modeling.hub import WEIGHTS_NAME, read_weights

        try:
            net.load_state_dict(read_weights(folder / WEIGHTS_NAME))
        except RuntimeError as e:
            raise CheckpointError(f"{folder}: weights do not fit the configured model ({e})") from None
        state = ckpt.load_train_state(folder)
        # The checkpoint supplies the optimizer's moments and the position in the schedule; the
        # hyper-parameters stay the config's (identical unless the user changed them on resume).
        hyper = [{k: g[k] for k in ("initial_lr", "weight_decay", "betas")} for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            for group, values in zip(self.optimizer.param_groups, hyper):
                group.update(values)
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.iteration = int(state["iteration"])
        except (KeyError, ValueError, RuntimeError) as e:  # e.g. other parameter groups than the config's
            raise CheckpointError(f"{folder}: training state does not fit this config ({e})") from None
        if state.get("batches_per_epoch") != len(self.loader):
            warnings.warn(f"batches per epoch changed ({state.get('batches_per_epoch')} -> {len(self.loader)}): "
                          "the resumed data order differs from the original run", stacklevel=2)
        if state.get("accumulate_steps", 1) != self.accumulate:
            warnings.warn(f"optim.accumulate_steps changed ({state.get('accumulate_steps', 1)} -> "
                          f"{self.accumulate}): the resumed data order differs from the original run", stacklevel=2)
        self._say(f"resumed from {folder} at iteration {self.iteration}")
        return state

    def _restore_rng(self, state: dict[str, Any]) -> None:
        states = state.get("rng", [])
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
        else:
            warnings.warn(f"checkpoint has RNG states of {len(states)} processes, this run has "
                          f"{self.dist.world_size}: random streams restart", stacklevel=2)

    def _restore_progress(self, state: dict[str, Any]) -> None:
        """The unlogged loss sums and the non-finite streak: the logs go on as if never interrupted."""
        windows = state.get("log_window", [])
        if len(windows) == self.dist.world_size:
            self.window = LogWindow.from_state(windows[self.dist.rank], self.device)
        self.bad_steps = int(state.get("bad_steps", 0))
        self.bad_files.restore(state.get("bad_files", []))

    def _prepare_run_dir(self, resumed: bool) -> RunLog | None:
        if not self.dist.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(self.run_dir)
        if resumed:
            for change in config_changes(self.run_dir / CONFIG_NAME, self.cfg):
                self._say(f"config changed since the run started: {change}")
        save_config(self.cfg, self.run_dir / CONFIG_NAME, notes=[f"train.{self.precision.describe()}"])
        return RunLog(self.run_dir, self.loggers, resumed_at=self.iteration if resumed else None)

    # ----------------------------------------------------------------------------- loop

    def fit(self) -> dict[str, Any] | None:
        """Train up to `schedule.max_iters`, or until a stop signal (see `stopped_by`); returns the
        last validation metrics (None without val)."""
        cfg, max_iters = self.cfg.train, self.cfg.schedule.max_iters
        self.stopped_by, self.exit_code = None, 0
        if self.iteration >= max_iters:
            self._say(f"run already at iteration {self.iteration} >= schedule.max_iters; nothing to do")
            return self.last_eval
        self.model.train()
        bar = tqdm(total=max_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                   disable=not (cfg.progress and self.dist.is_main))
        images_per_step = self.cfg.data.batch_size * self.accumulate
        batches = epoch_batches(self.loader, self.iteration * self.accumulate)  # micro-batches
        self.window.restart_clock()
        self.stop_signals = StopSignals()
        try:
            with self.stop_signals:
                while self.iteration < max_iters:
                    try:
                        epoch, micro_batches = self._next_micro_batches(batches)
                    except DataError as e:
                        self._stop_on_bad_file(e)
                    lr = self.cfg.optim.lr * self.scheduler.factor()
                    lr_groups = lr_by_group(self.optimizer, self.net)  # the lrs this step uses
                    result = self.train_step(micro_batches)
                    self.scheduler.step()
                    self.iteration += 1
                    it = self.iteration
                    if result.problem is not None:
                        self._skipped_step(result.problem, bar)
                    else:
                        self.bad_steps = 0
                        self.window.add(result.stats)
                    bar.update(1)
                    if it % 10 == 0 or it == max_iters:
                        bar.set_postfix(loss=f"{self.window.local_mean('loss'):.4f}", lr=f"{lr:.2e}",
                                        img_s=f"{self.window.images_per_s(images_per_step):.1f}")
                    if it % cfg.log_interval == 0 or it == max_iters:
                        self._log_train(epoch, lr, lr_groups, bar)
                        self.window = LogWindow()
                    if self.val_set is not None and (_due(it, cfg.eval_interval) or it == max_iters):
                        self.evaluate(bar)
                        self.window.restart_clock()
                    if _due(it, cfg.checkpoint_interval) or it == max_iters:
                        self.save_checkpoint()
                        self.window.restart_clock()
                    if result.stop:
                        self._stop_early(bar)
                        break
        except DiskFullError as e:  # atomic writes: every earlier file is whole
            latest = ckpt.latest_checkpoint(self.run_dir)
            kept = f"the last complete checkpoint, {latest}, is intact" if latest else "no checkpoint had been written"
            raise DiskFullError(f"{e}; training stopped at iteration {self.iteration}: {kept}; free some space, "
                                "then continue with --resume auto") from None
        finally:
            batches.close()  # its loader workers end here, whatever ended the run (data.loader.stop_workers)
            bar.close()
            if self.log is not None:
                self.log.close()
        return self.last_eval

    def _next_micro_batches(self, batches) -> tuple[int, list[dict[str, Any]]]:
        micro = [next(batches) for _ in range(self.accumulate)]
        for _, batch in micro:  # data.skip_bad: the samples that could not be read were left out
            for message in batch.get(BAD_FILE, []):
                if self.bad_files.note(message, f"iteration {self.iteration + 1}") and self.log is not None:
                    self.log.append({"type": "bad_file", "iter": self.iteration + 1, "problem": message,
                                     "count": len(self.bad_files.seen)})
            if "image" not in batch:
                raise DataError(f"every sample of the batch of iteration {self.iteration + 1} is bad, e.g. "
                                f"{batch[BAD_FILE][0]}")
        return micro[-1][0], [batch for _, batch in micro]

    def _stop_on_bad_file(self, e: DataError) -> None:
        """End the run on a file that cannot be read, naming it, with a checkpoint of the last
        good step (one process only: DDP ranks would have to agree on stopping)."""
        note = ""
        if self.iteration > 0 and not self.dist.distributed:
            if self._saved_at != self.iteration:
                self.save_checkpoint()
            note = f" (checkpoint {ckpt.checkpoint_name(self.iteration)}, the last good step, is written)"
        advice = "fix the dataset" if self.cfg.data.skip_bad else \
            "fix or remove the file, or set data.skip_bad=true to skip bad files"
        raise DataError(f"{own_message(e)}; training stopped at iteration {self.iteration}{note}: {advice}, then "
                        "continue with --resume auto") from None

    def train_step(self, micro_batches: list[dict[str, Any]]) -> StepResult:
        """One optimizer step over `micro_batches`, or none when a loss or gradient is not finite."""
        c = self.cfg
        running_stats = RunningStats(self.net)
        stats = accumulate_gradients(self.model, micro_batches, self.optimizer, self.scaler, self.device,
                                     self.amp_dtype, c.train.channels_last)
        stats["grad_norm"] = gradient_norm(self.optimizer, self.scaler, c.optim.grad_clip)
        # fp16: overflowing gradients are the loss scaler's business (it skips those steps itself)
        problem = nonfinite_problem(stats, self.optimizer, check_gradients=not self.scaler.is_enabled())
        # One collective for both decisions: every rank skips the same steps and stops at the same one.
        skip, stop = any_rank([problem is not None, self.stop_signals.requested], self.device)
        apply_step(self.optimizer, self.scaler, skip)
        if skip:
            running_stats.restore()
        if skip and problem is None:
            problem = "a loss or gradient on another process is not finite"
        return StepResult(stats, problem, stop)

    # ----------------------------------------------------------------------------- events

    def _skipped_step(self, problem: str, bar: tqdm) -> None:
        self.bad_steps += 1
        limit = self.cfg.train.max_bad_steps
        if self.dist.is_main:
            self.log.append({"type": "skipped", "iter": self.iteration, "reason": problem})
            bar.write(f"iter {self.iteration}: step skipped, {problem} ({self.bad_steps} in a row; "
                      f"the run stops at {limit})")
        if self.bad_steps >= limit:
            latest = ckpt.latest_checkpoint(self.run_dir)
            kept = f"the last checkpoint, {latest}, is intact" if latest else "no checkpoint had been written"
            raise SegAdapterError(
                f"training stopped: {self.bad_steps} steps in a row had a non-finite loss or gradient "
                f"(iteration {self.iteration}: {problem}); {kept}. Lower optim.lr, set optim.grad_clip "
                "or train with amp=none; train.max_bad_steps sets the limit")

    def _stop_early(self, bar: tqdm) -> None:
        if self._saved_at != self.iteration:
            self.save_checkpoint()
        self.stopped_by = self.stop_signals.name or "a stop signal to another process"
        self.exit_code = self.stop_signals.exit_code()
        if self.dist.is_main:
            bar.write(f"stopped by {self.stopped_by} at iteration {self.iteration}: checkpoint "
                      f"{ckpt.checkpoint_name(self.iteration)} written; continue with --resume auto")

    def _log_train(self, epoch: int, lr: float, lr_groups: dict[str, float], bar: tqdm) -> None:
        if self.window.count == 0:  # every step of the interval was skipped (on every rank alike)
            return
        means = {k: float(all_reduce_mean(v)) for k, v in self.window.means().items()}  # every rank joins
        if not self.dist.is_main:
            return
        images_per_step = self.cfg.data.batch_size * self.accumulate
        record = {"type": "train", "iter": self.iteration, "epoch": epoch, **means, "lr": lr,
                  "lr_groups": lr_groups, "images_per_s": self.window.images_per_s(images_per_step)}
        if self.device.type == "cuda":
            record["max_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.log.append(record)
        terms = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        bar.write(f"iter {self.iteration}/{self.cfg.schedule.max_iters}  {terms}  lr {lr:.3e}  "
                  f"{record['images_per_s']:.1f} img/s")

    def evaluate(self, bar: tqdm | None = None) -> dict[str, Any]:
        """Validation mIoU of the current weights (all ranks take part; rank 0 logs it)."""
        from ..evaluation import evaluate

        e = self.cfg.eval
        result = evaluate(self.net, self.val_set, mode=e.mode, crop_size=e.crop_size, stride=e.stride,
                          flip=e.flip, device=self.device, amp_dtype=self.amp_dtype,
                          progress=self.cfg.train.progress and self.dist.is_main,
                          num_workers=self.cfg.data.num_workers)
        summary = result.to_dict()
        self.last_eval = {"type": "val", "iter": self.iteration, "mIoU": summary["mIoU"],
                          "aAcc": summary["aAcc"], "mAcc": summary["mAcc"],
                          "IoU": {name: s["IoU"] for name, s in summary["per_class"].items()}}
        # the latest validation travels with the next checkpoint (its model card shows it)
        self.net.config["metrics"] = {k: summary[k] for k in ("mIoU", "aAcc", "mAcc")} | {
            "split": self.cfg.data.val_split, "iter": self.iteration}
        if self.dist.is_main:
            self.log.append(self.last_eval)
            self.log.draw_curves()
            if self.log.tensorboard is not None and self.cfg.train.tensorboard_images > 0:
                grid = prediction_grid(self.net, self.val_set, self.cfg.train.tensorboard_images, e, self.amp_dtype)
                if grid is not None:
                    self.log.add_image("val/predictions", grid, self.iteration)
            self.log.flush()
            msg = (f"iter {self.iteration}: val mIoU {summary['mIoU']}  aAcc {summary['aAcc']}  "
                   f"mAcc {summary['mAcc']}")
            (bar.write if bar is not None else print)(msg)
        return self.last_eval

    def save_checkpoint(self) -> None:
        rng = all_gather_objects(get_rng_state())  # every rank's streams, so DDP resumes exactly too
        windows = all_gather_objects(self.window.state())  # every rank's loss sums not logged yet
        self._saved_at = self.iteration
        if not self.dist.is_main:
            return
        state = {
            "format_version": STATE_VERSION,
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
            "batches_per_epoch": len(self.loader),
            "accumulate_steps": self.accumulate,
            "log_window": windows,
            "bad_steps": self.bad_steps,
            "bad_files": list(self.bad_files.seen),
        }
        ckpt.save_checkpoint(self.run_dir, self.iteration, self.net, state, self.cfg.train.keep_checkpoints)
        self.log.draw_curves()
        self.log.flush()  # the events up to this checkpoint are on disk; a resume hides any later ones

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)


def _test_preprocessing(cfg: Config, train_set) -> dict[str, Any]:
    return Preprocessing.from_train_config(cfg, train_set.classes, train_set.palette).to_dict()


def _due(iteration: int, interval: int) -> bool:
    return interval > 0 and iteration % interval == 0


def train(cfg: Config, run_dir: str | os.PathLike, resume: bool = False) -> dict[str, Any] | None:
    """Train `cfg` into `run_dir` (see `Trainer`); returns the final validation metrics."""
    return Trainer(cfg, run_dir, resume=resume).fit()
