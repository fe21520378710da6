"""Unreadable training files: found up front where cheap (data/file_check.py), or met mid-run.

Without `data.skip_bad` the first one ends the run with one error naming the file (the trainer
writes a checkpoint of the last good step first). With it, a bad file is left out of its batch,
logged and counted; more distinct bad files than `data.max_bad_share` of the training set end
the run all the same. The list travels with every checkpoint, so a resumed run counts on.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..data.file_check import find_bad_files
from ..errors import DataError


class BadFiles:
    def __init__(self, total: int, skip: bool, max_share: float, say: Optional[Callable[[str], None]] = print):
        self.total, self.skip, self.max_share, self.say = total, skip, max_share, say
        self.seen: list[str] = []  # distinct problems, each naming its file

    @property
    def limit(self) -> int:
        return int(self.max_share * self.total)

    def check_up_front(self, train_set, val_set=None) -> None:
        """Raise on a bad file, or (skip_bad) drop the bad training pairs; validation files are
        never skipped: the metrics would be of another split."""
        if val_set is not None:
            bad = find_bad_files(val_set)
            if bad:
                raise DataError(_first(bad) + "; found in a check of the validation files before training (they "
                                "are never skipped): fix or remove the file")
        bad = find_bad_files(train_set)
        if not bad:
            return
        if not self.skip:
            raise DataError(_first(bad) + "; found in a check of the training files before training: fix or "
                            "remove the file, or set data.skip_bad=true to train without it")
        for message in bad.values():
            self.note(message, "before training")
        train_set.pairs = [p for i, p in enumerate(train_set.pairs) if i not in bad]

    def note(self, message: str, when: str) -> bool:
        """Count a bad file (once, however often it is met); True the first time. DataError when
        there are more than the share allows."""
        if message in self.seen:
            return False
        self.seen.append(message)
        if len(self.seen) > self.limit:
            raise DataError(f"{message}; that makes {len(self.seen)} bad training files of {self.total}, more "
                            f"than data.max_bad_share={self.max_share} allows ({self.limit})")
        if self.say is not None:
            self.say(f"skipped a bad training file ({when}; {len(self.seen)} of at most {self.limit}): {message}")
        return True

    def restore(self, seen: list[str]) -> None:
        for message in seen:
            if message not in self.seen:
                self.seen.append(message)


def own_message(e: DataError) -> str:
    """The error as the dataset raised it: a DataLoader worker's copy carries its traceback."""
    text = str(e)
    if not text.startswith("Caught "):
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split("DataError: ", 1)[-1]


def _first(bad: dict[int, str]) -> str:
    first = bad[min(bad)]
    return first + (f" (and {len(bad) - 1} more bad file{'s' * (len(bad) > 2)})" if len(bad) > 1 else "")
