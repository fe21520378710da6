"""A/B of one training step between two checkouts of segadapter: by default segformer-b0, batch 2,
512x512, 150 classes (ADE20K's recipe), fp32, AdamW, allocator tuned as the CLI does. The two
codes alternate in fresh processes (so a slow phase of the machine hits both), each timing
`--steps` steps after 2 warm-up steps.

    git worktree add /tmp/before 9d55f55
    python benchmarks/train_step_ab.py --other /tmp/before --rounds 3
    python benchmarks/train_step_ab.py --other /tmp/before --model adapt-mit-b0 --batch 4 --crop 192 256 --classes 11
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
model_name, batch, height, width, classes, steps = sys.argv[1], *map(int, sys.argv[2:])
model = segadapter.create_model(model_name, num_classes=classes).train()
opt = build_optimizer(model, OptimConfig())
x, y = torch.randn(batch, 3, height, width), torch.randint(0, classes, (batch, height, width))
times = []
for _ in range(2 + steps):
    t = time.perf_counter()
    out = model(x, labels=y)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(" ".join(f"{t * 1000:.1f}" for t in times[2:]))
"""


def run(checkout: Path, args: argparse.Namespace) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    shape = [args.model, args.batch, *args.crop, args.classes, args.steps]
    out = subprocess.run([sys.executable, "-c", STEP, *map(str, shape)], env=env, cwd=checkout, capture_output=True, text=True,
                         check=True).stdout
    return [float(t) for t in out.split()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", required=True, help="the other checkout (a git worktree)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default="segformer-b0")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--steps", type=int, default=4, help="timed steps per process [4]")
    args = p.parse_args()
    this = Path(__file__).resolve().parents[1]
    times: dict[str, list[float]] = {"other": [], "this": []}
    for _ in range(args.rounds):
        times["other"] += run(Path(args.other).resolve(), args)
        times["this"] += run(this, args)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.0f} ms over {len(ts)} steps ({', '.join(f'{t:.0f}' for t in ts)})")


if __name__ == "__main__":
    main()
