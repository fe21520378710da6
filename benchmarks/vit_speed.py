"""Speed of segadapter's ViT-B backbone against Hugging Face transformers' ViTModel, and SegViT's cost.

Both ViTs get the same weights (a random ViTModel saved in HF's own format, loaded into ours through
the ViT converter). For a like-for-like comparison ours keeps the class token here (1,025 tokens at
512 x 512, as HF); SegViT itself drops it. HF's output includes its final LayerNorm (one norm, noise).
Every contender (model x precision) lives in its own worker process; the parent times them
round-robin, one at a time, and reports medians and each worker's peak extra memory (VmHWM after
loading reset, minus RSS before the runs). bf16 = `torch.autocast("cpu", torch.bfloat16)`; its
speed depends on bf16 matrix units: the report says whether `lscpu` lists `amx_bf16`.

Also: the whole `segvit-vit-b` (K = 150) forward at 512 x 512 (predict at the input size, as the
official inference) and the peak memory of one fp32 training step (batch 2, AdamW, the full
fixed-assignment loss at label resolution; labels with 20 classes per image, `--all-classes` for
the worst case of all 150 present): as the RSS high-water mark under glibc's default allocator
(which keeps freed blocks) and once more with a fixed mmap threshold, where it follows the live tensors.

    python benchmarks/vit_speed.py            # full run (lead's machine, alone)
    python benchmarks/vit_speed.py --tiny     # smoke test: tiny models, 64 x 64, 2 rounds
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import worker_process  # benchmarks/ is on sys.path when a script runs
from worker_process import serve

NUM_CLASSES = 150
FULL = dict(size=512, width=768, depth=12, heads=12, variant="b", classes=NUM_CLASSES, rounds=9, batch=2)
TINY = dict(size=64, width=64, depth=4, heads=4, variant="t", classes=8, rounds=2, batch=2)


# ----------------------------------------------------------------------------- worker side


def _our_vit(cfg: dict, hf_dir: str):
    import torch
    from torch import nn

    from segadapter.modeling.weights import vit as weights_vit
    from segadapter.modeling.backbones.vit import ViT, ViTSpec
    from segadapter.modeling.weights.io import read_checkpoint

    model = ViT(ViTSpec(cfg["width"], cfg["depth"], cfg["heads"]), img_size=cfg["size"],
                out_indices=(cfg["depth"] - 1,), keep_cls_token=True)
    holder = nn.Module()
    holder.backbone = model
    raw = read_checkpoint(hf_dir)
    state, _ = weights_vit.convert(raw, weights_vit.detect_layout(raw))
    weights_vit.fit(state, holder)
    holder.load_state_dict(state, strict=True)
    return model.eval(), torch


def _segvit(cfg: dict):
    import torch
    from torch import nn

    from segadapter.modeling.models.segvit import build_segvit

    class SegViT(nn.Module):  # how the Segmentor runs backbone + head (until it is registered)
        def __init__(self):
            super().__init__()
            self.backbone, self.decode_head = build_segvit(cfg["variant"], cfg["classes"], img_size=cfg["size"])

        def forward(self, x, labels=None):
            raw = self.decode_head(self.backbone(x))
            if labels is None:
                return self.decode_head.predict(raw, x.shape[-2:])
            return sum(self.decode_head.loss(raw, labels).values())

    torch.manual_seed(0)
    return SegViT()


def _labels(cfg: dict, all_classes: bool):
    """Blocky label maps with 20 classes per image (or every class), like real scenes."""
    import torch

    g = torch.Generator().manual_seed(0)
    b, s, k = cfg["batch"], cfg["size"], cfg["classes"]
    if all_classes:
        return torch.randint(0, k, (b, s, s), generator=g)
    n = min(20, k)
    cells = torch.stack([torch.randperm(k, generator=g)[:n][torch.randint(0, n, (16, 16), generator=g)]
                         for _ in range(b)])
    return torch.nn.functional.interpolate(cells[:, None].float(), size=(s, s), mode="nearest")[:, 0].long()


def _build(spec: dict):
    import torch

    cfg = spec["cfg"]
    kind, who, prec = spec["kind"], spec["who"], spec["precision"]
    x = torch.randn(1 if kind == "forward" else cfg["batch"], 3, cfg["size"], cfg["size"])
    if kind == "train":
        model = _segvit(cfg).train()
        labels = _labels(cfg, spec["all_classes"])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            model(x, labels).backward()
            opt.step()
        return step
    if who == "hf":
        from transformers import ViTModel

        model = ViTModel.from_pretrained(spec["hf_dir"], add_pooling_layer=False, attn_implementation="sdpa").eval()
        call = lambda: model(pixel_values=x).last_hidden_state  # noqa: E731
    elif who == "ours":
        model, _ = _our_vit(cfg, spec["hf_dir"])
        call = lambda: model(x)  # noqa: E731
    else:
        model = _segvit(cfg).eval()
        call = lambda: model(x)  # noqa: E731

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            return call()
    return run


def worker(spec: dict) -> None:
    serve(lambda: _build(spec))


def parity(spec: dict) -> dict:
    import torch
    from transformers import ViTModel

    cfg = spec["cfg"]
    ours, _ = _our_vit(cfg, spec["hf_dir"])
    hf = ViTModel.from_pretrained(spec["hf_dir"], add_pooling_layer=False).eval()
    x = torch.randn(1, 3, cfg["size"], cfg["size"])
    with torch.inference_mode():
        ref = hf(pixel_values=x, output_hidden_states=True).hidden_states[-1]
        grid, cls = ours.stage_forward(0, x)
        got = torch.cat([cls, grid.flatten(2).transpose(1, 2)], 1)
    return {"max_abs_diff": float((got - ref).abs().max())}


# ----------------------------------------------------------------------------- parent side
def interleaved(specs: dict[str, dict], rounds: int, warmup: int = 1) -> dict:
    return worker_process.interleaved(__file__, specs, rounds, warmup)


def has_amx() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown (no lscpu)"
    return "yes (amx_bf16)" if "amx_bf16" in flags else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help="smoke test with tiny models")
    parser.add_argument("--rounds", type=int, help="timed rounds per contender")
    parser.add_argument("--all-classes", action="store_true", help="training labels with every class present")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    if args.json:
        from segadapter.utils.io import unwritable_reason

        if problem := unwritable_reason(args.json):  # fail now, not after the timing
            parser.error(problem)
    if args.worker:
        return worker(json.loads(args.worker))
    if args.child:
        print(json.dumps(parity(json.loads(args.child))))
        return
    import torch
    from transformers import ViTConfig, ViTModel

    cfg = dict(TINY if args.tiny else FULL)
    rounds = args.rounds or cfg["rounds"]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        hf = ViTModel(ViTConfig(hidden_size=cfg["width"], num_hidden_layers=cfg["depth"],
                                num_attention_heads=cfg["heads"], intermediate_size=4 * cfg["width"],
                                image_size=cfg["size"], patch_size=16, layer_norm_eps=1e-6), add_pooling_layer=False)
        hf.save_pretrained(tmp)
        del hf
        base = dict(cfg=cfg, hf_dir=tmp, all_classes=args.all_classes)
        vit = interleaved({f"{who}/{p}": dict(base, kind="forward", who=who, precision=p)
                           for who in ("hf", "ours") for p in ("fp32", "bf16")}, rounds)
        seg = interleaved({f"segvit/{p}": dict(base, kind="forward", who="segvit", precision=p)
                           for p in ("fp32", "bf16")}, rounds)
        train_spec = dict(base, kind="train", who="segvit", precision="fp32")
        train = interleaved({"train/fp32": train_spec}, max(2, rounds // 3))
        # glibc keeps freed heap blocks (RSS high-water >> live tensors); with a fixed mmap threshold
        # every large tensor is mapped and unmapped, so the high-water mark follows the live tensors
        train.update(interleaved({"train/fp32-live": dict(train_spec, env={"MALLOC_MMAP_THRESHOLD_": "131072"})}, 1))
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(dict(base))], capture_output=True,
                             text=True)
        diff = json.loads(out.stdout.strip().splitlines()[-1])["max_abs_diff"] if out.returncode == 0 else None
    t = {k: v["median_ms"] for k, v in {**vit, **seg, **train}.items()}
    m = {k: v["peak_extra_mb"] for k, v in {**vit, **seg, **train}.items()}
    s = cfg["size"]
    print(f"CPU threads {torch.get_num_threads()}, torch {torch.__version__}; AMX: {has_amx()}; "
          f"{rounds} interleaved rounds, medians; input {s}x{s}, batch 1")
    print(f"ViT ({cfg['width']} wide, {cfg['depth']} blocks) vs transformers ViTModel, same weights "
          f"(max abs diff of the last block's tokens: {diff if diff is None else f'{diff:.1e}'})")
    print("| contender | ms | peak extra MB |\n| --- | --- | --- |")
    for k in vit:
        print(f"| {k} | {t[k]:.1f} | {m[k]:.0f} |")
    print(f"- fp32: HF / ours = {t['hf/fp32'] / t['ours/fp32']:.2f}x (target >= 1.00x)")
    print(f"- ours bf16 vs HF fp32: {t['hf/fp32'] / t['ours/bf16']:.2f}x (target >= 2.00x); "
          f"HF bf16 / ours bf16 = {t['hf/bf16'] / t['ours/bf16']:.2f}x")
    print(f"SegViT-{cfg['variant'].upper()} (K = {cfg['classes']}) forward, predict at the input size: "
          f"fp32 {t['segvit/fp32']:.1f} ms / {m['segvit/fp32']:.0f} MB, bf16 {t['segvit/bf16']:.1f} ms / "
          f"{m['segvit/bf16']:.0f} MB")
    print(f"SegViT training step (batch {cfg['batch']}, {s}x{s}, fp32, AdamW, "
          f"{'all classes' if args.all_classes else '20 classes per image'}): {t['train/fp32']:.0f} ms, "
          f"peak extra RSS {m['train/fp32']:.0f} MB with glibc's defaults, {m['train/fp32-live']:.0f} MB of live "
          "tensors (fixed mmap threshold)")
    if args.json:
        from segadapter.utils.io import write_json_atomic

        write_json_atomic(args.json, dict(cfg=cfg, vit=vit, segvit=seg, train=train, diff=diff, amx=has_amx()))


if __name__ == "__main__":
    main()
