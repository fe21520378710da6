"""The fused upsample + cross-entropy loss against `F.interpolate` + `F.cross_entropy`.

Forward + backward of the loss alone, on logits at stride 4 of the label size, the two timed
alternately (medians of 7) in one process per allocator setting, with the largest absolute
difference of loss and gradient.

    python benchmarks/fused_loss.py

`--upsample`: below the fused path's size, the loss's upsampling by two matrix products
(`upsample_logits`, what the CPU loss runs) against `F.interpolate`, both followed by
`F.cross_entropy`, at CPU recipes' sizes (tuned allocator).

    python benchmarks/fused_loss.py --upsample
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

# (batch, classes, label H, label W): ADE20K and Cityscapes training crops
SHAPES = [(2, 150, 512, 512), (2, 19, 512, 1024), (8, 150, 512, 512)]


def interpolate_ce(logits, labels):
    """The reference pair: F.interpolate, then F.cross_entropy averaged over valid pixels."""
    import torch.nn.functional as F

    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, labels, ignore_index=255, reduction="sum") / (labels != 255).sum().clamp_min(1)


def alternate(losses: dict, shape, reps: int) -> tuple[dict[str, float], dict[str, tuple]]:
    """Forward + backward of each loss on the same random logits / labels at `shape` (batch,
    classes, label H, label W; logits at stride 4), the losses alternating, two warm-up rounds:
    ({name: median ms}, {name: (loss, gradient)})."""
    import torch

    b, k, h, w = shape
    torch.manual_seed(0)
    logits = torch.randn(b, k, h // 4, w // 4, requires_grad=True)
    labels = torch.randint(0, k, (b, h, w))
    out, times = {}, {name: [] for name in losses}
    for rep in range(reps):
        for name, fn in losses.items():
            t = time.perf_counter()
            loss = fn(logits, labels)
            (grad,) = torch.autograd.grad(loss, logits)
            if rep >= 2:
                times[name].append((time.perf_counter() - t) * 1e3)
            out[name] = (loss.detach(), grad)
    return {name: statistics.median(ts) for name, ts in times.items()}, out


def measure(malloc: str) -> list[dict]:
    from segadapter.modeling.losses import UpsampledCrossEntropy
    from segadapter.utils.malloc import tune_malloc

    if malloc == "tuned":
        tune_malloc()

    def fused(logits, labels):
        return UpsampledCrossEntropy.apply(logits, labels, 255)

    rows = []
    for shape in SHAPES:
        ms, out = alternate({"plain": interpolate_ce, "fused": fused}, shape, 9)
        rows.append({"shape": list(shape), "plain_ms": ms["plain"], "fused_ms": ms["fused"],
                     "loss_diff": float((out["plain"][0] - out["fused"][0]).abs()),
                     "grad_diff": float((out["plain"][1] - out["fused"][1]).abs().max())})
    return rows


# (batch, classes, label H, label W): CamVid's CPU recipe, a full CamVid frame, small ADE / Context crops
UPSAMPLE_SHAPES = [(4, 11, 192, 256), (8, 11, 192, 256), (1, 11, 360, 480), (2, 150, 256, 256), (4, 59, 256, 256),
                   (2, 19, 512, 1024)]


def measure_upsample() -> None:
    from segadapter.modeling.losses import plain_cross_entropy
    from segadapter.utils.malloc import tune_malloc

    tune_malloc()
    print("| B x K x H x W | F.interpolate + CE ms | matmul upsample + CE ms | speed-up | max abs diff loss / grad |")
    print("| --- | --- | --- | --- | --- |")
    for b, k, h, w in UPSAMPLE_SHAPES:
        ms, out = alternate({"interpolate": interpolate_ce, "matmul": plain_cross_entropy}, (b, k, h, w), 11)
        a, m = ms["interpolate"], ms["matmul"]
        print(f"| {' x '.join(map(str, (b, k, h, w)))} | {a:.1f} | {m:.1f} | {a / m:.2f}x | "
              f"{float((out['interpolate'][0] - out['matmul'][0]).abs()):.1e} / "
              f"{float((out['interpolate'][1] - out['matmul'][1]).abs().max()):.1e} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    p.add_argument("--upsample", action="store_true", help="the matmul upsampling against F.interpolate")
    args = p.parse_args()
    if args.upsample:
        measure_upsample()
        return
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print("| B x K x H x W | allocator | interpolate + CE ms | fused ms | speed-up | max abs diff loss / grad |")
    print("| --- | --- | --- | --- | --- | --- |")
    for malloc in ("default", "tuned"):  # a fresh process each: allocator settings are per process
        out = subprocess.run([sys.executable, __file__, "--child", malloc], capture_output=True, text=True, check=True)
        for r in json.loads(out.stdout.strip().splitlines()[-1]):
            print(f"| {' x '.join(map(str, r['shape']))} | {malloc} | {r['plain_ms']:.0f} | {r['fused_ms']:.0f} "
                  f"| {r['plain_ms'] / r['fused_ms']:.2f}x | {r['loss_diff']:.1e} / {r['grad_diff']:.1e} |")


if __name__ == "__main__":
    main()
