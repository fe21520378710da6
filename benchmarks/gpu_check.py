"""The GPU part of `benchmarks/gpu_check.sh`: training steps of every model family under fp16 and
bf16 autocast, and inference throughput against Hugging Face `transformers` Segformer, in one
process on one GPU.

- train: per family, one registered model (150 classes, ADE20K's 512x512 crops, batch 4), the
  trainer's own `train_step` (autocast, GradScaler for fp16) with AdamW from the model's parameter
  groups: warm-up steps, then timed steps; ms/step, images/s, peak memory, first and last loss
  (every loss must be finite, and the last below the first: fp16 must not skip every step).
- vs-hf: `segformer-b0/b1` loaded from a random HF checkpoint against the HF model itself, same
  weights: max |logit difference| (fp32) and forward images/s at batch 8, 512x512, in fp32, fp16
  and bf16 autocast, interleaved rounds, medians; ratio ours / HF.

    python benchmarks/gpu_check.py --json gpu_check.json             # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --quick              # dry run of the script here
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's segadapter, whatever is installed

from speed_vs_hf import HF_CONFIGS, NUM_CLASSES, make_hf_dirs  # noqa: E402 (benchmarks/ is on sys.path)

# one registered model per family (its smallest ADE20K variant)
FAMILIES = {
    "segformer": "segformer-b0",
    "segadapter-mit": "adapt-mit-b0",
    "segadapter-convnext": "adapt-convnext-t",
    "convnext": "convnext-t",
    "semask": "semask-mit-b0",
    "segdeformer": "segdeformer-mit-b0",
    "segvit": "segvit-vit-b",
    "san": "san-vit-b16",
}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def train_family(name: str, amp: str, device, size: int, batch: int, warmup: int, steps: int) -> dict:
    """Steps of the trainer's `train_step` on random images and labels; time and memory."""
    import torch

    import segadapter
    from segadapter.engine.config import OptimConfig
    from segadapter.engine.optim import build_optimizer
    from segadapter.engine.step import train_step
    from segadapter.runtime.amp import amp_dtype, grad_scaler

    torch.manual_seed(0)
    kwargs = {"classes": [f"class {i}" for i in range(NUM_CLASSES)]} if name.startswith("san") else \
        {"num_classes": NUM_CLASSES}
    model = segadapter.create_model(name, **kwargs).to(device).train()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4))
    dtype = amp_dtype(amp, device)
    scaler = grad_scaler(device, dtype)
    gen = torch.Generator().manual_seed(0)
    batch_ = {"image": torch.randn(batch, 3, size, size, generator=gen),
              "label": torch.randint(0, NUM_CLASSES, (batch, size, size), generator=gen)}
    losses, times = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        sync(device)
        t = time.perf_counter()
        stats = train_step(model, batch_, optimizer, scaler, device, dtype, grad_clip=None)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
        losses.append(float(stats["loss"]))
    ms = 1000 * statistics.median(times)
    result = {"model": name, "amp": amp, "ms_per_step": ms, "images_per_s": batch / ms * 1000,
              "peak_mb": peak_mb(device), "loss_first": losses[0], "loss_last": losses[-1],
              "finite": all(math.isfinite(v) for v in losses),
              "grad_scale": float(scaler.get_scale()) if scaler.is_enabled() else None}
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def vs_hf(variant: str, hf_dir: str, device, batch: int, size: int, rounds: int,
          precisions: list[str]) -> list[dict]:
    """Our Segformer and HF's with the same weights: logit agreement and forward throughput."""
    import torch
    from transformers import SegformerForSemanticSegmentation

    import segadapter

    hf = SegformerForSemanticSegmentation.from_pretrained(hf_dir).eval().to(device)
    ours = segadapter.create_model(f"segformer-{variant}", num_classes=NUM_CLASSES, pretrained=hf_dir,
                                   layer_norm_eps=1e-5).eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.inference_mode():
        diff = float((ours(x) - hf(pixel_values=x).logits).abs().max())
    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    calls = {"ours": lambda: ours(x), "hf": lambda: hf(pixel_values=x).logits}
    rows = []
    for precision in precisions:
        dtype = dtypes[precision]

        def timed(call, reps: int = 10) -> float:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                call()
                sync(device)
                t = time.perf_counter()
                for _ in range(reps):
                    call()
                sync(device)
            return (time.perf_counter() - t) / reps

        for call in calls.values():  # warm-up: kernels, cudnn autotuning
            timed(call, 3)
        times = {k: [] for k in calls}
        for r in range(rounds):
            for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                times[k].append(timed(calls[k]))
        rate = {k: batch / statistics.median(v) for k, v in times.items()}
        rows.append({"model": f"segformer-{variant}", "precision": precision, "batch": batch, "size": size,
                     "ours_images_per_s": rate["ours"], "hf_images_per_s": rate["hf"],
                     "ratio": rate["ours"] / rate["hf"], "max_abs_logit_diff_fp32": diff})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps: a dry run of the script")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args()
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the checks
            p.error(problem)

    import torch

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        where = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
        amps = ["fp16", "bf16"]
    else:
        where = f"CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"
        amps = ["bf16"]  # fp16 autocast training is a CUDA thing (GradScaler)
    size, batch, warmup, steps = (64, 2, 1, 2) if args.quick else (512, 4, 3, 10)
    print(f"# GPU check: {where}\n")
    report: dict = {"device": where, "train": [], "vs_hf": []}

    print(f"## Training steps: batch {batch}, {size}x{size}, {NUM_CLASSES} classes, AdamW, "
          f"{warmup} warm-up + {steps} timed steps (median)\n")
    print("| family | model | amp | ms / step | images/s | peak MB | loss first -> last | finite | fp16 scale |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ok = True
    for family in args.families:
        for amp in amps:
            try:
                r = train_family(FAMILIES[family], amp, device, size, batch, warmup, steps)
            except Exception as e:  # report and go on: one family's failure must not hide the others
                ok = False
                print(f"| {family} | {FAMILIES[family]} | {amp} | FAILED: {type(e).__name__}: {e} |||||||")
                report["train"].append({"family": family, "amp": amp, "error": f"{type(e).__name__}: {e}"})
                continue
            ok &= r["finite"] and r["loss_last"] < r["loss_first"]  # steps on one batch must lower its loss
            mb = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
            scale = "-" if r["grad_scale"] is None else f"{r['grad_scale']:.0f}"
            print(f"| {family} | {r['model']} | {amp} | {r['ms_per_step']:.1f} | {r['images_per_s']:.1f} | {mb} | "
                  f"{r['loss_first']:.3f} -> {r['loss_last']:.3f} | {r['finite']} | {scale} |", flush=True)
            report["train"].append({"family": family, **r})

    hf_batch, hf_size, rounds = (1, 64, 1) if args.quick else (8, 512, 5)
    precisions = ["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]
    print(f"\n## Inference against transformers Segformer: batch {hf_batch}, {hf_size}x{hf_size}, "
          f"{rounds} interleaved rounds (median)\n")
    print("| model | precision | ours images/s | HF images/s | ours / HF | max abs logit diff (fp32) |")
    print("| --- | --- | --- | --- | --- | --- |")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        hf_dirs = make_hf_dirs(Path(tmp))
        for variant in HF_CONFIGS:
            for r in vs_hf(variant, hf_dirs[variant], device, hf_batch, hf_size, rounds, precisions):
                ok &= r["max_abs_logit_diff_fp32"] < 1e-2
                print(f"| {r['model']} | {r['precision']} | {r['ours_images_per_s']:.1f} | "
                      f"{r['hf_images_per_s']:.1f} | {r['ratio']:.2f} | {r['max_abs_logit_diff_fp32']:.1e} |", flush=True)
                report["vs_hf"].append(r)
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, report)
    print(f"\n{'all finite and in agreement' if ok else 'SOME CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
