"""The docs site builds with `mkdocs build --strict`: no broken internal link, no page missing from
the nav, no API object mkdocstrings cannot render, and the generated reference pages (CLI options,
config keys, model registry with parameters) hold what the code defines. Every method page has the
same sections, a Mermaid diagram and its generated variants table. Skips when mkdocs is not
installed (`pip install -e ".[docs]"`)."""
from __future__ import annotations

import fnmatch
import html as htmllib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings_handlers.python")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_strict_build_has_every_page(site):
    for page in ("index.html", "reference/cli/index.html", "reference/config/index.html",
                 "reference/models/index.html", "reference/api/index.html", "architecture/index.html",
                 "methods/segdeformer/index.html", "benchmarks/camvid-study/index.html"):
        assert (site / page).is_file(), page


def _hook():
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import reference
    finally:
        sys.path.pop(0)
    return reference


def test_cli_reference_lists_every_option(site):
    reference = _hook()
    html = (site / "reference/cli/index.html").read_text(encoding="utf-8")
    for name, parser in reference.command_parsers().items():
        assert f"segadapter {name}" in html
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert opt in html, (name, opt)


def test_config_reference_lists_every_key(site):
    from segadapter.engine.config import Config, schema_keys

    html = (site / "reference/config/index.html").read_text(encoding="utf-8")
    keys = schema_keys(Config)
    assert len(keys) > 40
    for key in keys:
        assert f"<code>{key}</code>" in html, key


def test_model_registry_and_api_pages(site):
    import segadapter

    html = (site / "reference/models/index.html").read_text(encoding="utf-8")
    # the registry as a fresh process has it (other tests register tests-only families in this one)
    names = subprocess.run([sys.executable, "-c", "import segadapter; print(*segadapter.list_models())"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert len(names) > 30
    for name in names:
        assert f"<code>{name}</code>" in html, name
    api = (site / "reference/api/index.html").read_text(encoding="utf-8")
    for obj in ("create_model", "from_pretrained", "list_models", "Inferencer", "Preprocessing"):
        assert f'id="segadapter.{obj}"' in api, obj



# ------------------------------------------------------------------ method pages, variants tables
SECTIONS = ["The idea", "Variants", "Published weights", "Known differences from the official code",
            "Train it", "Notes and measurements"]
# each method page and the registered models its variants table must list (independent of the hook)
METHOD_MODELS = {"segadapter": ("adapt-*",), "segformer": ("segformer-*", "convnext-*"),
                 "semask": ("semask-*",), "segdeformer": ("segdeformer-*",), "segvit": ("segvit-*",),
                 "san": ("san-*",)}


def _text(cell: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def table_rows(page_html: str) -> list[dict[str, str]]:
    """Every row of every table of a built page, as {header: cell text}."""
    rows = []
    for table in re.findall(r"<table>(.*?)</table>", page_html, re.S):
        heads = [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
        for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S):
            cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            if cells:
                rows.append(dict(zip(heads, cells)))
    return rows


def row_of(page_html: str, model: str, header: str = "params (M)") -> dict[str, str]:
    # the row of the model itself, not of `MODEL -o OPTION=VALUE`; a note may follow: "MODEL (C_d 256)"
    found = [r for r in table_rows(page_html)
             if header in r and re.fullmatch(rf"{re.escape(model)}( \(.*\))?", r.get("model", ""))]
    assert len(found) == 1, (model, found)
    return found[0]


def test_method_pages_have_the_sections_a_diagram_and_the_variants_table(site):
    import segadapter

    for page, patterns in METHOD_MODELS.items():
        html = (site / "methods" / page / "index.html").read_text(encoding="utf-8")
        heads = [_text(h) for h in re.findall(r"<h2[^>]*>(.*?)</h2>", html, re.S)]
        assert [h.rstrip("¶").strip() for h in heads] == SECTIONS, (page, heads)
        diagrams = re.findall(r'<pre class="mermaid"><code>(.*?)</code></pre>', html, re.S)
        assert diagrams and all(d.lstrip().startswith("flowchart") for d in diagrams), page
        assert "<!-- variants" not in html, page  # every marker was replaced by its table
        names = [n for n in segadapter.list_models() if any(fnmatch.fnmatch(n, p) for p in patterns)]
        assert names, page
        for name in names:
            row = row_of(html, name)
            assert re.fullmatch(r"\d+\.\d\d( \[[\d.,]+\]\*?)?", row["params (M)"]), (page, row)
            assert re.fullmatch(r"\d+\.\d\d( \[[\d.,]+\]\*?)?", row["GFLOPs"]), (page, row)


def test_generated_params_and_gflops_are_the_models_own(site):
    """The registry page's and the method pages' numbers against models built here for real (not
    on the meta device the hook uses) and counted with sum(p.numel())."""
    import segadapter
    from segadapter.analysis.flops import count_flops

    registry = (site / "reference/models/index.html").read_text(encoding="utf-8")
    for name, page in (("segformer-b0", "segformer"), ("adapt-mit-b0", "segadapter"),
                       ("segvit-vit-t", "segvit")):
        model = segadapter.create_model(name, num_classes=150)
        params = f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}"
        assert row_of(registry, name)["params (M)"] == params, name
        method = row_of((site / "methods" / page / "index.html").read_text(encoding="utf-8"), name)
        assert method["params (M)"].split(" ")[0] == params, name
        if name == "segformer-b0":  # one GFLOPs figure too (counting a real model takes ~1 s)
            assert method["GFLOPs"].split(" ")[0] == f"{count_flops(model, (512, 512)) / 1e9:.2f}"
    zoo = (site / "model-zoo/index.html").read_text(encoding="utf-8")
    assert row_of(zoo, "adapt-mit-b3")["params (M)"].endswith("[37.4]*")  # published figures kept
    assert "<!-- variants" not in zoo


def test_unknown_variants_marker_fails_the_build():
    from mkdocs.exceptions import PluginError

    class Page:
        class file:
            src_uri = "methods/x.md"

    with pytest.raises(PluginError, match="unknown variants table 'nope'"):
        _hook().on_page_markdown("<!-- variants: nope -->", page=Page, config=None, files=None)
