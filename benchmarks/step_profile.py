"""Where one training step's time goes: torch.profiler over a few steps of a model (batch 4,
192x256 crops, 11 classes, AdamW, fp32 unless --amp says otherwise - the step that
time_to_accuracy.py compares with `transformers`), the heaviest operators with their input shapes,
and the step under PyTorch's three AdamW implementations (for-loop, foreach, fused), interleaved.

The profile ends with the step split in two: the library's arithmetic kernels (matmuls,
convolutions and their backward, attention) and everything else (norms, activations, resizing,
copies, the optimizer, Python) - what a compiler's fusion could still win. `--compile` runs the
same with `train.compile`'s units compiled (inductor's default, its C++ wrapper, or max-autotune).

    python benchmarks/step_profile.py segformer-b0
    python benchmarks/step_profile.py adapt-mit-b0 --rows 30 --no-optimizers
    python benchmarks/step_profile.py segformer-b0 --compile units --no-optimizers
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

BATCH, CROP, CLASSES = 4, (192, 256), 11
# the arithmetic PyTorch hands to oneDNN/MKL (and its attention kernels): fast already, not fusable
LIBRARY_KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution_backward",
                   "aten::_scaled_dot_product_flash_attention_for_cpu",
                   "aten::_scaled_dot_product_flash_attention_for_cpu_backward")
COMPILE_MODES = ("none", "units", "units-cpp-wrapper", "units-max-autotune")


def compile_model(model, mode: str) -> None:
    """`train.compile`'s units compiled in place, with one of inductor's variants."""
    import torch._inductor.config as inductor_config
    from segadapter.utils.compile import compile_for_training

    inductor_config.cpp_wrapper = mode == "units-cpp-wrapper"
    if mode == "units-max-autotune":
        from segadapter.utils.compile import compile_units, key_compile_cache_by_cpu_isa

        inductor_config.fallback_random = True
        key_compile_cache_by_cpu_isa()
        for unit in compile_units(model):
            unit.compile(dynamic=False, mode="max-autotune-no-cudagraphs")
    else:
        print(compile_for_training(model, "cpu"))


def make_step(model_name: str, amp: str, optimizer: str = "default", compile_mode: str = "none"):
    import segadapter
    from segadapter.engine.config import OptimConfig
    from segadapter.engine.optim import param_groups
    from segadapter.runtime.amp import choose_precision

    torch.manual_seed(0)
    x, y = torch.randn(BATCH, 3, *CROP), torch.randint(0, CLASSES, (BATCH, *CROP))
    model = segadapter.create_model(model_name, num_classes=CLASSES).train()
    if compile_mode != "none":
        compile_model(model, compile_mode)
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


def profile(model_name: str, amp: str, rows: int, compile_mode: str) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step = make_step(model_name, amp, compile_mode=compile_mode)
    for _ in range(3):  # a compiled step compiles in its first call
        step()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2):
            step()
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40, max_shapes_column_width=80))
    print("(2 steps profiled: divide the totals by 2 for one step)")
    events = prof.key_averages()
    library = sum(e.self_cpu_time_total for e in events if e.key in LIBRARY_KERNELS) / 2e3
    total = sum(e.self_cpu_time_total for e in events) / 2e3
    if compile_mode == "units-cpp-wrapper":  # its C++ wrapper calls the kernels where the profiler does not see them
        print(f"per step (profiled): {total:.1f} ms (no split: the C++ wrapper's kernel calls are not profiled)")
        return
    print(f"per step (profiled): {total:.1f} ms = library kernels (matmul, conv, attention) {library:.1f} ms "
          f"+ the rest {total - library:.1f} ms")
    if compile_mode == "none":
        matmul_ms = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm")) / 2e3
        flops = matmul_flops(step)
        print(f"matmuls (aten::mm, aten::addmm): {flops / 1e9:.2f} GFLOP per step in {matmul_ms:.1f} ms, "
              f"{flops / matmul_ms / 1e6:.0f} GFLOP/s; a 2048^3 fp32 matmul alone: {big_matmul_gflops():.0f} GFLOP/s")


def big_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """What this machine's GEMM reaches on a large square product: the ceiling for the step's."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def matmul_flops(step) -> int:
    """The FLOPs of one step's mm/addmm calls (the linear layers, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    counts = counter.get_flop_counts()["Global"]
    return sum(n for op, n in counts.items() if str(op) in ("aten.mm", "aten.addmm"))


def optimizers(model_name: str, amp: str, rounds: int, compile_mode: str) -> dict[str, float]:
    steps = {name: make_step(model_name, amp, name, compile_mode) for name in ("default", "foreach", "fused")}
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
    p.add_argument("--compile", default="none", choices=COMPILE_MODES,
                   help="compile train.compile's units first: inductor's default, its C++ wrapper or max-autotune")
    p.add_argument("--default-allocator", action="store_true",
                   help="glibc's allocator as it comes (default: tuned as segadapter's commands set it)")
    args = p.parse_args()
    if not args.default_allocator:
        from segadapter.utils.malloc import tune_malloc

        tune_malloc()  # as `segadapter train` runs: without it big activations cost page faults every step
    print(f"{args.model}, batch {BATCH}, {CROP[0]}x{CROP[1]}, amp {args.amp}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}, compile {args.compile}")
    profile(args.model, args.amp, args.rows, args.compile)
    if not args.no_optimizers:
        for name, ms in optimizers(args.model, args.amp, args.rounds, args.compile).items():
            print(f"AdamW {name}: median step {ms:.1f} ms")


if __name__ == "__main__":
    main()
