"""The web demo: upload images, see overlays and a legend, download class-id PNGs.

`Backend` does the work (no Gradio needed; tested directly); `build_app` lays out the Gradio page
around it and `launch` serves it. Analytics and every outside call of the library are switched
off before Gradio is imported; the server binds to localhost unless told otherwise.
"""
from __future__ import annotations

import html
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SegAdapterError
from ..modeling.vocabulary import parse_class_names
from ..runtime.wrappers import bare_model
from .legend import CSS, legend_html, legend_rows
from .uploads import Limits, read_upload

# Gradio's telemetry and version check, Hugging Face Hub calls: all off, before any import of them.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1"}
API_NAME = "segment"
KEEP_REQUESTS = 64  # class-id PNG folders kept for download (oldest removed first)


@dataclass
class Outcome:
    overlays: list[tuple[np.ndarray, str]] = field(default_factory=list)
    legend: str = ""
    downloads: list[str] = field(default_factory=list)
    status: str = ""
    details: list[dict] = field(default_factory=list)
    state: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)  # (name, image, label)
    folder: Path | None = None  # this request's files


class Backend:
    """Segments uploads with an `Inferencer`; one request at a time (the model is shared)."""

    def __init__(self, inferencer, limits: Limits | None = None, out_root: str | os.PathLike | None = None):
        self.inferencer = inferencer
        self.limits = limits or Limits()
        self.out_root = Path(out_root or tempfile.mkdtemp(prefix="segadapter-serve-"))
        self.out_root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # All the work on one thread of its own: done by the server's many worker threads in turn,
        # each thread kept its own scratch memory of the network and its own malloc arena of
        # decoded pictures, and the server grew by a gigabyte under load (benchmarks/serve_load.py).
        # Requests run one at a time anyway (the model is shared).
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="segadapter-serve")
        self._folders_lock = threading.Lock()
        self.default_classes = list(inferencer.classes) if inferencer.classes is not None else None

    @property
    def open_vocabulary(self) -> bool:
        return self.inferencer.open_vocabulary

    def segment(self, paths: Sequence[str] | None, opacity: float = 0.5, classes_text: str | None = None) -> Outcome:
        """Every readable upload is segmented; each unreadable one gets a message, never an exception."""
        return self._worker.submit(self._segment, paths, opacity, classes_text).result()

    def _segment(self, paths: Sequence[str] | None, opacity: float, classes_text: str | None) -> Outcome:
        out = Outcome()
        paths = [p for p in (paths or []) if p]
        if not paths:
            out.status = _status([], ["Upload one or more images first."])
            return out
        errors = []
        if len(paths) > self.limits.max_files:
            errors.append(f"{len(paths)} files uploaded; only the first {self.limits.max_files} are segmented "
                          "(the server's --max-files)")
            paths = paths[: self.limits.max_files]
        opacity = min(max(float(opacity), 0.0), 1.0)
        images, details = [], []
        for p in paths:
            name = Path(p).name
            try:
                images.append((name, read_upload(p, self.limits, name)))
                details.append(None)  # filled in below, keeping the upload order
            except SegAdapterError as e:
                errors.append(str(e))
                details.append({"name": name, "error": str(e)})
        if not images:
            out.status, out.details = _status([], errors), details
            return out
        start = time.perf_counter()
        with self._lock:
            try:
                self._set_classes(classes_text)
                preds = self.inferencer([im for _, im in images])
                palette, classes = self.inferencer.palette, self.inferencer.classes
            except SegAdapterError as e:
                out.status = _status([], errors + [str(e)])
                return out
        elapsed = time.perf_counter() - start
        out.folder = self._request_dir()
        items, done_details = [], []
        for (name, image), pred, stem in zip(images, preds, _distinct_stems([n for n, _ in images])):
            rows = legend_rows(pred.shares(), classes, palette)
            items.append((name, rows))
            out.overlays.append((self.inferencer.overlay(image, pred.label, opacity), name))
            out.downloads.append(str(self._save_label(out.folder / f"{stem}_classes.png", pred.label)))
            done_details.append({"name": name, "size": [int(image.shape[1]), int(image.shape[0])], "classes": rows})
            out.state.append((name, image, pred.label))
        it = iter(done_details)
        out.details = [d if d is not None else next(it) for d in details]
        out.legend = legend_html(items)
        done = f"Segmented {len(images)} image{'s' * (len(images) != 1)} in {elapsed:.2f} s."
        out.status = _status([done], errors)
        return out

    def blend(self, state: list | None, opacity: float) -> list[tuple[np.ndarray, str]]:
        """New overlays for another opacity, without running the network again."""
        opacity = min(max(float(opacity), 0.0), 1.0)
        return self._worker.submit(lambda: [(self.inferencer.overlay(image, label, opacity), name)
                                            for name, image, label in (state or [])]).result()

    def gallery(self, overlays: list[tuple[np.ndarray, str]], folder: Path | None = None) -> list[tuple[str, str]]:
        """The overlays as PNG files for the page's gallery: (path, caption). Files, not arrays:
        Gradio caches a returned array under a hash of its bytes and rewrites that file in place, so
        two requests with the same overlay could rewrite it while the other's browser reads it;
        returned files it copies into its cache atomically."""
        return self._worker.submit(self._gallery, overlays, folder).result()

    def _gallery(self, overlays: list[tuple[np.ndarray, str]], folder: Path | None) -> list[tuple[str, str]]:
        from PIL import Image

        folder = folder or self._request_dir()
        files = []
        for (overlay, caption), stem in zip(overlays, _distinct_stems([c for _, c in overlays])):
            path = folder / f"{stem}_overlay.png"
            Image.fromarray(overlay).save(path, compress_level=1)
            files.append((str(path), caption))
        return files

    def _set_classes(self, text: str | None) -> None:
        if not self.open_vocabulary:
            return
        names = parse_class_names(text, "class names") if (text or "").strip() else None  # predict's rule
        self.inferencer.set_classes(names or self.default_classes)

    def _request_dir(self) -> Path:
        with self._folders_lock:  # requests and re-blends make folders concurrently
            old = sorted(self.out_root.iterdir(), key=lambda p: p.stat().st_mtime)
            for p in old[: max(0, len(old) - KEEP_REQUESTS + 1)]:
                shutil.rmtree(p, ignore_errors=True)
            return Path(tempfile.mkdtemp(dir=self.out_root))

    @staticmethod
    def _save_label(path: Path, label: np.ndarray) -> Path:
        from PIL import Image

        Image.fromarray(label.astype(np.uint8)).save(path, compress_level=1)
        return path


