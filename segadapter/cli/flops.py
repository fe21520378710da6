"""`segadapter flops MODEL`: parameters and GFLOPs (multiply-adds) counted the paper's way."""
from __future__ import annotations

import argparse
import json

from ..analysis.flops import complexity_of
from .options import parse_model_options


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="count parameters and GFLOPs of a model",
                       description="Parameters (M) and GFLOPs (one multiply-add = one FLOP; backbone + "
                                   "decode head, eval mode, coarse path excluded; SAN: text encoder and the final "
                                   "class-mask combination excluded, as published).")
    p.add_argument("model", help="registered model name (see `segadapter list`)")
    p.add_argument("--num-classes", type=int, default=150)
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. -o decoder_channels=768 -o kernel_size=7")
    p.add_argument("--executed", action="store_true",
                   help="count what segadapter's inference runs (factored, BN-folded head) instead of "
                        "the architecture as published")
    p.add_argument("--json", action="store_true", help="print {'params_m', 'trainable_params_m', 'gflops'} as JSON")
    return p


def run(args) -> int:
    result = complexity_of(args.model, args.num_classes, tuple(args.size), executed=args.executed,
                           **parse_model_options(args.option))
    if args.json:
        print(json.dumps({"model": args.model, "num_classes": args.num_classes, "size": list(args.size), **result}))
    else:
        h, w = args.size
        frozen = result["params_m"] - result["trainable_params_m"]
        trainable = f" ({result['trainable_params_m']:.2f} M trainable, {frozen:.2f} M frozen)" if frozen else ""
        print(f"{args.model}: {result['params_m']:.2f} M parameters{trainable}, {result['gflops']:.2f} GFLOPs "
              f"{'executed ' if args.executed else ''}at {h}x{w} with {args.num_classes} classes")
    return 0
