"""Which nodes of an exported graph stay fp32 when it is quantized to int8.

Rule `default` quantizes what ONNX Runtime's int8 kernels (VNNI / AMX) speed up - convolutions
and matrix products with constant weights (Conv, MatMul, Gemm) - and keeps in fp32:
- products of two activations (a MatMul / Gemm whose inputs are both computed): attention's
  Q.K^T and attention x V, SegViT's and SAN's class x mask combination. Attention probabilities
  span [0, 1] with most mass near 0, which one 8-bit scale per tensor renders coarsely, and they
  carry no weights to speed up;
- the layers that write the output: the last weighted Conv / MatMul / Gemm on every path to the
  graph's output (the classifier; a mask head's class and mask projections). Their rounding lands
  directly in the class scores the argmax reads;
- layers too narrow to pay for their conversions: reduction length K (input channels x kernel
  area / groups) or output width N under `MIN_INT8_WIDTH`, depthwise convolutions (K = 9) among
  them. An int8 product saves time in proportion to K x N per output element, while quantizing its
  input and dequantizing its output cost the same per element whatever the width; measured on the
  CamVid MiT-b0 models at 480x360, quantizing the 32-wide first stage and the depthwise
  convolutions made the int8 graph slower than the fp32 one, and keeping them fp32 made it faster
  (benchmarks/int8.py, README "CPU deployment").
A MatMul / Gemm output is left in fp32 too (ONNX Runtime's `OpTypesToExcludeOutputQuantization`):
ONNX Runtime then fuses the product into MatMulIntegerToFloat, an int8 product with an fp32 result
that feeds the bias add and the norm after it directly, where a quantized output would be rounded
to 8 bits and dequantized again right away. Convolutions keep their quantized output (QLinearConv).
Rule `all` lets ONNX Runtime quantize every op type it can (normalisations, adds, resizes, ...)
with its own defaults and keeps nothing: the comparison point for the default (benchmarks/int8.py
measures both).
Names given by the user (exact node names or glob patterns) stay fp32 under either rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Sequence

from ..errors import ConfigError

RULES = ("default", "all")
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")
SHAPE_OPS = ("Shape", "Size")
ACTIVATION_PRODUCT = "activation x activation product (attention / class x mask)"
OUTPUT_LAYER = "writes the output (classifier)"
MIN_INT8_WIDTH = 64  # an AMX int8 tile is 64 deep: narrower products leave most of it empty
NARROW_LAYER = f"too narrow to pay for its int8 conversions (K or N < {MIN_INT8_WIDTH}, depthwise)"
BY_NAME = "named by --keep-fp32"


@dataclass
class Fp32Plan:
    """`op_types`: the op types to quantize (None: every type ONNX Runtime quantizes); `keep`: node
    name -> why it stays fp32 (what `quantize_static` gets as `nodes_to_exclude`); `fp32_outputs`:
    op types whose outputs are not quantized."""

    rule: str
    op_types: list[str] | None
    keep: dict[str, str] = field(default_factory=dict)
    fp32_outputs: list[str] = field(default_factory=list)

    def extra_options(self) -> dict:
        """What `quantize_static`'s extra_options take from the plan."""
        return {"OpTypesToExcludeOutputQuantization": list(self.fp32_outputs)} if self.fp32_outputs else {}

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for why in self.keep.values():
            counts[why] = counts.get(why, 0) + 1
        ops = ", ".join(self.op_types) if self.op_types else "every op type ONNX Runtime quantizes"
        kept = "; ".join(f"{n} {why}" for why, n in counts.items()) or "none"
        outputs = f"; fp32 outputs: {', '.join(self.fp32_outputs)}" if self.fp32_outputs else ""
        return f"rule {self.rule}: quantizes {ops}{outputs}; kept in fp32: {kept}"


