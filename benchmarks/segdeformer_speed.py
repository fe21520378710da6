"""SegDeformer-MiT-B1 against Segformer-B1: latency, peak memory, GFLOPs, parameters; and the
SegDeformer head alone with its fused attention against the same head with explicit (N x N
materialised) attention, same weights, where that fits in memory.

Each contender runs in its own worker process, one after the other: it builds its model (random
weights, K = 150, batch 1, fp32, eval, inference mode), runs `--warmup` forwards and `--rounds`
timed forwards (fewer where they would exceed `--budget` seconds), and reports the median latency
and its peak memory, i.e. the high-water RSS minus the RSS just before the first forward (VmHWM
reset there; `ru_maxrss` where the reset is not allowed).

Expect long runs at 1024x1024: both attention blocks are N x N over N = 65,536 tokens, ~4.5 T
multiply-adds per SegDeformer-B1 forward (Segformer-B1: 88 G; at 512x512 302 G vs 15.9 G), i.e.
about a minute per forward on a 2-core CPU; the explicit-attention head is skipped there (its
N x N scores and softmax would take 32 GiB). GFLOPs are counted in the parent with
`segadapter.analysis.flops` (multiply-adds, published order of operations) on meta-device models.

Both models are the registered ones (`segadapter.create_model`), with fixed random weights.

    python benchmarks/segdeformer_speed.py                         # 512x512 and 1024x1024
    python benchmarks/segdeformer_speed.py --quick --sizes 64x64   # smoke test
    python benchmarks/segdeformer_speed.py --json results.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's segadapter, wherever the script is run from

NUM_CLASSES = 150
B1_WIDTHS = (64, 128, 320, 512)
CONTENDERS = ("segformer-b1", "segdeformer-mit-b1", "head", "head-explicit")
DEFAULT_SIZES = ("512x512", "1024x1024")


# ----------------------------------------------------------------------------- models
class _HeadOnly:
    """The head on fixed random MiT-B1-shaped features of an H x W image."""

    def __init__(self, head, size):
        import torch

        h, w = size
        self.head = head
        self.feats = [torch.randn(1, c, h // 4 // 2 ** i, w // 4 // 2 ** i) for i, c in enumerate(B1_WIDTHS)]

    def __call__(self, *_):
        return self.head.predict(self.head(self.feats))


def _explicit_attend(q, k, v, scale, chunked=None):
    """softmax(q k^T * scale) v with the full N x N score matrix (and its softmax) in memory."""
    import torch

    return torch.softmax((q * scale) @ k.transpose(-1, -2), dim=-1) @ v


def build(contender: str, size):
    """A callable mapping an image batch to scores, with fixed random weights."""
    import torch

    import segadapter
    from segadapter.modeling.heads import segdeformer as sd

    torch.manual_seed(0)
    if contender == "segformer-b1":
        return segadapter.create_model("segformer-b1", num_classes=NUM_CLASSES).eval()
    if contender == "segdeformer-mit-b1":
        return segadapter.create_model("segdeformer-mit-b1", num_classes=NUM_CLASSES).eval()
    head = sd.SegDeformerHead(B1_WIDTHS, NUM_CLASSES).eval()
    if contender == "head-explicit":
        sd.attend = _explicit_attend  # the blocks look `attend` up at call time
    return _HeadOnly(head, size)


# ----------------------------------------------------------------------------- worker side
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak() -> bool:
    """Linux: writing 5 to clear_refs resets the high-water RSS (VmHWM) to the current RSS, so
    the model's construction does not count; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb(reset: bool) -> float:
    if reset:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(spec: dict) -> dict:
    import torch

    from segadapter.modeling.heads import segdeformer as sd

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    size = tuple(spec["size"])
    fused_attend = sd.attend
    fn = build(spec["contender"], size)
    x = torch.randn(1, 3, *size)
    reset = _reset_peak()
    before = _rss_mb()
    times = []
    with torch.inference_mode():
        for _ in range(spec["warmup"]):
            t = time.perf_counter()
            out = fn(x)
        # fewer timed rounds where one forward is long (SegDeformer at 1024^2 on a CPU)
        rounds = spec["rounds"]
        if spec["warmup"]:
            rounds = max(1, min(rounds, int(spec["budget_s"] / max(time.perf_counter() - t, 1e-3))))
        for _ in range(rounds):
            t = time.perf_counter()
            out = fn(x)
            times.append((time.perf_counter() - t) * 1e3)
    result = {"median_ms": statistics.median(times), "best_ms": min(times), "rounds": len(times),
              "peak_extra_mb": _peak_mb(reset) - before,
              "out_shape": list(out.shape)}
    if spec["contender"] == "head-explicit":  # same weights through the fused path (after measuring)
        sd.attend = fused_attend
        with torch.inference_mode():
            result["max_abs_diff_vs_fused"] = float((fn(x) - out).abs().max())
    return result


