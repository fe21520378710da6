"""DDP on 2 CPU processes (gloo, file:// rendezvous): one step on 2 x batch-1 equals one
single-process step on the combined batch-2; and the trainer runs under DDP.

The model runs in eval mode for the comparison: dropout and drop-path off, and BatchNorm uses its
running statistics. (In training mode BatchNorm would normalise each process's batch of 1 on its
own: SyncBatchNorm, which would make it match, only synchronises CUDA tensors.) Synthetic labels
have no ignored pixels, so every image weighs the same in the mean loss and the mean of the
per-process gradients equals the gradient of the combined batch.
"""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp

import segadapter
from segadapter.data import build_dataset
from segadapter.engine import param_groups
from segadapter.runtime.amp import grad_scaler
from segadapter.engine.config import OptimConfig, config_from_dict
from segadapter.runtime.distributed import cleanup, init_distributed, wrap_model
from segadapter.engine.step import train_step

CPU = torch.device("cpu")


def make_model_and_items():
    torch.manual_seed(0)
    model = segadapter.create_model("adapt-mit-b0", num_classes=5).eval()
    ds = build_dataset("synthetic", None, "val", size=32, num_samples=2)
    return model, [ds[0], ds[1]]


def batch_of(items):
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items])}


def one_step(model, module, batch):
    # The engine's parameter groups, stepped with plain SGD: AdamW's first step is about
    # lr * sign(grad), which turns float rounding in near-zero gradients into lr-sized differences
    # and would hide what this test is about (the gradient averaging).
    opt = torch.optim.SGD(param_groups(model, OptimConfig(lr=1e-2, weight_decay=0.01)), lr=1e-2)
    stats = train_step(module, batch, opt, grad_scaler(CPU, None), CPU)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return stats["loss"], grads, {n: p.detach().clone() for n, p in model.named_parameters()}


def trainer_config():
    return config_from_dict({
        "model": {"name": "segformer-b0"},
        "data": {"dataset": "synthetic", "crop_size": 32, "scale": None, "batch_size": 2, "num_workers": 0,
                 "options": {"size": 40, "num_samples": 4}, "val_options": {"num_samples": 3}},
        "schedule": {"max_iters": 4, "warmup_iters": 1},
        "train": {"log_interval": 2, "eval_interval": 4, "checkpoint_interval": 2, "progress": False,
                  "device": "cpu"},
    })


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu", init_method=f"file://{init_file}")
    try:
        model, items = make_model_and_items()
        ddp = wrap_model(model, info)
        assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
        loss, grads, params = one_step(model, ddp, batch_of(items[rank:rank + 1]))
        torch.distributed.all_reduce(loss)
        if rank == 0:
            torch.save({"loss": loss / world, "grads": grads, "params": params}, os.path.join(out_dir, "ddp.pt"))

        from segadapter.engine import Trainer

        trainer = Trainer(trainer_config(), os.path.join(out_dir, "run"), dist_info=info)
        assert trainer.batch_per_process == 1 and len(trainer.loader) == 2  # 4 samples / 2 ranks
        trainer.fit()
    finally:
        cleanup()


@pytest.fixture(scope="module")
def ddp_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(out / "rendezvous"), str(out)), nprocs=2, join=True)
    return out


def test_ddp_step_equals_single_process_step(ddp_outputs):
    ddp = torch.load(ddp_outputs / "ddp.pt", weights_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, items = make_model_and_items()
        loss, grads, params = one_step(model, model, batch_of(items))
    finally:
        torch.set_num_threads(threads)
    assert float(ddp["loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert grads.keys() == ddp["grads"].keys()
    for name in grads:
        torch.testing.assert_close(ddp["grads"][name], grads[name], rtol=1e-5, atol=1e-6, msg=name)
    worst = max((ddp["params"][n] - params[n]).abs().max().item() for n in params)
    assert worst <= 1e-6, worst
    # The step did move the parameters (the comparison is not between two untouched models).
    fresh, _ = make_model_and_items()
    assert max((p - params[n]).abs().max().item() for n, p in fresh.named_parameters()) > 1e-4


def test_trainer_runs_under_ddp_with_rank0_io(ddp_outputs):
    run = ddp_outputs / "run"
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_000004"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_000002", "iter_000004", "latest"]
    from segadapter.engine.checkpoint import load_train_state

    state = load_train_state(run / "checkpoints" / "iter_000004")
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG streams
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # per-rank streams
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["type"], r["iter"]) for r in recs] == [("train", 2), ("train", 4), ("val", 4)]
    assert recs[-1]["mIoU"] is not None
