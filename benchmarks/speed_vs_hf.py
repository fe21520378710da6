"""Speed of segadapter's Segformer family against Hugging Face transformers, in one run.

Both sides get the same weights (a random HF model saved in HF's own format and loaded into ours
through the HF checkpoint importer). Every contender (model x precision) lives in its own worker
process, and the parent times them round-robin (A B C, B C A, ...): one runs at a time, a slow
spell of a shared machine hits all alike, and each keeps its own heap. A forward's turn is three
calls back to back, of which the last is timed: the latency of a steady inference loop, not of a
first call into caches the other workers just evicted. The report gives medians over the rounds,
and each worker's peak memory: its high-water RSS over the runs (VmHWM, reset after loading)
minus its RSS before them - what the forward itself needs.

The whole comparison runs twice: with glibc's default allocator settings, and with both sides
under the settings `segadapter` applies in its CLI (`segadapter.utils.malloc`), so the model code
is compared on equal terms either way. Prints a markdown report; `--json FILE` keeps the raw numbers.

    python benchmarks/speed_vs_hf.py            # full report (~16 min on 2 cores)
    python benchmarks/speed_vs_hf.py --quick    # fewer rounds
    python benchmarks/speed_vs_hf.py --plot-only --json benchmarks/results/speed_vs_hf/raw.json --plot-dir DIR

With `--json`, the run also records the machine and draws speed-vs-transformers.png beside the
JSON (or in `--plot-dir`): HF fp32 time / ours per model and input size, per precision, one panel
per allocator setting. `--plot-only` redraws it from an existing `--json` file, measuring nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import worker_process  # benchmarks/ is on sys.path when a script runs
from worker_process import serve

SIZES = {"512x512": (512, 512), "480x360": (360, 480)}  # (H, W)
HF_CONFIGS = {
    "b0": dict(hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256, depths=[2, 2, 2, 2]),
    "b1": dict(hidden_sizes=[64, 128, 320, 512], decoder_hidden_size=256, depths=[2, 2, 2, 2]),
}
NUM_CLASSES = 150
TRAIN_BATCH, TRAIN_SIZE = 2, (512, 512)
FORWARD_BURST = 3  # forwards per turn, the last one timed (a training step is long enough alone)


# ----------------------------------------------------------------------------- child side
def _load(contender: str, hf_dir: str):
    """`hf-b0`, `ours-b0`, `adapt-b0`, ... -> a model whose call maps images to logits."""
    import torch

    side, variant = contender.split("-")
    if side == "hf":
        from transformers import SegformerForSemanticSegmentation

        return SegformerForSemanticSegmentation.from_pretrained(hf_dir, attn_implementation="sdpa").eval()
    import segadapter

    if side == "adapt":  # no HF counterpart: random weights, same cost
        torch.manual_seed(0)
        return segadapter.create_model(f"adapt-mit-{variant}", num_classes=NUM_CLASSES).eval()
    return segadapter.create_model(f"segformer-{variant}", num_classes=NUM_CLASSES, pretrained=hf_dir,
                                   layer_norm_eps=1e-5).eval()


def _forward_fn(contender: str, model, x, precision: str):
    import torch

    compiled = precision.endswith("+compile")  # ours only: `--compile` of segadapter eval/predict
    if compiled:
        from segadapter.utils.compile import compile_for_inference

        model = compile_for_inference(model)
    call = (lambda: model(pixel_values=x).logits) if contender.startswith("hf") else (lambda: model(x))
    bf16 = precision.startswith("bf16")

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return call()
    if compiled:
        run()  # compiles here, before the timed rounds
    return run


def _train_fn(contender: str, model, x, labels):
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    hf = contender.startswith("hf")

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(pixel_values=x, labels=labels) if hf else model(x, labels=labels)
        (out.loss if hf else out["loss"]).backward()
        opt.step()
    return step




def _build(spec: dict):
    """The callable a worker times: a forward, a training step or a matmul."""
    import torch

    torch.manual_seed(0)
    kind = spec["kind"]
    if kind == "matmul":
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["precision"]]
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        return lambda: a @ b
    contender = spec["contender"]
    model = _load(contender, spec["hf_dirs"][contender.split("-")[1]])
    if kind == "forward":
        return _forward_fn(contender, model, torch.randn(1, 3, *spec["size"]), spec["precision"])
    x = torch.randn(TRAIN_BATCH, 3, *TRAIN_SIZE)
    return _train_fn(contender, model, x, torch.randint(0, NUM_CLASSES, (TRAIN_BATCH, *TRAIN_SIZE)))


def worker(spec: dict) -> None:
    serve(lambda: _build(spec))


def parity(case: dict) -> dict:
    import torch

    x = torch.randn(1, 3, *case["size"])
    variant = case["variant"]
    hf, ours = (_load(f"{side}-{variant}", case["hf_dirs"][variant]) for side in ("hf", "ours"))
    with torch.inference_mode():
        return {"max_abs_diff": float((ours(x) - hf(pixel_values=x).logits).abs().max())}


# ----------------------------------------------------------------------------- parent side
def interleaved(specs: dict[str, dict], rounds: int, warmup: int, env: dict, burst: int = 1) -> dict:
    return worker_process.interleaved(__file__, specs, rounds, warmup, env, burst)


def run_child(case: dict, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_hf_dirs(root: Path) -> dict[str, str]:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    dirs = {}
    for variant, cfg in HF_CONFIGS.items():
        torch.manual_seed(0)
        model = SegformerForSemanticSegmentation(SegformerConfig(num_labels=NUM_CLASSES, **cfg)).eval()
        bn = model.decode_head.batch_norm  # non-trivial BN statistics, as in a trained model
        with torch.no_grad():
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
        dirs[variant] = str(root / variant)
        model.save_pretrained(dirs[variant])
    return dirs


def model_gflops(name: str, size, executed: bool = False) -> float:
    from segadapter.analysis.flops import complexity_of

    return complexity_of(name, NUM_CLASSES, size, executed=executed)["gflops"]


MALLOC_MODES = ("default", "tuned")


def measure(rounds: int, dirs: dict, malloc: str) -> dict:
    """One full comparison, every worker under the same allocator settings."""
    import torch

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    from segadapter.utils import malloc as malloc_settings

    env.update(malloc_settings.environment() if malloc == "tuned" else {}, SEGADAPTER_TUNE_MALLOC="0")
    raw: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": rounds, "malloc": malloc}
    mm = interleaved({p: dict(kind="matmul", precision=p) for p in ("fp32", "bf16")}, rounds, 2, env)
    raw["matmul_peak_gflops"] = {p: 2 * 2048 ** 3 / (r["best_ms"] / 1e3) / 1e9 for p, r in mm.items()}
    for size_name, size in SIZES.items():
        for variant in ("b0", "b1"):
            contenders = [(f"hf-{variant}", "fp32"), (f"ours-{variant}", "fp32"), (f"ours-{variant}", "bf16")]
            if variant == "b0":
                contenders += [("ours-b0", "bf16+compile"), ("adapt-b0", "fp32"), ("adapt-b0", "bf16")]
            specs = {f"{c}/{p}": dict(kind="forward", contender=c, precision=p, size=size, hf_dirs=dirs)
                     for c, p in contenders}
            result = {"contenders": interleaved(specs, rounds, 2, env, burst=FORWARD_BURST)}
            result.update(run_child(dict(kind="parity", variant=variant, size=size, hf_dirs=dirs), env))
            raw[f"forward/{variant}/{size_name}"] = result
    specs = {c: dict(kind="train", contender=c, hf_dirs=dirs) for c in ("hf-b0", "ours-b0", "adapt-b0")}
    raw["train"] = interleaved(specs, max(3, rounds // 2), 1, env)
    models = ("segformer-b0", "segformer-b1", "adapt-mit-b0")
    raw["gflops"] = {f"{m}/{s}": model_gflops(m, size) for m in models for s, size in SIZES.items()}
    raw["gflops_executed"] = {f"{m}/{s}": model_gflops(m, size, True) for m in models for s, size in SIZES.items()}
    return raw


def report(raw: dict) -> str:
    peak = raw["matmul_peak_gflops"]
    title = {"default": "glibc default allocator settings", "tuned": "allocator tuned as segadapter's CLI does"}
    lines = [f"## {title[raw['malloc']]} (both sides)", "",
             f"CPU, {raw['threads']} threads, torch {raw['torch']}, {raw['rounds']} interleaved rounds; "
             f"matmul peak (2048^2, best round) fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s.", "",
             "| model | input (WxH) | HF fp32 ms | ours fp32 ms | HF / ours | ours bf16 ms | HF fp32 / ours bf16 "
             "| max abs logit diff | % of peak: HF / ours fp32 / ours bf16 | forward memory MB: HF / ours fp32 / bf16 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def pct(model, size_name, ms, prec):
        return f"{100 * 2 * raw['gflops'][f'{model}/{size_name}'] / (ms / 1e3) / peak[prec]:.0f}%"

    for size_name in SIZES:
        for variant in ("b0", "b1"):
            r = raw[f"forward/{variant}/{size_name}"]
            c = r["contenders"]
            t = {k: v["median_ms"] for k, v in c.items()}
            mem = {k: v["peak_extra_mb"] for k, v in c.items()}
            hf, o, b = t[f"hf-{variant}/fp32"], t[f"ours-{variant}/fp32"], t[f"ours-{variant}/bf16"]
            m = f"segformer-{variant}"
            lines.append(
                f"| {m} | {size_name} | {hf:.1f} | {o:.1f} | {hf / o:.2f}x | {b:.1f} | {hf / b:.2f}x "
                f"| {r['max_abs_diff']:.1e} | {pct(m, size_name, hf, 'fp32')} / {pct(m, size_name, o, 'fp32')} "
                f"/ {pct(m, size_name, b, 'bf16')} | {mem[f'hf-{variant}/fp32']:.0f} / "
                f"{mem[f'ours-{variant}/fp32']:.0f} / {mem[f'ours-{variant}/bf16']:.0f} |")
            if variant == "b0":
                bc = t["ours-b0/bf16+compile"]
                lines.append(f"| segformer-b0, `--compile` | {size_name} | - | - | - | {bc:.1f} | {hf / bc:.2f}x | - "
                             f"| - / - / {pct(m, size_name, bc, 'bf16')} | - / - / {mem['ours-b0/bf16+compile']:.0f} |")
                a, ab = t["adapt-b0/fp32"], t["adapt-b0/bf16"]
                lines.append(
                    f"| adapt-mit-b0 | {size_name} | - | {a:.1f} | - | {ab:.1f} | {hf / ab:.2f}x | - "
                    f"| - / {pct('adapt-mit-b0', size_name, a, 'fp32')} / {pct('adapt-mit-b0', size_name, ab, 'bf16')} "
                    f"| - / {mem['adapt-b0/fp32']:.0f} / {mem['adapt-b0/bf16']:.0f} |")
    lines.append("")
    for size_name in SIZES:
        t = {k: v["median_ms"] for k, v in raw[f"forward/b0/{size_name}"]["contenders"].items()}
        g, e = raw["gflops"], raw["gflops_executed"]
        lines.append(f"- adapt-mit-b0 / segformer-b0 at {size_name}: time fp32 "
                     f"{t['adapt-b0/fp32'] / t['ours-b0/fp32']:.2f}x, bf16 {t['adapt-b0/bf16'] / t['ours-b0/bf16']:.2f}x; "
                     f"FLOPs ratio {g[f'adapt-mit-b0/{size_name}'] / g[f'segformer-b0/{size_name}']:.2f}x as published, "
                     f"{e[f'adapt-mit-b0/{size_name}'] / e[f'segformer-b0/{size_name}']:.2f}x as executed "
                     f"(`segadapter flops --executed`)")
    t = {k: v["median_ms"] for k, v in raw["train"].items()}
    lines.append(f"- training step (batch {TRAIN_BATCH}, {TRAIN_SIZE[1]}x{TRAIN_SIZE[0]}, {NUM_CLASSES} classes, fp32, "
                 f"AdamW): HF segformer-b0 {t['hf-b0']:.0f} ms, ours {t['ours-b0']:.0f} ms "
                 f"(HF / ours {t['hf-b0'] / t['ours-b0']:.2f}x); ours adapt-mit-b0 {t['adapt-b0']:.0f} ms")
    return "\n".join(lines)


# raw.json files from before the "machine" key; what the docs page says of their machine
MACHINE_NOT_RECORDED = ("not recorded in the JSON; docs/benchmarks/speed-vs-transformers.md: a 2-core CPU, ISA not "
                        "stated. The run's 2048^2 matmul peaks, fp32 {fp32} / bf16 {bf16} GFLOP/s, point to native "
                        "bf16 without AMX (emulated bf16 runs ~10x slower than fp32; the page's AMX machine reached "
                        "~2.5 TFLOP/s bf16): inferred, not recorded")
PLOT_FILE = "speed-vs-transformers.png"


def plot(runs: list[dict], plot_dir: Path) -> dict:
    """speed-vs-transformers.png in plot_dir: HF fp32 time / ours, per model/size and precision,
    one panel per allocator setting; {path: figure}."""
    import plots

    groups = [(variant, size) for size in SIZES for variant in ("b0", "b1")]
    labels = [f"{v.upper()}\n{size}" for v, size in groups] + ["B0 train\nstep"]
    fig, axes = plots.figure(4.2 * len(runs), 4.2, 1, len(runs), sharey=True)
    axes = [axes] if len(runs) == 1 else list(axes)
    machines = []
    for ax, raw in zip(axes, runs):
        series = {"ours fp32": [], "ours bf16": [], "ours bf16 + compile": []}
        for variant, size in groups:
            t = {k: v["median_ms"] for k, v in raw[f"forward/{variant}/{size}"]["contenders"].items()}
            hf = t[f"hf-{variant}/fp32"]
            for name, key in (("ours fp32", "fp32"), ("ours bf16", "bf16"), ("ours bf16 + compile", "bf16+compile")):
                ours = t.get(f"ours-{variant}/{key}")
                series[name].append(None if ours is None else hf / ours)
        train = {k: v["median_ms"] for k, v in raw["train"].items()}
        series["ours fp32"].append(train["hf-b0"] / train["ours-b0"])  # the step is fp32 only
        series["ours bf16"].append(None)
        series["ours bf16 + compile"].append(None)
        plots.grouped_bars(ax, labels, series, "HF fp32 time / ours (x faster)", reference=1.0, value_format=".2f",
                           legend=ax is axes[0])
        ax.set_title({"default": "glibc default allocator (both sides)",
                      "tuned": "allocator tuned as our CLI does (both sides)"}.get(raw["malloc"], raw["malloc"]),
                     fontsize=9)
        ax.set_xlabel("Segformer variant, input (WxH)", fontsize=8)
        machines.append(f"{raw.get('machine')}; {raw['threads']} threads, torch {raw['torch']}")
    if any(r.get("machine") is None for r in runs):
        # one sentence for the runs of the file: the peaks as a range over them
        peaks = {p: sorted(r["matmul_peak_gflops"][p] for r in runs) for p in ("fp32", "bf16")}
        text = {p: f"{v[0]:.0f}" if round(v[0]) == round(v[-1]) else f"{v[0]:.0f}-{v[-1]:.0f}"
                for p, v in peaks.items()}
        machines = [f"{MACHINE_NOT_RECORDED.format(**text)}; {r['threads']} threads, torch {r['torch']}" for r in runs]
    machine = " | ".join(dict.fromkeys(machines))
    rounds = ", ".join(sorted({str(r["rounds"]) for r in runs}))
    note = (f"Batch 1 forwards, {NUM_CLASSES} classes, same weights on both sides; medians of {rounds} interleaved "
            f"rounds. Train step: batch {TRAIN_BATCH}, {TRAIN_SIZE[1]}x{TRAIN_SIZE[0]}, fp32, AdamW. "
            "Dashed line: as fast as transformers.")
    path = plots.save(fig, plot_dir / PLOT_FILE, "segadapter's Segformer against transformers: speed ratio per "
                      "precision", machine, note=note)
    return {path: fig}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    parser.add_argument("--malloc", nargs="+", choices=MALLOC_MODES, default=list(MALLOC_MODES),
                        help="allocator settings to compare under [both]")
    parser.add_argument("--json", help="also write the raw numbers here (and the plot beside them)")
    parser.add_argument("--plot-only", action="store_true",
                        help="only redraw the plot from the existing --json file (measures nothing)")
    parser.add_argument("--plot-dir", help="where the plot goes [the --json file's folder]")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.child:
        print(json.dumps(parity(json.loads(args.child))))
        return
    if args.json and not args.plot_only:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the timing
            parser.error(problem)
    if args.plot_only:
        if not args.json:
            parser.error("--plot-only redraws from a --json file")
        for path in plot(json.loads(Path(args.json).read_text()), Path(args.plot_dir or Path(args.json).parent)):
            print(path)
        return
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = make_hf_dirs(Path(tmp))
        for malloc in args.malloc:
            runs.append(measure(5 if args.quick else 15, dirs, malloc))
            print(report(runs[-1]) + "\n", flush=True)
    if args.json or args.plot_dir:
        from plots import this_machine

        machine = this_machine()  # after the timing: the parent imports nothing more while workers run
        for raw in runs:
            raw["machine"] = machine
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, runs)
    if args.json or args.plot_dir:
        for path in plot(runs, Path(args.plot_dir or Path(args.json).parent)):
            print(path)


if __name__ == "__main__":
    main()
