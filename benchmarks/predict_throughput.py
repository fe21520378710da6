"""End-to-end `segadapter predict` throughput against the network's own forward throughput.

On the CamVid val frames (101 PNGs, 480x360), in one process, rounds interleaved:
- forward:  the network alone on the already-preprocessed frames, in batches of --batch-size
            (`model(x)` under inference mode, same autocast): the ceiling.
- network+: the same plus upsampling the logits to 480x360 and the argmax (`inference`).
- predict:  `Inferencer.save` on the files, as `segadapter predict` runs it (decode, resize,
            normalise, network, argmax, overlay, PNG encode + write; model already loaded).
- command:  the whole `segadapter predict RUN FRAMES --out DIR` command, model loading included.
Images/s are medians over rounds; the target is predict >= 80% of forward.

The model is --run (a model or training-run folder) or, by default, a randomly initialised
--model with 11 classes and the CamVid CPU recipe's preprocessing (fit in 320x240): speed does
not depend on the weights.

    python benchmarks/predict_throughput.py --data ../shared/data/camvid [--amp bf16] [--json FILE]
    python benchmarks/predict_throughput.py --overlay-format jpg   # predict --overlay-format jpg
    python benchmarks/predict_throughput.py --quick      # 8 frames, 1 round: a smoke test
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/camvid"), help="CamVid root (uses val/)")
    p.add_argument("--run", help="model or training-run folder [a random --model]")
    p.add_argument("--model", default="adapt-mit-b0", help="registered model for the random stand-in")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="decoding threads and as many writing threads [2]")
    p.add_argument("--overlay-format", choices=["png", "jpg"], default="png", help="predict's overlay files [png]")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="8 frames, 1 round")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args()

    import torch

    import segadapter
    from segadapter.cli.main import main as cli
    from segadapter.evaluation import inference
    from segadapter.evaluation.inference import _forward
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
    if args.json:
        Path(args.json).write_text(json.dumps({"frames": n, "rates": rates, "seconds": times, "ratio": ratio,
                                               "args": vars(args), "device": device}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
