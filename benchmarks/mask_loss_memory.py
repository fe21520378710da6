"""Peak memory of SegViT's mask losses at label resolution: chunked + checkpointed vs all at once.

Worst case: K = 150, batch 2, 512 x 512 labels with every class present (300 masks), 3 supervised
outputs, forward + backward of `fixed_assignment_loss`. Each setting runs in its own process with a
fixed glibc mmap threshold, so that the RSS high-water mark follows the live tensors (glibc's
default keeps freed heap blocks and reports its own retention instead).

    python benchmarks/mask_loss_memory.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def child(chunk_elements: int) -> dict:
    import torch

    from segadapter.modeling.losses.mask import fixed_assignment_loss

    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

    torch.manual_seed(0)
    labels = torch.randint(0, 150, (2, 512, 512))
    cls = [torch.randn(2, 150, 151, requires_grad=True) for _ in range(3)]
    masks = [torch.randn(2, 150, 32, 32, requires_grad=True) for _ in range(3)]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    t = time.perf_counter()
    out = fixed_assignment_loss(cls, masks, labels, 150, chunk_elements=chunk_elements)
    sum(out.values()).backward()
    return {"seconds": time.perf_counter() - t, "peak_extra_mb": status("VmHWM") - before,
            "loss": float(sum(out.values()))}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    for name, chunk in (("chunked (default)", 1 << 22), ("all at once", 1 << 40)):
        out = subprocess.run([sys.executable, __file__, "--child", str(chunk)], env=env, capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name}: live peak {r['peak_extra_mb']:.0f} MB, {r['seconds']:.1f} s, loss {r['loss']:.4f}")


if __name__ == "__main__":
    main()
