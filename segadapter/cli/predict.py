"""`segadapter predict CKPT IMAGES_OR_DIR... --out DIR`: class-id PNG + colour overlay per image.

Images are fed the way the model's preprocessing record says (`--scale` etc. override it) and the
outputs have each image's own size; the work runs through `segadapter.Inferencer` (batches of
same-size images, decoding and writing in background threads).

Policy for bad inputs: paths and output names are checked before any work; outputs are written
to a hidden folder inside --out and moved into place only when every image has succeeded. One bad
input stops the run with exit code 2 and nothing written, so an earlier run's predictions in
--out are never replaced by a partial set. Re-running overwrites this command's own outputs of
the same names (each file replaced atomically).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, DataError
from ..inference.load import load_model
from ..inference.visualize import check_opacity, check_palette, check_png_classes
from ..runtime.device import resolve_device
from .inference_args import (add_inference_args, check_backend_options, inference_options, read_class_names,
                             resolve_preprocessing)



def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="segment images, write class-id PNGs and overlays",
        description="Segment images (any size; grayscale, RGBA and 16-bit are converted) and write "
        "NAME.png (class ids, 255 = ignore; 16-bit PNGs with 65535 = ignore beyond 255 classes, e.g. "
        "A-847's names) and NAME_overlay.png to --out. All inputs are checked "
        "before anything is written: one unreadable input stops the run (exit 2) with no output.",
    )
    p.add_argument("ckpt", metavar="CKPT", help="model folder (save_pretrained), training run folder, or an .onnx "
                   "file from `segadapter export` (run with ONNX Runtime)")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay colour weight, 0-1 [0.5]")
    p.add_argument("--overlay-format", choices=["png", "jpg"], default="png",
                   help="NAME_overlay.png (lossless) or .jpg (quality 90, encodes ~25x faster) [png]")
    p.add_argument("--palette", metavar="DATASET",
                   help="overlay colours of a dataset: camvid, ade20k, cityscapes, coco-stuff164k, voc, "
                   "pcontext59, pcontext459, ade20k-full, ... "
                   "[the model's saved palette, else a generated one]")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--classes", metavar="NAMES",
                       help="open-vocabulary models (san-*) only: segment these comma-separated class names, "
                       "e.g. \"sky,road,car,tree\" (needs a model built with CLIP weights and vocabulary)")
    names.add_argument("--classes-file", metavar="FILE",
                       help="like --classes, one name a line (names may hold commas; blank lines and "
                       "# comments skipped)")
    add_inference_args(p)
    p.add_argument("--batch-size", type=int, default=4, metavar="N",
                   help="images of one size per forward pass [4]")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="decoding threads, and as many encoding/writing threads [2]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..inference import Inferencer

    check_opacity(args.opacity, "--opacity")  # every check before any work
    classes = read_class_names(args.classes, args.classes_file)
    flag = "--classes-file" if args.classes_file is not None else "--classes"
    if classes is not None:
        check_png_classes(len(classes), flag)
    device = resolve_device(args.device)
    images = _collect_inputs(args.inputs)
    out_dir = Path(args.out)
    _check_outputs(images, out_dir, args.overlay_format)
    loaded = load_model(args.ckpt, device)
    model = loaded.model
    check_backend_options(model, args)
    pre = resolve_preprocessing(args, loaded.record)
    options = inference_options(args, pre, model, device)
    palette = _palette(args.palette, len(classes) if classes else model.num_classes,
                       f"{flag} names" if classes else "the model predicts")
    if palette is None and classes is None and pre.palette is not None:
        check_palette(pre.palette, model.num_classes, f"{loaded.config_file} palette")
    inferencer = Inferencer(model, device=device, amp=options["amp_dtype"], preprocessing=pre,
                            scales=options["scales"], palette=palette, batch_size=args.batch_size,
                            workers=args.workers, compile=args.compile)
    if classes is not None:  # the model checks them (a fixed-class model, a SAN without CLIP: one line)
        inferencer.set_classes(classes, flag)
    inferencer.save(images, out_dir, opacity=args.opacity, overlay_format=args.overlay_format,
                    progress=not args.no_progress)
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


def _check_outputs(images: list[Path], out_dir: Path, overlay_format: str = "png") -> None:
    """Refuse runs where one output would replace another output or an input."""
    from ..inference.visualize import output_names

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    inputs = {p.resolve() for p in images}
    owner: dict[str, Path] = {}
    for path in images:
        for name in output_names(path.stem, overlay_format):
            if name in owner:
                raise ConfigError(f"{path} and {owner[name]} would both write {out_dir / name}; "
                                  "predict them into different --out folders")
            owner[name] = path
            if (out_dir / name).resolve() in inputs:
                raise ConfigError(f"{out_dir / name}: is an input image; choose another --out folder")


def _palette(name: str | None, num_classes: int, who: str = "the model predicts"):
    """`--palette DATASET`: that dataset's colours, refused when it has too few for the classes."""
    from ..data import get_palette

    if name is None:
        return None  # the model's recorded palette, else a generated one
    return check_palette(get_palette(name), num_classes, f"--palette {name}", who)
