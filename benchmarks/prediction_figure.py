"""A trained model on real frames: image | ground truth | prediction, one row per frame, with the
class legend - the picture on the README and the docs' landing page.

The README's picture is `adapt-mit-b0` from the CamVid study's recipe (seed 0), on val frames:

    python benchmarks/camvid_study.py --data ../shared/data/camvid --models adapt-mit-b0 --seeds 0 --out /tmp/study
    python benchmarks/prediction_figure.py /tmp/study/adapt-mit-b0_seed0 --data ../shared/data/camvid \\
        --out docs/images/camvid-adapt-mit-b0.png

The frames are the dataset's own (labels mapped as in evaluation: void shown black); the
prediction is what `segadapter predict` writes for them (the model folder's preprocessing record),
and each row says the frame's pixel accuracy over its labelled pixels.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def recorded_miou(run: Path) -> float | None:
    """The run's last val mIoU: the study's result.json, else the last eval in metrics.jsonl."""
    result = run / "result.json"
    if result.is_file():
        return float(json.loads(result.read_text())["mIoU"])
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        evals = [json.loads(line) for line in metrics.read_text().splitlines() if '"mIoU"' in line]
        if evals:
            return float(evals[-1]["mIoU"])
    return None


def model_name(run: Path) -> str:
    """The registered model name a run or model folder was built as."""
    import yaml

    for file, key in (("config.yaml", lambda c: c["model"]["name"]), ("config.json", lambda c: c["name"])):
        if (run / file).is_file():
            try:
                return str(key(yaml.safe_load((run / file).read_text())))
            except (KeyError, TypeError):
                pass
    return run.name


def pick_frames(n_frames: int, count: int) -> list[int]:
    """`count` frames spread evenly over the split (its first, middle, ... last)."""
    return sorted({round(i * (n_frames - 1) / max(count - 1, 1)) for i in range(count)})


def draw(run: Path, data: str, out: Path, frames: list[int] | None = None, count: int = 3,
         split: str = "val", dataset: str = "camvid", amp: str = "none") -> dict:
    """Write the figure to `out`; returns what it shows: {frames, accuracy, prediction labels}."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from segadapter import Inferencer
    from segadapter.data.registry import build_dataset
    from segadapter.inference.visualize import colorize

    ds = build_dataset(dataset, data, split)
    frames = frames if frames is not None else pick_frames(len(ds), count)
    inferencer = Inferencer(run, amp=amp)
    palette = [tuple(c) for c in ds.palette]
    rows, shown = [], {"frames": [], "accuracy": [], "labels": []}
    for index in frames:
        image, label, path = ds.load(index)
        pred = inferencer(path).label
        valid = label != ds.ignore_index
        accuracy = float((pred[valid] == label[valid]).mean()) if valid.any() else float("nan")
        rows.append((Path(path).name, image, colorize(label, palette, ds.ignore_index),
                     colorize(pred, palette, ds.ignore_index), accuracy))
        shown["frames"].append(str(path))
        shown["accuracy"].append(accuracy)
        shown["labels"].append(pred)

    h, w = rows[0][1].shape[:2]
    fig = Figure(figsize=(3 * 3.2, len(rows) * 3.2 * h / w + 1.1), dpi=100)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    miou = recorded_miou(run)
    name = model_name(run)
    heads = ("image", "ground truth", f"prediction ({name}" + (f", val mIoU {miou:.1f})" if miou else ")"))
    for r, (frame, image, truth, pred, accuracy) in enumerate(rows):
        for c, picture in enumerate((image, truth, pred)):
            ax = axes[r][c]
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=9)
        axes[r][0].set_ylabel(frame, fontsize=7)
        axes[r][2].set_xlabel(f"pixel accuracy {100 * accuracy:.1f}%", fontsize=7)
    handles = [Patch(color=np.asarray(c) / 255, label=n) for n, c in zip(ds.classes, palette)]
    handles.append(Patch(color="black", label="void (not scored)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.95, bottom=0.1, wspace=0.03, hspace=0.12)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    # a 256-colour palette PNG: a third of the bytes; the label maps are flat colours anyway
    with Image.open(buffer) as picture:
        picture.convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return shown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a trained model folder or training run folder")
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--dataset", default="camvid")
    p.add_argument("--split", default="val")
    p.add_argument("--frames", type=int, nargs="+", help="frame indices in the split (default: spread evenly)")
    p.add_argument("--count", type=int, default=3, help="how many frames without --frames")
    p.add_argument("--out", type=Path, default=Path("docs/images/camvid-adapt-mit-b0.png"))
    args = p.parse_args()
    shown = draw(args.run, args.data, args.out, args.frames, args.count, args.split, args.dataset)
    for frame, acc in zip(shown["frames"], shown["accuracy"]):
        print(f"{frame}: pixel accuracy {100 * acc:.1f}%")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
