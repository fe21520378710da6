"""The evaluation loop: mixed sizes, label-size outputs, DDP sharding with the gloo backend."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from segadapter.evaluation import evaluate
from segadapter.evaluation.metrics import ConfusionMatrix


class ToyDataset(torch.utils.data.Dataset):
    classes = ["a", "b", "c"]
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    ignore_index = 255

    def __init__(self, n=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            h, w = 32 + 3 * i, 44 - 2 * i  # every item a different size (>= 32: no padding)
            label = torch.randint(0, 3, (h, w), generator=g)
            label[0] = 255
            image = torch.randn(3, h, w, generator=g)
            self.items.append({"image": image, "label": label, "path": f"img{i}.png"})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class ChannelArgmax(nn.Module):
    """Contract-shaped model (eval: logits at H/4; train: dict) with a known prediction rule."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        out = F.avg_pool2d(x * self.scale, 4, ceil_mode=True)
        return {"logits": out} if self.training else out


def _reference(model, ds):
    m = ConfusionMatrix(3)
    for item in ds:
        h, w = item["label"].shape
        logits = F.interpolate(model.eval()(item["image"][None]), (h, w), mode="bilinear", align_corners=False)
        m.update(logits[0].argmax(0), item["label"])
    return m.compute(ds.classes)


def test_evaluate_matches_manual_loop_and_restores_mode(capsys):
    model, ds = ChannelArgmax(), ToyDataset()
    model.train()
    result = evaluate(model, ds, progress=True)
    assert model.training
    ref = _reference(model, ds)
    assert result.class_names == ["a", "b", "c"]
    np.testing.assert_allclose(result.iou, ref.iou)
    assert result.mIoU == pytest.approx(ref.mIoU)
    assert result.num_pixels == sum(int((it["label"] != 255).sum()) for it in ds)
    assert "eval" in capsys.readouterr().err  # tqdm bar on rank 0


def test_evaluate_scores_at_label_size():
    # the test transform may shrink the image but not the label: predictions must be resized up
    model, ds = ChannelArgmax(), ToyDataset(n=2)
    for it in ds.items:
        it["image"] = F.interpolate(it["image"][None], scale_factor=0.5, mode="bilinear")[0]
    result = evaluate(model, ds, progress=False, mode="slide", crop_size=(4, 4), stride=(2, 2))
    assert result.num_pixels == sum(int((it["label"] != 255).sum()) for it in ds)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(ChannelArgmax())
        result = evaluate(model, ToyDataset(n=5), progress=False)  # 5 items: uneven shards 3 + 2
        torch.save({"iou": result.iou, "n": result.num_pixels}, os.path.join(out_dir, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_distributed_shards_sum_to_single_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = evaluate(ChannelArgmax(), ToyDataset(n=5), progress=False)
    for rank in range(2):
        got = torch.load(tmp_path / f"r{rank}.pt", weights_only=True)
        assert got["n"] == single.num_pixels  # every rank holds the all-reduced total
        np.testing.assert_allclose(got["iou"], single.iou)
