"""MkDocs hook: the reference pages, generated from the code each time the site is built.

- reference/cli.md: every `segadapter` command and its options, from the argparse parsers
  (segadapter.cli.main.COMMANDS, each module's add_parser);
- reference/config.md: every config key with its type, default and the comment beside it, from the
  dataclasses of segadapter/engine/config.py;
- reference/models.md: the model registry, from segadapter.list_models, with the parameters of
  each model;
- the variants tables: a page line `<!-- variants: FAMILY -->` (a method page, the model zoo) becomes
  that family's table of parameters and GFLOPs (FAMILIES, GROUPS below), counted by
  segadapter.analysis.flops as `segadapter flops` counts them.

Nothing here is committed as Markdown: the pages exist only in the built site, so they cannot drift
from the code. Models are built on the meta device (shapes, no weights) and each count is cached
for the process, so all of them take a few seconds.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import fnmatch
import functools
import importlib
import io
import re
import tokenize
import typing
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("reference/cli.md", "reference/config.md", "reference/models.md")


def on_files(files, config, **kwargs):
    for uri, make in zip(PAGES, (cli_page, config_page, models_page)):
        files.append(File.generated(config, uri, content=make()))
    return files


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------- CLI
def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """{command: its parser}, built as `segadapter COMMAND` builds it."""
    from segadapter.cli.main import COMMANDS

    out = {}
    for name, (module, _help) in COMMANDS.items():
        sub = argparse.ArgumentParser(prog="segadapter").add_subparsers()
        mod = importlib.import_module(f"segadapter.cli.{module}")
        out[name] = mod.add_parser(sub, name)
    return out


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or action.dest.upper()
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        names += f" `{metavar}`"
    default = "" if action.default in (None, argparse.SUPPRESS) or action.nargs == 0 else f"`{action.default}`"
    choices = f" (one of: {', '.join(map(str, action.choices))})" if action.choices else ""
    help_text = (action.help or "") if action.help != argparse.SUPPRESS else ""
    if help_text:
        help_text = help_text % {"default": action.default, "prog": "segadapter"} if "%(" in help_text else help_text
    return f"| {names} | {_cell(default)} | {_cell(help_text + choices)} |"


def cli_page() -> str:
    from segadapter.cli.main import COMMANDS

    lines = ["# Command-line reference", "",
             "Generated from the argparse parsers when the site is built "
             "(`segadapter COMMAND --help` prints the same).", ""]
    for name, parser in command_parsers().items():
        lines += [f"## `segadapter {name}`", "", COMMANDS[name][1], "",
                  "```text", parser.format_usage().strip(), "```", ""]
        if parser.description:
            lines += [parser.description, ""]
        lines += ["| argument | default | meaning |", "| --- | --- | --- |"]
        lines += [_option_row(a) for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- config
def _field_comments(path: Path) -> dict[tuple[str, str], str]:
    """{(class, field): the comment on its line or the comment lines right above it}."""
    source = path.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                above, line = [], stmt.lineno - 1
                while line in comments and source.splitlines()[line - 1].lstrip().startswith("#"):
                    above.insert(0, comments[line])
                    line -= 1
                text = " ".join(above + ([comments[stmt.lineno]] if stmt.lineno in comments else []))
                out[(node.name, stmt.target.id)] = text
    return out


def _type_name(tp) -> str:
    text = str(tp).replace("typing.", "")
    return text if not isinstance(tp, type) else tp.__name__


def config_rows(cls=None, prefix: str = "", comments=None):
    """(dotted key, type, default, comment) for every leaf of the config schema."""
    from segadapter.engine import config as cfgmod

    cls = cls or cfgmod.Config
    comments = comments if comments is not None else _field_comments(Path(cfgmod.__file__))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from config_rows(tp, f"{prefix}{f.name}.", comments)
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        yield f"{prefix}{f.name}", _type_name(tp), default, comments.get((cls.__name__, f.name), "")


def config_page() -> str:
    lines = ["# Config reference", "",
             "Every key of a training config, generated from the dataclasses in "
             "`segadapter/engine/config.py` when the site is built. Set them in a YAML file or as "
             "`key=value` overrides after the config name (`segadapter train CONFIG train.amp=bf16`).", "",
             "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, tp, default, comment in config_rows():
        lines.append(f"| `{key}` | `{_cell(tp)}` | `{_cell(default)}` | {_cell(comment)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- models
@dataclasses.dataclass(frozen=True)
class Family:
    """One method's variants: the registered names (shell patterns, in this order), and the class
    count and input side their GFLOPs are counted at (size None: the crop each model is built for,
    its head's `image_size`); `extra`: rows of a registered model with options."""

    page: str
    patterns: tuple[str, ...]
    classes: int = 150
    size: int | None = 512
    extra: tuple[tuple[str, tuple[tuple[str, typing.Any], ...]], ...] = ()
    note: typing.Callable | None = None  # model -> what the row's label adds, e.g. the head width


FAMILIES = {
    "segadapter": Family("methods/segadapter.md", ("adapt-mit-*", "adapt-convnext-*")),
    # B2/B3 also with the head width the SegAdapter paper counts them at (256)
    "segformer": Family("methods/segformer.md", ("segformer-*", "convnext-*"),
                        extra=(("segformer-b2", (("decoder_channels", 256),)),
                               ("segformer-b3", (("decoder_channels", 256),))),
                        note=lambda model: f"C_d {model.decode_head.channels}"),
    "semask": Family("methods/semask.md", ("semask-*",)),
    "segdeformer": Family("methods/segdeformer.md", ("segdeformer-mit-*", "segdeformer-convnext-*")),
    "segvit": Family("methods/segvit.md", ("segvit-vit-*", "segvit-shrunk-*"), size=None),
    # SAN's papers count at its 640 crop and COCO-Stuff's 171 classes
    "san": Family("methods/san.md", ("san-*",), classes=171, size=640),
}
# the model zoo's tables: several families in one; "paper" interleaves the rows by backbone, as the
# SegAdapter paper's Table 2 does
GROUPS = {"paper": ("segformer", "segadapter", "semask"), "peers": ("segdeformer", "segvit", "san")}

# The published figures, in brackets after ours: the papers' (../shared/spec/segadapter.md) and
# the official code's (../shared/spec/peers.md). They never change, so they are the one thing typed
# here. "*": a figure the paper's own numbers contradict (explained on the model zoo page).
PUBLISHED: dict[str, dict[str, str]] = {
    "segformer-b0": {"params": "3.8", "gflops": "8.4"},
    "segformer-b1": {"params": "13.7", "gflops": "15.9"},
    "segformer-b2": {"params": "27.5", "gflops": "62.4"},
    "segformer-b2 -o decoder_channels=256": {"gflops": "25.8"},
    "segformer-b3": {"params": "47.3", "gflops": "79.0"},
    "segformer-b3 -o decoder_channels=256": {"gflops": "42.5"},
    "convnext-t": {"gflops": "29.0"},
    "convnext-s": {"gflops": "51.1"},
    "convnext-b": {"gflops": "86.2"},
    "adapt-mit-b0": {"params": "4.8", "gflops": "9.7"},
    "adapt-mit-b1": {"params": "17.3", "gflops": "19.5"},
    "adapt-mit-b2": {"params": "28.4", "gflops": "29.4"},
    "adapt-mit-b3": {"params": "37.4*", "gflops": "46.1"},
    "adapt-convnext-t": {"gflops": "32.9*"},
    "adapt-convnext-s": {"gflops": "57.5"},
    "adapt-convnext-b": {"gflops": "96.9"},
    "semask-mit-b0": {"params": "4.7", "gflops": "9.8"},
    "semask-mit-b1": {"params": "17.1", "gflops": "20.7*"},
    "semask-mit-b2": {"params": "28.2", "gflops": "30.6*"},
    "semask-mit-b3": {"params": "37.2*", "gflops": "47.2"},
    "segdeformer-mit-b1": {"params": "14,453,590"},
    "segdeformer-mit-b2": {"params": "25,498,454"},
    "segvit-vit-b": {"params": "108.7", "gflops": "120.9"},
    "segvit-vit-l": {"params": "344.3", "gflops": "637.9"},
    "segvit-shrunk-vit-b": {"gflops": "97.1"},
    "segvit-shrunk-vit-l": {"gflops": "373.5"},
    "san-vit-b16": {"trainable": "8,370,866", "gflops": "64.3"},
}
_SIZE_RANK = {"t": 0, "s": 1, "b": 2, "l": 3}


def _variant_key(name: str):
    """b0 < b1 < ... and t < s < b < l, not the alphabet's b < s < t."""
    last = name.rsplit("-", 1)[-1]
    return (_SIZE_RANK[last], "") if last in _SIZE_RANK else (9, last.rjust(4))


def family_rows(key: str) -> list[tuple[str, str, tuple, int, int | None]]:
    """(label, model, options, classes, size) per row of a family's table, new variants included."""
    fam = FAMILIES[key]
    import segadapter

    rows = []
    for pattern in fam.patterns:
        for name in sorted(segadapter.list_models(pattern), key=_variant_key):
            rows.append((name, name, (), fam.classes, fam.size))
            for base, options in fam.extra:
                if base == name:
                    label = name + "".join(f" -o {k}={v}" for k, v in options)
                    rows.append((label, name, options, fam.classes, fam.size))
    return rows


def _backbone_key(name: str):
    """The backbone a row of the "paper" table is grouped by: (MiT or ConvNeXt, its size); the
    paper's three methods name only ConvNeXt backbones in their model names."""
    return ("convnext" in name, _variant_key(name))


def group_rows(key: str) -> list[tuple[str, str, tuple, int, int | None]]:
    if key in FAMILIES:
        return family_rows(key)
    rows = [(i, r) for i, fam in enumerate(GROUPS[key]) for r in family_rows(fam)]
    if key == "paper":  # stable: each family's own order (option rows after their model) is kept
        rows.sort(key=lambda ir: (_backbone_key(ir[1][1]), ir[0]))
    return [r for _, r in rows]


@functools.lru_cache(maxsize=None)
def built(name: str, classes: int = 150, options: tuple = ()):
    """The model on the meta device: its shapes and parameter count, no memory, no init time."""
    import torch

    import segadapter

    with torch.device("meta"):
        return segadapter.create_model(name, num_classes=classes, **dict(options))


def parameters(name: str, classes: int = 150, options: tuple = ()) -> tuple[int, int]:
    """(all parameters, trainable ones) of a registered model."""
    params = list(built(name, classes, options).parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


@functools.lru_cache(maxsize=None)
def complexity(name: str, classes: int, size: int | None, options: tuple = ()) -> dict:
    """What `segadapter flops NAME --num-classes K --size S S` prints (its `complexity_of` is this
    meta-device build + `model_complexity`; the build is shared with the other pages), with
    `input`: the side counted at, and `clip`: the side CLIP sees (SAN)."""
    from segadapter.analysis.flops import model_complexity

    model = built(name, classes, options)
    if size is None:
        size = model.decode_head.image_size[0]  # the crop it is built for
    out = dict(model_complexity(model, (size, size)), input=size)
    scale = getattr(model.backbone, "clip_scale", None)
    if scale is not None:
        out["clip"] = round(size * scale)
    return out


def _with_published(value: str, label: str, what: str) -> str:
    pub = PUBLISHED.get(label, {}).get(what)
    if not pub:
        return value
    return f"{value} [{pub[:-1]}]*" if pub.endswith("*") else f"{value} [{pub}]"


def _label(label: str, name: str, options: tuple, classes: int) -> str:
    fam = FAMILIES.get(family_of(name) or "")
    note = fam.note(built(name, classes, options)) if fam and fam.note and not options else None
    return f"`{label}` ({note})" if note else f"`{label}`"


def variants_table(key: str) -> str:
    """The Markdown table of a family (or group): model, params, trainable (where some parameters
    are frozen), GFLOPs; the input and class count in the caption, or a column where they vary."""
    rows = [(label, name, options, classes, complexity(name, classes, size, options))
            for label, name, options, classes, size in group_rows(key)]
    if not rows:
        raise PluginError(f"variants table {key!r}: no registered model matches its patterns")

    def input_of(c, classes):
        clip = f" (CLIP at {c['clip']})" if "clip" in c else ""
        return f"{c['input']}x{c['input']}{clip}, {classes} classes"

    inputs = {input_of(c, classes) for *_, classes, c in rows}
    frozen = any(abs(c["params_m"] - c["trainable_params_m"]) > 1e-9 for *_, c in rows)
    head = ["model", *(["input"] if len(inputs) > 1 else []), "params (M)",
            *(["trainable (M)"] if frozen else []), "GFLOPs"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, name, options, classes, c in rows:
        cells = [_label(label, name, options, classes)]
        if len(inputs) > 1:
            cells.append(input_of(c, classes))
        cells.append(_with_published(f"{c['params_m']:.2f}", label, "params"))
        if frozen:
            cells.append(_with_published(f"{c['trainable_params_m']:.2f}", label, "trainable"))
        cells.append(_with_published(f"{c['gflops']:.2f}", label, "gflops"))
        lines.append("| " + " | ".join(cells) + " |")
    where = f" at {next(iter(inputs))}" if len(inputs) == 1 else ""
    caption = (f"Generated when the site is built{where}, as `segadapter flops MODEL --num-classes K "
               "--size H W` counts them (one multiply-add = one FLOP, eval mode, coarse and auxiliary "
               "paths excluded); published figures in brackets.")
    return "\n".join(lines) + "\n\n" + caption + "\n"


VARIANTS_MARKER = re.compile(r"<!--\s*variants:\s*([\w-]+)\s*-->")


def on_page_markdown(markdown, page, config, files, **kwargs):
    def table(m):
        key = m.group(1)
        if key not in FAMILIES and key not in GROUPS:
            raise PluginError(f"{page.file.src_uri}: unknown variants table {key!r}; "
                              f"known: {', '.join([*FAMILIES, *GROUPS])}")
        return variants_table(key)

    return VARIANTS_MARKER.sub(table, markdown)


def family_of(name: str) -> str | None:
    return next((k for k, fam in FAMILIES.items() if any(fnmatch.fnmatch(name, p) for p in fam.patterns)), None)


def models_page() -> str:
    import segadapter

    names = segadapter.list_models()
    lines = ["# Model registry", "",
             f"The {len(names)} names `segadapter.list_models()` returns, generated when the site is "
             "built, with their parameters at 150 classes (built on the meta device; the class count "
             "changes only the classifier). Any of them goes to `segadapter.create_model(NAME, ...)`, "
             "`model.name=NAME` in a config, or `segadapter flops NAME`; GFLOPs are in the "
             "[model zoo](../model-zoo.md) and on each method's page.", "",
             "| model | method | params (M) | trainable (M) |", "| --- | --- | --- | --- |"]
    for name in names:
        total, trainable = parameters(name)
        fam = family_of(name)
        method = f"[{fam}](../{FAMILIES[fam].page})" if fam else name.rsplit("-", 1)[0]
        lines.append(f"| `{name}` | {method} | {total / 1e6:.2f} | {trainable / 1e6:.2f} |")
    return "\n".join(lines) + "\n"
