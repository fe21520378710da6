"""Evaluating one 512 x 683 image at K = 847 (A-847) stays within one image's score tensor.

The (K, H, W) fp32 scores at label resolution are what one image needs (SAN combines its masks
there, as the official code does; a per-pixel head's logits are upsampled there): 847 x 512 x 683
x 4 B = 1130 MiB. Everything else per image (the network, the argmax, the int64 label, the K x K
counts of 5.5 MiB) is small, and nothing is kept across images. Bound: 1.25 x the score tensor
+ 128 MiB = 1540 MiB above the start of `evaluate`; measured 1218-1225 MiB (tiny SAN, official protocol:
short side 640) and 1276-1279 MiB (Segformer-B0 head, K = 847). A second full-resolution copy (a
float64 or a TTA accumulator kept beside the scores) would exceed it. Each case runs in its own
process, one thread, its address space capped 4 GiB above its start; ~4 s each."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCORES_MIB = 847 * 512 * 683 * 4 / 2**20
BOUND_MIB = 1.25 * SCORES_MIB + 128

_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import numpy as np, torch
    from PIL import Image
    import segadapter
    from segadapter.data import build_dataset
    from segadapter.data.metainfo import ADE20K_FULL_CLASSES
    from segadapter.evaluation import evaluate
    from segadapter.evaluation.zero_shot import SAN_BENCHMARKS
    from segadapter.inference.preprocess import Preprocessing
    from segadapter.modeling.backbones import clip as clip_module

    def pages(field):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[field]) * resource.getpagesize()

    case, root = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    d = root / "ADE20K_2021_17_01"
    rng = np.random.default_rng(0)
    for kind, ext in (("images", ".jpg"), ("annotations", ".tif")):
        (d / f"{kind}_detectron2/validation").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (512, 683, 3), dtype=np.uint8)).save(d / "images_detectron2/validation/a.jpg")
    Image.fromarray(rng.integers(0, 847, (512, 683)).astype(np.uint16)).save(d / "annotations_detectron2/validation/a.tif")
    torch.manual_seed(0)
    if case == "san":
        clip_module.CLIP_CONFIGS["tiny"] = clip_module.ClipConfig(
            32, clip_module.ClipVisionConfig(32, 16, 32, 12, 2), clip_module.ClipTextConfig(77, 600, 32, 2, 2))
        model = segadapter.create_model("san-vit-b16", classes=ADE20K_FULL_CLASSES, clip_config_override="tiny",
                                        side_width=48, side_heads=2, side_depth=4, num_queries=10)
        pre = SAN_BENCHMARKS["ade20k-full"].protocol(Preprocessing())
    else:
        model = segadapter.create_model("segformer-b0", num_classes=847, decoder_channels=32)
        pre = Preprocessing()
    dataset = build_dataset("ade20k-full", root, "val", pre.transforms())
    resource.setrlimit(resource.RLIMIT_AS, (pages(0) + 4 * 2**30, resource.RLIM_INFINITY))
    before = pages(1) / 2**20
    result = evaluate(model.eval(), dataset, progress=False, **pre.inference_kwargs())
    with open("/proc/self/status") as f:  # VmHWM: this process's own high-water mark
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"extra_mib": peak - before, "classes": len(result.iou)}))
""")


@pytest.mark.parametrize("case", ["san", "per-pixel"])
def test_one_a847_image_needs_one_score_tensor(case, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, case, str(tmp_path)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["classes"] == 847
    assert out["extra_mib"] < BOUND_MIB, f"{case}: {out['extra_mib']:.0f} MiB above the start (bound {BOUND_MIB:.0f})"
