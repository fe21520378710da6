"""The model contract (`SegmentationModel`): what every runnable model declares, as `DecodeHead`
does for heads. The meta-architectures (`Segmentor`, SAN's `SideAdapterSegmentor`) and an
exported graph (`inference.onnx_network.OnnxNetwork`) share it, so training, evaluation,
inference, export and the demo read these names directly and never ask a model what it is.

    config                 {"name", "num_classes", "options", ...}: JSON-able; rebuilds the model
    name                   the registered name (`config["name"]`; the class name before one is set)
    num_classes            classes it predicts now (an open-vocabulary model: its names')
    output_stride          stride of the eval output's scores (1: at the input size)
    decode_head            the `DecodeHead` whose declarations (output space, ...) inference reads
    load_report            what `create_model(pretrained=...)` loaded (`weights.report.LoadReport`)
    vocabulary             the names it segments (`modeling.vocabulary.Vocabulary`); None: fixed classes
    default_preprocessing  `Preprocessing` keyword arguments for a model saved without a record
    param_group(name)      'backbone', 'adapter' or 'head': the optimizer's lr multipliers
    layer_id(name)         (depth id, top id) for layer-wise lr decay, or None
    no_weight_decay()      full parameter names exempt from weight decay
    set_classes(names)     a new vocabulary (open-vocabulary models; one ConfigError otherwise)
    on_weights_loaded()    after published weights arrived

A model wrapped for training or compiled is read through `runtime.wrappers.bare_model`. The
test-time passes also run a bare network (an `nn.Module` from images to logits that declares
nothing): `declared_model`, `output_space` and `takes_output_size` answer for both.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ...runtime.wrappers import bare_model
from ..heads.base import LOGITS, DecodeHead, OutputSpace
from ..vocabulary import Vocabulary, require_vocabulary


class SegmentationModel(nn.Module):
    decode_head: DecodeHead
    load_report = None  # weights.report.LoadReport after create_model(pretrained=...)
    vocabulary: Vocabulary | None = None
    default_preprocessing: dict[str, Any] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.config.get("name", type(self).__name__)

    @property
    def num_classes(self) -> int:
        return self.decode_head.num_classes  # an open-vocabulary head's follows its class names

    @property
    def output_stride(self) -> int:
        return self.decode_head.output_stride

    @property
    def open_vocabulary(self) -> bool:
        """Whether the classes are names the model can be given at inference (`set_classes`)."""
        return self.vocabulary is not None

    def param_group(self, name: str) -> str:
        return "head"

    def layer_id(self, name: str) -> tuple[int, int] | None:
        return None

    def no_weight_decay(self) -> set[str]:
        return set()

    def on_weights_loaded(self) -> None:
        """Called by `create_model` after published weights were loaded."""

    def set_classes(self, names, what: str = "class names") -> None:
        """Replace the vocabulary of an open-vocabulary model (the names are checked here, once;
        errors are prefixed by `what`, e.g. the flag that gave them); the config follows (and so
        every folder it is saved to)."""
        names = require_vocabulary(self, what).set(names, what=what)
        self.config["num_classes"] = self.num_classes
        self.config["classes"] = list(names)
        if "classes" in self.config.get("options", {}):
            self.config["options"]["classes"] = list(names)
        self.config.pop("palette", None)  # a dataset's palette does not fit other classes


def declared_model(model: nn.Module) -> SegmentationModel | None:
    """The model contract behind DDP / torch.compile wrappers; None for a bare network."""
    model = bare_model(model)
    return model if isinstance(model, SegmentationModel) else None


def output_space(model: nn.Module) -> OutputSpace:
    """What the model's scores are and how TTA averages them (a bare network: logits)."""
    declared = declared_model(model)
    return declared.decode_head.output_space if declared is not None else LOGITS


def takes_output_size(model: nn.Module) -> bool:
    """Whether the model predicts at a requested output size itself (`model(x, out_size=)`)."""
    declared = declared_model(model)
    return declared is not None and declared.decode_head.takes_output_size
