"""Meta-architectures: how a model's parts run together, one per kind of model (Detectron2's
`meta_arch/`). All share the `Segmentor` interface (forward, predict, loss, save/load,
parameter groups):
  `Segmentor` (segmentor.py)            encoder-decoder: backbone (+ adapters) -> head; per-pixel
                                        and ATM heads
  `SideAdapterSegmentor` (side_adapter.py)  SAN: a side network beside a frozen CLIP, whose last
                                        blocks recognise the side network's proposals
"""
from .side_adapter import SideAdapterSegmentor

__all__ = ["SideAdapterSegmentor"]
