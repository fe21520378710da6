"""`segadapter download NAME|ORG/NAME`: fill the Hugging Face cache ahead of time, for machines
that train offline (`HF_HUB_OFFLINE=1` with the same `HF_HOME`)."""
from __future__ import annotations


def add_parser(sub, name: str):
    p = sub.add_parser(name, help="download published weights into the Hugging Face cache",
                       description="Download published weights into the Hugging Face cache (HF_HOME), so that "
                                   "pretrained=true / hub ids work offline later.")
    p.add_argument("source", help="a registered model (its default weights, as pretrained=true) or a hub id "
                                  "ORG/NAME[@REVISION] (hf-hub: prefix optional)")
    p.add_argument("--revision", default=None, help="branch, tag or commit [main]")
    p.add_argument("--num-classes", type=int, default=None,
                   help="for segformer-*: 150 or 19 pick the ADE20K / Cityscapes fine-tuned model [encoder only]")
    p.add_argument("--weights", default=None, metavar="TAG", help="a named alternative of the model, e.g. in22k")
    p.add_argument("--refresh", action="store_true", help="ask the Hub again even if the cache has the files")
    return p


def run(args) -> int:
    from ..errors import ConfigError
    from ..modeling import hf_hub, published
    from ..modeling.registry import list_models

    if args.source in list_models():
        choice = published.default_weights(args.source, args.num_classes or 0, args.weights)
        repo, revision = choice.repo, args.revision
        print(f"{args.source}: {choice.repo} ({choice.part}; {choice.paper})")
    else:
        found = hf_hub.hub_id(args.source if args.source.startswith(hf_hub.PREFIX) else hf_hub.PREFIX + args.source)
        if found is None:
            raise ConfigError(f"{args.source}: neither a registered model (`segadapter list`) nor a hub id ORG/NAME")
        repo, revision = found
        if args.revision and revision and args.revision != revision:
            raise ConfigError(f"{args.source} names revision {revision!r} but --revision says {args.revision!r}")
        revision = revision or args.revision
    folder = hf_hub.fetch(repo, revision, refresh=args.refresh)
    print(f"{hf_hub.describe(repo, revision)} -> {folder}")
    return 0
