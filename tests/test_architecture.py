"""The package's import structure: no import cycle inside `segadapter` (module-level or deferred,
i.e. any `import` statement anywhere in a module), and training (`engine`) and evaluation
(`evaluation`) do not import each other. Read statically from the sources, so it also sees
imports inside functions."""
import ast
from pathlib import Path

import segadapter

ROOT = Path(segadapter.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules `path` imports (`from . import x` counts as importing x if x is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                found.add(t if t in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    # importing a.b.c also runs a and a.b: only edges to our own modules, minus self
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = [p for p in ROOT.rglob("*.py")]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def _package_init_edges_only_downwards(graph):
    # `pkg/__init__` re-exporting its own submodules is not a cycle through the package
    return {n: {m for m in deps if not (n.startswith(m + ".") and m != n)} for n, deps in graph.items()}


def test_no_import_cycle_inside_the_package():
    cycle = _cycle(_package_init_edges_only_downwards(_graph()))
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_engine_and_evaluation_do_not_import_each_other():
    graph = _graph()
    ev = {m for n, deps in graph.items() if n.startswith("segadapter.engine") for m in deps
          if m.startswith("segadapter.evaluation")}
    en = {m for n, deps in graph.items() if n.startswith("segadapter.evaluation") for m in deps
          if m.startswith("segadapter.engine")}
    assert not (ev and en), (ev, en)


# --------------------------------------------------------------------------- the head contract
def _calls(fn_names: tuple[str, ...], root: Path = ROOT):
    """(module path, line, call node) of every call of a bare name in `fn_names` in the package."""
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in fn_names:
                yield path, node.lineno, node


def _head_capabilities() -> set[str]:
    """The names `DecodeHead` declares (beyond nn.Module's and the core forward/predict/loss)."""
    from torch import nn

    from segadapter.modeling.heads.base import DecodeHead

    declared = {n for n in vars(DecodeHead) if not n.startswith("_")} | set(DecodeHead.__annotations__)
    return declared - set(vars(nn.Module)) - {"predict", "loss", "num_classes", "no_weight_decay", "output_stride"}


def test_head_capabilities_are_read_not_probed():
    """Only heads/base.py may ask a head "do you have X?": everywhere else the declared attribute
    is read. (num_classes, output_stride, no_weight_decay are also model-level names, checked by
    the Segmentor's own properties.)"""
    names = _head_capabilities()
    assert {"at_input_size", "output_space", "fused_inference",
            "count_predict_flops", "takes_output_size", "query_grid", "on_weights_loaded"} <= names
    base = ROOT / "modeling" / "heads" / "base.py"
    probes = [f"{p.relative_to(ROOT.parent)}:{line} {node.args[1].value}"
              for p, line, node in _calls(("getattr", "hasattr")) if p != base and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in names]
    assert not probes, probes


def test_no_module_imports_the_package_root():
    graph = _graph()
    offenders = sorted(n for n, deps in graph.items() if "segadapter" in deps and n != "segadapter")
    assert not offenders, offenders


def test_no_family_isinstance_outside_modeling():
    """Code outside modeling/ treats every model alike: no isinstance on a family's classes
    (the contract's base classes, DecodeHead and the Segmentor, are fine)."""
    import segadapter.modeling as modeling

    families = set()
    for sub in ("heads", "backbones", "adapters"):
        pkg = ROOT / "modeling" / sub
        for path in pkg.glob("*.py"):
            families |= {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}
    families -= {"DecodeHead", "PixelHead", "MaskClassificationHead", "OutputSpace"}
    assert modeling is not None and "SANHead" in families
    offenders = []
    for path, line, node in _calls(("isinstance", "issubclass")):
        if (ROOT / "modeling") in path.parents or len(node.args) < 2:
            continue
        named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} | \
                {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
        if named & families:
            offenders.append(f"{path.relative_to(ROOT.parent)}:{line}")
    assert not offenders, offenders


def test_inference_sits_below_evaluation():
    """evaluation/ may use inference/ (test-time passes, pictures, preprocessing), never the reverse."""
    graph = _graph()
    up = sorted(f"{n} -> {m}" for n, deps in graph.items() if n.startswith("segadapter.inference") for m in deps
                if m.startswith("segadapter.evaluation"))
    assert not up, up


def _string_constants(path: Path) -> list[tuple[int, str]]:
    return [(n.lineno, n.value) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_converters_are_keyed_by_their_module_class():
    """Backbone converters are keyed by backbone classes, head converters by head classes; every
    head whose published releases the toolkit reads has its converter."""
    from segadapter.modeling.heads.base import DecodeHead
    from segadapter.modeling.weights.converters import CONVERTERS, HEAD_CONVERTERS

    assert all(not issubclass(c.backbone_type, DecodeHead) for c in CONVERTERS)
    assert all(issubclass(c.head_type, DecodeHead) for c in HEAD_CONVERTERS)
    heads = {c.head_type.__name__ for c in HEAD_CONVERTERS}
    assert {"AllMLPHead", "FixedAssignmentHead", "SegDeformerHead", "SANHead"} <= heads
    assert {c.backbone_type.__name__ for c in CONVERTERS} >= {"MixVisionTransformer", "ConvNeXt", "ViT", "ClipBackbone"}


def test_no_head_key_outside_head_converters():
    """A published head's key names live in its head converter: no backbone converter file and not
    the loader names a decode-head key (the bare prefix, to set heads aside, is fine)."""
    from segadapter.modeling.weights.converters import CONVERTERS

    files = {Path(__import__(c.convert.__module__, fromlist=["_"]).__file__) for c in CONVERTERS}
    files.add(ROOT / "modeling" / "weights" / "load.py")
    offenders = [f"{p.name}:{line} {value!r}" for p in sorted(files) for line, value in _string_constants(p)
                 if value.startswith("decode_head.") and value != "decode_head."]
    assert not offenders, offenders


def test_clip_loads_through_the_common_loader():
    """SAN's `clip=` weights go through `load_pretrained`, as every backbone's (no loader of its own)."""
    graph = _graph()
    assert "segadapter.modeling.weights.load" in graph["segadapter.modeling.models.san"]
    import segadapter.modeling.weights.clip as clip_weights

    assert not any(n.startswith(("load_clip", "apply_clip")) for n in vars(clip_weights))  # no second loader


# ------------------------------------------------------------------ the model and backbone contracts
def _declared(cls, base) -> set[str]:
    names = set()
    for klass in cls.__mro__[:cls.__mro__.index(base)]:
        names |= {n for n in vars(klass) if not n.startswith("__")} | set(vars(klass).get("__annotations__", {}))
    return names


def _model_and_backbone_names() -> set[str]:
    """What `SegmentationModel`, the `Segmentor` (its parts) and `Backbone` declare, and the
    wrappers' attributes (`module`, `_orig_mod`), which only runtime/wrappers.py looks through."""
    from torch import nn

    from segadapter.modeling.backbones.base import Backbone
    from segadapter.modeling.meta_arch import SegmentationModel, Segmentor

    names = _declared(Segmentor, nn.Module) | _declared(Backbone, nn.Module) | {"backbone", "adapters",
                                                                                "decode_head", "module", "_orig_mod"}
    return names - {"forward", "forward_raw", "extract_features", "stage_forward", "stage_output"} | \
        {"name", "num_classes", "output_stride", "config", "load_report", "vocabulary", "no_weight_decay"}


def test_model_and_backbone_declarations_are_read_not_probed():
    """Only the declaring files may ask a model or a backbone "do you have X?" (getattr / hasattr
    with a name they declare); everywhere else the declared attribute is read."""
    names = _model_and_backbone_names()
    assert {"num_classes", "output_stride", "config", "load_report", "vocabulary", "default_preprocessing",
            "layer_id", "num_layer_ids", "out_channels", "out_strides", "no_weight_decay", "name"} <= names
    declaring = {ROOT / "modeling" / "meta_arch" / "base.py", ROOT / "modeling" / "backbones" / "base.py",
                 ROOT / "runtime" / "wrappers.py"}
    probes = [f"{p.relative_to(ROOT.parent)}:{line} {node.args[1].value}"
              for p, line, node in _calls(("getattr", "hasattr")) if p not in declaring and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in names]
    assert not probes, probes


def test_the_probe_finder_finds_probes(tmp_path):
    """The check above can fail: a probe of a declared name is found, another name is not."""
    (tmp_path / "probe.py").write_text('def f(model, ds):\n    return getattr(ds, "classes", 0), '
                                       'hasattr(model, "num_layer_ids")\n')
    names = _model_and_backbone_names()
    found = [(p.name, line, node.args[1].value) for p, line, node in _calls(("getattr", "hasattr"), tmp_path)
             if node.args[1].value in names]
    assert found == [("probe.py", 2, "num_layer_ids")]


def test_every_model_declares_the_contract():
    """Segmentor, SAN's meta-architecture and an ONNX graph share one declaration; every staged
    backbone declares the backbone contract."""
    from segadapter.inference.onnx_network import OnnxNetwork
    from segadapter.modeling.backbones import ConvNeXt, MixVisionTransformer
    from segadapter.modeling.backbones.base import Backbone
    from segadapter.modeling.backbones.clip_backbone import ClipBackbone
    from segadapter.modeling.backbones.vit import ViT
    from segadapter.modeling.meta_arch import SegmentationModel, Segmentor, SideAdapterSegmentor

    assert all(issubclass(c, SegmentationModel) for c in (Segmentor, SideAdapterSegmentor, OnnxNetwork))
    assert all(issubclass(c, Backbone) for c in (ConvNeXt, MixVisionTransformer, ViT, ClipBackbone))


def test_the_library_does_not_import_cli_modules():
    """cli/ is the top: argument parsing and printing stay there; no library module imports it."""
    graph = _graph()
    up = sorted(f"{n} -> {m}" for n, deps in graph.items() if not n.startswith(("segadapter.cli", "segadapter.__main__"))
                for m in deps if m.startswith("segadapter.cli"))
    assert not up, up


def _family_words() -> set[str]:
    """Every word of a registered model name and of its model-card tags ("segformer", "mit", ...)."""
    import re

    from segadapter.modeling.factory import list_models
    from segadapter.modeling.registry import card_tags

    words = {w for name in list_models() for w in re.split(r"[-_]", name) if re.fullmatch(r"[a-z]+\d*", w)}
    words |= {t for name in list_models() for t in card_tags(name)}
    # "segadapter" is the library's name as well as its method's tag; "adapt" stays for the method
    return {w for w in words if not re.fullmatch(r"[a-z]\d*|shrunk|segadapter", w)}


def test_published_weights_and_model_cards_name_no_family():
    """A method registers its published weights and card tags beside its variants: published.py and
    model_card.py hold no per-family table (no family word anywhere in them, comments included)."""
    import re

    words = _family_words()
    assert {"segformer", "san", "convnext", "segvit", "segdeformer", "mit", "vit", "semask"} <= words
    for path in (ROOT / "modeling" / "published.py", ROOT / "modeling" / "model_card.py"):
        text = path.read_text().lower()
        found = sorted(w for w in words if re.search(rf"\b{w}\b", text))
        assert not found, f"{path.name} names {found}"
