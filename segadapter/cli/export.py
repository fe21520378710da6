"""`segadapter export CKPT --onnx FILE`: ONNX with dynamic batch/height/width, checked with onnxruntime."""
from __future__ import annotations

import argparse

import torch


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="export a checkpoint to ONNX")
    p.add_argument("checkpoint", help="model folder (save_pretrained) or training run folder")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"),
                   help="sample input size used for tracing (any size works at run time)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    return p


def run(args) -> int:
    import segadapter
    from ..export import check_onnx, export_onnx

    model = segadapter.from_pretrained(args.checkpoint)
    path = export_onnx(model, args.onnx, args.opset, tuple(args.size))
    print(f"wrote {path}")
    if not args.no_check:
        h, w = args.size
        images = torch.randn(1, 3, h + 32, w - 32 if w > 64 else w + 32)  # another size than traced
        diff = check_onnx(model, path, images)
        print(f"onnxruntime vs PyTorch at {tuple(images.shape[2:])}: max abs logit difference {diff:.2e}")
    return 0
