"""Adapters plugged after every backbone stage (SegAdapter's HSA, SeMask's semantic attention)."""
from .side_adapters import AdapterOptions, SideAdapters

__all__ = ["AdapterOptions", "SideAdapters"]
