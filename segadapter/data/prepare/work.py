"""Running a converter's work items: one item per image, skipped when all its outputs are already
there (so an interrupted run resumes where it stopped), under a progress bar."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Item:
    """One image's job: `make()` writes `outputs` (each atomically) and returns False when, as the
    official script does, it writes nothing for this image (e.g. a VOC mask with no class pixel)."""

    name: str
    outputs: tuple[Path, ...]
    make: Callable[[], bool | None]

    @property
    def done(self) -> bool:
        return bool(self.outputs) and all(p.is_file() for p in self.outputs)


@dataclass
class Report:
    """What a run did, per split and in all."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # already there from an earlier run
    empty: dict[str, int] = field(default_factory=dict)  # nothing to write, as the official script

    def lines(self) -> list[str]:
        out = []
        for split in self.written:
            line = f"{split}: {self.written[split]} written, {self.skipped[split]} already there"
            if self.empty[split]:
                line += f", {self.empty[split]} without any labelled pixel (not written, as the official script)"
            out.append(line)
        return out


def run_items(items: Sequence[Item], split: str, report: Report, progress: bool = True,
              desc: str | None = None) -> None:
    from tqdm import tqdm

    written = skipped = empty = 0
    for item in tqdm(items, desc=desc or split, disable=not progress, dynamic_ncols=True):
        if item.done:
            skipped += 1
        elif item.make() is False:
            empty += 1
        else:
            written += 1
    report.written[split] = report.written.get(split, 0) + written
    report.skipped[split] = report.skipped.get(split, 0) + skipped
    report.empty[split] = report.empty.get(split, 0) + empty


def lookup_table(raw_ids: Iterable[int], size: int, fill: int, dtype) -> np.ndarray:
    """A table t with t[raw_ids[k]] = k and `fill` elsewhere: raw ids -> train ids in one take."""
    table = np.full(size, fill, dtype=dtype)
    for train_id, raw in enumerate(raw_ids):
        table[raw] = train_id
    return table
