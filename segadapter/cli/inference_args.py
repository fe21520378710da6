"""The inference options `eval` and `predict` share on the command line (defaulting to the model's
preprocessing record), and the class names `predict --classes` / `--classes-file` give. Loading the
model they name is `inference.load.load_model`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..inference.onnx_network import check_torch_only_options, network_precision
from ..inference.preprocess import Preprocessing
from ..inference.segment import MODES, check_inference_args
from ..modeling.vocabulary import check_names, parse_class_names
from ..runtime.amp import AMP_CHOICES


def add_inference_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inference (defaults: the model's preprocessing record)")
    g.add_argument("--scale", type=int, nargs=2, metavar=("W", "H"),
                   help="resize images to fit W x H (aspect ratio kept) before the network; outputs stay "
                        "at the image's own size [the model's record; old folders: none]")
    g.add_argument("--no-resize", action="store_true", help="feed images at their own size, whatever the record says")
    g.add_argument("--mode", choices=MODES, default=None,
                   help="whole image at once, or sliding window (needs --crop) [the record's, else whole]")
    g.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide window size")
    g.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide step [2/3 of --crop]")
    g.add_argument("--flip", action="store_true", help="also run on the mirrored image and average")
    g.add_argument("--scales", type=float, nargs="+", default=[1.0], metavar="S",
                   help="multi-scale test, e.g. 0.5 1.0 1.5 (aspect ratio kept) [1.0]")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... [cuda if available, else cpu]")
    g.add_argument("--amp", choices=list(AMP_CHOICES), default="auto",
                   help="autocast the network in bf16/fp16 (sums and averages stay fp32); auto: bf16 where the "
                        "device computes it natively (CUDA, CPUs with AMX / AVX-512 BF16), else fp16 on CUDA, "
                        "fp32 on CPU; none: fp32 [auto]")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the network for inference (weights frozen); the first image of "
                        "each size compiles, ~30 s for a B0 on 2 CPU cores [off]")


def resolve_preprocessing(args: argparse.Namespace, record: Preprocessing,
                          fallback_scale: Sequence[int] | None = None) -> Preprocessing:
    """The model's record with the command line's choices on top. `fallback_scale` is what a folder
    without a record used before (eval: its training run's data.scale)."""
    if args.scale and args.no_resize:
        raise ConfigError("--scale and --no-resize contradict each other; give one")
    changes: dict[str, Any] = {}
    if args.scale:
        changes.update(scale=tuple(args.scale), keep_ratio=True, short_side=None, max_size=None)
    elif args.no_resize:
        changes.update(scale=None, short_side=None, max_size=None)
    elif not record.recorded and fallback_scale:
        changes.update(scale=tuple(fallback_scale), keep_ratio=True)
    mode = args.mode or record.mode
    if mode == "whole" and (args.crop or args.stride):
        raise ConfigError("--crop/--stride only apply to --mode slide")
    if args.mode is not None:
        changes.update(mode=args.mode, crop_size=None, stride=None)
    if mode == "slide":
        crop = tuple(args.crop) if args.crop else (None if args.mode else record.crop_size)
        stride = tuple(args.stride) if args.stride else (None if args.crop or args.mode else record.stride)
        crop, stride = check_inference_args("slide", crop, stride, tuple(args.scales))
        changes.update(crop_size=crop, stride=stride)
    if args.flip:
        changes["flip"] = True
    return record.replace(**changes)


def inference_options(args: argparse.Namespace, pre: Preprocessing, model: nn.Module,
                      device: torch.device) -> dict[str, Any]:
    """Keyword arguments for `inference` / `evaluate`, validated (ConfigError on bad values); the
    autocast dtype is what `--amp` resolves to for `model` on `device`."""
    check_inference_args(pre.mode, pre.crop_size, pre.stride, args.scales)
    precision = network_precision(model, args.amp, device, "--amp")
    return {**pre.inference_kwargs(), "scales": tuple(args.scales), "amp_dtype": precision.dtype}


def check_backend_options(model: nn.Module, args: argparse.Namespace) -> None:
    """--amp / --compile only apply to PyTorch models: one ConfigError for an ONNX file."""
    asked = [flag for flag, on in (("--amp " + str(args.amp), args.amp not in ("none", "auto")),
                                   ("--compile", args.compile)) if on]
    if asked:
        check_torch_only_options(model, args.amp, args.compile, " and ".join(asked))


# -- class names for open-vocabulary models (predict --classes / --classes-file, eval zero-shot) --

def read_class_names(names: str | None = None, file: str | None = None) -> list[str] | None:
    """`--classes "a,b,c"` or `--classes-file FILE` (one name a line; blank lines and lines
    starting with # skipped; names may hold commas) -> the names, checked by `check_names` (the one
    check of class names; `parse_class_names` for the comma-separated list)."""
    if names is not None and file is not None:
        raise ConfigError("--classes and --classes-file both name the classes; give one")
    if names is None and file is None:
        return None
    if file is not None:
        where = f"--classes-file {file}"
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"{where}: no such file")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{where}: cannot read it as UTF-8 text ({e})") from None
        entries = [(f"line {i}", line.strip()) for i, line in enumerate(lines, 1)
                   if line.strip() and not line.lstrip().startswith("#")]
        if not entries:
            raise ConfigError(f"{where}: no class names in it (one name a line; # comments and blank "
                              "lines are skipped)")
        return check_names([name for _, name in entries], where, [at for at, _ in entries])
    return parse_class_names(names, "--classes")
