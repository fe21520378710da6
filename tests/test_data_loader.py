"""build_dataloader: identical batches for a seed regardless of workers; epochs; collation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Subset

import segadapter.data as data
from segadapter.errors import DataError


def _train_set(n=12):
    tf = data.build_transforms(True, crop_size=(24, 24))
    return data.build_dataset("synthetic", None, "train", tf, size=32, num_samples=n)


def _epochs(loader, count=2):
    return [[(b["image"].clone(), b["label"].clone(), list(b["path"])) for b in loader] for _ in range(count)]


def _same(a, b):
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2]
               for ea, eb in zip(a, b) for x, y in zip(ea, eb))


def test_same_seed_same_batches_with_and_without_workers():
    ds = _train_set()
    serial = _epochs(data.build_dataloader(ds, 4, shuffle=True, num_workers=0, seed=3))
    workers = data.build_dataloader(ds, 4, shuffle=True, num_workers=2, seed=3)
    assert workers.persistent_workers
    parallel = _epochs(workers)
    assert len(serial[0]) == 3 and _same(serial, parallel)
    assert serial[0][0][0].shape == (4, 3, 24, 24) and serial[0][0][1].dtype == torch.int64
    # epoch 1 differs from epoch 0 (order and augmentation)
    assert serial[0][0][2] != serial[1][0][2] or not torch.equal(serial[0][0][0], serial[1][0][0])


def test_different_seed_differs_and_set_epoch_replays():
    ds = _train_set()
    a = data.build_dataloader(ds, 4, shuffle=True, seed=1)
    b = data.build_dataloader(ds, 4, shuffle=True, seed=2)
    first_a, first_b = _epochs(a, 1), _epochs(b, 1)
    assert not _same(first_a, first_b)
    later = _epochs(a, 1)  # epoch 1
    data.loader.set_epoch(a, 0)
    assert _same(first_a, _epochs(a, 1)) and not _same(first_a, later)


def test_same_sample_same_augmentation_regardless_of_order():
    ds = _train_set()
    shuffled = {p: img for e in _epochs(data.build_dataloader(ds, 1, shuffle=True, seed=5), 1)
                for img, _, (p,) in e}
    ordered = {p: img for e in _epochs(data.build_dataloader(ds, 1, shuffle=False, seed=5), 1)
               for img, _, (p,) in e}
    assert shuffled.keys() == ordered.keys()
    assert all(torch.equal(shuffled[p], ordered[p]) for p in shuffled)


def test_subset_keeps_seeding_and_metadata():
    ds = _train_set()
    sub = Subset(ds, [4, 5, 6, 7])
    loader = data.build_dataloader(sub, 2, shuffle=False, seed=0)
    assert loader.dataset.classes == ds.classes
    via_subset = _epochs(loader, 1)[0]
    direct = _epochs(data.build_dataloader(ds, 2, shuffle=False, seed=0), 1)[0]
    assert torch.equal(via_subset[0][0], direct[2][0]) and via_subset[0][2] == direct[2][2]


def test_drop_last_and_variable_size_error():
    ds = _train_set(10)
    assert len(data.build_dataloader(ds, 4, shuffle=True, drop_last=True)) == 2
    assert len(data.build_dataloader(ds, 4, shuffle=True)) == 3
    small = data.build_dataset("synthetic", None, "val", size=20, num_samples=1)
    big = data.build_dataset("synthetic", None, "val", size=30, num_samples=1)
    mixed = torch.utils.data.ConcatDataset([small, big])
    with pytest.raises(DataError, match="batch_size=1"):
        next(iter(data.build_dataloader(mixed, 2, shuffle=False)))
    eval_batch = next(iter(data.build_dataloader(mixed, 1, shuffle=False)))
    assert eval_batch["image"].shape == (1, 3, 20, 20)


def test_distributed_sampler_when_initialised(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ds = _train_set(8)
        loader = data.build_dataloader(ds, 2, shuffle=True, seed=4, distributed=True)
        assert isinstance(loader.sampler.base, DistributedSampler)
        batches = _epochs(loader, 1)[0]
        assert len(batches) == 4 and sorted(p for b in batches for p in b[2]) == sorted(
            f"synthetic/train/{i:06d}" for i in range(8))
        plain = data.build_dataloader(ds, 2, shuffle=True, seed=4, distributed=False)
        assert plain.sampler.base is None
    finally:
        dist.destroy_process_group()


def test_public_api():
    for name in ("build_dataset", "build_transforms", "build_dataloader", "read_image", "read_label",
                 "DATASET_NAMES", "get_palette", "get_classes"):
        assert hasattr(data, name)
    assert data.get_classes("synthetic") == data.build_dataset("synthetic", None, "val").classes
