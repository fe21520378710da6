"""The iteration-based training loop (MMSeg style): step, log, evaluate, checkpoint.

Run folder layout (docs/architecture.md): RUN/config.yaml, RUN/metrics.jsonl, RUN/curves.png,
RUN/checkpoints/iter_XXXXXX/ + RUN/checkpoints/latest. Only rank 0 writes files.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import CheckpointError, ConfigError, SegAdapterError
from . import checkpoint as ckpt
from ..runtime.amp import amp_dtype, grad_scaler
from .builders import build_datasets, build_model
from .config import Config
from .config_loader import config_changes, save_config
from .data_iter import epoch_batches
from ..runtime.distributed import DistInfo, all_gather_objects, all_reduce_mean, init_distributed, wrap_model
from .metrics_log import METRICS_NAME, MetricsLog
from .optim import build_optimizer
from .plot import plot_curves
from .rng import derive_seed, get_rng_state, seed_everything, set_rng_state
from .schedule import build_scheduler
from .step import train_step

CONFIG_NAME = "config.yaml"
CURVES_NAME = "curves.png"
STATE_VERSION = 1


class Trainer:
    """Builds everything from a `Config` and trains into `run_dir`.

    `resume=True` continues from `run_dir/checkpoints/latest` (a fresh start when there is none);
    the continued run reproduces the uninterrupted one: same batches, same RNG streams.
    """

    def __init__(self, cfg: Config, run_dir: str | os.PathLike, resume: bool = False,
                 dist_info: DistInfo | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist_info or init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.amp_dtype = amp_dtype(cfg.train.amp, self.device)
        if cfg.data.batch_size % self.dist.world_size:
            raise ConfigError(f"data.batch_size ({cfg.data.batch_size}) must be divisible by the number "
                              f"of processes ({self.dist.world_size})")
        self.batch_per_process = cfg.data.batch_size // self.dist.world_size

        seed_everything(cfg.train.seed)  # same initial weights on every rank
        self.train_set, self.val_set = build_datasets(cfg.data, cfg.train.seed)
        net = build_model(cfg.model, self.train_set.classes, self.train_set.palette).to(self.device)
        net.config["preprocessing"] = _test_preprocessing(cfg, self.train_set)  # saved with every checkpoint
        if getattr(net, "load_report", None) is not None:
            self._say(f"pretrained: {net.load_report}")
        if cfg.train.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(net, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule)
        self.scaler = grad_scaler(self.device, self.amp_dtype)
        self.loader = self._build_loader()
        self.iteration = 0
        state = self._load_checkpoint(net) if resume else self._refuse_overwrite()
        self.model = wrap_model(net, self.dist)
        self.net = net
        # Different dropout / drop-path streams per rank, identical on every (re)start.
        seed_everything(derive_seed(cfg.train.seed, self.dist.rank, 1))
        if state is not None:
            self._restore_rng(state)
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
        return loader

    def _refuse_overwrite(self) -> None:
        if (self.run_dir / ckpt.CHECKPOINT_DIR / ckpt.LATEST).is_file():
            raise CheckpointError(f"{self.run_dir} already holds a training run; pass --resume to continue "
                                  "it, or choose another --work-dir / train.run_name")
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
        self._say(f"resumed from {folder} at iteration {self.iteration}")
        return state

    def _restore_rng(self, state: dict[str, Any]) -> None:
        states = state.get("rng", [])
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
        else:
            warnings.warn(f"checkpoint has RNG states of {len(states)} processes, this run has "
                          f"{self.dist.world_size}: random streams restart", stacklevel=2)

    def _prepare_run_dir(self, resumed: bool) -> MetricsLog | None:
        if not self.dist.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(self.run_dir)
        if resumed:
            for change in config_changes(self.run_dir / CONFIG_NAME, self.cfg):
                self._say(f"config changed since the run started: {change}")
        save_config(self.cfg, self.run_dir / CONFIG_NAME)
        return MetricsLog(self.run_dir / METRICS_NAME, keep_until=self.iteration if resumed else None)

    # ----------------------------------------------------------------------------- loop

    def fit(self) -> dict[str, Any] | None:
        """Train up to `schedule.max_iters`; returns the last validation metrics (None without val)."""
        cfg, max_iters = self.cfg.train, self.cfg.schedule.max_iters
        if self.iteration >= max_iters:
            self._say(f"run already at iteration {self.iteration} >= schedule.max_iters; nothing to do")
            return self.last_eval
        self.model.train()
        bar = tqdm(total=max_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                   disable=not (cfg.progress and self.dist.is_main))
        window = _Window()
        batches = epoch_batches(self.loader, self.iteration)
        try:
            while self.iteration < max_iters:
                epoch, batch = next(batches)
                lr = self.cfg.optim.lr * self.scheduler.factor()
                losses = self.train_step(batch)
                self.scheduler.step()
                self.iteration += 1
                it = self.iteration
                window.add(losses)
                bar.update(1)
                if it % 10 == 0 or it == max_iters:
                    bar.set_postfix(loss=f"{window.local_mean('loss'):.4f}", lr=f"{lr:.2e}",
                                    img_s=f"{window.images_per_s(self.cfg.data.batch_size):.1f}")
                if it % cfg.log_interval == 0 or it == max_iters:
                    self._log_train(window, epoch, lr, bar)
                    window = _Window()
                if self.val_set is not None and (_due(it, cfg.eval_interval) or it == max_iters):
                    self.evaluate(bar)
                    window.restart_clock()
                if _due(it, cfg.checkpoint_interval) or it == max_iters:
                    self.save_checkpoint()
                    window.restart_clock()
        finally:
            bar.close()
        return self.last_eval

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One optimizer step on `batch`; returns the detached loss terms (and grad norm)."""
        return train_step(self.model, batch, self.optimizer, self.scaler, self.device, self.amp_dtype,
                          self.cfg.optim.grad_clip, self.cfg.train.channels_last)

    # ----------------------------------------------------------------------------- events

    def _log_train(self, window: "_Window", epoch: int, lr: float, bar: tqdm) -> None:
        means = {k: float(all_reduce_mean(v)) for k, v in window.means().items()}  # every rank joins
        if not math.isfinite(means.get("loss", 0.0)):
            raise SegAdapterError(f"training diverged: loss is {means['loss']} at iteration {self.iteration}; "
                                  "lower optim.lr, set optim.grad_clip, or train with amp=none")
        if not self.dist.is_main:
            return
        record = {"type": "train", "iter": self.iteration, "epoch": epoch, **means, "lr": lr,
                  "images_per_s": window.images_per_s(self.cfg.data.batch_size)}
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
        if self.dist.is_main:
            self.log.append(self.last_eval)
            plot_curves(self.log.records, self.run_dir / CURVES_NAME)
            msg = (f"iter {self.iteration}: val mIoU {summary['mIoU']}  aAcc {summary['aAcc']}  "
                   f"mAcc {summary['mAcc']}")
            (bar.write if bar is not None else print)(msg)
        return self.last_eval

    def save_checkpoint(self) -> None:
        rng = all_gather_objects(get_rng_state())  # every rank's streams, so DDP resumes exactly too
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
        }
        ckpt.save_checkpoint(self.run_dir, self.iteration, self.net, state, self.cfg.train.keep_checkpoints)
        plot_curves(self.log.records, self.run_dir / CURVES_NAME)

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)


def _test_preprocessing(cfg: Config, train_set) -> dict[str, Any]:
    from ..inference.preprocess import Preprocessing  # deferred: inference imports the evaluation code

    return Preprocessing.from_train_config(cfg, train_set.classes, train_set.palette).to_dict()


def _due(iteration: int, interval: int) -> bool:
    return interval > 0 and iteration % interval == 0


class _Window:
    """Loss sums over one log interval, kept on the device so steps do not synchronise."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        self.start, self.timed = time.perf_counter(), 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1
        self.timed += 1

    def means(self) -> dict[str, torch.Tensor]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def local_mean(self, key: str) -> float:
        return float(self.sums[key]) / max(self.count, 1) if key in self.sums else math.nan

    def images_per_s(self, global_batch: int) -> float:
        elapsed = time.perf_counter() - self.start
        return global_batch * self.timed / elapsed if elapsed > 0 else 0.0


def train(cfg: Config, run_dir: str | os.PathLike, resume: bool = False) -> dict[str, Any] | None:
    """Train `cfg` into `run_dir` (see `Trainer`); returns the final validation metrics."""
    return Trainer(cfg, run_dir, resume=resume).fit()
