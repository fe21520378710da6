"""`segadapter predict CKPT IMAGES_OR_DIR... --out DIR`: class-id PNG + colour overlay per image.

Policy for bad inputs: every input is checked (exists, decodes fully, output names distinct) before
the first file is written. One bad input stops the run with exit code 2 and nothing written, so
an earlier run's predictions in --out are never replaced by a partial set. Re-running overwrites
this command's own outputs of the same names (each file replaced atomically).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, DataError
from ..evaluation.options import add_inference_args, inference_options, load_model, resolve_device


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="segment images, write class-id PNGs and overlays",
        description="Segment images (any size; grayscale, RGBA and 16-bit are converted) and write "
        "NAME.png (class ids, 255 = ignore) and NAME_overlay.png to --out. All inputs are checked "
        "before anything is written: one unreadable input stops the run (exit 2) with no output.",
    )
    p.add_argument("ckpt", metavar="CKPT", help="model folder (save_pretrained) or training run folder")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay colour weight, 0-1 [0.5]")
    p.add_argument("--palette", metavar="DATASET",
                   help="overlay colours of a dataset: camvid, ade20k, cityscapes, coco-stuff164k "
                   "[the model's saved palette, else a generated one]")
    add_inference_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..data.io import read_image
    from ..data.transforms import build_transforms
    from ..evaluation import inference, save_prediction

    options = inference_options(args)
    if not 0.0 <= args.opacity <= 1.0:
        raise ConfigError(f"--opacity must be between 0 and 1, got {args.opacity}")
    device = resolve_device(args.device)
    images = _collect_inputs(args.inputs)
    out_dir = Path(args.out)
    _check_outputs(images, out_dir)
    for path in images:  # decode everything once first: fail before writing anything
        read_image(path)
    model, folder = load_model(args.ckpt, device, compile=args.compile)
    palette = _palette(args.palette, model, folder)

    to_tensor = build_transforms(train=False)  # the evaluation normalisation
    for path in tqdm(images, desc="predict", disable=args.no_progress, dynamic_ncols=True):
        image = read_image(path)
        scores = inference(model, to_tensor(image)[0], **options)
        label = scores.argmax(0).to("cpu", torch.uint8).numpy()
        save_prediction(out_dir, path.stem, label, image, palette, args.opacity)
    print(f"wrote {2 * len(images)} files for {len(images)} images to {out_dir}")
    return 0


def _collect_inputs(inputs: list[str]) -> list[Path]:
    from ..data.layout import IMAGE_EXTS, list_files

    images: dict[Path, Path] = {}  # resolved -> as given: a file named twice is predicted once
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_files(item, IMAGE_EXTS)
            if not found:
                raise DataError(f"{item}: no images found (looked for *{', *'.join(IMAGE_EXTS)})")
        elif item.exists():
            found = [item]
        else:
            raise DataError(f"{item}: no such file or folder")
        for path in found:
            images.setdefault(path.resolve(), path)
    return list(images.values())


def _check_outputs(images: list[Path], out_dir: Path) -> None:
    """Refuse runs where one output would replace another output or an input."""
    from ..evaluation.visualize import output_names

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    inputs = {p.resolve() for p in images}
    owner: dict[str, Path] = {}
    for path in images:
        for name in output_names(path.stem):
            if name in owner:
                raise ConfigError(f"{path} and {owner[name]} would both write {out_dir / name}; "
                                  "predict them into different --out folders")
            owner[name] = path
            if (out_dir / name).resolve() in inputs:
                raise ConfigError(f"{out_dir / name}: is an input image; choose another --out folder")


def _palette(name: str | None, model, folder: Path) -> list[tuple[int, int, int]]:
    from ..data import get_palette
    from ..data.metainfo import generated_palette

    k = model.num_classes
    if name is not None:
        palette, source = get_palette(name), f"--palette {name}"
    else:
        palette, source = model.config.get("palette"), f"{folder}/config.json palette"
    if palette is None:
        return generated_palette(k)
    if len(palette) < k:
        raise ConfigError(f"{source} has {len(palette)} colours but the model predicts {k} classes")
    return [tuple(int(v) for v in c) for c in palette]
