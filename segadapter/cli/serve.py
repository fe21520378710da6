"""`segadapter serve RUN [--host 127.0.0.1] [--port 7860] [--data ROOT]`: a web demo in the browser.

Upload one or several images, set the overlay opacity, read the legend (each class's colour and
share of the image) and download the class-id PNGs; open-vocabulary models get a box for class
names. Scripts can call it with gradio_client (`Client(url).predict(..., api_name="/segment")`).
Needs the optional extra: pip install 'segadapter[demo]'.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError, DataError
from ..runtime.device import resolve_device
from ..runtime.wrappers import bare_model

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="web demo of a model (needs segadapter[demo])", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", metavar="RUN", help="model folder (save_pretrained) or training run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on [127.0.0.1: this machine only; 0.0.0.0 opens it to the network]")
    p.add_argument("--port", type=int, default=7860, help="[7860]")
    p.add_argument("--data", metavar="ROOT", help="dataset folder (or a folder of images) to offer example images from")
    p.add_argument("--examples", type=int, default=4, metavar="N", help="example images taken from --data [4]")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest accepted file, in MB [20]")
    p.add_argument("--max-pixels", type=float, default=40e6, help="largest accepted image, width x height [40e6]")
    p.add_argument("--max-files", type=int, default=16, help="images per request [16]")
    p.add_argument("--queue-size", type=int, default=32, help="requests waiting at most; more are refused [32]")
    p.add_argument("--device", default=None, help="cpu, cuda, ... [cuda if available, else cpu]")
    p.add_argument("--amp", choices=["auto", "none", "bf16", "fp16"], default="auto",
                   help="autocast the network; auto: bf16 where the device computes it natively, else fp32 (CPU) "
                        "or fp16 (CUDA) [auto]")
    p.add_argument("--title", default=None, help="page title [segadapter: MODEL]")
    return p


def run(args: argparse.Namespace) -> int:
    from ..inference import Inferencer
    from ..serve.uploads import Limits

    try:
        import gradio  # noqa: F401  (checked before the model loads)
    except ImportError:
        raise ConfigError("segadapter serve needs Gradio: pip install 'segadapter[demo]'") from None
    from ..serve.app import Backend, build_app, launch

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    try:
        limits = Limits(int(args.max_upload_mb * 2**20), int(args.max_pixels), args.max_files)
    except ValueError as e:
        raise ConfigError(f"limits: {e}") from None
    inferencer = Inferencer(args.ckpt, device=resolve_device(args.device),
                            amp=args.amp)
    examples_dir = Path(tempfile.mkdtemp(prefix="segadapter-examples-"))
    examples = _examples(Path(args.data), args.examples, examples_dir) if args.data else []
    backend = Backend(inferencer, limits)
    name = bare_model(inferencer.model).name
    demo = build_app(backend, examples, title=args.title or f"segadapter: {name}")
    if args.host not in LOOPBACK:
        print(f"segadapter serve: note: listening on {args.host}: anyone who can reach this machine can use "
              "the demo", file=sys.stderr)
    print(f"serving {args.ckpt} on http://{_url_host(args.host)}:{args.port}  (Ctrl+C stops)", flush=True)
    try:
        launch(demo, backend, args.host, args.port, args.queue_size, block=True, allowed_paths=[str(examples_dir)])
    finally:
        shutil.rmtree(examples_dir, ignore_errors=True)
        shutil.rmtree(backend.out_root, ignore_errors=True)
    return 0


def _examples(root: Path, n: int, into: Path) -> list[str]:
    """The first `n` validation images of a recognised dataset (else images in the folder), copied
    into `into` so that only they, not the whole dataset folder, are served."""
    from ..data import build_dataset
    from ..data.layout import IMAGE_EXTS, list_files
    from .demo import detect_dataset

    if not root.is_dir():
        raise DataError(f"--data {root}: no such folder")
    try:
        found = [p for p, _ in build_dataset(detect_dataset(root), root, "val").pairs[:n]]
    except (DataError, AttributeError):
        found = list_files(root, IMAGE_EXTS)[:n]
    if not found:
        raise DataError(f"--data {root}: no images found (a dataset's val split, or images in the folder)")
    out = []
    for p in found:
        shutil.copy(p, into / Path(p).name)
        out.append(str(into / Path(p).name))
    return out


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
