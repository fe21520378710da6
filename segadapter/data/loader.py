"""DataLoader construction: seeded shuffling, per-sample augmentation seeds, worker seeding.

Reproducibility: the sampler runs in the main process and turns each index into a
`SampleKey(index, epoch, seed)`. The dataset builds the sample's augmentation generator from that
key alone, so a batch depends only on (seed, epoch, position) - not on `num_workers`, on which
worker loads it, or on persistent workers keeping stale dataset copies. The epoch advances by one
each time the loader is iterated; call `set_epoch(loader, e)` to jump (e.g. when resuming).
"""
from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from ..errors import DataError
from .base import BAD_FILE, SegDataset
from .seeding import SampleKey


class EpochSampler(Sampler):
    """Yields `SampleKey`s; shuffles with a generator of (seed, epoch); epoch += 1 per pass.

    With `base` (e.g. a DistributedSampler) the index order comes from it instead.
    """

    def __init__(self, length: int, shuffle: bool, seed: int, base: Sampler | None = None,
                 start_epoch: int = 0) -> None:
        self.length, self.shuffle, self.seed, self.base = length, shuffle, int(seed), base
        self.epoch = start_epoch

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass will use."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        epoch = self.epoch
        self.epoch += 1
        if self.base is not None:
            if hasattr(self.base, "set_epoch"):
                self.base.set_epoch(epoch)
            order: Sequence[int] = list(self.base)
        elif self.shuffle:
            order = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch]).permutation(self.length).tolist()
        else:
            order = range(self.length)
        for i in order:
            yield SampleKey(int(i), epoch, self.seed)

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.length


class KeyedDataset(Dataset):
    """Lets any dataset take `SampleKey`s; Subsets of a SegDataset keep per-sample seeding."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> Any:
        ds, index = self.dataset, key.index
        while isinstance(ds, Subset):
            index, ds = int(ds.indices[index]), ds.dataset
        if isinstance(ds, SegDataset):
            return ds[SampleKey(index, key.epoch, key.seed)]
        return self.dataset[key.index]  # a foreign dataset: its own randomness applies

    def __getattr__(self, name: str) -> Any:
        # Forward metadata (classes, palette, ...) from the innermost dataset; guard dunders and
        # our own attribute so unpickling (which probes before __init__ ran) cannot recurse.
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        ds = self.dataset
        while isinstance(ds, Subset) and not hasattr(ds, name):
            ds = ds.dataset
        return getattr(ds, name)


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels (they must share a size, e.g. train crops); other keys -> lists.
    Samples that could not be read (a dataset's skip_bad) are left out, their messages listed
    under BAD_FILE; a batch of nothing but those is only that list."""
    bad = [it[BAD_FILE] for it in items if BAD_FILE in it]
    if bad:
        items = [it for it in items if BAD_FILE not in it]
        if not items:
            return {BAD_FILE: bad}
        return {**collate_samples(items), BAD_FILE: bad}
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) > 1:
        raise DataError(
            f"cannot batch images of different sizes {sorted(shapes)}: train with a fixed crop "
            "size, and evaluate variable-size images with batch_size=1"
        )
    batch: dict[str, Any] = {"image": torch.stack([it["image"] for it in items])}
    if all(it.get("label") is not None for it in items):
        batch["label"] = torch.stack([it["label"] for it in items])
    for k in items[0]:
        if k not in batch and k != "label":
            batch[k] = [it[k] for it in items]
    return batch


def _seed_worker(worker_id: int) -> None:
    """Seed the global RNGs of a worker (torch already did its own) for third-party code."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the next pass over `loader` use `epoch` (order and augmentation)."""
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader whose batches are a pure function of (seed, epoch).

    With `distributed=True` and torch.distributed initialised, each rank gets its shard through a
    DistributedSampler (seeded with `seed`). Workers persist across epochs when num_workers > 0.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    base = None
    if distributed and dist.is_available() and dist.is_initialized():
        base = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler = EpochSampler(len(dataset), shuffle, seed, base)  # type: ignore[arg-type]
    keyed = dataset if isinstance(dataset, SegDataset) else KeyedDataset(dataset)
    return DataLoader(
        keyed,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(int(seed)),
    )


def stop_workers(loader: DataLoader, batches) -> None:
    """End the worker processes of `batches` (an iterator of `loader`) now, not when the garbage
    collector gets to them.

    An exception's traceback keeps the iterator alive (a reference cycle only the collector
    breaks), and at interpreter exit `multiprocessing` joins every child it started before any
    collection: workers that ignore SIGTERM (engine.stop_signals.IgnoreStopSignals) then keep the
    process from ever exiting. torch's own clean-up (what the iterator's `__del__` calls) ends
    them through their queues; a persistent-workers loader forgets the iterator, so iterating it
    again starts fresh workers. Safe to call twice; a no-op for a single-process iterator."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    if getattr(loader, "_iterator", None) is batches:
        loader._iterator = None
