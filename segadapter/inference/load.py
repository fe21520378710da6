"""One way from what a user names to a runnable model, for `predict`, `eval`, `export`, `serve`
and the `Inferencer`: a model object, a `save_pretrained` folder, a training run folder (its latest
complete checkpoint), a hub id of an uploaded folder (`hf-hub:ORG/NAME[@REV]`), or an `.onnx` file
from `segadapter export` (ONNX Runtime on the CPU in place of the torch model)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..modeling.factory import from_pretrained
from ..modeling.meta_arch.base import SegmentationModel
from ..modeling.model_folder import resolve_model_dir
from .onnx_network import is_onnx_path, load_onnx_network
from .preprocess import Preprocessing, preprocessing_of


@dataclass
class LoadedModel:
    model: SegmentationModel  # in eval mode; on the device asked for (an ONNX graph runs on the CPU)
    source: Path | None  # the model folder or .onnx file it came from; None for a model object
    record: Preprocessing  # its preprocessing record (a folder without one is said once)

    @property
    def config_file(self) -> Path | None:
        """Where its config is recorded, for messages: the folder's config.json, or the .onnx file."""
        if self.source is None:
            return None
        return self.source if self.source.is_file() else self.source / "config.json"


def load_model(source: SegmentationModel | str | os.PathLike, device: str | torch.device | None = None
               ) -> LoadedModel:
    """The model `source` names, in eval mode (moved to `device` when given; an ONNX graph stays on
    the CPU and hands its outputs to the input's device)."""
    if is_onnx_path(source):
        network = load_onnx_network(source)
        return LoadedModel(network, network.path, preprocessing_of(network, source=str(network.path)))
    if isinstance(source, (str, os.PathLike)):
        folder = resolve_model_dir(source)
        model = from_pretrained(folder)
        record = preprocessing_of(model, source=str(folder))
    elif isinstance(source, nn.Module):
        model, folder, record = source, None, preprocessing_of(source)
    else:
        raise ConfigError(f"a model, a model folder or an .onnx file is needed, got {type(source).__name__}")
    if device is not None:
        model = model.to(device)
    return LoadedModel(model.eval(), folder, record)
