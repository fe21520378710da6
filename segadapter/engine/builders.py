"""Turn the config sections into objects: datasets (train/val) and the model."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from .config import DataConfig, ModelConfig


def build_datasets(cfg: DataConfig, seed: int = 0) -> tuple[Any, Any | None]:
    """(train dataset with the augmentation pipeline, val dataset or None)."""
    from ..data import build_dataset, build_transforms

    common = {"scale": cfg.scale, **cfg.transform_options}
    train_tf = build_transforms(True, crop_size=cfg.crop_size, ratio_range=cfg.ratio_range,
                                cat_max_ratio=cfg.cat_max_ratio, flip=cfg.flip, photometric=cfg.photometric,
                                **common)
    train = build_dataset(cfg.dataset, cfg.root, cfg.train_split, train_tf, seed=seed, **cfg.options)
    val = None
    if cfg.val_split is not None:
        val_tf = build_transforms(False, **common)
        val = build_dataset(cfg.dataset, cfg.root, cfg.val_split, val_tf, **{**cfg.options, **cfg.val_options})
    return train, val


def build_model(cfg: ModelConfig, classes: list[str], palette: list) -> nn.Module:
    """`create_model` sized for `classes`; class names and palette go into `model.config`
    (and so into every saved checkpoint) so predictions can be named and coloured later."""
    from ..modeling.factory import create_model
    from ..modeling.registry import is_open_vocabulary

    if cfg.num_classes is not None and cfg.num_classes != len(classes):
        raise ConfigError(f"model.num_classes is {cfg.num_classes} but the dataset has {len(classes)} "
                          "classes; set model.num_classes=null to follow the dataset")
    options = dict(cfg.options)
    if is_open_vocabulary(cfg.name):  # segment the dataset's classes, named
        options.setdefault("classes", list(classes))
    model = create_model(cfg.name, num_classes=len(classes), pretrained=cfg.pretrained, **options)
    model.config["classes"] = list(classes)
    model.config["palette"] = [list(map(int, c)) for c in palette]
    return model
