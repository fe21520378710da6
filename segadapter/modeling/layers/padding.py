"""Padding to a multiple of a size divisor, and its inverse on predicted masks: the glue of
detectron2-style query heads (inputs padded as an `ImageList`, masks cropped back by
`sem_seg_postprocess`), shared by any of them (SAN, a Mask2Former)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, divisor: int, value: float = 0.0) -> torch.Tensor:
    """Pad the last two dims at the bottom/right up to multiples of `divisor`."""
    h, w = x.shape[-2:]
    ph, pw = -h % divisor, -w % divisor
    if ph or pw or torch.jit.is_tracing():  # a traced graph must pad for every input size
        return F.pad(x, (0, pw, 0, ph), value=value)
    return x


def unpad_masks(masks: torch.Tensor, image_size: tuple[int, int], divisor: int, size=None) -> torch.Tensor:
    """Mask logits predicted on a padded input's grid -> upsampled to the padded size, cropped to
    the image (`image_size`, before padding) and resized to `size` if given: detectron2's
    `sem_seg_postprocess` order, before the class combination."""
    h, w = image_size
    padded = (h + (-h % divisor), w + (-w % divisor))
    masks = F.interpolate(masks, size=padded, mode="bilinear", align_corners=False)[..., :h, :w]
    if size is not None and tuple(size) != (h, w):
        masks = F.interpolate(masks, size=tuple(size), mode="bilinear", align_corners=False)
    return masks
