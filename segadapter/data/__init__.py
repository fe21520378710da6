"""Datasets, transforms, loaders and image/label reading (see docs/architecture.md, "Data")."""
from .base import IGNORE_INDEX, SegDataset
from .io import read_image, read_label
from .loader import build_dataloader
from .registry import DATASET_NAMES, build_dataset, get_classes, get_palette
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

__all__ = [
    "DATASET_NAMES",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SegDataset",
    "build_dataloader",
    "build_dataset",
    "build_transforms",
    "get_classes",
    "get_palette",
    "read_image",
    "read_label",
]
