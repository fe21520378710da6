"""Speed of our CLIP towers against transformers' CLIPModel (same weights), and SAN end to end.

The parent saves one random CLIPModel (ViT-B/16 shapes, QuickGELU) in Hugging Face's format; our
CLIP loads it through the loader every backbone uses (a SAN model's `clip=`), so both sides compute the same function (checked: max abs
difference of the embeddings). Every contender (side x tower x precision) runs in its own
process, one at a time: warm-up calls, then the median of timed calls. Precisions: fp32 and
bf16 autocast. SAN: `san-vit-b16` (random CLIP, 171 placeholder classes), one 640x640 image,
eval forward + predict; latency and the peak extra RSS of the forward.

    python benchmarks/clip_speed.py            # full report (run alone on the machine)
    python benchmarks/clip_speed.py --tiny     # smoke test: tiny shapes, one timed call
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = dict(vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                        image_size=224, patch_size=16),
            text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                      vocab_size=49408, max_position_embeddings=77),
            projection_dim=512, image_batch=8, text_batch=64, san_size=640)
TINY = dict(vision=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                        image_size=32, patch_size=8),
            text=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      vocab_size=500, max_position_embeddings=77),
            projection_dim=32, image_batch=2, text_batch=4, san_size=64)


def amx_report() -> str:
    import torch

    flags = ""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    amx = [f for f in ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16") if f in flags.split()]
    return f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; AMX/bf16 flags: {', '.join(amx) or 'none'}"


def clip_of(folder: Path, cfg: dict):
    """Our CLIP with the weights of the saved folder, through `load_pretrained` (CLIP only)."""
    from segadapter.modeling.backbones.clip import CLIP, ClipConfig, ClipTextConfig, ClipVisionConfig
    from segadapter.modeling.backbones.clip_backbone import ClipBackbone
    from segadapter.modeling.heads.san import SANHead
    from segadapter.modeling.heads.san_side import SideConfig
    from segadapter.modeling.meta_arch import SideAdapterSegmentor
    from segadapter.modeling.weights import load_pretrained

    v, t = cfg["vision"], cfg["text"]
    clip = CLIP(ClipConfig(cfg["projection_dim"],
                           ClipVisionConfig(v["image_size"], v["patch_size"], v["hidden_size"], v["num_hidden_layers"],
                                            v["num_attention_heads"], v["intermediate_size"] / v["hidden_size"]),
                           ClipTextConfig(t["max_position_embeddings"], t["vocab_size"], t["hidden_size"],
                                          t["num_attention_heads"], t["num_hidden_layers"])))
    backbone = ClipBackbone(clip, taps=(0, 1))
    side = SideConfig(width=16, depth=2, heads=2, grid=4, num_queries=3, fusion_blocks=(0, 1), deep_supervision=(1, 2),
                      mlp_channels=8, embed_channels=8)
    model = SideAdapterSegmentor(backbone, SANHead(backbone, 2, side))
    load_pretrained(model, folder, parts=("backbone.",))
    return model.backbone.clip


def save_hf(cfg: dict, folder: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    t = dict(cfg["text"], hidden_act="quick_gelu", eos_token_id=cfg["text"]["vocab_size"] - 1,
             bos_token_id=cfg["text"]["vocab_size"] - 2, pad_token_id=0)
    model = CLIPModel(CLIPConfig(text_config=t, vision_config=dict(cfg["vision"], hidden_act="quick_gelu"),
                                 projection_dim=cfg["projection_dim"]))
    model.save_pretrained(folder)


def inputs(cfg: dict):
    import torch

    g = torch.Generator().manual_seed(0)
    v, t = cfg["vision"], cfg["text"]
    pixels = torch.randn(cfg["image_batch"], 3, v["image_size"], v["image_size"], generator=g)
    ids = torch.zeros(cfg["text_batch"], 77, dtype=torch.long)
    ids[:, :12] = torch.randint(1, t["vocab_size"] - 2, (cfg["text_batch"], 12), generator=g)
    ids[:, 12] = t["vocab_size"] - 1  # the end token: the largest id
    return pixels, ids


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")) / 1024


def child(spec: dict) -> dict:
    """One contender: build, warm up, time; returns ms (median, best) and a result checksum."""
    import torch

    cfg = TINY if spec["tiny"] else FULL
    bf16 = spec["precision"] == "bf16"
    if spec["side"] == "san":
        from segadapter.modeling.models.san import build_san

        torch.manual_seed(0)
        if not spec["tiny"]:
            model = build_san("san-vit-b16", num_classes=171)
        else:  # the tiny smoke test only checks the script runs
            from segadapter.modeling.backbones.clip import CLIP, ClipConfig, ClipTextConfig, ClipVisionConfig
            from segadapter.modeling.backbones.clip_backbone import ClipBackbone
            from segadapter.modeling.heads.san import SANHead
            from segadapter.modeling.heads.san_side import SideConfig

            bb = ClipBackbone(CLIP(ClipConfig(32, ClipVisionConfig(32, 8, 64, 4, 4), ClipTextConfig(77, 500, 32, 2, 2))),
                              taps=(0, 1, 2))
            from segadapter.modeling.meta_arch import SideAdapterSegmentor

            head = SANHead(bb, 5, SideConfig(width=48, depth=4, heads=2, grid=4, num_queries=10,
                                             fusion_blocks=(0, 1, 2), deep_supervision=(3, 4)))
            model = SideAdapterSegmentor(bb, head)
        model.eval()
        x = torch.randn(1, 3, cfg["san_size"], cfg["san_size"])

        def call():
            return model(x)
    else:
        pixels, ids = inputs(cfg)
        if spec["side"] == "hf":
            from transformers import CLIPModel

            model = CLIPModel.from_pretrained(spec["folder"], attn_implementation="sdpa").eval()
            img = lambda: model.get_image_features(pixel_values=pixels).pooler_output  # noqa: E731
            txt = lambda: model.get_text_features(input_ids=ids).pooler_output  # noqa: E731
        else:
            model = clip_of(spec["folder"], cfg)
            model.eval()
            img, txt = (lambda: model.encode_image(pixels)), (lambda: model.encode_text(ids))
        call = img if spec["tower"] == "image" else txt
    torch.set_num_threads(spec["threads"]) if spec["threads"] else None

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return call()
    for _ in range(spec["warmup"]):
        out = run()
    base = _rss_mb()
    times = []
    for _ in range(spec["rounds"]):
        t = time.perf_counter()
        out = run()
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(times), "best_ms": min(times), "peak_extra_mb": _peak_mb() - base,
            "out": out.float().flatten()[:256].tolist()}


def run_child(spec: dict) -> dict:
    root = str(Path(__file__).resolve().parents[1])  # this checkout's segadapter, not an installed one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode:
        raise RuntimeError(f"{spec}: worker failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes, one timed call (smoke test)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each worker (0: torch's default)")
    ap.add_argument("--json", help="write the raw numbers here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the timing
            ap.error(problem)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    print(amx_report())
    cfg = TINY if args.tiny else FULL
    rounds, warmup = (1, 1) if args.tiny else (args.rounds, 3)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(cfg, Path(tmp))
        for tower in ("image", "text"):
            for precision in ("fp32", "bf16"):
                row = {}
                for side in ("hf", "ours"):
                    row[side] = run_child(dict(side=side, tower=tower, precision=precision, folder=tmp, tiny=args.tiny,
                                               rounds=rounds, warmup=warmup, threads=args.threads))
                diff = max(abs(a - b) for a, b in zip(row["hf"].pop("out"), row["ours"].pop("out")))
                results[f"{tower}/{precision}"] = dict(row, max_abs_diff=diff,
                                                       speedup=row["hf"]["median_ms"] / row["ours"]["median_ms"])
    for precision in ("fp32", "bf16"):
        r = run_child(dict(side="san", precision=precision, tiny=args.tiny, rounds=max(1, rounds // 2),
                           warmup=1, threads=args.threads))
        r.pop("out")
        results[f"san-vit-b16@{cfg['san_size']}/{precision}"] = r

    b = cfg["image_batch"], cfg["text_batch"]
    print(f"\nimage tower: batch {b[0]} at {cfg['vision']['image_size']}px; text tower: batch {b[1]} x 77 tokens\n")
    print("| case | transformers ms | ours ms | ours speed-up | max abs diff |")
    print("| --- | --- | --- | --- | --- |")
    for k, r in results.items():
        if "hf" in r:
            print(f"| {k} | {r['hf']['median_ms']:.1f} | {r['ours']['median_ms']:.1f} | {r['speedup']:.2f}x | "
                  f"{r['max_abs_diff']:.1e} |")
    print("\n| SAN case | median ms | best ms | peak extra MB |")
    print("| --- | --- | --- | --- |")
    for k, r in results.items():
        if "hf" not in r:
            print(f"| {k} | {r['median_ms']:.0f} | {r['best_ms']:.0f} | {r['peak_extra_mb']:.0f} |")
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
