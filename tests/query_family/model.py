"""The family's variant, registered with its published weights and model-card tags."""
from __future__ import annotations

from segadapter.modeling.meta_arch import Segmentor
from segadapter.modeling.published import Published
from segadapter.modeling.registry import option_names, register_model

from .backbone import TinyConvBackbone
from .head import TinyQueryHead

NAME = "toyquery-tiny"
# as every variant: a whole model where its class count matches, then the backbone for any other
PUBLISHED = [Published("toy-org/toyquery-tiny-ade", "model", "the toy method's release", num_classes=3),
             Published("toy-org/tinyconv-in1k", "backbone", "the toy backbone's pretraining")]


def build_toyquery(num_classes: int, width: int = 8, num_queries: int = 6) -> Segmentor:
    backbone = TinyConvBackbone(width)
    return Segmentor(backbone, TinyQueryHead(backbone.out_channels, num_classes, num_queries), num_classes)


register_model(NAME, options=option_names(build_toyquery), published=PUBLISHED, card_tags=("toyquery",))(
    build_toyquery)
