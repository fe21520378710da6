"""`segadapter` command line: one module per sub-command, each with `add_parser` and `run`.

Only the chosen sub-command's module is imported, so one command's dependencies (or a slow
import) never get in the way of another.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SegAdapterError

# sub-command -> (module in segadapter.cli, one-line help)
COMMANDS = {
    "demo": ("demo", "train, evaluate and predict end to end (built-in data when no dataset is given)"),
    "train": ("train", "train a model from a YAML config with key=value overrides"),
    "eval": ("evaluate", "evaluate a checkpoint on a dataset (per-class IoU/Acc, aAcc, mIoU, mAcc)"),
    "predict": ("predict", "write class-id PNGs and colour overlays for images"),
    "flops": ("flops", "count parameters and GFLOPs of a model"),
    "list": ("list_models", "list registered models"),
    "export": ("export", "export a checkpoint to ONNX"),
    "download": ("download", "download published weights into the Hugging Face cache (for offline use)"),
    "prepare": ("prepare", "convert a raw dataset download into the layout its reader expects"),
    "serve": ("serve", "web demo of a model in the browser (needs segadapter[demo])"),
    "env": ("env", "print torch, the CPU's ISA level, threads, allocator and what amp auto picks"),
}

# commands that run networks: they keep freed memory in the process (see utils/malloc.py)
HEAVY_COMMANDS = {"demo", "train", "eval", "predict", "serve"}
LONG_RUNNING = {"serve"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segadapter", description="SegAdapter segmentation toolkit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        mod = importlib.import_module(f"segadapter.cli.{module}")
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    notes = _plain_warnings(args.command)
    if args.command in HEAVY_COMMANDS:
        from ..utils.malloc import tune_malloc

        tune_malloc()
    try:
        code = int(args._run(args) or 0)
        for note in notes:
            print(note, file=sys.stderr)
        return code
    except SegAdapterError as e:
        print(f"segadapter {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _plain_warnings(command: str) -> list[str]:
    """Our own notes (e.g. a model folder without a preprocessing record) as plain lines, kept
    until the command has succeeded (a failed command prints its one error line only); a server
    prints them at once."""
    import warnings

    from ..inference.preprocess import LegacyPreprocessingWarning

    default = warnings.showwarning
    notes: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, LegacyPreprocessingWarning):
            default(message, category, filename, lineno, file, line)
        elif command in LONG_RUNNING:
            print(f"segadapter {command}: note: {message}", file=sys.stderr)
        else:
            notes.append(f"segadapter {command}: note: {message}")

    warnings.showwarning = show
    return notes


if __name__ == "__main__":
    sys.exit(main())
