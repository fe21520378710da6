"""Meta-architectures: how a model's parts run together, one per kind of model (Detectron2's
`meta_arch/`). All declare the model contract of `base.SegmentationModel`:
  `SegmentationModel` (base.py)          the contract every runnable model declares
  `Segmentor` (segmentor.py)             encoder-decoder: backbone (+ adapters) -> head; per-pixel
                                         and query heads
  `SideAdapterSegmentor` (san.py)        SAN: a side adapter network beside a frozen CLIP, whose
                                         last blocks recognise the side network's proposals
"""
from .base import SegmentationModel
from .san import SideAdapterSegmentor
from .segmentor import Segmentor

__all__ = ["SegmentationModel", "Segmentor", "SideAdapterSegmentor"]
