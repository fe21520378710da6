"""`segadapter export CKPT --onnx FILE [--int8 --calibrate DATA]`: ONNX with dynamic
batch/height/width, checked with onnxruntime; with `--int8`, static int8 (QDQ) by ONNX Runtime's
quantization tools, calibrated on the run's own dataset fed as the model's preprocessing record says."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import ConfigError


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from ..export.fp32_nodes import RULES
    from ..export.quantize import METHODS

    p = sub.add_parser(name, help="export a checkpoint to ONNX (fp32, or int8 with --int8)")
    p.add_argument("checkpoint", help="model folder (save_pretrained) or training run folder")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="sample input size used for tracing (any size works at run time) [what the model's "
                        "preprocessing makes of a 512x512 image]")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparisons")
    q = p.add_argument_group("int8 (static quantization with ONNX Runtime's tools: QDQ, int8 weights per "
                             "channel, uint8 activations)")
    q.add_argument("--int8", action="store_true", help="write an int8 model (needs --calibrate)")
    q.add_argument("--calibrate", metavar="DATA",
                   help="dataset root to calibrate on (the run's data.dataset, or --dataset), or a folder of "
                        "images when no dataset is named; images are fed as the model's preprocessing record says")
    q.add_argument("--dataset", help="dataset reader for --calibrate [a run's own data.dataset; none: image files]")
    q.add_argument("--calib-split", default="train", help="split to take calibration images from [train]")
    q.add_argument("--calib-images", type=int, default=64, metavar="N",
                   help="images, spread evenly over the split [64]")
    q.add_argument("--calib-method", choices=METHODS, default="minmax",
                   help="how activation ranges are set from the calibration data [minmax]")
    q.add_argument("--int8-rule", choices=RULES, default="default",
                   help="default: quantize Conv / MatMul / Gemm with weights, keep attention products, the "
                        "output layers and layers narrower than 64 (depthwise convolutions) fp32; all: every "
                        "op type ONNX Runtime quantizes, nothing kept [default]")
    q.add_argument("--keep-fp32", nargs="+", default=[], metavar="NAME",
                   help="node names (or glob patterns, e.g. '/decode_head/*') to keep in fp32 as well")
    return p


def run(args) -> int:
    from ..export import METADATA_KEY, check_onnx, export_onnx
    from ..inference.load import load_model
    from ..inference.onnx_network import is_onnx_path

    _check_int8_args(args)
    if is_onnx_path(args.checkpoint):
        raise ConfigError(f"{args.checkpoint}: already an ONNX graph; export reads a model folder or training run")
    loaded = load_model(args.checkpoint)
    model, folder, pre = loaded.model, loaded.source, loaded.record
    size = tuple(args.size) if args.size else pre.resized_size(512, 512)
    if args.int8:
        return _run_int8(args, model, folder, pre, size)
    path = export_onnx(model, args.onnx, args.opset, size)
    print(f"wrote {path}")
    if pre.recorded:
        print(f"preprocessing record in its metadata ({METADATA_KEY}): {_describe(pre)}")
    if not args.no_check:
        _print_check(model, path, size, check_onnx)
    return 0


def _check_int8_args(args) -> None:
    if args.int8 and not args.calibrate:
        raise ConfigError("--int8 needs --calibrate DATA: the images its activation ranges are measured on")
    if not args.int8:
        given = [flag for flag, value in (("--calibrate", args.calibrate), ("--dataset", args.dataset),
                                          ("--keep-fp32", args.keep_fp32)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)} without --int8: they only apply to int8 exports")
    if args.calib_images < 1:
        raise ConfigError(f"--calib-images must be at least 1, got {args.calib_images}")


def _run_int8(args, model, folder: Path, pre, size) -> int:
    import tempfile

    from ..modeling.model_folder import run_data_config
    from ..export import METADATA_KEY, check_onnx
    from ..export.calibration import calibration_tensors, describe
    from ..export.int8 import agreement, export_int8, speed
    from ..inference.onnx_network import load_onnx_network
    from ..utils.cpu_isa import describe_isa

    data_cfg = run_data_config(folder)
    dataset = args.dataset or data_cfg.get("dataset")
    taken: list = []  # the images actually read: a split may hold fewer than --calib-images

    def images():
        for image in calibration_tensors(args.calibrate, pre, args.calib_images, dataset, args.calib_split,
                                         (data_cfg.get("options") or {}) if not args.dataset else {}):
            taken.append(image.shape)
            yield image
    with tempfile.TemporaryDirectory(prefix="segadapter-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        result, inputs = export_int8(model, args.onnx, images(), pre, method=args.calib_method, rule=args.int8_rule,
                                     keep=args.keep_fp32, opset=args.opset, sample_size=size, fp32_path=fp32)
        source = f"{args.calibrate} ({dataset}, {args.calib_split})" if dataset else f"image files of {args.calibrate}"
        print(f"wrote {result.path}: int8 (QDQ; weights int8 per channel, activations uint8), {args.calib_method} "
              f"calibration on {describe(inputs)} from {len(taken)} images of {source}")
        print(result.plan.summary())
        outputs = [n for n, why in result.plan.keep.items() if why.startswith("writes")]
        if outputs:
            print(f"output layers kept fp32: {', '.join(outputs)}")
        if pre.recorded:
            print(f"preprocessing record in its metadata ({METADATA_KEY}): {_describe(pre)}")
        print(f"this CPU: {describe_isa()} (ONNX Runtime's int8 kernels use VNNI / AMX where present)")
        if not args.no_check:
            _print_check(model, fp32, size, check_onnx, "onnxruntime fp32")
            nets = load_onnx_network(fp32), load_onnx_network(result.path)
            print(f"int8 vs fp32 on the first calibration inputs: {agreement(*nets, inputs[:4])}")
            print(f"int8 vs fp32 speed on this CPU: {speed(*nets, inputs[0])}")
    return 0


def _print_check(model, path, size, check_onnx, what: str = "onnxruntime") -> None:
    h, w = size
    images = torch.randn(1, 3, h + 32, w - 32 if w > 64 else w + 32)  # another size than traced
    diff = check_onnx(model, path, images)
    print(f"{what} vs PyTorch at {tuple(images.shape[2:])}: max abs logit difference {diff:.2e}")


def _describe(pre) -> str:
    if pre.scale:
        resize = f"fit in {pre.scale[0]}x{pre.scale[1]}" if pre.keep_ratio else f"resize to {pre.scale[0]}x{pre.scale[1]}"
    elif pre.short_side:
        resize = f"short side {pre.short_side}" + (f", long side <= {pre.max_size}" if pre.max_size else "")
    else:
        resize = "own size"
    mean, std = (", ".join(f"{v:g}" for v in vals) for vals in (pre.mean, pre.std))
    return f"{resize}, mean ({mean}), std ({std}), {pre.mode}"
