"""`segadapter prepare DATASET --from RAW --to OUT`: convert a raw download into the layout the
dataset reader expects, as the dataset's official preparation script does (resumable: rerun it
after an interruption; every file is written atomically)."""
from __future__ import annotations

import argparse


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    from ..data.prepare import CONVERTERS

    listing = "; ".join(f"{k}: {v[3]}" for k, v in CONVERTERS.items())
    p = subparsers.add_parser(
        name,
        help="convert a raw dataset download into the layout its reader expects",
        description="Convert a raw download as the dataset's official preparation script does, then read "
        f"it with `--dataset DATASET --data OUT`. RAW per dataset - {listing}.",
    )
    p.add_argument("dataset", metavar="DATASET", choices=list(CONVERTERS), help=", ".join(CONVERTERS))
    p.add_argument("--from", dest="raw", required=True, metavar="RAW", help="the raw download's folder")
    p.add_argument("--to", dest="out", required=True, metavar="OUT",
                   help="output folder (may be RAW itself; images are hard-linked or copied)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT",
                   help="only these splits [all the official script writes, e.g. train val]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare

    report = prepare(args.dataset, args.raw, args.out, args.splits, progress=not args.no_progress)
    for line in report.lines():
        print(f"{args.dataset} {line}")
    print(f"read it with: --dataset {args.dataset} --data {args.out}")
    return 0
