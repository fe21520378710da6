"""MkDocs hook: the reference pages, generated from the code each time the site is built.

- reference/cli.md: every `segadapter` command and its options, from the argparse parsers
  (segadapter.cli.main.COMMANDS, each module's add_parser);
- reference/config.md: every config key with its type, default and the comment beside it, from the
  dataclasses of segadapter/engine/config.py;
- reference/models.md: the model registry, from segadapter.list_models.

Nothing here is committed as Markdown: the pages exist only in the built site, so they cannot drift
from the code.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import io
import tokenize
import typing
from pathlib import Path

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
def models_page() -> str:
    import segadapter

    names = segadapter.list_models()
    lines = ["# Model registry", "",
             f"The {len(names)} names `segadapter.list_models()` returns, generated when the site is "
             "built. Any of them goes to `segadapter.create_model(NAME, ...)`, `model.name=NAME` in a "
             "config, or `segadapter flops NAME`; sizes are in the [model zoo](../model-zoo.md).", "",
             "| family | models |", "| --- | --- |"]
    families: dict[str, list[str]] = {}
    for name in names:
        family = name.rsplit("-", 1)[0] if name.count("-") else name
        families.setdefault(family, []).append(name)
    for family, members in families.items():
        lines.append(f"| {family} | {', '.join(f'`{m}`' for m in members)} |")
    return "\n".join(lines) + "\n"
