"""The file side of `Inferencer.save` / `segadapter predict`: class-id PNGs and overlays encoded
in background threads into a hidden staging folder inside the output folder, moved into place
(each file atomically) only when every image has succeeded - one bad input leaves the folder as
it was."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DiskFullError
from ..utils.io import disk_full_error
from .io_threads import BackgroundWriter, TakeTurns
from .visualize import OVERLAY_FORMATS, ignore_index_for, output_names, overlay, sixteen_bit_picture


class PredictionWriter:
    """`with PredictionWriter(out_dir, ...) as w: w.submit(name, label, image)`; `w.written` lists
    the files once the block has ended without an error."""

    def __init__(self, out_dir: str | os.PathLike, palette, *, opacity: float = 0.5, overlay: bool = True,
                 overlay_format: str = "png", workers: int = 2, max_pending: int = 8,
                 turns: TakeTurns | None = None):
        if overlay_format not in OVERLAY_FORMATS:
            raise ConfigError(f"overlay_format must be one of {', '.join(OVERLAY_FORMATS)}, got {overlay_format!r}")
        self.out_dir = Path(out_dir)
        self.palette, self.opacity, self.overlay, self.overlay_format = palette, opacity, overlay, overlay_format
        self.workers, self.max_pending = max(1, workers), max_pending
        self.turns = turns or TakeTurns(enabled=False)
        self.names: list[str] = []
        self.written: list[Path] = []

    def __enter__(self) -> "PredictionWriter":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=".segadapter-predict-", dir=self.out_dir))
        self._threads = BackgroundWriter(workers=self.workers, max_pending=self.max_pending).__enter__()
        return self

    def submit(self, name: str, label: np.ndarray, image: np.ndarray | None) -> None:
        self.names.append(name)
        self._threads.submit(self._write, name, label, image if self.overlay else None)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._threads.__exit__(exc_type, exc, tb)  # waits for the pending writes (and raises theirs)
            if exc_type is None:
                for name in self.names:
                    for file in output_names(name, self.overlay_format)[: 2 if self.overlay else 1]:
                        os.replace(self.stage / file, self.out_dir / file)
                        self.written.append(self.out_dir / file)
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)

    def _write(self, name: str, label: np.ndarray, image: np.ndarray | None) -> None:
        """The two pictures, straight into the private staging folder: no temp file + fsync per
        file (half the time of an image's encode + write); they reach the output by rename, so
        nobody ever sees a partial one. Runs in a writing thread, taking turns with the network."""
        with self.turns.shared():
            try:
                self._encode(name, label, image)
            except Exception as e:
                full = disk_full_error(e)
                if full is not None:  # the output folder is left as it was: the stage is removed on exit
                    raise DiskFullError(f"{self.out_dir}: {full.strerror or 'no space left on device'} while writing "
                                        f"the predictions of {name}; no file of this run was moved into the "
                                        "folder, the ones already there are intact") from None
                raise

    def _encode(self, name: str, label: np.ndarray, image: np.ndarray | None) -> None:
        from PIL import Image

        names = output_names(name, self.overlay_format)
        ignore = ignore_index_for(len(self.palette))  # and 16-bit PNGs, beyond 255 classes
        picture = sixteen_bit_picture(label) if ignore > 255 else Image.fromarray(label)
        picture.save(self.stage / names[0], format="PNG", compress_level=1)
        if image is not None:
            picture = Image.fromarray(overlay(image, label, self.palette, self.opacity, ignore))
            if self.overlay_format == "jpg":
                picture.save(self.stage / names[1], format="JPEG", quality=90)
            else:
                picture.save(self.stage / names[1], format="PNG", compress_level=1)
