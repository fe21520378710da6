"""End-to-end `segadapter predict` throughput against the network's own forward throughput.

On the CamVid val frames (101 PNGs, 480x360), in one process, rounds interleaved:
- forward:  the network alone on the already-preprocessed frames, in batches of --batch-size
            (`model(x)` under inference mode, same autocast): the ceiling.
- network+: the same plus upsampling the logits to 480x360 and the argmax (`inference`).
- predict:  `Inferencer.save` on the files, as `segadapter predict` runs it (decode, resize,
            normalise, network, argmax, overlay, PNG encode + write; model already loaded).
- command:  the whole `segadapter predict RUN FRAMES --out DIR` command, model loading included.
Images/s are medians over rounds; the target is predict >= 80% of forward.

On a CPU the network and the image work share the same cores, so the script also times each
stage of one frame on one thread (core-ms) and prints the ceiling that sharing sets:
forward core-ms / (network core-ms + image work core-ms), the ratio even a perfect pipeline could
reach; the network's cost there is the cheaper of its run on all threads and on one thread (a
pipeline could give it one core and the images the rest).

The model is --run (a model or training-run folder) or, by default, a randomly initialised
--model with 11 classes and the CamVid CPU recipe's preprocessing (fit in 320x240): speed does
not depend on the weights.

    python benchmarks/predict_throughput.py --data ../shared/data/camvid [--amp bf16] [--json FILE]
    python benchmarks/predict_throughput.py --overlay-format jpg   # predict --overlay-format jpg
    python benchmarks/predict_throughput.py --quick      # 8 frames, 1 round: a smoke test
    python benchmarks/predict_throughput.py --plot-only benchmarks/results/predict_throughput/*.json --plot-dir DIR

With --json FILE the run also draws predict-throughput.png beside FILE (or in --plot-dir), from
every result JSON in FILE's folder: images/s of each stage per setting, and predict / forward
against the target and the CPU ceiling. `--plot-only JSON ...` redraws it from existing JSON
files (by default those in benchmarks/results/predict_throughput/), measuring nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's segadapter, whatever is installed


def build_model_dir(args, work: Path) -> Path:
    import segadapter
    from segadapter.data.metainfo import CAMVID_CLASSES, CAMVID_PALETTE

    if args.run:
        return Path(args.run)
    folder = work / "model"
    model = segadapter.create_model(args.model, num_classes=11)
    pre = segadapter.Preprocessing(scale=(320, 240), classes=CAMVID_CLASSES, palette=CAMVID_PALETTE)
    model.save_pretrained(folder, preprocessing=pre.to_dict())
    return folder


def stage_costs(frames, images, pre, inf, size, overlay_format: str) -> dict[str, float]:
    """Milliseconds per frame of each image stage of `predict`, on one thread (medians of frames)."""
    import io

    import torch
    from PIL import Image

    from segadapter.data import read_image
    from segadapter.inference.segment import _forward, inference
    from segadapter.inference.visualize import overlay

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        transform = pre.transforms()
        x = transform(images[0])[0][None]
        with torch.inference_mode():
            logits = inf.model(x.to(inf.device))
        class Fixed(torch.nn.Module):  # stands in for the network: only upsampling + argmax are timed
            def forward(self, _):
                return logits

        fixed = Fixed()
        with torch.inference_mode():
            label = inference(fixed, x, out_size=size).argmax(1)[0].to(torch.uint8).numpy()
        blended = overlay(images[0], label, inf.palette)
        fmt = {"png": dict(format="PNG", compress_level=1), "jpg": dict(format="JPEG", quality=90)}[overlay_format]

        def encode(array, **kw):
            Image.fromarray(array).save(io.BytesIO(), **kw)

        def upsample_argmax(_):
            with torch.inference_mode():
                inference(fixed, x, out_size=size).argmax(1)

        jobs = {"decode": lambda f: read_image(f), "resize + normalise": lambda f: transform(images[0]),
                "upsample logits + argmax": upsample_argmax,
                "overlay blend": lambda f: overlay(images[0], label, inf.palette),
                "encode class-id PNG": lambda f: encode(label, format="PNG", compress_level=1),
                f"encode overlay {overlay_format.upper()}": lambda f: encode(blended, **fmt)}
        costs = {}
        with torch.inference_mode():  # the network on one thread: a pipeline could give it one core
            batch = torch.stack([transform(im)[0] for im in images[:4]]).to(inf.device)
            _forward(inf.model, batch, inf.amp_dtype)
            t = time.perf_counter()
            for _ in range(3):
                _forward(inf.model, batch, inf.amp_dtype)
            costs["forward on one thread"] = 1000 * (time.perf_counter() - t) / (3 * len(batch))
        for name, job in jobs.items():
            job(frames[0])
            times = []
            for f in frames[:20]:
                t = time.perf_counter()
                job(f)
                times.append(time.perf_counter() - t)
            costs[name] = 1000 * statistics.median(times)
        return costs
    finally:
        torch.set_num_threads(threads)


PLOT_FILE = "predict-throughput.png"
RESULTS = ROOT / "benchmarks" / "results" / "predict_throughput"
# JSON files that do not record the machine; what the docs page says of the committed ones
MACHINE_NOT_RECORDED = "not recorded in the JSON; docs/benchmarks/predict-throughput.md: 2 cores, AVX-512, no AMX"
TARGET = 0.80


def plot(files: list[Path], plot_dir: Path) -> dict:
    """predict-throughput.png in plot_dir from result JSONs (files without "rates" are skipped):
    images/s per stage and setting, and predict / forward with the target and the CPU ceiling;
    {path: figure}."""
    import plots

    runs = []
    for f in files:
        try:
            r = json.loads(Path(f).read_text())
        except (OSError, ValueError):
            continue  # another file beside the results
        if isinstance(r, dict) and "rates" in r and "args" in r:
            runs.append(r)
    if not runs:
        raise SystemExit(f"no predict_throughput result among {', '.join(map(str, files))}")
    runs.sort(key=lambda r: (r["args"].get("run") or r["args"]["model"], r["args"]["overlay_format"] != "png"))

    def varies(key):
        return len({str(r["args"].get(key)) for r in runs}) > 1
    groups = []
    for r in runs:
        a = r["args"]
        label = [Path(a["run"]).name if a.get("run") else a["model"], f"{a['overlay_format'].upper()} overlays"]
        label += [f"amp {a['amp']}"] if varies("amp") else []
        label += [f"batch {a['batch_size']}"] if varies("batch_size") else []
        groups.append("\n".join(label))
    fig, (left, right) = plots.figure(8, 7.5, 2, 1)
    stages = {"forward": "forward alone", "network+": "network + upsample + argmax", "predict": "predict pipeline",
              "command": "whole predict command"}
    plots.grouped_bars(left, groups, {label: [r["rates"][k] for r in runs] for k, label in stages.items()},
                       "images/s", value_format=".1f", legend="upper right")
    left.set_title("throughput of each stage", fontsize=9)
    drawn = plots.grouped_bars(right, groups, {"predict / forward": [r["ratio"] for r in runs]}, "predict / forward",
                               reference=TARGET, value_format=".2f", colors={"predict / forward": "#4292c6"},
                               legend=False)
    ceilings = [(x, r["cpu_ceiling"]) for (x, _), r in zip(drawn["predict / forward"], runs) if r.get("cpu_ceiling")]
    if ceilings:  # what a perfect pipeline could reach with the network and the images on the same cores
        w = 0.5 * plots.bar_width(1)
        right.hlines([c for _, c in ceilings], [x - w for x, _ in ceilings], [x + w for x, _ in ceilings],
                     color="black", linewidth=2, zorder=4, gid="cpu ceiling", label="ceiling on shared CPU cores")
        right.legend(fontsize=7, frameon=False, loc="upper left")
    right.set_ylim(0, 1.15)
    right.set_title(f"predict / forward (dashed: the {TARGET:.2f} target)", fontsize=9)
    machines = [f"{r.get('machine') or MACHINE_NOT_RECORDED}; device {r.get('device', '?')}"
                + (f"; {r['date']}" if r.get("date") else "") for r in runs]
    frames = ", ".join(sorted({str(r["frames"]) for r in runs}))
    rounds = ", ".join(sorted({str(r["args"]["rounds"]) for r in runs}))
    weights = "random weights" if not any(r["args"].get("run") for r in runs) else "trained or random weights"
    note = (f"{frames} CamVid val frames (480x360), {weights}, medians of {rounds} rounds; "
            + ", ".join(sorted({f"amp {r['args']['amp']}, batch {r['args']['batch_size']}" for r in runs})) + ".")
    path = plots.save(fig, plot_dir / PLOT_FILE, "segadapter predict: throughput against the network alone",
                      " | ".join(dict.fromkeys(machines)), note=note)
    return {path: fig}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/camvid"), help="CamVid root (uses val/)")
    p.add_argument("--run", help="model or training-run folder [a random --model]")
    p.add_argument("--model", default="adapt-mit-b0", help="registered model for the random stand-in")
    p.add_argument("--amp", choices=["auto", "none", "bf16", "fp16"], default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="decoding threads and as many writing threads [2]")
    p.add_argument("--overlay-format", choices=["png", "jpg"], default="png", help="predict's overlay files [png]")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="8 frames, 1 round")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON (and the plot beside it)")
    p.add_argument("--plot-only", nargs="*", metavar="JSON",
                   help="only redraw the plot from these result JSONs [those in benchmarks/results/predict_throughput]")
    p.add_argument("--plot-dir", help=f"where {PLOT_FILE} goes [the JSON's folder]")
    args = p.parse_args()
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the timing
            p.error(problem)
    if args.plot_only is not None:
        files = [Path(f) for f in args.plot_only] or sorted(RESULTS.glob("*.json"))
        for path in plot(files, Path(args.plot_dir or files[0].parent)):
            print(path)
        return 0

    import torch

    import segadapter
    from segadapter.cli.main import main as cli
    from segadapter.evaluation import inference
    from segadapter.inference.segment import _forward
    from segadapter.utils.malloc import tune_malloc

    tune_malloc()  # as the CLI does
    frames = sorted((Path(args.data) / "val").glob("*.png"))
    if not frames:
        print(f"no frames in {args.data}/val", file=sys.stderr)
        return 2
    if args.quick:
        frames, args.rounds = frames[:8], 1
    work = Path(tempfile.mkdtemp(prefix="predict-throughput-"))
    folder = build_model_dir(args, work)
    inf = segadapter.Inferencer(folder, device=args.device, amp=None if args.amp == "none" else args.amp,
                                batch_size=args.batch_size, workers=args.workers)
    pre, dev, amp = inf.preprocessing, inf.device, inf.amp_dtype
    from segadapter.data import read_image

    images = [read_image(f) for f in frames]
    tensors = [pre(im) for im in images]
    batches = [torch.stack(tensors[i:i + args.batch_size]).to(dev) for i in range(0, len(tensors), args.batch_size)]
    size = images[0].shape[:2]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    @torch.inference_mode()
    def forward():
        for x in batches:
            _forward(inf.model, x, amp)
        sync()

    @torch.inference_mode()
    def network_plus():
        for x in batches:
            inference(inf.model, x, out_size=size, amp_dtype=amp, **pre.inference_kwargs()).argmax(1).cpu()
        sync()

    def predict():
        inf.save(frames, work / "out", overlay_format=args.overlay_format)

    def command():
        argv = ["predict", str(folder), *map(str, frames), "--out", str(work / "cmd"), "--no-progress",
                "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--amp", args.amp,
                "--overlay-format", args.overlay_format]
        if args.device:
            argv += ["--device", args.device]
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(argv) == 0

    stages = stage_costs(frames, images, pre, inf, size, args.overlay_format) if dev.type == "cpu" else {}
    contenders = {"forward": forward, "network+": network_plus, "predict": predict, "command": command}
    forward()  # warm-up: first-call allocations, kernels
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    n = len(frames)
    rates = {k: n / statistics.median(v) for k, v in times.items()}
    ratio = rates["predict"] / rates["forward"]
    device = str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                         f" ({torch.get_num_threads()} threads)")
    print(f"{n} CamVid val frames {size[1]}x{size[0]} -> network input {tuple(tensors[0].shape[1:][::-1])} (WxH), "
          f"model {'--run ' + args.run if args.run else args.model}, amp {args.amp}, batch {args.batch_size}, "
          f"overlays {args.overlay_format}, "
          f"device {device}, {args.rounds} round(s), medians")
    print("| stage | images/s | % of forward |\n| --- | --- | --- |")
    for k, r in rates.items():
        print(f"| {k} | {r:.1f} | {100 * r / rates['forward']:.0f}% |")
    print(f"predict / forward = {ratio:.2f} (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
    ceiling = one_thread = None
    if stages:
        forward_core_ms = 1000 * torch.get_num_threads() / rates["forward"]
        one_thread = stages.pop("forward on one thread")
        image_core_ms = sum(stages.values())
        # every frame needs the network's core time (the cheaper way of running it) plus the image work
        network_core_ms = min(forward_core_ms, one_thread)
        ceiling = forward_core_ms / (network_core_ms + image_core_ms)
        print(f"\nper frame, one thread (core-ms): forward {forward_core_ms:.1f} "
              f"({torch.get_num_threads()} threads x its time per frame), {one_thread:.1f} on one thread")
        print("| image stage | core-ms / frame |\n| --- | --- |")
        for k, v in stages.items():
            print(f"| {k} | {v:.2f} |")
        print(f"| total | {image_core_ms:.2f} |")
        print(f"ceiling with these cores shared by network and images: {forward_core_ms:.1f} / "
              f"({network_core_ms:.1f} + {image_core_ms:.1f}) = {ceiling:.2f}; "
              f"predict reaches {ratio / ceiling:.0%} of it")
    if args.json:
        from plots import this_machine

        from segadapter.utils.io import write_json_atomic


        write_json_atomic(args.json, {"frames": n, "rates": rates, "seconds": times, "ratio": ratio,
                                               "image_stages_core_ms": stages, "cpu_ceiling": ceiling,
                                               "forward_one_thread_core_ms": one_thread,
                                               "args": vars(args), "device": device, "machine": this_machine(),
                                               "date": time.strftime("%Y-%m-%d")})
        # this run and the others kept beside it
        for path in plot(sorted(Path(args.json).parent.glob("*.json")), Path(args.plot_dir or Path(args.json).parent)):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
