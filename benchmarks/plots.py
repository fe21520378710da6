"""The benchmark scripts' plots: a few drawing helpers on matplotlib's Agg backend.

Figures are made with `matplotlib.figure.Figure` and an Agg canvas, never through pyplot, so
no display and no global figure state are involved (a script can draw in any environment and a
test can read the drawn data back from the returned figure). Every figure states the machine its
numbers were measured on under its axes (`save(..., machine=...)`): speed only carries to a CPU
with the same ISA.

Used by camvid_study.py, speed_vs_hf.py, int8.py, predict_throughput.py and time_to_accuracy.py,
which import it lazily (only when they draw), so timing workers never load matplotlib.
"""
from __future__ import annotations

import textwrap
import io
import math
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

DPI = 110  # a 7-inch-wide figure is ~770 px: sharp in the docs, a few tens of KB as PNG
PALETTE_COLORS = 128
CAPTION_WIDTH = 120  # characters per caption line at the default figure width


def this_machine() -> str:
    """One line about the machine running now: CPU model, cores/threads, int8/bf16 ISA, torch."""
    import os

    import torch

    from segadapter.utils.cpu_isa import cpu_model, describe_isa

    return (f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads; {describe_isa()}; "
            f"PyTorch kernels {torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}")


def figure(width: float = 7.0, height: float = 4.0, nrows: int = 1, ncols: int = 1, **kw):
    """(fig, axes) on an Agg canvas; axes is one Axes for 1x1, else an array (as `subplots`)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def save(fig: Figure, path: str | Path, title: str, machine: str, note: str | None = None) -> Path:
    """Title on top, 'Machine: ...' (and `note`) as a caption under the axes; PNG at DPI."""
    fig.suptitle(title, fontsize=11)
    caption = textwrap.fill(f"Machine: {machine}", CAPTION_WIDTH)
    if note:
        caption += "\n" + textwrap.fill(note, CAPTION_WIDTH)
    fig.tight_layout()
    # below the figure's own area: bbox_inches="tight" grows the image to hold it
    fig.text(0.01, 0.0, caption, fontsize=7, ha="left", va="top", color="0.25")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    # stored as a 128-colour palette PNG: about a third of the bytes, no visible change on flat-colour charts
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=PALETTE_COLORS).save(path, format="PNG", optimize=True)
    return path


def seed_spread(ax, rows: Sequence[tuple[str, Sequence[float]]], xlabel: str) -> None:
    """One row per (label, [value of each seed]), top to bottom: every seed's value as a point
    (gid "seeds"), the mean as a bar (its patches: gid "means"), the seeds' range as a line, and
    the 'mean ± half-range' text the tables print."""
    ys = list(range(len(rows) - 1, -1, -1))  # first row on top
    means = [sum(values) / len(values) for _, values in rows]
    for y, (_, values) in zip(ys, rows):
        ax.hlines(y, min(values), max(values), color="0.6", linewidth=2, zorder=1)
    ax.barh(ys, means, height=0.5, color="#c6dbef", edgecolor="#6baed6", zorder=0, gid="means")
    px = [v for _, values in rows for v in values]
    py = [y for y, (_, values) in zip(ys, rows) for _ in values]
    ax.scatter(px, py, s=28, color="#08519c", zorder=3, gid="seeds", label="one seed")
    top = max(px)
    for y, m, (_, values) in zip(ys, means, rows):
        ax.text(max(values) + 0.025 * top, y, f"{m:.2f} ± {(max(values) - min(values)) / 2:.2f}", va="center",
                fontsize=8)
    ax.set_yticks(ys, [label for label, _ in rows])
    ax.set_xlim(0, top * 1.18)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="0.9", zorder=-1)
    ax.legend(loc="lower right", fontsize=8, frameon=False)


def labelled_points(ax, points: Sequence[dict], xlabel: str, ylabel: str, logx: bool = False) -> None:
    """Points {"label", "x", "y", "low", "high"}: y with a bar from low to high (gid "points"),
    each point named next to it."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    err = [[p["y"] - p["low"] for p in points], [p["high"] - p["y"] for p in points]]
    line = ax.errorbar(xs, ys, yerr=err, fmt="o", color="#08519c", ecolor="0.5", capsize=3, zorder=3)
    line.lines[0].set_gid("points")
    if logx:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.5, max(xs) * 3)  # room on the right for the last point's name
    else:
        span = (max(xs) - min(xs)) or 1.0
        ax.set_xlim(min(xs) - 0.1 * span, max(xs) + 0.5 * span)
    lows, highs = min(p["low"] for p in points), max(p["high"] for p in points)
    pad = 0.08 * ((highs - lows) or 1.0)
    ax.set_ylim(lows - pad, highs + pad)
    # names stacked apart where points sit close together (models of nearly equal cost)
    gap = 0.06 * (highs - lows + 2 * pad)
    pos = math.log10 if logx else float
    near = 0.12 if logx else 0.05 * ((max(xs) - min(xs)) or 1.0)
    placed: list[tuple[float, float]] = []  # (x position, label y) already used
    for p in sorted(points, key=lambda p: p["y"]):
        y = p["y"]
        for x0, y0 in sorted(placed, key=lambda t: t[1]):
            if abs(pos(p["x"]) - x0) < near and y < y0 + gap:
                y = y0 + gap
        placed.append((pos(p["x"]), y))
        moved = abs(y - p["y"]) > 1e-9
        ax.annotate(p["label"], (p["x"], p["y"]), xytext=(p["x"] * 1.12 if logx else p["x"] + 0.02 * near, y),
                    textcoords="data", fontsize=8, va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.6} if moved else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(color="0.9", zorder=-1)


def grouped_bars(ax, groups: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str,
                 reference: float | None = None, value_format: str | None = None, colors: dict | None = None,
                 legend: bool | str = True) -> dict:
    """Bars of every series side by side in each group (None: no bar), a dashed line at
    `reference` (e.g. 1x), values written on the bars with `value_format` when given, a legend
    (`legend` may name its matplotlib location). Each
    series' bars carry gid = the series name; returns {series: [(x, value)]}, its bars' places."""
    k = len(series)
    width = 0.8 / max(k, 1)
    drawn: dict = {}
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (k - 1) / 2) * width for g in range(len(groups))]
        kept = [(x, v) for x, v in zip(xs, values) if v is not None]
        drawn[name] = kept
        if not kept:
            continue
        bars = ax.bar([x for x, _ in kept], [v for _, v in kept], width=width * 0.95, label=name,
                      color=(colors or {}).get(name), gid=name, zorder=2)
        if value_format:
            ax.bar_label(bars, labels=[format(v, value_format) for _, v in kept], fontsize=6,
                         rotation=90 if k > 3 else 0, padding=2)
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1, zorder=1)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="0.9", zorder=-1)
    ax.margins(y=0.15)
    if legend:
        ax.legend(fontsize=7, frameon=False, ncols=min(k, 3), loc=legend if isinstance(legend, str) else "best")
    return drawn


def bar_width(k: int) -> float:
    """The width grouped_bars gives each of k series' bars."""
    return 0.8 / max(k, 1) * 0.95