def plan_fp32_nodes(graph, rule: str = "default", names: Sequence[str] = ()) -> Fp32Plan:
    """The plan for an ONNX `GraphProto` (the graph `quantize_static` will read)."""
    if rule not in RULES:
        raise ConfigError(f"unknown int8 rule {rule!r}; choose one of {', '.join(RULES)}")
    plan = Fp32Plan(rule, list(WEIGHTED_OPS), fp32_outputs=["MatMul", "Gemm"]) if rule == "default" \
        else Fp32Plan(rule, None)
    if rule == "default":
        constant = _constant_tensors(graph)
        for node in graph.node:
            if node.op_type in WEIGHTED_OPS and len(node.input) >= 2 and not _weighted(node, constant):
                plan.keep[node.name] = ACTIVATION_PRODUCT
        for node in _output_layers(graph, constant):
            plan.keep.setdefault(node.name, OUTPUT_LAYER)
        shapes = {t.name: list(t.dims) for t in graph.initializer}
        for node in graph.node:
            size = _reduction_and_width(node, shapes)
            if size is not None and min(size) < MIN_INT8_WIDTH:
                plan.keep.setdefault(node.name, NARROW_LAYER)
    for pattern in names:
        matched = [n.name for n in graph.node if n.name and fnmatchcase(n.name, pattern)]
        if not matched:
            examples = ", ".join(n.name for n in graph.node if n.op_type in WEIGHTED_OPS and n.name)
            raise ConfigError(f"--keep-fp32 {pattern!r} names no node of the graph (exact names or glob patterns; "
                              f"its Conv / MatMul / Gemm nodes: {examples[:300]}{'...' if len(examples) > 300 else ''})")
        for name in matched:
            plan.keep.setdefault(name, BY_NAME)
    plan.keep.pop("", None)  # unnamed nodes cannot be excluded by name
    return plan


def weighted_nodes(graph) -> set[str]:
    """Names of the Conv / MatMul / Gemm nodes with a constant weight: what int8 kernels speed up."""
    constant = _constant_tensors(graph)
    return {n.name for n in graph.node if n.op_type in WEIGHTED_OPS and _weighted(n, constant)}


def _constant_tensors(graph) -> set[str]:
    """Initializers and everything computed from them alone (graphs are topologically sorted)."""
    constant = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(i in constant or i == "" for i in node.input):  # Constant nodes have no inputs
            constant.update(node.output)
    return constant


def _weighted(node, constant: set[str]) -> bool:
    """A Conv / MatMul / Gemm with a constant weight operand (B / W, or A for a transposed use)."""
    return node.input[1] in constant or node.input[0] in constant


def _reduction_and_width(node, shapes: dict[str, list[int]]) -> tuple[int, int] | None:
    """(K, N) of a Conv / MatMul / Gemm whose weight (input 1) is an initializer of known shape
    (ONNX Runtime's pre-processing folds computed weights into initializers); None otherwise."""
    if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 or len(shapes.get(node.input[1], ())) < 2:
        return None
    w = shapes[node.input[1]]
    if node.op_type == "Conv":  # (N, C / groups, kh, kw)
        return math.prod(w[1:]), w[0]
    if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
        return w[1], w[0]
    return w[-2], w[-1]  # MatMul / Gemm: (K, N)


def _output_layers(graph, constant: set[str]) -> list:
    """The weighted nodes nearest the graph's outputs: walk back from each output through
    unweighted nodes and stop at the first weighted node on every path."""
    producer = {out: node for node in graph.node for out in node.output}
    todo = [o.name for o in graph.output]
    seen: set[str] = set()
    found: dict[str, object] = {}
    while todo:
        tensor = todo.pop()
        node = producer.get(tensor)
        if node is None or tensor in seen:
            continue
        seen.add(tensor)
        if node.op_type in WEIGHTED_OPS and _weighted(node, constant):
            found[node.name] = node
            continue
        if node.op_type in SHAPE_OPS:  # reads a tensor's shape, not its values (e.g. a Resize's sizes)
            continue
        todo.extend(i for i in node.input if i and i not in constant)
    return list(found.values())
