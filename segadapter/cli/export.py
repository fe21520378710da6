"""`segadapter export CKPT --onnx FILE`: ONNX with dynamic batch/height/width, checked with onnxruntime."""
from __future__ import annotations

import argparse

import torch


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="export a checkpoint to ONNX")
    p.add_argument("checkpoint", help="model folder (save_pretrained) or training run folder")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="sample input size used for tracing (any size works at run time) [what the model's "
                        "preprocessing makes of a 512x512 image]")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    return p


def run(args) -> int:
    from ..export import METADATA_KEY, check_onnx, export_onnx
    from ..modeling.factory import from_pretrained
    from ..inference.preprocess import preprocessing_of
    from ..modeling.hub import resolve_model_dir

    folder = resolve_model_dir(args.checkpoint)
    model = from_pretrained(folder)
    pre = preprocessing_of(model, source=str(folder))
    size = tuple(args.size) if args.size else pre.resized_size(512, 512)
    path = export_onnx(model, args.onnx, args.opset, size)
    print(f"wrote {path}")
    if pre.recorded:
        print(f"preprocessing record in its metadata ({METADATA_KEY}): {_describe(pre)}")
    if not args.no_check:
        h, w = size
        images = torch.randn(1, 3, h + 32, w - 32 if w > 64 else w + 32)  # another size than traced
        diff = check_onnx(model, path, images)
        print(f"onnxruntime vs PyTorch at {tuple(images.shape[2:])}: max abs logit difference {diff:.2e}")
    return 0


def _describe(pre) -> str:
    if pre.scale:
        resize = f"fit in {pre.scale[0]}x{pre.scale[1]}" if pre.keep_ratio else f"resize to {pre.scale[0]}x{pre.scale[1]}"
    elif pre.short_side:
        resize = f"short side {pre.short_side}" + (f", long side <= {pre.max_size}" if pre.max_size else "")
    else:
        resize = "own size"
    mean, std = (", ".join(f"{v:g}" for v in vals) for vals in (pre.mean, pre.std))
    return f"{resize}, mean ({mean}), std ({std}), {pre.mode}"