def _distinct_stems(names: Sequence[str]) -> list[str]:
    """File stems for one request's outputs: uploads may share a name (from different folders),
    their files must not: the second `frame` becomes `frame_2`."""
    stems: list[str] = []
    for name in names:
        stem = candidate = Path(name).stem
        n = 1
        while candidate in stems:  # also past an upload that was itself called `frame_2`
            n += 1
            candidate = f"{stem}_{n}"
        stems.append(candidate)
    return stems


def _status(notes: list[str], errors: list[str]) -> str:
    parts = [f'<div class="ok">{html.escape(n)}</div>' for n in notes]
    parts += [f'<div class="error">{html.escape(e)}</div>' for e in errors]
    return "".join(parts)


def describe(inferencer) -> str:
    """One line about the model and how it is fed, for the page's header."""
    pre = inferencer.preprocessing
    if pre.scale:
        resize = f"images fit in {pre.scale[0]}x{pre.scale[1]}" if pre.keep_ratio else \
            f"images resized to {pre.scale[0]}x{pre.scale[1]}"
    elif pre.short_side:
        resize = f"short side {pre.short_side}"
    else:
        resize = "images at their own size"
    name = bare_model(inferencer.model).name
    k = inferencer.num_classes
    return f"{name}, {k} classes, {resize}, {pre.mode} inference"


def build_app(backend: Backend, examples: Sequence[str] = (), title: str = "segadapter"):
    """The Gradio page (a `gr.Blocks`), not yet launched."""
    os.environ.update(OFFLINE_ENV)
    import gradio as gr

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {html.escape(title)}\n{html.escape(describe(backend.inferencer))}. "
                    "Upload images (max "
                    f"{backend.limits.max_bytes / 2**20:.0f} MB and {backend.limits.max_pixels / 1e6:.0f} M pixels "
                    f"each, {backend.limits.max_files} at a time).")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images", file_count="multiple", file_types=["image"], type="filepath",
                                elem_id="uploads")
                classes = gr.Textbox(label="Class names, comma separated (open-vocabulary model)",
                                     value=", ".join(backend.default_classes or []), elem_id="classes",
                                     visible=backend.open_vocabulary)
                opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity")
                run = gr.Button("Segment", variant="primary", elem_id="run")
                if examples:
                    gr.Examples(examples=[[[p]] for p in examples], inputs=[files], label="Examples")
            with gr.Column(scale=2):
                status = gr.HTML(elem_id="status")
                overlays = gr.Gallery(label="Overlay", columns=2, height=480, elem_id="overlays",
                                      interactive=False)
                with gr.Row():
                    legend = gr.HTML(elem_id="legend")
                    with gr.Column():
                        downloads = gr.File(label="Class-id PNGs (one byte per pixel: the class id)",
                                            file_count="multiple", elem_id="downloads", interactive=False)
                        with gr.Accordion("Details (JSON)", open=False):
                            details = gr.JSON(elem_id="details")
        state = gr.State([])

        def segment(paths, alpha, names):
            o = backend.segment(paths, alpha, names)
            return backend.gallery(o.overlays, o.folder), o.legend, o.downloads or None, o.status, o.details, o.state

        def blend(state, alpha):
            return backend.gallery(backend.blend(state, alpha))

        run.click(segment, [files, opacity, classes], [overlays, legend, downloads, status, details, state],
                  api_name=API_NAME, concurrency_limit=1, concurrency_id="model")
        opacity.release(blend, [state, opacity], [overlays], api_visibility="private",
                        concurrency_limit=4, concurrency_id="blend", show_progress="hidden")
    return demo


def launch(demo, backend: Backend, host: str = "127.0.0.1", port: int | None = None, queue_size: int = 32,
           block: bool = True, allowed_paths: Sequence[str] = ()):
    """Serve `demo` (requests queued, one model run at a time); returns (app, local_url)."""
    import gradio as gr

    demo.queue(default_concurrency_limit=1, max_size=queue_size)
    app, url, _ = demo.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block,
        max_file_size=backend.limits.max_bytes, show_error=False, ssr_mode=False, mcp_server=False,
        enable_monitoring=False, allowed_paths=list(allowed_paths), css=CSS,
        theme=gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                font_mono=["ui-monospace", "monospace"]),
        footer_links=["api"], inbrowser=False,
    )
    return app, url
