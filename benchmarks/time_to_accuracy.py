"""Time to accuracy on CamVid, and the training step against Hugging Face `transformers`.

1. Step comparison (all of `--step-only`): one training step - batch 4, 192x256 crops, 11 classes,
   AdamW, fp32 - of our `segformer-b0` (eager, and with `train.compile`'s units compiled) and of
   `transformers`' SegformerForSemanticSegmentation b0 (its own upsampled cross-entropy), each
   contender in its own process, timed in interleaved rounds, under glibc's default allocator
   and under the tuned one (`segadapter.utils.malloc`). Also our `adapt-mit-b0`, and both of ours
   in the precision `amp: auto` picks here.
2. Time to accuracy: `adapt-mit-b0` and `segformer-b0` trained with the CamVid study's recipe
   (the shipped `*_camvid-cpu` configs, `amp: auto`), evaluated every 100 iterations; the
   wall-clock minutes of training (evaluation excluded, reported apart) until val mIoU first
   reaches 35 and 40. A run stops once it reached the last target.

The machine line says the CPU, its ISA level as PyTorch runs it and what `amp: auto` picked:
run it once as is and once under `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`.
The last line is `train step vs transformers: default=<x> tuned=<x> compiled=<x>` (their step
time / ours, fp32; `compiled`: ours compiled against theirs, both with the tuned allocator).

    python benchmarks/time_to_accuracy.py --data ../shared/data/camvid --step-only
    python benchmarks/time_to_accuracy.py --data ../shared/data/camvid [--models adapt-mit-b0] [--json FILE]
    python benchmarks/time_to_accuracy.py --plot-only --json FILE [--plot-dir DIR]

With --json, the run also draws time-to-accuracy.png beside the JSON (or in --plot-dir): val mIoU
against minutes of training with the targets, and the step times; `--plot-only` redraws it from
an existing --json file, measuring nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import worker_process
from speed_vs_hf import HF_CONFIGS

CLASSES, BATCH, CROP = 11, 4, (192, 256)
CONFIGS = {"adapt-mit-b0": "adapt-mit_camvid-cpu", "segformer-b0": "segformer_camvid-cpu"}
TARGETS = (35.0, 40.0)


# ----------------------------------------------------------------------------- step comparison
def _step_fn(spec: dict):
    import torch

    torch.manual_seed(0)
    x, y = torch.randn(BATCH, 3, *CROP), torch.randint(0, CLASSES, (BATCH, *CROP))
    if spec["who"] == "hf":
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        model = SegformerForSemanticSegmentation(SegformerConfig(num_labels=CLASSES, **HF_CONFIGS["b0"])).train()
        opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.01)
        forward = lambda: model(pixel_values=x, labels=y).loss  # noqa: E731
        dtype = None
    else:
        import segadapter
        from segadapter.engine.config import OptimConfig
        from segadapter.engine.optim import build_optimizer
        from segadapter.runtime.amp import choose_precision
        from segadapter.utils.compile import compile_for_training

        model = segadapter.create_model(spec["model"], num_classes=CLASSES).train()
        opt = build_optimizer(model, OptimConfig(lr=6e-4))
        if spec.get("compile"):
            compile_for_training(model, "cpu")
        dtype = choose_precision(spec.get("amp", "none"), "cpu").dtype
        forward = lambda: model(x, labels=y)["loss"]  # noqa: E731

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = forward()
        loss.backward()
        opt.step()
    return step


def worker(spec: dict) -> None:
    worker_process.serve(lambda: _step_fn(spec))


def step_comparison(rounds: int) -> dict[str, dict[str, float]]:
    from segadapter.utils import malloc

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base["SEGADAPTER_TUNE_MALLOC"] = "0"  # the allocator is what the environment below says, nothing else
    specs = {"hf": {"who": "hf"}, "ours": {"who": "ours", "model": "segformer-b0"}}
    out = {}
    for alloc in ("default", "tuned"):
        env = {**base, **(malloc.environment() if alloc == "tuned" else {})}
        these = dict(specs)
        if alloc == "tuned":
            these |= {"ours-compiled": {**specs["ours"], "compile": True},
                      "adapt": {"who": "ours", "model": "adapt-mit-b0"},
                      "ours-auto": {**specs["ours"], "amp": "auto"},
                      "adapt-auto": {"who": "ours", "model": "adapt-mit-b0", "amp": "auto"}}
        # two warm-up turns: a compiled contender compiles in its first
        result = worker_process.interleaved(__file__, these, rounds, warmup=2, env=env)
        out |= {f"{name}/{alloc}": r["median_ms"] for name, r in result.items()}
    return out


# ----------------------------------------------------------------------------- time to accuracy
def time_to_accuracy(model: str, data: str, work: Path, seed: int, overrides: list[str] = ()) -> dict:
    from segadapter.engine import load_config
    from segadapter.engine.trainer import Trainer
    from segadapter.utils.malloc import tune_malloc

    cfg = load_config(CONFIGS[model], [f"data.root={data}", f"train.seed={seed}", "train.progress=false",
                                       "train.eval_interval=100", "train.checkpoint_interval=0",
                                       "train.tensorboard_images=0", *overrides])
    timeline: list[dict] = []

    class Reached(Exception):
        pass

    class Timed(Trainer):
        """Training clock that stops while validating; the run ends at the last target."""

        def evaluate(self, bar=None):
            paused = time.perf_counter()
            result = super().evaluate(bar)
            eval_s = time.perf_counter() - paused
            train_s = paused - started - sum(t["eval_s"] for t in timeline)
            timeline.append({"iter": self.iteration, "mIoU": result["mIoU"], "train_s": train_s, "eval_s": eval_s})
            if result["mIoU"] >= TARGETS[-1]:
                raise Reached  # nothing left to measure
            return result

    tune_malloc()  # as `segadapter train` does: its runs keep freed memory (utils/malloc.py)
    trainer = Timed(cfg, work / f"{model}_seed{seed}")
    started = time.perf_counter()
    try:
        trainer.fit()
    except Reached:
        pass
    reached = {f"{t:g}": next((p["train_s"] / 60 for p in timeline if p["mIoU"] >= t), None) for t in TARGETS}
    return {"model": model, "seed": seed, "amp": trainer.precision.describe(), "overrides": list(overrides),
            "iters": cfg.schedule.max_iters, "minutes_to": reached,
            "eval_minutes": sum(p["eval_s"] for p in timeline) / 60, "timeline": timeline,
            "best_mIoU": max((p["mIoU"] for p in timeline), default=None)}


def machine() -> str:
    import torch

    from segadapter.runtime.amp import choose_precision
    from segadapter.utils.cpu_isa import cpu_model, describe_isa, onednn_isa_limit

    return (f"{cpu_model()}, {torch.get_num_threads()} threads; CPU flags: {describe_isa()}; PyTorch kernels "
            f"{torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA {onednn_isa_limit() or 'not set'}; "
            f"{choose_precision('auto', 'cpu').describe()}; torch {torch.__version__}")


PLOT_FILE = "time-to-accuracy.png"
STEP_LABELS = {"hf": "transformers b0, fp32", "ours": "ours segformer-b0, fp32",
               "ours-compiled": "ours segformer-b0, fp32, compiled", "adapt": "ours adapt-mit-b0, fp32",
               "ours-auto": "ours segformer-b0, amp auto", "adapt-auto": "ours adapt-mit-b0, amp auto"}


def plot(report: dict, plot_dir: Path) -> dict:
    """time-to-accuracy.png in plot_dir: the mIoU curves (when the report has them) and the step
    times per contender and allocator; {path: figure}."""
    import plots

    curves = report.get("time_to_accuracy") or []
    fig, axes = plots.figure(8, 3.8 * (1 + bool(curves)), 1 + bool(curves), 1)
    axes = list(axes) if curves else [axes]
    if curves:
        ax = axes[0]
        for r in curves:
            line = r["timeline"]
            seed = f" seed {r['seed']}" if "seed" in r else ""
            ax.plot([p["train_s"] / 60 for p in line], [p["mIoU"] for p in line], marker="o", markersize=3,
                    label=f"{r['model']}{seed} ({r['amp'].split(':')[0]})", gid=r["model"] + seed.replace(" ", "_"))
        for t in TARGETS:
            ax.axhline(t, color="0.4", linestyle="--", linewidth=1)
        ax.set_xlabel("minutes of training (evaluation time excluded)")
        ax.set_ylabel("CamVid val mIoU")
        ax.set_title(f"time to {' and '.join(f'{t:g}' for t in TARGETS)} mIoU (dashed)", fontsize=9)
        ax.grid(color="0.9")
        ax.legend(fontsize=7, frameon=False)
    steps = report["step_ms"]
    names = [n for n in STEP_LABELS if any(k.startswith(f"{n}/") for k in steps)]
    plots.grouped_bars(axes[-1], [STEP_LABELS[n].replace(", ", "\n", 1) for n in names],
                       {f"{a} allocator": [steps.get(f"{n}/{a}") for n in names] for a in ("default", "tuned")},
                       "ms per training step (median)", value_format=".0f")
    axes[-1].tick_params(axis="x", labelsize=7)
    axes[-1].set_title(f"training step: batch {BATCH}, {CROP[0]}x{CROP[1]} crops, {CLASSES} classes, AdamW", fontsize=9)
    path = plots.save(fig, plot_dir / PLOT_FILE, "Time to accuracy on CamVid and the training step",
                      report.get("machine", "not recorded in the JSON"))
    return {path: fig}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/camvid", help="CamVid root [../shared/data/camvid]")
    p.add_argument("--step-only", action="store_true", help="only the step comparison (a few minutes)")
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--rounds", type=int, default=5, help="timed rounds of the step comparison [5]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides of the time-to-accuracy runs (a recipe other than the study's, "
                        "e.g. schedule.max_iters=1300 schedule.warmup_iters=65)")
    p.add_argument("--no-step", action="store_true", help="only the time-to-accuracy runs, no step comparison")
    p.add_argument("--work-dir", help="run folders of the time-to-accuracy runs [a temporary folder]")
    p.add_argument("--json", help="also write the results here (and the plot beside them)")
    p.add_argument("--plot-only", action="store_true", help="only redraw the plot from the existing --json file")
    p.add_argument("--plot-dir", help=f"where {PLOT_FILE} goes [the --json file's folder]")
    args = p.parse_args()
    if args.plot_only:
        if not args.json:
            p.error("--plot-only redraws from a --json file")
        for path in plot(json.loads(Path(args.json).read_text()), Path(args.plot_dir or Path(args.json).parent)):
            print(path)
        return 0

    from segadapter.utils.io import unwritable_reason, write_json_atomic

    if args.json and (problem := unwritable_reason(args.json)):  # fail now, not after minutes of training
        p.error(problem)
    print(f"machine: {machine()}", flush=True)
    report: dict = {"machine": machine()}
    if not args.step_only:
        if not (Path(args.data) / "train").is_dir():
            print(f"no CamVid at {args.data}", file=sys.stderr)
            return 2
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="time-to-accuracy-"))
        report["time_to_accuracy"] = []
        print("\n| model | amp | minutes to 35 mIoU | minutes to 40 mIoU | best mIoU seen | evaluation minutes (apart) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for model in args.models:
            r = time_to_accuracy(model, args.data, work, args.seed, args.overrides)
            report["time_to_accuracy"].append(r)
            if args.json:  # each finished run kept, whatever happens to the next
                write_json_atomic(args.json, report)
            fmt = {k: ("not reached" if v is None else f"{v:.1f}") for k, v in r["minutes_to"].items()}
            print(f"| {model} | {r['amp']} | {fmt['35']} | {fmt['40']} | {r['best_mIoU']:.2f} | "
                  f"{r['eval_minutes']:.1f} |", flush=True)
    if args.no_step:
        return 0
    t = step_comparison(args.rounds)
    report["step_ms"] = t
    print(f"\nTraining step, batch {BATCH}, {CROP[0]}x{CROP[1]}, {CLASSES} classes, AdamW (median ms):\n")
    print("| contender | default allocator | tuned allocator |\n| --- | --- | --- |")
    for name, label in (("hf", "transformers Segformer b0, fp32"), ("ours", "ours segformer-b0, fp32"),
                        ("ours-compiled", "ours segformer-b0, fp32, train.compile"),
                        ("adapt", "ours adapt-mit-b0, fp32"), ("ours-auto", "ours segformer-b0, amp auto"),
                        ("adapt-auto", "ours adapt-mit-b0, amp auto")):
        print(f"| {label} | {t.get(f'{name}/default', float('nan')):.0f} | {t[f'{name}/tuned']:.0f} |")
    ratios = {"default": t["hf/default"] / t["ours/default"], "tuned": t["hf/tuned"] / t["ours/tuned"],
              "compiled": t["hf/tuned"] / t["ours-compiled/tuned"]}
    report["ratios"] = ratios
    if args.json:
        write_json_atomic(args.json, report)
        for path in plot(report, Path(args.plot_dir or Path(args.json).parent)):
            print(path)
    print(f"\ncompiled / eager (ours, tuned): {t['ours/tuned'] / t['ours-compiled/tuned']:.2f}x")
    print(f"train step vs transformers: default={ratios['default']:.2f}x tuned={ratios['tuned']:.2f}x "
          f"compiled={ratios['compiled']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
