"""Speed of segadapter's Segformer family against Hugging Face transformers, in one run.

Both sides get the same weights (a random HF model saved in HF's own format and loaded into ours
through the HF checkpoint importer). Each measurement runs in a fresh child process so peak memory
(max RSS) is its own. Prints a markdown report; `--json FILE` also writes the raw numbers.

    python benchmarks/speed_vs_hf.py            # full report (~10 min on 2 cores)
    python benchmarks/speed_vs_hf.py --quick    # fewer repeats
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"512x512": (512, 512), "480x360": (360, 480)}  # (H, W)
HF_CONFIGS = {
    "b0": dict(hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256, depths=[2, 2, 2, 2]),
    "b1": dict(hidden_sizes=[64, 128, 320, 512], decoder_hidden_size=256, depths=[2, 2, 2, 2]),
}
NUM_CLASSES = 150


# ----------------------------------------------------------------------------- child side
def _median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _load(side: str, variant: str, hf_dir: str, name: str | None = None):
    import torch

    if side == "hf":
        from transformers import SegformerForSemanticSegmentation

        return SegformerForSemanticSegmentation.from_pretrained(hf_dir, attn_implementation="sdpa").eval()
    import segadapter

    if name and name.startswith("adapt"):
        torch.manual_seed(0)
        return segadapter.create_model(name, num_classes=NUM_CLASSES).eval()
    return segadapter.create_model(f"segformer-{variant}", num_classes=NUM_CLASSES, pretrained=hf_dir,
                                   layer_norm_eps=1e-5).eval()


def child(case: dict) -> dict:
    import torch

    torch.manual_seed(0)
    kind, side = case["kind"], case["side"]
    result: dict = {}
    if kind != "matmul":
        model = _load(side, case["variant"], case["hf_dir"], case.get("name"))
        forward = (lambda x: model(pixel_values=x).logits) if side == "hf" else model
    if kind == "forward":
        h, w = case["size"]
        x = torch.randn(1, 3, h, w)
        dtype = {"fp32": None, "bf16": torch.bfloat16}[case["precision"]]

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                return forward(x)

        result["median_ms"] = _median_ms(run, case["repeats"])
    elif kind == "train":
        model.train()
        x = torch.randn(2, 3, 512, 512)
        labels = torch.randint(0, NUM_CLASSES, (2, 512, 512))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            out = model(pixel_values=x, labels=labels) if side == "hf" else model(x, labels=labels)
            (out.loss if side == "hf" else out["loss"]).backward()
            opt.step()

        result["median_ms"] = _median_ms(step, case["repeats"], warmup=1)
    elif kind == "parity":
        import segadapter

        hf = _load("hf", case["variant"], case["hf_dir"])
        h, w = case["size"]
        x = torch.randn(1, 3, h, w)
        with torch.inference_mode():
            ref = hf(pixel_values=x).logits
            ours = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ours_bf16 = model(x).float()
        result["max_abs_diff_fp32"] = float((ours - ref).abs().max())
        result["max_abs_diff_bf16"] = float((ours_bf16 - ref).abs().max())
        del segadapter
    elif kind == "matmul":
        n = 2048
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["precision"]]
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        ms = _median_ms(lambda: a @ b, case["repeats"])
        result["gflops_per_s"] = 2 * n ** 3 / (ms / 1e3) / 1e9
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# ----------------------------------------------------------------------------- parent side
def run_case(case: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True)
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


def model_gflops(name: str, size) -> float:
    from segadapter.analysis.flops import complexity_of

    return complexity_of(name, NUM_CLASSES, size)["gflops"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 15")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import torch

    reps = 5 if args.quick else 15
    rows, raw = [], {"threads": torch.get_num_threads(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        hf_dirs = make_hf_dirs(Path(tmp))
        for prec in ("fp32", "bf16"):
            raw[f"matmul_{prec}"] = run_case(dict(kind="matmul", side="ours", variant="b0", hf_dir="",
                                                  precision=prec, repeats=reps))
        peak = {p: raw[f"matmul_{p}"]["gflops_per_s"] for p in ("fp32", "bf16")}
        for variant in ("b0", "b1"):
            for size_name, size in SIZES.items():
                base = dict(kind="forward", variant=variant, hf_dir=hf_dirs[variant], size=size, repeats=reps)
                hf = run_case({**base, "side": "hf", "precision": "fp32"})
                ours = run_case({**base, "side": "ours", "precision": "fp32"})
                ours_bf16 = run_case({**base, "side": "ours", "precision": "bf16"})
                par = run_case({**base, "kind": "parity", "side": "ours"})
                gflops = model_gflops(f"segformer-{variant}", size)
                rows.append(dict(model=f"segformer-{variant}", size=size_name, hf=hf, ours=ours, ours_bf16=ours_bf16,
                                 parity=par, gflops=gflops))
        for size_name, size in SIZES.items():
            base = dict(kind="forward", variant="b0", hf_dir=hf_dirs["b0"], size=size, repeats=reps,
                        name="adapt-mit-b0", side="ours")
            rows.append(dict(model="adapt-mit-b0", size=size_name, ours=run_case({**base, "precision": "fp32"}),
                             ours_bf16=run_case({**base, "precision": "bf16"}),
                             gflops=model_gflops("adapt-mit-b0", size)))
        train = {side: run_case(dict(kind="train", side=side, variant="b0", hf_dir=hf_dirs["b0"], repeats=max(3, reps // 3)))
                 for side in ("hf", "ours")}
    raw.update(rows=rows, train=train)

    def pct(gflops, ms, prec):  # model FLOPs (2 x multiply-adds) per second as a share of matmul peak
        return 100 * (2 * gflops / (ms / 1e3)) / peak[prec]

    print(f"# segadapter vs Hugging Face transformers (CPU, {raw['threads']} threads, torch {raw['torch']})\n")
    print(f"Matmul peak (2048^2): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s\n")
    print("GFLOP/s below count the published architecture's FLOPs (2 x multiply-adds, `segadapter flops`) "
          "over the measured time, as a share of the matmul peak of the same precision; our folded head "
          "skips part of that work, so ours can exceed 100%.\n")
    print("| model | input (WxH) | HF fp32 ms | ours fp32 ms | HF/ours | ours bf16 ms | HF fp32/ours bf16 "
          "| max abs diff fp32 | HF % peak | ours % peak fp32 | ours % peak bf16 | peak RSS MB HF / ours |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        o, b = r["ours"]["median_ms"], r["ours_bf16"]["median_ms"]
        if "hf" in r:
            h = r["hf"]["median_ms"]
            print(f"| {r['model']} | {r['size']} | {h:.1f} | {o:.1f} | {h / o:.2f}x | {b:.1f} | {h / b:.2f}x "
                  f"| {r['parity']['max_abs_diff_fp32']:.1e} | {pct(r['gflops'], h, 'fp32'):.0f}% "
                  f"| {pct(r['gflops'], o, 'fp32'):.0f}% | {pct(r['gflops'], b, 'bf16'):.0f}% "
                  f"| {r['hf']['peak_rss_mb']:.0f} / {r['ours']['peak_rss_mb']:.0f} |")
        else:
            print(f"| {r['model']} | {r['size']} | - | {o:.1f} | - | {b:.1f} | - | - | - "
                  f"| {pct(r['gflops'], o, 'fp32'):.0f}% | {pct(r['gflops'], b, 'bf16'):.0f}% "
                  f"| - / {r['ours']['peak_rss_mb']:.0f} |")
    for size_name in SIZES:
        seg = next(r for r in rows if r["model"] == "segformer-b0" and r["size"] == size_name)
        ada = next(r for r in rows if r["model"] == "adapt-mit-b0" and r["size"] == size_name)
        print(f"\nadapt-mit-b0 / segformer-b0 at {size_name}: time {ada['ours']['median_ms'] / seg['ours']['median_ms']:.2f}x "
              f"(FLOPs ratio {ada['gflops'] / seg['gflops']:.2f}x)")
    h, o = train["hf"]["median_ms"], train["ours"]["median_ms"]
    print(f"\nTraining step, segformer-b0, batch 2, 512x512, fp32 AdamW: HF {h:.0f} ms, ours {o:.0f} ms, "
          f"HF/ours {h / o:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
