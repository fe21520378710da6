"""A/B of one training step between two checkouts of segadapter: segformer-b0, batch 2, 512x512,
150 classes, fp32, AdamW, allocator tuned as the CLI does. The two codes alternate in fresh
processes (so a slow phase of the machine hits both), each timing 4 steps after 2 warm-up steps.

    git worktree add /tmp/before 9d55f55
    python benchmarks/train_step_ab.py --other /tmp/before --rounds 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

STEP = """
import sys, time, torch
import segadapter
from segadapter.engine.config import OptimConfig
from segadapter.engine.optim import build_optimizer
from segadapter.utils.malloc import tune_malloc
tune_malloc()
torch.manual_seed(0)
model = segadapter.create_model("segformer-b0", num_classes=150).train()
opt = build_optimizer(model, OptimConfig())
x, y = torch.randn(2, 3, 512, 512), torch.randint(0, 150, (2, 512, 512))
times = []
for _ in range(6):
    t = time.perf_counter()
    out = model(x, labels=y)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(" ".join(f"{t * 1000:.1f}" for t in times[2:]))
"""


def run(checkout: Path) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", STEP], env=env, cwd=checkout, capture_output=True, text=True,
                         check=True).stdout
    return [float(t) for t in out.split()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", required=True, help="the other checkout (a git worktree)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    this = Path(__file__).resolve().parents[1]
    times: dict[str, list[float]] = {"other": [], "this": []}
    for _ in range(args.rounds):
        times["other"] += run(Path(args.other).resolve())
        times["this"] += run(this)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.0f} ms over {len(ts)} steps ({', '.join(f'{t:.0f}' for t in ts)})")


if __name__ == "__main__":
    main()
