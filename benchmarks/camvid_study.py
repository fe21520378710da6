"""Every method on CamVid, side by side: the paper's Table 1 at small scale (segformer-b0,
adapt-mit-b0, semask-mit-b0) and the peer methods (segdeformer-mit-b0, segvit-vit-t, san-vit-b16
with a frozen *random* CLIP - no CLIP weights can be had here, so that row says nothing about
open-vocabulary quality).

Each model is trained from scratch (no pretrained weights on this machine) with one identical
recipe - the shipped `*_camvid-cpu` configs: 320x240 images, 192x256 crops, batch 4, bf16,
2000 iterations - for every seed, evaluated on CamVid val, and summarised as a markdown table
(mIoU mean and spread over seeds, parameters and GFLOPs at the training resolution, training time).
Runs already finished are reused, so the study can be stopped and continued.

    python benchmarks/camvid_study.py --data ../shared/data/camvid --seeds 0 1
    python benchmarks/camvid_study.py --models segdeformer-mit-b0 --seeds 0   # one row, one seed
    python benchmarks/camvid_study.py ... --iters 200      # a quick look with a shorter schedule
    python benchmarks/camvid_study.py --plot-only --plot-dir docs/benchmarks/img   # redraw the plots only

Besides table.md, every run ends by drawing two plots next to it (`--plot-dir` elsewhere):
camvid-study-miou.png (val mIoU per model, each seed a point) and camvid-study-gflops.png (mean
mIoU against GFLOPs, the bar spanning the seeds). `--plot-only` redraws them from the result.json
files already in `--out`, training nothing and leaving table.md as it is.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

# model -> the shipped config it trains with (all inherit _base_/camvid-cpu.yaml: one recipe)
CONFIGS = {"segformer-b0": "segformer_camvid-cpu", "adapt-mit-b0": "adapt-mit_camvid-cpu",
           "semask-mit-b0": "semask-mit_camvid-cpu", "segdeformer-mit-b0": "segdeformer-mit_camvid-cpu",
           "segvit-vit-t": "segvit_camvid-cpu", "san-vit-b16": "san_camvid-cpu"}
MODELS = list(CONFIGS)
# shown beside a model's name in the plots: what its row does not measure (see the docs page)
PLOT_NOTES = {"san-vit-b16": "random CLIP"}
# the committed runs predate result.json's "machine" key; what the docs page says of them
MACHINE_NOT_RECORDED = ("not recorded in result.json; docs/benchmarks/camvid-study.md: a 2-core CPU, no GPU, bf16 "
                        "autocast; the segvit-vit-t rows rerun on an AMX machine, the other rows' ISA not stated")


def train_one(model: str, seed: int, data: str, out: Path, iters: int | None, extra: list[str]) -> dict:
    from segadapter.engine import load_config
    from segadapter.engine.trainer import Trainer
    from segadapter.utils.io import write_json_atomic

    run = out / f"{model}_seed{seed}"
    result_file = run / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    overrides = [f"data.root={data}", f"train.seed={seed}", "train.progress=false"]
    if iters is not None:
        overrides += [f"schedule.max_iters={iters}", f"schedule.warmup_iters={max(1, iters // 20)}",
                      f"train.eval_interval={iters}", f"train.checkpoint_interval={iters}"]
    cfg = load_config(CONFIGS[model], overrides + extra)
    resume = (run / "checkpoints" / "latest").is_file()
    start = time.perf_counter()
    trainer = Trainer(cfg, run, resume=resume)
    metrics = trainer.fit()
    seconds = time.perf_counter() - start
    from plots import this_machine

    result = {"model": model, "seed": seed, "mIoU": metrics["mIoU"], "train_seconds": seconds,
              "iters": cfg.schedule.max_iters, "resumed": resume, "machine": this_machine()}
    write_json_atomic(result_file, result)
    return result


def table(results: list[dict], crop: tuple[int, int], recipe: str) -> str:
    from segadapter.analysis.flops import complexity_of

    lines = [f"Recipe: {recipe}", "",
             "| model | val mIoU (mean ± spread) | per seed | gain over `segformer-b0`, same seed | params (M) "
             "| GFLOPs @ train res | train time / run |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    baseline = {r["seed"]: r["mIoU"] for r in results if r["model"] == MODELS[0]}
    for model in MODELS:
        runs = sorted((r for r in results if r["model"] == model), key=lambda r: r["seed"])
        if not runs:
            continue
        mious = [r["mIoU"] for r in runs]
        spread = (max(mious) - min(mious)) / 2  # half the range: with two seeds, mean ± spread spans both
        gains = [r["mIoU"] - baseline[r["seed"]] for r in runs if r["seed"] in baseline]
        gain = "-" if model == MODELS[0] or not gains else ", ".join(f"{g:+.2f}" for g in gains)
        c = complexity_of(model, 11, crop)
        minutes = statistics.mean(r["train_seconds"] for r in runs) / 60
        lines.append(f"| `{model}` | {statistics.mean(mious):.2f} ± {spread:.2f} | "
                     f"{', '.join(f'{m:.2f}' for m in mious)} | {gain} | {c['params_m']:.2f} | {c['gflops']:.2f} | "
                     f"{minutes:.1f} min |")
    return "\n".join(lines)


def machine_of(results: list[dict]) -> str:
    """The machine line of the plots: what the runs' result.json files record, per model where they differ."""
    by_machine: dict[str | None, list[str]] = {}
    for r in results:
        models = by_machine.setdefault(r.get("machine"), [])
        if r["model"] not in models:
            models.append(r["model"])
    if list(by_machine) == [None]:
        return MACHINE_NOT_RECORDED
    if len(by_machine) == 1:
        return next(iter(by_machine))
    parts = [f"{', '.join(models)}: {m}" for m, models in by_machine.items() if m is not None]
    if None in by_machine:
        parts.append(f"{', '.join(by_machine[None])}: {MACHINE_NOT_RECORDED}")
    return "; ".join(parts)


