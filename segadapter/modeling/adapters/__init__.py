"""Adapters plugged after every backbone stage (SegAdapter's HSA, SeMask's semantic attention)."""
from .stage_adapters import AdapterOptions, StageAdapters

__all__ = ["AdapterOptions", "StageAdapters"]
