"""SAN's open-vocabulary suite in one command: A-847, PC-459, A-150, PC-59 and VOC (the columns of
SAN's Table 2), each through `segadapter eval --dataset NAME --json` with SAN's class names and test
protocol (short side 640, long side <= 2560, whole image), printed beside the published numbers.

    python benchmarks/san_zero_shot.py RUN [RUN ...] \\
        --roots ade20k-full=datasets/ADE20K_2021_17_01,pcontext459=datasets/pcontext_full,\\
ade20k=datasets/ADEChallengeData2016,pcontext59=datasets/pcontext,voc=datasets/VOC2012

Each RUN is a SAN model folder or training run (trained on COCO-Stuff-171, with CLIP weights and
vocabulary). Datasets without a root are left out. PC-459 lacks ground truth for 114 of its 459
classes in val, so its mean depends on which classes enter it: the table shows the paper's rule
(classes with ground truth or predictions, detectron2 v0.6) and, in brackets, SAN's logs' rule
(classes with ground truth). The published numbers need the real CLIP weights and datasets;
`--placeholder-names` runs a model without CLIP weights end to end (a smoke test, scores meaningless).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's segadapter, wherever the script is run from


def parse_roots(text: str) -> dict[str, str]:
    from segadapter.errors import ConfigError
    from segadapter.evaluation.zero_shot import SAN_BENCHMARKS

    roots = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, path = part.partition("=")
        if not sep or not path:
            raise ConfigError(f"--roots: {part!r} is not NAME=PATH")
        if name not in SAN_BENCHMARKS:
            raise ConfigError(f"--roots: {name!r} is not one of SAN's benchmarks ({', '.join(SAN_BENCHMARKS)})")
        roots[name] = path
    if not roots:
        raise ConfigError("--roots: give at least one NAME=PATH")
    return roots


def evaluate_one(run: str, dataset: str, root: str, extra: list[str]) -> dict:
    """One `segadapter eval ... --json` in this process; its JSON result."""
    from segadapter.cli.main import main
    from segadapter.errors import SegAdapterError

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", run, "--data", root, "--dataset", dataset, "--json", *extra])
    if code != 0:
        raise SegAdapterError(f"segadapter eval {run} --dataset {dataset} failed (exit {code}); see above")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def model_label(run: str) -> tuple[str, str | None]:
    """(row label, the paper's CLIP name or None) from the model folder's config."""
    from segadapter.evaluation.zero_shot import PAPER_MODELS
    from segadapter.modeling.model_folder import resolve_model_dir

    folder = resolve_model_dir(run)
    name = json.loads((folder / "config.json").read_text()).get("name", "?")
    return f"{name} ({folder})", PAPER_MODELS.get(name)


def table(results: dict[str, dict[str, dict]], clips: dict[str, str | None]) -> str:
    from segadapter.evaluation.zero_shot import SAN_BENCHMARKS

    columns = list(SAN_BENCHMARKS.values())
    lines = ["| model | " + " | ".join(b.column for b in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for label, per_dataset in results.items():
        cells = []
        for b in columns:
            r = per_dataset.get(b.dataset)
            if r is None:
                cells.append("-")
                continue
            rules = r["mIoU_by_rule"]
            cell = f"{rules['seen']['mIoU']:.2f}"
            if rules["present"]["mIoU"] != rules["seen"]["mIoU"]:
                cell += f" [{rules['present']['mIoU']:.2f} over {rules['present']['classes']} present]"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for clip in dict.fromkeys(c for c in clips.values() if c):
        lines.append(f"| SAN {clip}, paper (Table 2) | " + " | ".join(f"{b.paper[clip]:.1f}" for b in columns) + " |")
        lines.append(f"| SAN {clip}, released log | " + " | ".join(
            f"{b.log[clip]:.2f}" + (" [345 present]" if b.dataset == "pcontext459" else "") for b in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="SAN model folders or training runs (one row each)")
    p.add_argument("--roots", required=True, help="NAME=PATH,... for ade20k-full, pcontext459, ade20k, pcontext59, voc")
    p.add_argument("--device", default=None, help="cpu, cuda, ... [cuda if available]")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--placeholder-names", action="store_true",
                   help="no CLIP weights: placeholder embeddings for the names (smoke test)")
    p.add_argument("--json", metavar="FILE", help="also write every eval result to FILE")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the evaluation
            p.error(problem)

    from segadapter.errors import SegAdapterError
    from segadapter.evaluation.zero_shot import PAPER_RULE, SAN_BENCHMARKS

    try:
        roots = parse_roots(args.roots)
        extra = ["--amp", args.amp] + (["--device", args.device] if args.device else [])
        extra += ["--placeholder-names"] * args.placeholder_names + ["--no-progress"] * args.no_progress
        results: dict[str, dict[str, dict]] = {}
        clips: dict[str, str | None] = {}
        for run in args.runs:
            label, clips[label] = model_label(run)
            results[label] = {name: evaluate_one(run, name, roots[name], extra)
                              for name in SAN_BENCHMARKS if name in roots}
    except SegAdapterError as e:
        print(f"san_zero_shot: error: {e}", file=sys.stderr)
        return 2
    print(table(results, clips))
    print(f"\nmIoU over classes with ground truth or predictions ({PAPER_RULE}: detectron2 v0.6, as SAN's "
          "paper); [..] over classes with ground truth only, as SAN's released logs (they differ where a "
          "class is absent from the split: PC-459). The published rows need SAN's released weights (CLIP "
          "and side network) and the full datasets.")
    if args.placeholder_names:
        print("placeholder names: no CLIP text tower read the class names; these scores mean nothing.")
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
