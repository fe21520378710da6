"""`segadapter train CONFIG [key=value ...] [--resume [RUN | auto]] [--work-dir DIR]`.

Multi-GPU: `torchrun --nproc_per_node=N -m segadapter train CONFIG` (data.batch_size is the
global batch, split across the N processes). SIGTERM / SIGUSR1 / SIGINT stop the run after the
current step with a checkpoint (exit code 0, or 130 for Ctrl-C); `--resume auto` in the same
command line continues it, so a requeued cluster job needs no other command (docs/slurm_train.sbatch).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckpointError, ConfigError

EPILOG = """examples:
  segadapter train synthetic
  segadapter train adapt-mit_camvid-cpu schedule.max_iters=200
  segadapter train adapt-mit_ade20k model.name=adapt-mit-b2 data.root=/data/ADEChallengeData2016
  segadapter train adapt-mit_ade20k --resume            # continue work_dirs/adapt-mit-b0_ade20k
  segadapter train --resume work_dirs/adapt-mit-b0_ade20k   # continue a run from its own config.yaml
  segadapter train adapt-mit_ade20k --resume auto       # continue if there is a checkpoint, else start
"""


AUTO = "auto"  # --resume auto

DESCRIPTION = ("Train a model. CONFIG is a YAML file or the name of a shipped config (--list); "
               "KEY=VALUE pairs override it (values typed as YAML, e.g. optim.lr=1e-4, "
               "data.crop_size=[256,256]). Options may come before or after them.")


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="train a model from a YAML config", description=DESCRIPTION,
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(p)
    # Everything from CONFIG on is re-parsed in run(): argparse cannot take positionals after
    # options (`CONFIG --work-dir D lr=1`) in one parse_args call.
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="CONFIG [KEY=VALUE ...]",
                   help="config file or shipped config name, then config overrides")
    return p


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue the run from its latest checkpoint (the run folder of CONFIG, or RUN); "
                        "'auto': continue the run folder of CONFIG if it has a checkpoint, else start it "
                        "(for jobs that may be requeued)")
    p.add_argument("--work-dir", metavar="DIR", help="run folder [train.work_dir/<run name>]")
    p.add_argument("--list", action="store_true", help="list the shipped configs and exit")


def _parse_rest(args: argparse.Namespace) -> argparse.Namespace:
    """Split `args.rest` into CONFIG, overrides and any options given after CONFIG."""
    inner = argparse.ArgumentParser(prog="segadapter train", description=DESCRIPTION)
    _add_options(inner)
    inner.add_argument("items", nargs="*", metavar="CONFIG [KEY=VALUE ...]")
    late = inner.parse_intermixed_args(args.rest)
    for key in ("resume", "work_dir", "list"):
        if getattr(late, key) not in (None, False):
            setattr(args, key, getattr(late, key))
    items = list(late.items)
    args.config = items.pop(0) if items and "=" not in items[0] else None
    args.overrides = items
    return args


def run(args: argparse.Namespace) -> int:
    from ..engine import list_configs, load_config, resolve_config_path
    from ..runtime.distributed import cleanup, init_distributed
    from ..engine.trainer import CONFIG_NAME, Trainer

    args = _parse_rest(args)
    if args.list:
        print("\n".join(list_configs()))
        return 0
    overrides = list(args.overrides)
    resume_dir = None
    if args.resume == AUTO:  # a word, not a folder: the run folder comes from CONFIG / --work-dir
        if args.config is None:
            raise ConfigError("--resume auto needs a CONFIG (it continues that config's run folder)")
        args.resume = True
    if isinstance(args.resume, str):
        if "=" in args.resume and not Path(args.resume).exists():
            overrides.insert(0, args.resume)  # `--resume key=value`: the flag form, then an override
        else:
            resume_dir = Path(args.resume)
    if args.config is not None:
        config_path = resolve_config_path(args.config)
    elif resume_dir is not None:  # the run's own resolved config
        config_path = resume_dir / CONFIG_NAME
        if not config_path.is_file():
            raise CheckpointError(f"{resume_dir}: not a training run folder (no {CONFIG_NAME})")
    else:
        raise ConfigError("give a CONFIG (a YAML file or a shipped config name, see --list) or --resume RUN")
    cfg = load_config(config_path, overrides)
    run_dir = _run_dir(args, cfg, config_path, resume_dir)
    resume = bool(args.resume) or cfg.train.resume

    info = init_distributed(cfg.train.device)
    try:
        trainer = Trainer(cfg, run_dir, resume=resume, dist_info=info)
        result = trainer.fit()
    finally:
        cleanup()
    if trainer.stopped_by is not None:
        if info.is_main:
            print(f"stopped: {run_dir} (iteration {trainer.iteration}, by {trainer.stopped_by}); "
                  "the same command with --resume auto continues it")
        return trainer.exit_code
    if info.is_main:
        summary = f"; final val mIoU {result['mIoU']}" if result else ""
        print(f"done: {run_dir} (iteration {trainer.iteration}){summary}")
    return 0


def default_run_name(config_stem: str, model_name: str) -> str:
    """`adapt-mit_ade20k` + model adapt-mit-b2 -> `adapt-mit-b2_ade20k`; otherwise the stem."""
    family, sep, rest = config_stem.partition("_")
    if sep and model_name.startswith(family + "-"):
        return f"{model_name}_{rest}"
    return config_stem


def _run_dir(args: argparse.Namespace, cfg, config_path: Path, resume_dir: Path | None) -> Path:
    if args.work_dir and resume_dir and Path(args.work_dir).resolve() != resume_dir.resolve():
        raise ConfigError(f"--work-dir {args.work_dir} and --resume {resume_dir} name different runs")
    if args.work_dir:
        return Path(args.work_dir)
    if resume_dir is not None:
        return resume_dir
    return Path(cfg.train.work_dir) / (cfg.train.run_name or default_run_name(config_path.stem, cfg.model.name))
