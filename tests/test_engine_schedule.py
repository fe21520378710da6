"""Warm-up + poly schedule: values at key iterations, per-group base lrs, exact state round trip."""
from __future__ import annotations

import io

import pytest
import torch

from segadapter.engine import WarmupPolyLR, build_scheduler, lr_factor
from segadapter.engine.config import ScheduleConfig


@pytest.mark.parametrize("i, expected", [
    (0, 1e-6),                                            # warm-up starts at warmup_ratio
    (750, (1 - 750 / 160_000) * (1 - 0.5 * (1 - 1e-6))),  # half way through the warm-up
    (1499, (1 - 1499 / 160_000) * (1 - (1 / 1500) * (1 - 1e-6))),
    (1500, 1 - 1500 / 160_000),                           # joins the poly curve, no jump
    (80_000, 0.5),
    (159_999, 1 / 160_000),
    (160_000, 0.0),
    (170_000, 0.0),                                       # clamped past the end
])
def test_lr_factor_key_iterations(i, expected):
    assert lr_factor(i, 160_000, 1500, 1e-6, 1.0) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_power_and_no_warmup():
    assert lr_factor(50, 100, 0, power=2.0) == pytest.approx(0.25)
    assert lr_factor(0, 100, 0) == 1.0


def make(max_iters=100, warmup=10):
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW([{"params": [params[0]], "lr": 1e-3}, {"params": [params[1]], "lr": 1e-2}])
    return opt, build_scheduler(opt, ScheduleConfig(max_iters=max_iters, warmup_iters=warmup))


def test_scheduler_applies_factor_to_every_group():
    opt, sched = make()
    seen = []
    for i in range(100):
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == pytest.approx([1e-3 * lr_factor(i, 100, 10), 1e-2 * lr_factor(i, 100, 10)], rel=1e-9)
        seen.append(lrs[0])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-9) and max(seen) == pytest.approx(1e-3 * 0.9)
    assert opt.param_groups[1]["lr"] == 0.0  # after max_iters steps


def test_state_round_trip_is_exact():
    opt, sched = make()
    for _ in range(37):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2, sched2 = make()
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    assert isinstance(sched2, WarmupPolyLR) and sched2.last_epoch == 37
    for _ in range(20):
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
        for o in (opt, opt2):
            o.step()
        sched.step()
        sched2.step()


def test_loading_keeps_the_configured_curve():
    opt, sched = make(max_iters=100)
    for _ in range(60):
        opt.step()
        sched.step()
    opt2, longer = make(max_iters=200)  # resumed with a longer schedule
    opt2.load_state_dict(opt.state_dict())
    longer.load_state_dict(sched.state_dict())
    assert longer.last_epoch == 60 and longer.max_iters == 200
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_factor(60, 200, 10))
