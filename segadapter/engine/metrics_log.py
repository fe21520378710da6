"""RUN/metrics.jsonl: one JSON object per logged interval or evaluation.

The file is rewritten atomically on every record (it stays small: one line per log interval), so
it is never half-written; on resume, records after the resumed iteration are dropped because the
resumed run will log those iterations again. Without a path the records are kept in memory only
(`train.loggers` without jsonl): the trainer still reads them.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..utils.io import write_text_atomic

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    def __init__(self, path: str | os.PathLike | None, keep_until: int | None = None):
        """Start empty, or (with `keep_until`) from the existing records up to that iteration."""
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        if keep_until is not None and self.path is not None and self.path.is_file():
            self.records = [r for r in _read(self.path) if r.get("iter", 0) <= keep_until]
            self._write()

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(_finite(record))
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


def _read(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a foreign or damaged line must not stop a resume
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _finite(value: Any) -> Any:
    # JSON has no NaN/Infinity; null keeps the file readable by strict parsers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
