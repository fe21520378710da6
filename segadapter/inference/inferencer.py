"""`segadapter.Inferencer`: one call from images (paths, folders, PIL, numpy, tensors) to label maps.

    inferencer = segadapter.Inferencer("work_dirs/adapt-mit-b0_camvid-cpu")
    pred = inferencer("frame.png", overlay=True)        # Prediction: .label (H, W), .overlay
    preds = inferencer("frames/")                       # list, in file order
    inferencer.save("frames/", "predictions/")          # class-id PNGs + overlays, as `predict`

Images are fed the way the model's preprocessing record says (resize rule, mean/std, whole or
sliding window); label maps and scores come back at each input's own size. The Inferencer holds
the model, its classes and colours and the public calls; `BatchRunner` (runner.py) decodes ahead
of the network and batches images of one size, `PredictionWriter` (writer.py) encodes and writes
behind it, both in background threads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, SegAdapterError
from ..modeling.vocabulary import require_vocabulary, vocabulary_of
from ..runtime.wrappers import bare_model
from .load import load_model
from .onnx_network import check_torch_only_options, is_onnx_path, network_precision
from .preprocess import Preprocessing
from .runner import BatchRunner
from .sources import Source, collect
from .visualize import check_opacity, check_palette, check_png_classes
from .writer import PredictionWriter


@dataclass
class Prediction:
    """One image's result, at the image's own size."""

    name: str  # the file's stem, or image_0003 for in-memory inputs
    label: np.ndarray  # (H, W) class ids: uint8 (int32 beyond 255 classes)
    classes: list[str] | None = None
    scores: np.ndarray | None = None  # (K, H, W) float32 class probabilities, if asked for
    overlay: np.ndarray | None = None  # (H, W, 3) uint8, if asked for
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded input, if asked for
    source: str = ""

    def shares(self) -> dict[int, float]:
        """Fraction of the image each predicted class covers, largest first."""
        counts = np.bincount(self.label.ravel().astype(np.int64))
        order = np.argsort(-counts, kind="stable")
        return {int(k): float(counts[k]) / self.label.size for k in order if counts[k]}


class Inferencer:
    """Segment images with a model and its preprocessing record.

    `model`: a model (any module whose eval forward returns (B, K, h, w) logits), a model /
    training run folder, or an `.onnx` file from `segadapter export` (run by ONNX Runtime on the
    CPU, fp32 or int8 as exported; `amp` and `compile` do not apply). `device` default: CUDA if available, else CPU. `amp`: autocast
    for the network: "auto" (bf16 where the device computes it natively, else fp16 on CUDA, fp32 on
    CPU; `inferencer.precision` says what and why), "bf16", "fp16", or "none" / None for fp32. `preprocessing`: overrides the model's record (see `Preprocessing`;
    use `inferencer.preprocessing.replace(scale=(W, H))` to change one thing). `scales`: multi-scale
    test. `classes`: class names for open-vocabulary models (those with a `vocabulary`).
    `batch_size`: images per forward (same-size images only). `workers`: decoding threads.
    """

    def __init__(self, model: nn.Module | str | os.PathLike, *, device: str | torch.device | None = None,
                 amp: str | torch.dtype | None = "auto", preprocessing: Preprocessing | dict | None = None,
                 scales: Sequence[float] = (1.0,), classes: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None, batch_size: int = 4, workers: int = 2,
                 compile: bool = False):
        from ..runtime.device import resolve_device

        if is_onnx_path(model) and device is None:
            device = "cpu"  # an exported graph: ONNX Runtime on the CPU, no torch model
        loaded = load_model(model)  # a model, a model / run folder, a hub id or an .onnx file
        model = loaded.model
        check_torch_only_options(model, amp, compile)
        self.device = resolve_device(None if device is None else str(device))
        self.precision = network_precision(model, amp, self.device)
        self.amp_dtype = self.precision.dtype
        if isinstance(preprocessing, dict):
            preprocessing = Preprocessing.from_dict(preprocessing)
        self.preprocessing = preprocessing if preprocessing is not None else loaded.record
        self.model = model.to(self.device).eval()
        self.net = self.model
        if compile:
            from ..utils.compile import compile_for_inference

            self.net = compile_for_inference(self.model, self.device)
        self.runner = BatchRunner(self.model, self.net, self.preprocessing, self.device, self.amp_dtype, scales,
                                  batch_size, workers)
        self._palette_override = palette
        self.classes: list[str] | None = None
        self.set_classes(classes)

    # ------------------------------------------------------------------ classes and colours

    @property
    def open_vocabulary(self) -> bool:
        return vocabulary_of(self.model) is not None

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return bare_model(self.model).num_classes

    def set_classes(self, classes: Sequence[str] | None, what: str = "classes") -> None:
        """Name the classes to segment: for open-vocabulary models any list (the model's
        `set_classes` checks and takes them, once; errors are prefixed by `what`, e.g. the CLI
        flag); otherwise None (the recorded names)."""
        vocab = vocabulary_of(self.model)
        if classes is None:
            if vocab is not None:
                vocab.refresh()  # e.g. CLIP weights came after its names: embed them by text now
            recorded = self.preprocessing.classes
            if recorded is None and vocab is not None:  # an open-vocabulary model names its current set
                recorded = vocab.names
            self.classes = list(recorded) if recorded is not None else None
            return
        vocab = require_vocabulary(self.model, what)  # one line for a fixed-class model
        if isinstance(classes, str) or list(classes) != vocab.names or vocab.stale:
            try:
                self.model.set_classes(classes, what)
            except SegAdapterError:
                raise
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{what} {list(classes)}: the model cannot take them ({e})") from None
        self.classes = list(vocabulary_of(self.model).names)  # a model may hold a new Vocabulary now

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """Colours of the classes: the `palette` argument, else the record's, else generated ones
        (also when an open-vocabulary model was given other classes than the record names)."""
        from ..data.metainfo import generated_palette

        k = self.num_classes
        recorded = self.preprocessing.palette
        renamed = self.classes is not None and self.preprocessing.classes is not None \
            and list(self.preprocessing.classes) != self.classes
        for palette, what in ((self._palette_override, "palette"), (None if renamed else recorded, "the recorded palette")):
            if palette is not None:
                return check_palette(palette, k, what)
        return generated_palette(min(k, 256)) + [(255, 255, 255)] * max(0, k - 256)

    # ------------------------------------------------------------------ running

    def __call__(self, inputs: Any, *, scores: bool = False, overlay: bool = False, opacity: float = 0.5,
                 classes: Sequence[str] | None = None, keep_image: bool = False) -> Prediction | list[Prediction]:
        """Predict; one `Prediction` for one image, a list for a list, folder or batch."""
        sources, single = collect(inputs)
        preds = list(self.iter(sources, scores=scores, overlay=overlay, opacity=opacity, classes=classes,
                               keep_image=keep_image))
        return preds[0] if single else preds

    def iter(self, inputs: Any, *, scores: bool = False, overlay: bool = False, opacity: float = 0.5,
             classes: Sequence[str] | None = None, keep_image: bool = False) -> Iterator[Prediction]:
        """Like calling, but yields predictions one by one as they are ready (for long folders)."""
        sources = inputs if _is_sources(inputs) else collect(inputs)[0]
        check_opacity(opacity)
        if classes is not None:
            self.set_classes(classes)
        for item, result in self._run(sources, scores):
            source, image = item[0], item[1]
            pred = Prediction(source.name, result["label"], self.classes, result.get("scores"), source=source.label)
            if overlay:
                pred.overlay = self.overlay(image, pred.label, opacity)
            if keep_image:
                pred.image = image
            yield pred

    def overlay(self, image: np.ndarray, label: np.ndarray, opacity: float = 0.5) -> np.ndarray:
        from .visualize import ignore_index_for, overlay

        return overlay(image, label, self.palette, opacity, ignore_index_for(self.num_classes))

    def save(self, inputs: Any, out_dir: str | os.PathLike, *, opacity: float = 0.5, overlay: bool = True,
             overlay_format: str = "png", progress: bool = False, classes: Sequence[str] | None = None) -> list[Path]:
        """Write NAME.png (class ids, 255 = ignore; 16-bit beyond 255 classes) and NAME_overlay.png per image into `out_dir`
        (`overlay_format="jpg"`: NAME_overlay.jpg, quality 90 - encodes ~25x faster than PNG on a CPU).

        All or nothing (`PredictionWriter`): one bad input leaves `out_dir` as it was. Output
        names must be distinct (see `segadapter predict`).
        """
        from tqdm import tqdm

        sources = inputs if _is_sources(inputs) else collect(inputs)[0]
        check_opacity(opacity)
        if classes is not None:
            self.set_classes(classes)
        check_png_classes(self.num_classes, "classes")
        run = self.runner
        with PredictionWriter(out_dir, self.palette, opacity=opacity, overlay=overlay, overlay_format=overlay_format,
                              workers=run.workers, max_pending=2 * run.batch_size, turns=run.turns) as writer:
            bar = tqdm(total=len(sources), desc="predict", disable=not progress, dynamic_ncols=True)
            for (source, image, _), result in run.run(sources, False, self.num_classes, self.preprocessing):
                writer.submit(source.name, result["label"], image)
                bar.update(1)
            bar.close()
        return writer.written

    # ------------------------------------------------------------------ the pipeline

    def _run(self, sources: list[Source], want_scores: bool):
        return self.runner.run(sources, want_scores, self.num_classes, self.preprocessing)

    @property
    def scales(self) -> tuple[float, ...]:
        return self.runner.scales

    @property
    def batch_size(self) -> int:
        return self.runner.batch_size

    @property
    def workers(self) -> int:
        return self.runner.workers


def _is_sources(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(s, Source) for s in x)

