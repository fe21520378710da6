"""`segadapter eval CKPT --data ROOT --dataset NAME`: per-class IoU / Acc, aAcc, mIoU, mAcc.

Launched with torchrun (WORLD_SIZE > 1), each process evaluates a share of the images and the
counts are summed; only rank 0 prints.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from ..errors import ConfigError
from ..evaluation.options import add_inference_args, inference_options, load_model, resolve_device


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="evaluate a model on a dataset split",
        description="Evaluate a model on a dataset split: per-class IoU and Acc, aAcc, mIoU, mAcc "
        "(classes absent from both labels and predictions are left out of the means).",
    )
    p.add_argument("ckpt", metavar="CKPT", help="model folder (save_pretrained) or training run folder")
    p.add_argument("--data", required=True, metavar="ROOT", help="dataset root folder")
    p.add_argument("--dataset", required=True, help="camvid, ade20k, cityscapes, coco-stuff164k, folder, ...")
    p.add_argument("--split", default="val", help="[val]")
    add_inference_args(p)
    p.add_argument("--workers", type=int, default=2, help="data loading processes [2]")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import build_dataset
    from ..engine.distributed import cleanup, get_rank, get_world_size, init_distributed
    from ..evaluation import evaluate

    options = inference_options(args)
    device = resolve_device(args.device)
    # under torchrun: join the group (one GPU, or a CPU share, per rank); leave a caller's group alone
    owns_group = int(os.environ.get("WORLD_SIZE", 1)) > 1 and get_world_size() == 1
    if owns_group:
        device = init_distributed(device.type).device
    rank = get_rank()
    try:
        model, folder = load_model(args.ckpt, device)
        dataset = build_dataset(args.dataset, args.data, args.split)
        if model.num_classes != len(dataset.classes):
            raise ConfigError(
                f"{folder}: the model predicts {model.num_classes} classes but {args.dataset} "
                f"has {len(dataset.classes)}; evaluate it on the dataset it was trained for"
            )
        result = evaluate(
            model, dataset, device=device, progress=not args.no_progress,
            num_workers=args.workers, **options,
        )
    finally:
        if owns_group:
            cleanup()
    if rank != 0:
        return 0
    if args.json:
        meta = {"checkpoint": str(folder), "dataset": args.dataset, "split": args.split,
                "images": len(dataset), **{k: _jsonable(v) for k, v in options.items()}}
        print(json.dumps({**meta, **result.to_dict()}))
    else:
        print(f"{folder} on {args.dataset}/{args.split} ({len(dataset)} images)")
        print(result.table())
    return 0


def _jsonable(v):
    if isinstance(v, torch.dtype):
        return str(v).removeprefix("torch.")
    return list(v) if isinstance(v, tuple) else v