def plot(results: list[dict], crop: tuple[int, int], recipe: str, plot_dir: Path) -> dict:
    """camvid-study-miou.png and camvid-study-gflops.png in plot_dir; {path: figure}."""
    import plots
    from segadapter.analysis.flops import complexity_of

    rows, points = [], []
    for model in MODELS:
        runs = sorted((r for r in results if r["model"] == model), key=lambda r: r["seed"])
        if not runs:
            continue
        label = f"{model} ({PLOT_NOTES[model]})" if model in PLOT_NOTES else model
        mious = [r["mIoU"] for r in runs]
        rows.append((label, mious))
        points.append({"label": label, "x": complexity_of(model, 11, crop)["gflops"],
                       "y": statistics.mean(mious), "low": min(mious), "high": max(mious)})
    seeds = ", ".join(map(str, sorted({r["seed"] for r in results})))
    machine = machine_of(results)
    drawn = {}
    fig, ax = plots.figure(7, 1.6 + 0.45 * len(rows))
    plots.seed_spread(ax, rows, "CamVid val mIoU (points: seeds; bar: mean; text: mean ± half-range)")
    drawn[plots.save(fig, plot_dir / "camvid-study-miou.png",
                     f"CamVid study: val mIoU per model, seeds {seeds}", machine, note=recipe)] = fig
    fig, ax = plots.figure(7, 4.2)
    plots.labelled_points(ax, points, f"GFLOPs at the {crop[0]}x{crop[1]} training crop (log scale)",
                          "val mIoU, mean over seeds (bar: their range)", logx=True)
    drawn[plots.save(fig, plot_dir / "camvid-study-gflops.png", "CamVid study: val mIoU against GFLOPs",
                     machine, note=recipe)] = fig
    return drawn


def recorded_recipe(out: Path) -> str:
    """The recipe line table.md states (the one the finished runs were trained with)."""
    table_file = out / "table.md"
    first = table_file.read_text().splitlines()[0] if table_file.is_file() else ""
    return first if first.startswith("Recipe:") else "Recipe: not recorded (no table.md in the results folder)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--iters", type=int, help="override the configs' schedule.max_iters")
    p.add_argument("--out", default="benchmarks/results/camvid_study")
    p.add_argument("--plot-only", action="store_true",
                   help="only redraw the plots from the result.json files in --out (no training, table.md untouched)")
    p.add_argument("--plot-dir", help="where the plots go [--out]")
    p.add_argument("overrides", nargs="*", help="further config overrides for every run (key=value)")
    args = p.parse_args()

    out = Path(args.out)
    plot_dir = Path(args.plot_dir or out)
    from segadapter.engine import load_config

    cfg = load_config(CONFIGS["adapt-mit-b0"], args.overrides)
    if args.plot_only:
        results = [json.loads(f.read_text()) for f in sorted(out.glob("*/result.json"))]
        if not results:
            raise SystemExit(f"no */result.json in {out}")
        for path in plot(results, tuple(cfg.data.crop_size), recorded_recipe(out), plot_dir):
            print(path)
        return
    out.mkdir(parents=True, exist_ok=True)
    for s in args.seeds:
        for m in args.models:
            train_one(m, s, args.data, out, args.iters, args.overrides)
    # the table shows every finished run in the folder, whichever invocation trained it
    results = [json.loads(f.read_text()) for f in sorted(out.glob("*/result.json"))]
    from segadapter.utils.io import write_text_atomic

    iters = args.iters or cfg.schedule.max_iters
    d = cfg.data
    recipe = (f"from scratch, {iters} iterations, batch {d.batch_size}, crop {d.crop_size[0]}x{d.crop_size[1]} "
              f"from images scaled to {d.scale[0]}x{d.scale[1]}, AdamW lr {cfg.optim.lr:g}, amp {cfg.train.amp}, "
              f"seeds {', '.join(map(str, sorted({r['seed'] for r in results})))}")
    text = table(results, tuple(d.crop_size), recipe)
    write_text_atomic(out / "table.md", text + "\n")
    print(text)
    for path in plot(results, tuple(d.crop_size), f"Recipe: {recipe}", plot_dir):
        print(path)


if __name__ == "__main__":
    main()