def run_worker(spec: dict, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- parent side
def complexity(contender: str, size) -> dict:
    """Parameters (M) and GFLOPs (multiply-adds, published order) on meta-device models."""
    import torch

    from segadapter.analysis.flops import MacCounter, count_params, model_complexity

    with torch.device("meta"):  # the explicit head has the fused one's architecture
        model = build("head" if contender == "head-explicit" else contender, size)
    if isinstance(model, _HeadOnly):
        head = model.head
        head.fused_inference = False
        with torch.no_grad(), MacCounter() as counter:
            model()
        head.fused_inference = True
        return {"params_m": count_params(head) / 1e6, "gflops": counter.total / 1e9}
    return model_complexity(model, size)


def _explicit_fits(size) -> tuple[bool, str]:
    """The explicit head holds one block's N x N scores and their softmax (2 x 4 N^2 bytes)."""
    n = (size[0] // 4) * (size[1] // 4)
    need = 2 * 4 * n * n
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    if need > avail // 2:
        return False, f"needs ~{need / 2**30:.1f} GiB for its N x N scores (N = {n}), {avail / 2**30:.1f} GiB available"
    return True, ""


def _ratio(a, b, key):
    if a and b and key in a and key in b and b[key]:
        return a[key] / b[key]
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="HxW image sizes")
    p.add_argument("--quick", action="store_true", help="1 warm-up and 1 timed forward per contender")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--budget", type=float, default=300,
                   help="timed seconds per contender: fewer rounds (at least 1) where a forward is slow")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    p.add_argument("--json", type=Path, help="write the raw numbers here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the timing
            p.error(problem)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    rounds, warmup = (1, 1) if args.quick else (args.rounds, args.warmup)
    report = {"config": {"num_classes": NUM_CLASSES, "rounds": rounds, "warmup": warmup, "threads": args.threads,
                         "batch": 1, "dtype": "fp32"}, "sizes": {}}
    for size_name in args.sizes:
        size = tuple(int(s) for s in size_name.lower().split("x"))
        rows = {}
        for c in args.contenders:
            row = complexity(c, size)
            fits, why = _explicit_fits(size) if c == "head-explicit" else (True, "")
            if fits:
                spec = {"contender": c, "size": size, "rounds": rounds, "warmup": warmup, "threads": args.threads,
                        "budget_s": args.budget}
                row.update(run_worker(spec, args.timeout))
            else:
                row["skipped"] = why
            rows[c] = row
            print(f"{size_name:>10} {c:<20} " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in row.items()), flush=True)
        sd_, sf = rows.get("segdeformer-mit-b1"), rows.get("segformer-b1")
        head, explicit = rows.get("head"), rows.get("head-explicit")
        ratios = {f"segdeformer/segformer {k}": _ratio(sd_, sf, k)
                  for k in ("median_ms", "peak_extra_mb", "gflops", "params_m")}
        ratios.update({f"head explicit/fused {k}": _ratio(explicit, head, k) for k in ("median_ms", "peak_extra_mb")})
        for name, r in ratios.items():
            print(f"{size_name:>10} {name:<45} {'n/a' if r is None else f'{r:.3f}x'}")
        report["sizes"][size_name] = {"results": rows, "ratios": ratios}
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
