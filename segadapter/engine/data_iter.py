"""Endless, resumable batches for an iteration-based loop.

The loaders from `segadapter.data.build_dataloader` make every batch a pure function of
(seed, epoch, position). So iteration i is batch i % n of epoch i // n (n = batches per epoch),
and resuming at iteration i only has to select that epoch and skip positions - without loading
the skipped samples.
"""
from __future__ import annotations

from typing import Any, Iterator

from torch.utils.data import DataLoader

from ..data.loader import stop_workers


def epoch_batches(loader: DataLoader, start_iter: int = 0) -> Iterator[tuple[int, Any]]:
    """Yield (epoch, batch) forever, starting with the batch of iteration `start_iter`."""
    n = len(loader)
    if n == 0:
        raise ValueError("the training loader yields no batch (dataset smaller than the batch?)")
    epoch, skip = divmod(start_iter, n)
    while True:
        loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        source = _skipping(loader, skip) if skip else loader
        batches = iter(source)
        try:
            for b in batches:
                yield epoch, b
        except BaseException:  # an error from a worker, or GeneratorExit: the caller closed this
            stop_workers(source, batches)
            raise
        skip = 0
        epoch += 1


class _SkipBatches:
    """The loader's batch sampler minus its first `skip` batches (indices only, nothing loaded)."""

    def __init__(self, batch_sampler, skip: int):
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self):
        for i, batch in enumerate(self.batch_sampler):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)


def _skipping(loader: DataLoader, skip: int) -> DataLoader:
    # A one-off loader with the same dataset, collation and worker setup for the partial epoch.
    return DataLoader(
        loader.dataset,
        batch_sampler=_SkipBatches(loader.batch_sampler, skip),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
    )
