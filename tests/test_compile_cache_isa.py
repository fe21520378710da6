"""A compile cache filled under one CPU instruction set must not serve another: inductor (torch
2.13) keys its compiled graphs without the vector ISA, so AVX-512 code read back under the AVX2
limits computed NaNs (tests/test_train_compile.py did so in the AVX2 run of the suite) and AVX2
code read under AVX-512 corrupted memory. `train.compile` and `--compile` put the ISA in the
cache key (`key_compile_cache_by_cpu_isa`); here two processes share one cache directory, as a
cluster's home folder or a warmed container image would."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from segadapter.utils.compile import cxx_compiler

CHILD = """
import torch
from torch import nn
from torch._inductor.cpu_vec_isa import pick_vec_isa
from segadapter.utils.compile import compile_for_training

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm, self.fc, self.out = nn.LayerNorm(64), nn.Linear(64, 256), nn.Linear(256, 64)

    def forward(self, x):
        return x + self.out(nn.functional.gelu(self.fc(self.norm(x))))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x

torch.manual_seed(0)
net, x = Net(), torch.randn(8, 333, 64)  # 333 rows: vector loops with tails
eager = net(x)
compile_for_training(net, "cpu")
print(pick_vec_isa(), float((net(x) - eager).abs().max()), sep=";")
"""


def run_child(cache_dir, **limits) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env.update(TORCHINDUCTOR_CACHE_DIR=str(cache_dir), **limits)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]  # a crash here was AVX2 code run as AVX-512 code
    isa, diff = done.stdout.strip().splitlines()[-1].split(";")
    return isa, float(diff)


@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")
def test_a_cache_filled_with_avx512_code_does_not_serve_an_avx2_limited_run(tmp_path):
    own_isa, own_diff = run_child(tmp_path)
    if own_isa in ("avx2", "", "None"):
        pytest.skip(f"this CPU's own vector ISA is {own_isa or 'scalar'}: both runs would compile the same code")
    limited_isa, limited_diff = run_child(tmp_path, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    assert limited_isa == "avx2"
    assert own_diff < 1e-4 and limited_diff < 1e-4, (own_diff, limited_diff)  # NaN fails both
    again_isa, again_diff = run_child(tmp_path)  # and the AVX2 entries do not serve the full ISA
    assert again_isa == own_isa and again_diff < 1e-4
