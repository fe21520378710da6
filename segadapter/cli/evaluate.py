"""`segadapter eval CKPT --data ROOT --dataset NAME`: per-class IoU / Acc, aAcc, mIoU, mAcc.

Launched with torchrun (WORLD_SIZE > 1), each process evaluates a share of the images and the
counts are summed; only rank 0 prints.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from ..errors import ConfigError
from ..evaluation.metrics import MIOU_RULES
from ..modeling.vocabulary import vocabulary_of
from ..inference.load import load_model
from ..modeling.model_folder import run_data_config
from ..runtime.device import resolve_device
from .inference_args import add_inference_args, check_backend_options, inference_options, resolve_preprocessing


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="evaluate a model on a dataset split",
        description="Evaluate a model on a dataset split: per-class IoU and Acc, aAcc, mIoU, mAcc "
        "(classes absent from both labels and predictions are left out of the means). An open-vocabulary "
        "model (san-*) trained on other classes is evaluated zero-shot on the dataset's class names.",
    )
    p.add_argument("ckpt", metavar="CKPT", help="model folder (save_pretrained), training run folder, or an .onnx "
                   "file from `segadapter export` (run with ONNX Runtime)")
    p.add_argument("--data", metavar="ROOT", help="dataset root folder [a run's own data.root]")
    p.add_argument("--dataset", help="camvid, ade20k, cityscapes, coco-stuff164k, voc, pcontext59, pcontext459, "
                   "ade20k-full, coco-stuff10k, folder, ... "
                   "[a run's own data.dataset]")
    p.add_argument("--split", default="val", help="[val]")
    p.add_argument("--miou-over", choices=list(MIOU_RULES), default="seen",
                   help="which classes mIoU averages: seen = with ground truth or predictions (mmseg, "
                   "detectron2 v0.6: the SAN paper's PC-459 figure), present = with ground truth (SAN's "
                   "released logs), all = every class [seen]; the others are printed beside it when they differ")
    zs = p.add_argument_group("zero-shot (an open-vocabulary model on SAN's benchmarks: voc, pcontext59, "
                              "pcontext459, ade20k, ade20k-full, coco-stuff164k)")
    zs.add_argument("--protocol", choices=["official", "model"], default="official",
                    help="official: SAN's class names and test protocol (short side 640, long side <= 2560, "
                    "whole image); model: the model's own preprocessing record; inference flags below "
                    "override either [official]")
    zs.add_argument("--placeholder-names", action="store_true",
                    help="embed the class names with fixed placeholder vectors instead of CLIP's text tower: "
                    "runs a model without CLIP weights end to end (a smoke test: the scores mean nothing)")
    add_inference_args(p)  # --scale: metrics stay at label resolution whatever the network sees
    p.add_argument("--workers", type=int, default=2, help="data loading processes [2]")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import build_dataset
    from ..runtime.distributed import cleanup, get_rank, get_world_size, init_distributed
    from ..evaluation import evaluate

    device = resolve_device(args.device)
    # under torchrun: join the group (one GPU, or a CPU share, per rank); leave a caller's group alone
    owns_group = int(os.environ.get("WORLD_SIZE", 1)) > 1 and get_world_size() == 1
    if owns_group:
        device = init_distributed(device.type).device
    rank = get_rank()
    try:
        loaded = load_model(args.ckpt, device)  # compiled below, once its classes are set
        model, folder = loaded.model, loaded.source
        check_backend_options(model, args)
        data_cfg = run_data_config(folder)
        name = args.dataset or data_cfg.get("dataset")
        root = args.data or data_cfg.get("root")
        if name is None or (root is None and not data_cfg):  # a run may train on file-less data
            raise ConfigError(f"{folder}: give --data ROOT and --dataset NAME (no training run config to take them from)")
        bench = _benchmark(model, name, args.protocol)
        record = loaded.record
        if bench is not None:
            record = bench.protocol(record)
        pre = resolve_preprocessing(args, record, fallback_scale=None if bench else data_cfg.get("scale"))
        options = inference_options(args, pre, model, device)
        scale = list(pre.scale) if pre.scale else None
        transform = pre.transforms()  # the model's resize rule and normalisation; labels untouched
        data_options = {**(data_cfg.get("options") or {}), **(data_cfg.get("val_options") or {})}
        dataset = build_dataset(name, root, args.split, transform, **data_options)
        names = list(bench.names) if bench is not None else dataset.classes
        note, zero_shot = _dataset_class_names(model, name, names, args.placeholder_names)
        notes = [note] if note else []
        if bench is not None:
            notes.append(f"{bench.column} as SAN evaluates it: its registered class names, short side "
                         f"{pre.short_side}, long side <= {pre.max_size}, {pre.mode} image (--protocol model: "
                         "the model's own record)")
        if rank == 0:
            for line in notes:
                print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
        if model.num_classes != len(dataset.classes):
            raise ConfigError(
                f"{folder}: the model predicts {model.num_classes} classes but {name} "
                f"has {len(dataset.classes)}; evaluate it on the dataset it was trained for"
            )
        if args.compile:
            from ..utils.compile import compile_for_inference

            model = compile_for_inference(model, device)
        result = evaluate(
            model, dataset, device=device, progress=not args.no_progress,
            num_workers=args.workers, class_names=names, miou_over=args.miou_over, **options,
        )
    finally:
        if owns_group:
            cleanup()
    if rank != 0:
        return 0
    if args.json:
        meta = {"checkpoint": str(folder), "dataset": name, "split": args.split, "zero_shot": zero_shot,
                "protocol": "official" if bench is not None else "model", "scale": scale,
                "short_side": pre.short_side, "max_size": pre.max_size, "images": len(dataset),
                "placeholder_names": bool(args.placeholder_names and zero_shot),
                **{k: _jsonable(v) for k, v in options.items()}}
        print(json.dumps({**meta, **result.to_dict()}))
    else:
        print(f"{folder} on {name}/{args.split} ({len(dataset)} images)")
        for line in result.miou_note():
            print(line)
        print(result.table())
    return 0


def _benchmark(model, dataset_name: str, protocol: str):
    """SAN's benchmark entry for an open-vocabulary model on one of its datasets (None otherwise,
    or with --protocol model)."""
    from ..evaluation.zero_shot import benchmark_of

    if protocol != "official" or vocabulary_of(model) is None:
        return None
    return benchmark_of(dataset_name)


def _dataset_class_names(model, dataset_name: str, classes, placeholder: bool = False) -> tuple[str | None, bool]:
    """(line to print or None, zero-shot?). An open-vocabulary model whose classes are not the
    dataset's gets the dataset's class names (zero-shot); refused in one line when the model cannot
    read names (no CLIP weights / vocabulary), unless `placeholder` (fixed vectors stand in)."""
    vocab = vocabulary_of(model)
    if vocab is None:
        if placeholder:
            raise ConfigError("--placeholder-names: only open-vocabulary models (san-*) take class names")
        return None, False
    own, names = list(vocab.names), list(classes)
    if placeholder and own != names:
        vocab.set(names, placeholder=True)
        return (f"zero-shot with placeholder embeddings: {dataset_name}'s {len(names)} class names are not "
                "read by CLIP (--placeholder-names); the scores mean nothing"), True
    if own == names:
        if not vocab.refresh():
            return None, False
        # CLIP weights were loaded after the names were set: they are embedded now
        return (f"embedding {dataset_name}'s {len(names)} class names with CLIP's text tower "
                "(the model held placeholder embeddings)"), False
    model.set_classes(names, f"zero-shot evaluation on {dataset_name}")
    shown = ", ".join(own[:5]) + (", ..." if len(own) > 5 else "")
    return (f"zero-shot: segmenting {dataset_name}'s {len(names)} class names instead of the model's "
            f"{len(own)} ({shown})"), True


def _jsonable(v):
    if isinstance(v, torch.dtype):
        return str(v).removeprefix("torch.")
    return list(v) if isinstance(v, tuple) else v
