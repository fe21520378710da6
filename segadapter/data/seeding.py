"""Per-sample random streams, so augmentation does not depend on which worker loads a sample.

Every sample draws its augmentation from its own generator, derived from (seed, epoch, index).
The sampler (in the main process) attaches the epoch and seed to each index as a `SampleKey`, so
the result is identical for any `num_workers`, with persistent workers, and across ranks.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SampleKey(NamedTuple):
    """What a sampler yields instead of a bare index: enough to rebuild the sample's RNG."""

    index: int
    epoch: int
    seed: int


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """An independent, reproducible generator for one sample in one epoch."""
    # SeedSequence hashes the triple, so nearby seeds/indices give unrelated streams.
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]))
