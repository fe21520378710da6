"""The docs site builds with `mkdocs build --strict`: no broken internal link, no page missing from
the nav, no API object mkdocstrings cannot render, and the generated reference pages (CLI options,
config keys, model registry) hold what the code defines. Skips when mkdocs is not installed
(`pip install -e ".[docs]"`)."""
from __future__ import annotations

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


def test_cli_reference_lists_every_option(site):
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import reference
    finally:
        sys.path.pop(0)
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

