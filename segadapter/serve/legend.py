"""The legend under each overlay: every predicted class with its colour and share of the image."""
from __future__ import annotations

import html
from typing import Sequence


def legend_rows(shares: dict[int, float], classes: Sequence[str] | None,
                palette: Sequence[Sequence[int]]) -> list[dict]:
    """[{id, name, color "#rrggbb", share}] for the classes present, largest share first."""
    rows = []
    for k, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        name = classes[k] if classes is not None and k < len(classes) else f"class {k}"
        r, g, b = (int(v) for v in palette[k]) if k < len(palette) else (255, 255, 255)
        rows.append({"id": int(k), "name": name, "color": f"#{r:02x}{g:02x}{b:02x}", "share": float(share)})
    return rows


def legend_html(items: list[tuple[str, list[dict]]]) -> str:
    """One block per image: its name, then a swatch, class name and percentage per row."""
    blocks = []
    for image_name, rows in items:
        lines = "".join(
            f'<div class="legend-row" data-class="{row["id"]}">'
            f'<span class="legend-swatch" style="background:{row["color"]}"></span>'
            f'<span class="legend-name">{html.escape(row["name"])}</span>'
            f'<span class="legend-share">{html.escape(_percent(row["share"]))}</span></div>'
            for row in rows)
        blocks.append(f'<div class="legend-image"><div class="legend-title">{html.escape(image_name)}</div>{lines}</div>')
    return "".join(blocks)


def _percent(share: float) -> str:
    return "<0.1%" if 0 < share < 0.0005 else f"{100 * share:.1f}%"


CSS = """
.legend-image { margin-bottom: 0.8em; }
.legend-title { font-weight: 600; margin-bottom: 0.3em; }
.legend-row { display: flex; align-items: center; gap: 0.5em; line-height: 1.6; }
.legend-swatch { width: 1.1em; height: 1.1em; border-radius: 3px; border: 1px solid #0003; flex: none; }
.legend-name { flex: 1; }
.legend-share { font-variant-numeric: tabular-nums; }
#status .error { color: #b91c1c; }
"""
