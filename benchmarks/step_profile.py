"""Where one training step's time goes: torch.profiler over a few steps of a model (batch 4,
192x256 crops, 11 classes, AdamW, fp32 unless --amp says otherwise - the step that
time_to_accuracy.py compares with `transformers`), the heaviest operators with their input shapes,
and the step under PyTorch's three AdamW implementations (for-loop, foreach, fused), interleaved.

    python benchmarks/step_profile.py segformer-b0
    python benchmarks/step_profile.py adapt-mit-b0 --rows 30 --no-optimizers
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

BATCH, CROP, CLASSES = 4, (192, 256), 11


def make_step(model_name: str, amp: str, optimizer: str = "default"):
    import segadapter
    from segadapter.engine.config import OptimConfig
    from segadapter.engine.optim import param_groups
    from segadapter.runtime.amp import choose_precision

    torch.manual_seed(0)
    x, y = torch.randn(BATCH, 3, *CROP), torch.randint(0, CLASSES, (BATCH, *CROP))
    model = segadapter.create_model(model_name, num_classes=CLASSES).train()
    cfg = OptimConfig(lr=6e-4)
    kwargs = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[optimizer]
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, **kwargs)
    dtype = choose_precision(amp, "cpu").dtype

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(x, labels=y)["loss"]
        loss.backward()
        opt.step()
    return step


def profile(model_name: str, amp: str, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step = make_step(model_name, amp)
    for _ in range(3):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2):
            step()
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40, max_shapes_column_width=80))
    print("(2 steps profiled: divide the totals by 2 for one step)")


def optimizers(model_name: str, amp: str, rounds: int) -> dict[str, float]:
    steps = {name: make_step(model_name, amp, name) for name in ("default", "foreach", "fused")}
    for step in steps.values():
        step(), step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):  # interleaved: a slow phase of the machine hits every variant
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default="segformer-b0")
    p.add_argument("--amp", default="none", help="none (fp32, the default), auto or bf16")
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--no-optimizers", action="store_true", help="skip the AdamW comparison")
    p.add_argument("--default-allocator", action="store_true",
                   help="glibc's allocator as it comes (default: tuned as segadapter's commands set it)")
    args = p.parse_args()
    if not args.default_allocator:
        from segadapter.utils.malloc import tune_malloc

        tune_malloc()  # as `segadapter train` runs: without it big activations cost page faults every step
    print(f"{args.model}, batch {BATCH}, {CROP[0]}x{CROP[1]}, amp {args.amp}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}")
    profile(args.model, args.amp, args.rows)
    if not args.no_optimizers:
        for name, ms in optimizers(args.model, args.amp, args.rounds).items():
            print(f"AdamW {name}: median step {ms:.1f} ms")


if __name__ == "__main__":
    main()
