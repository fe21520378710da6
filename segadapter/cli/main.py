"""`segadapter` command line: one module per sub-command, each with `add_parser` and `run`."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SegAdapterError

# sub-command name -> module in segadapter.cli (imported lazily so `--help` stays fast)
COMMANDS = {
    "train": "train",
    "eval": "evaluate",
    "predict": "predict",
    "flops": "flops",
    "list": "list_models",
    "export": "export",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segadapter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"segadapter.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"segadapter.cli.{module}":
                continue  # command not built yet
            raise
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SegAdapterError as e:
        print(f"segadapter {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
