"""What `eval` and `predict` share: the inference options on the command line, the device and
autocast choice, and loading the model named by the user's CKPT argument."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runtime.amp import AMP_DTYPES
from ..errors import ConfigError
from .inference import MODES, check_inference_args


def add_inference_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inference")
    g.add_argument("--mode", choices=MODES, default="whole",
                   help="whole image at once, or sliding window (needs --crop) [whole]")
    g.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide window size")
    g.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide step [2/3 of --crop]")
    g.add_argument("--flip", action="store_true", help="also run on the mirrored image and average")
    g.add_argument("--scales", type=float, nargs="+", default=[1.0], metavar="S",
                   help="multi-scale test, e.g. 0.5 1.0 1.5 (aspect ratio kept) [1.0]")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... [cuda if available, else cpu]")
    g.add_argument("--amp", choices=list(AMP_DTYPES), default="none",
                   help="autocast the network in bf16/fp16; sums and averages stay fp32 [none]")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the network for inference (weights frozen); the first image of "
                        "each size compiles, ~30 s for a B0 on 2 CPU cores [off]")


def inference_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for `inference` / `evaluate`, validated (ConfigError on bad values)."""
    if args.mode == "whole" and (args.crop or args.stride):
        raise ConfigError("--crop/--stride only apply to --mode slide")
    check_inference_args(args.mode, args.crop, args.stride, args.scales)
    return {
        "mode": args.mode,
        "crop_size": tuple(args.crop) if args.crop else None,
        "stride": tuple(args.stride) if args.stride else None,
        "flip": args.flip,
        "scales": tuple(args.scales),
        "amp_dtype": AMP_DTYPES[args.amp],
    }


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def load_model(ckpt: str, device: torch.device, compile: bool = False) -> tuple[nn.Module, Path]:
    """CKPT (model folder or training run folder) -> (model in eval mode on `device`, its folder);
    with `compile`, wrapped by `segadapter.utils.compile.compile_for_inference`."""
    from ..modeling import hub  # deferred: keeps `segadapter --help` fast
    from .. import from_pretrained

    folder = hub.resolve_model_dir(ckpt)
    model = from_pretrained(folder).to(device).eval()
    if compile:
        from ..utils.compile import compile_for_inference

        model = compile_for_inference(model, device)
    return model, folder
