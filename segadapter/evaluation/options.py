"""What `eval` and `predict` share: the inference options on the command line (defaulting to the
model's preprocessing record), the device and autocast choice, and loading the model named by the
user's CKPT argument."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..runtime.amp import AMP_CHOICES
from ..errors import ConfigError
from ..modeling.vocabulary import check_names
from ..inference.onnx_network import check_torch_only_options, is_onnx_path, load_onnx_network, network_precision
from ..inference.preprocess import Preprocessing, preprocessing_of
from .inference import MODES, check_inference_args


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


def load_model(ckpt: str, device: torch.device, compile: bool = False) -> tuple[nn.Module, Path]:
    """CKPT (model folder, training run folder, or an `.onnx` file from `segadapter export`) ->
    (model in eval mode on `device`, its folder or file); with `compile`, wrapped by
    `segadapter.utils.compile.compile_for_inference`. An `.onnx` file gives an `OnnxNetwork`: ONNX
    Runtime runs it where the torch model would run, on the CPU. The model's preprocessing record:
    `model_preprocessing(model, folder)`."""
    if is_onnx_path(ckpt):
        network = load_onnx_network(ckpt)
        check_torch_only_options(network, compile=compile, what="--compile")
        return network, network.path
    from ..modeling import hub  # deferred: keeps `segadapter --help` fast
    from ..modeling.factory import from_pretrained

    folder = hub.resolve_model_dir(ckpt)
    model = from_pretrained(folder).to(device).eval()
    if compile:
        from ..utils.compile import compile_for_inference

        model = compile_for_inference(model, device)
    return model, folder


def check_backend_options(model: nn.Module, args: argparse.Namespace) -> None:
    """--amp / --compile only apply to PyTorch models: one ConfigError for an ONNX file."""
    asked = [flag for flag, on in (("--amp " + str(args.amp), args.amp not in ("none", "auto")),
                                   ("--compile", args.compile)) if on]
    if asked:
        check_torch_only_options(model, args.amp, args.compile, " and ".join(asked))


def run_data_config(model_dir: Path) -> dict:
    """The `data` section of the training run a checkpoint folder belongs to (RUN/checkpoints/X);
    {} for any other folder or file."""
    import yaml

    config = model_dir.parent.parent / "config.yaml"
    if model_dir.parent.name != "checkpoints" or not config.is_file():
        return {}
    try:
        return (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    except yaml.YAMLError:
        return {}


def model_preprocessing(model: nn.Module, folder: Path) -> Preprocessing:
    """The record in the model's config.json (a folder without one is said once)."""
    return preprocessing_of(model, source=str(folder))  # a compiled model is looked through


# -- class names for open-vocabulary models (predict --classes / --classes-file, eval zero-shot) --

def read_class_names(names: str | None = None, file: str | None = None) -> list[str] | None:
    """`--classes "a,b,c"` or `--classes-file FILE` (one name a line; blank lines and lines
    starting with # skipped; names may hold commas) -> the names, checked: ConfigError naming the
    problem for an empty list, an empty, duplicate (case-insensitive) or over-long name
    (`check_names`, the one check of class names)."""
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
    else:
        where = "--classes"
        parts = [p.strip() for p in names.split(",")]
        if not any(parts):
            raise ConfigError("--classes: no class names given (e.g. --classes \"sky,road,car\")")
        for i, p in enumerate(parts, 1):
            if not p:
                raise ConfigError(f"--classes {names!r}: name #{i} is empty (two commas in a row, or a "
                                  "leading/trailing comma?)")
        entries = [(f"name #{i}", p) for i, p in enumerate(parts, 1)]
    return check_names([name for _, name in entries], where, [at for at, _ in entries])


# the device lives below evaluation/ (runtime/); its name stays importable from here for the commands
from ..runtime.device import resolve_device  # noqa: E402,F401
