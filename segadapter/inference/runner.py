"""The network side of the `Inferencer`: decode images in background threads, batch consecutive
images of one size, run the test-time passes the preprocessing record asks for, and hand back
label maps (and probabilities) at each image's own size, in input order."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, SegAdapterError
from ..modeling.meta_arch.base import output_space
from .io_threads import TakeTurns, ordered_map
from .preprocess import Preprocessing
from .segment import check_inference_args, inference, is_tta
from .sources import Source

# cap on one batch's full-size fp32 scores (B x K x H x W x 4 bytes): big K at big sizes goes one by one
SCORE_BYTES = 512 * 2**20


class BatchRunner:
    """`run(sources, want_scores)` yields ((source, uint8 image, input tensor), {"label",
    "scores"?}) per image. On a CPU the network and the image threads take turns (`turns`)."""

    def __init__(self, model: nn.Module, net: nn.Module, preprocessing: Preprocessing, device: torch.device,
                 amp_dtype: torch.dtype | None, scales: Sequence[float], batch_size: int, workers: int):
        check_inference_args(preprocessing.mode, preprocessing.crop_size, preprocessing.stride, scales)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.net = model, net
        self.device, self.amp_dtype, self.scales = device, amp_dtype, tuple(float(s) for s in scales)
        self.batch_size, self.workers = int(batch_size), int(workers)
        self.turns = TakeTurns(enabled=device.type == "cpu")

    def run(self, sources: list[Source], want_scores: bool, num_classes: int,
            preprocessing: Preprocessing) -> Iterator[tuple]:
        """`preprocessing`: the record to feed the model with (the Inferencer's current one)."""
        transform = preprocessing.transforms()
        decoded = ordered_map(lambda s: self._decode(s, transform), sources, self.workers,
                              ahead=2 * self.batch_size + self.workers)
        batch: list = []
        for item in decoded:
            if batch and (_key(item) != _key(batch[0]) or len(batch) >= self._batch_limit(batch[0], num_classes)):
                yield from zip(batch, self._infer(batch, want_scores, preprocessing))
                batch = []
            batch.append(item)
        if batch:
            yield from zip(batch, self._infer(batch, want_scores, preprocessing))

    def _decode(self, source: Source, transform):
        """(source, uint8 image, normalised tensor); runs in a decoding thread."""
        with self.turns.shared():
            image = source.load()
            try:
                return source, image, transform(image)[0]
            except SegAdapterError:
                raise
            except Exception as e:  # e.g. an absurd size for the resize rule
                raise ConfigError(f"{source.label}: cannot preprocess ({type(e).__name__}: {e})") from None

    def _batch_limit(self, item, num_classes: int) -> int:
        h, w = item[1].shape[:2]
        per_image = max(1, num_classes) * h * w * 4
        return max(1, min(self.batch_size, SCORE_BYTES // per_image))

    @torch.inference_mode()
    def _infer(self, batch: list, want_scores: bool, p: Preprocessing) -> list[dict[str, np.ndarray]]:
        with self.turns.exclusive():
            return self._infer_now(batch, want_scores, p)

    def _infer_now(self, batch: list, want_scores: bool, p: Preprocessing) -> list[dict[str, np.ndarray]]:
        x = torch.stack([t for _, _, t in batch]).to(self.device, non_blocking=True)
        size = batch[0][1].shape[:2]
        out = inference(self.net, x, mode=p.mode, crop_size=p.crop_size, stride=p.stride, flip=p.flip,
                        scales=self.scales, out_size=size, amp_dtype=self.amp_dtype)
        k = out.shape[1]
        dtype = torch.uint8 if k <= 255 else torch.int32
        labels = out.argmax(1).to(dtype).cpu().numpy()
        probs = None
        if want_scores:
            probs = output_space(self.model).probabilities(out, is_tta(p.flip, self.scales)).cpu().numpy()
        return [{"label": labels[i], **({"scores": probs[i]} if probs is not None else {})} for i in range(len(batch))]


def _key(item) -> tuple:
    """Images batch together when both their network input and output sizes agree."""
    return tuple(item[2].shape), item[1].shape[:2]
