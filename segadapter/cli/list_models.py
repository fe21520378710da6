"""`segadapter list [PATTERN]`: registered model names."""
from __future__ import annotations


def add_parser(sub, name: str):
    p = sub.add_parser(name, help="list registered models")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'adapt-*'")
    return p


def run(args) -> int:
    from ..modeling.registry import list_models

    for n in list_models(args.pattern):
        print(n)
    return 0
