"""`amp: auto` picks what the machine computes natively, as PyTorch and oneDNN may use it at run
time: bf16 on CPUs with bf16 units, fp32 where bf16 would be emulated (here: the AVX2 limits of
an AMD EPYC, set through ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY in a fresh process). The run
log, config.yaml and the model card say what was chosen and why."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from segadapter.engine import Trainer, load_config
from segadapter.errors import ConfigError
from segadapter.runtime.amp import EmulatedPrecisionWarning, choose_precision
from synthetic_run import synthetic_config

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
PROBE = ("import json, warnings; from segadapter.runtime.amp import choose_precision\n"
         "with warnings.catch_warnings(record=True) as w:\n"
         "    warnings.simplefilter('always')\n"
         "    p = choose_precision({amp!r}, 'cpu')\n"
         "print(json.dumps({{**p.to_dict(), 'warnings': [str(x.message) for x in w]}}))")


def probe(amp: str, **env) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                                                              "ATEN_CPU_CAPABILITY")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(amp=amp)], env={**base, **env}, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_has_bf16_units() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return any(f in flags.split() for f in ("amx_bf16", "avx512_bf16"))


def test_auto_is_fp32_under_avx2_limits():
    got = probe("auto", **AVX2)
    assert got["dtype"] == "fp32" and got["warnings"] == []
    assert "AVX2" in got["reason"]


@pytest.mark.parametrize("env, limit", [({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "AVX512_CORE"),
                                        ({"ATEN_CPU_CAPABILITY": "avx2"}, "AVX2")])
def test_auto_is_fp32_when_either_library_is_limited(env, limit):
    """oneDNN at AVX512_CORE still 'supports' bf16 (emulated, through fp32); auto must not take it."""
    got = probe("auto", **env)
    assert got["dtype"] == "fp32" and limit in got["reason"]


@pytest.mark.skipif(not cpu_has_bf16_units(), reason="this CPU has no bf16 units (AMX-BF16 / AVX-512 BF16)")
def test_auto_is_bf16_on_a_cpu_with_bf16_units():
    got = probe("auto")
    assert got["dtype"] == "bf16" and "natively" in got["reason"]


def test_explicit_bf16_on_an_emulating_cpu_is_honoured_with_one_warning():
    got = probe("bf16", **AVX2)
    assert got["dtype"] == "bf16"
    assert len(got["warnings"]) == 1 and "10x slower than fp32" in got["warnings"][0]


def test_none_and_bad_values():
    assert choose_precision("none", "cpu").dtype is None
    assert choose_precision(None, "cpu").dtype is None
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        choose_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="expected one of auto, none, bf16, fp16"):
        choose_precision("fp8", "cpu", "train.amp")


def test_env_command_reports_what_auto_picks():
    base = {k: v for k, v in os.environ.items() if k not in AVX2}
    out = subprocess.run([sys.executable, "-m", "segadapter", "env", "--json"], env={**base, **AVX2},
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert report["aten_cpu_capability"] == "AVX2" and report["onednn_max_cpu_isa"] == "AVX2"
    assert report["amp_auto"].startswith("amp auto -> fp32: ")
    assert report["threads"] >= 1 and report["torch"] == torch.__version__


def test_training_run_records_the_choice(tmp_path, capsys):
    cfg = synthetic_config(max_iters=2, warmup_iters=1, eval_interval=0, checkpoint_interval=0, tensorboard_images=0)
    assert cfg.train.amp == "auto"  # the default
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmulatedPrecisionWarning)  # auto never picks an emulated dtype
        trainer = Trainer(cfg, tmp_path)
    trainer.fit()
    chosen = choose_precision("auto", "cpu")
    assert trainer.amp_dtype == chosen.dtype
    assert chosen.describe() in capsys.readouterr().out
    text = (tmp_path / "config.yaml").read_text()
    assert text.splitlines()[0] == f"# train.{chosen.describe()}"
    assert load_config(tmp_path / "config.yaml").train.amp == "auto"  # runs the same way elsewhere
    card = (tmp_path / "checkpoints" / "iter_000002" / "README.md").read_text()
    assert f"Trained with amp auto -> {chosen.name}: {chosen.reason}." in card
    saved = json.loads((tmp_path / "checkpoints" / "iter_000002" / "config.json").read_text())
    assert saved["training_precision"] == chosen.to_dict()
