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
    result = {"model": model, "seed": seed, "mIoU": metrics["mIoU"], "train_seconds": seconds,
              "iters": cfg.schedule.max_iters, "resumed": resume}
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--iters", type=int, help="override the configs' schedule.max_iters")
    p.add_argument("--out", default="benchmarks/results/camvid_study")
    p.add_argument("overrides", nargs="*", help="further config overrides for every run (key=value)")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for s in args.seeds:
        for m in args.models:
            train_one(m, s, args.data, out, args.iters, args.overrides)
    # the table shows every finished run in the folder, whichever invocation trained it
    results = [json.loads(f.read_text()) for f in sorted(out.glob("*/result.json"))]
    from segadapter.engine import load_config
    from segadapter.utils.io import write_text_atomic

    cfg = load_config(CONFIGS["adapt-mit-b0"], args.overrides)
    iters = args.iters or cfg.schedule.max_iters
    d = cfg.data
    recipe = (f"from scratch, {iters} iterations, batch {d.batch_size}, crop {d.crop_size[0]}x{d.crop_size[1]} "
              f"from images scaled to {d.scale[0]}x{d.scale[1]}, AdamW lr {cfg.optim.lr:g}, amp {cfg.train.amp}, "
              f"seeds {', '.join(map(str, sorted({r['seed'] for r in results})))}")
    text = table(results, tuple(d.crop_size), recipe)
    write_text_atomic(out / "table.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
