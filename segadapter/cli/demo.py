"""`segadapter demo`: the main job - train, evaluate and predict, end to end.

Without `--data` it trains on the built-in generated `synthetic` dataset (no files, no download);
with `--data ROOT` it recognises CamVid, ADE20K, Cityscapes or COCO-Stuff by their folder layout
and runs the same recipe (sized for a CPU) on them. Re-running reuses a finished run's weights.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError

# dataset -> shipped config it starts from
CONFIGS = {"synthetic": "synthetic"}
CPU_CONFIG = "adapt-mit_camvid-cpu"


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train, evaluate and predict end to end",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", metavar="ROOT", help="dataset folder (default: built-in synthetic data)")
    p.add_argument("--dataset", help="dataset type (default: recognised from the folder layout)")
    p.add_argument("--model", default="adapt-mit-b0", help="registered model name [adapt-mit-b0]")
    p.add_argument("--iters", type=int, help="training iterations (default: the config's)")
    p.add_argument("--work-dir", metavar="DIR", help="run folder [work_dirs/demo_<model>_<dataset>]")
    p.add_argument("--predictions", type=int, default=8, metavar="N", help="val images to predict [8]")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay opacity [0.5]")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="further config overrides")
    return p


def detect_dataset(root: Path) -> str:
    """The dataset type from its official folder layout."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if (root / "trainannot").is_dir() or (root / "valannot").is_dir():
        return "camvid"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / "images" / "training").is_dir() or (root / "ADEChallengeData2016").is_dir():
        return "ade20k"
    if (root / "images" / "train2017").is_dir() or (root / "images" / "val2017").is_dir():
        return "coco-stuff164k"
    raise DataError(f"{root}: not a CamVid, ADE20K, Cityscapes or COCO-Stuff folder layout; "
                    "give --dataset (e.g. --dataset folder with data.options)")


def run(args) -> int:
    from ..engine import load_config
    from ..runtime.distributed import cleanup, init_distributed
    from ..engine.trainer import Trainer

    if args.data is None:
        dataset, config, overrides = "synthetic", "synthetic", []
    else:
        root = Path(args.data)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        dataset = args.dataset or detect_dataset(root)
        config = CPU_CONFIG
        overrides = [f"data.dataset={dataset}", f"data.root={root}"]
    overrides.append(f"model.name={args.model}")
    if args.iters is not None:  # a shorter run keeps its warm-up within the run
        warmup = min(load_config(config, overrides).schedule.warmup_iters, args.iters // 10)
        overrides += [f"schedule.max_iters={args.iters}", f"schedule.warmup_iters={warmup}"]
    cfg = load_config(config, overrides + list(args.overrides))
    run_dir = Path(args.work_dir or f"work_dirs/demo_{args.model}_{dataset}")
    resume = (run_dir / "checkpoints" / "latest").is_file()

    info = init_distributed(cfg.train.device)
    try:
        trainer = Trainer(cfg, run_dir, resume=resume, dist_info=info)
        trainer.fit()
        if trainer.stopped_by is not None:  # SIGTERM / Ctrl-C: checkpoint written, nothing more to do
            if info.is_main:
                print(f"stopped: {run_dir} (iteration {trainer.iteration}); run the demo again to continue")
            return trainer.exit_code
        if not info.is_main:
            return 0
        if trainer.val_set is None:
            print(f"done: {run_dir} (no validation split)")
            return 0
        result = _evaluate(trainer)
        written = _predict(trainer, run_dir / "predictions", args.predictions, args.opacity)
    finally:
        cleanup()
    print(result.table())
    print(f"\nrun folder:  {run_dir}  (config.yaml, metrics.jsonl, curves.png, checkpoints/)")
    if written:
        print(f"overlays:    {run_dir / 'predictions'}/*_overlay.png  ({len(written)} images)")
    print(f"next:        segadapter predict {run_dir} IMAGES --out DIR")
    return 0


def _evaluate(trainer):
    from ..evaluation import evaluate

    e = trainer.cfg.eval
    return evaluate(trainer.net, trainer.val_set, mode=e.mode, crop_size=e.crop_size, stride=e.stride,
                    flip=e.flip, device=trainer.device, amp_dtype=trainer.amp_dtype, progress=False,
                    class_names=trainer.val_set.classes)


def _predict(trainer, out_dir: Path, count: int, opacity: float) -> list[Path]:
    """Class-id PNGs and overlays for the first `count` validation images."""
    import torch

    from ..inference.segment import inference
    from ..inference.visualize import save_prediction

    val = trainer.val_set
    written = []
    for i in range(min(count, len(val))):
        image, _, path = val.load(i)
        x = val[i]["image"]
        scores = inference(trainer.net, x, out_size=image.shape[:2], amp_dtype=trainer.amp_dtype)
        pred = scores.argmax(0).to("cpu", torch.uint8).numpy()
        written += save_prediction(out_dir, Path(str(path)).stem, pred, image=image, palette=val.palette,
                                   opacity=opacity)
    return written
