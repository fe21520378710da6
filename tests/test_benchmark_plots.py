"""The benchmark plots redrawn from the results committed under benchmarks/results/ (what
`--plot-only` does for the docs pages' PNGs), into tmp_path: every PNG is a real image of a sane
size and says the machine its JSON records, and the drawn data are the JSON's numbers (read here,
not copied). A few seconds; nothing is measured or trained."""
from __future__ import annotations

import importlib.util
import json
import re
import statistics
from pathlib import Path

import pytest

PIL = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
DOCS = ROOT / "docs" / "benchmarks"


def _script(monkeypatch, name: str):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as when the script runs: plots, worker_process
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_png(path: Path) -> None:
    assert path.is_file(), path
    with PIL.open(path) as image:
        image.verify()  # a PNG that decodes, not just a file with the name
    with PIL.open(path) as image:
        assert image.format == "PNG"
        w, h = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert 500 <= w <= 1600 and 300 <= h <= 1400, (path.name, image.size)
    assert 5_000 < path.stat().st_size < 200_000, (path.name, path.stat().st_size)
    assert colours is None or len(colours) > 16, f"{path.name} is nearly blank"


def _caption(fig) -> str:
    return " ".join(t.get_text() for t in fig.texts).replace("\n", " ")


def _bars(ax, gid: str) -> list[tuple[float, float]]:
    """(centre x, height) of the bars of one series, left to right."""
    return sorted((p.get_x() + p.get_width() / 2, p.get_height()) for p in ax.patches if p.get_gid() == gid)


def test_camvid_study_plots_are_the_result_json_values(monkeypatch, tmp_path):
    study = _script(monkeypatch, "camvid_study")
    folder = RESULTS / "camvid_study"
    results = [json.loads(f.read_text()) for f in sorted(folder.glob("*/result.json"))]
    assert results
    drawn = study.plot(results, (192, 256), study.recorded_recipe(folder), tmp_path)
    miou_png, gflops_png = tmp_path / "camvid-study-miou.png", tmp_path / "camvid-study-gflops.png"
    assert set(drawn) == {miou_png, gflops_png}
    for path in drawn:
        _check_png(path)
    by_model: dict[str, list[float]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r["mIoU"])

    # every seed a point at its result.json mIoU, in its model's row; the bar at the mean
    ax = drawn[miou_png].axes[0]
    row_of = {round(y): t.get_text().split(" (")[0] for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    seeds = next(c for c in ax.collections if c.get_gid() == "seeds")
    points = sorted((row_of[round(y)], round(x, 4)) for x, y in seeds.get_offsets())
    assert points == sorted((m, round(v, 4)) for m, values in by_model.items() for v in values)
    means = {row_of[round(p.get_y() + p.get_height() / 2)]: p.get_width()
             for p in ax.patches if p.get_gid() == "means"}
    assert means == pytest.approx({m: statistics.mean(v) for m, v in by_model.items()})

    # mIoU against GFLOPs: the means, at the GFLOPs table.md states (2 decimals)
    ax = drawn[gflops_png].axes[0]
    line = next(l for l in ax.lines if l.get_gid() == "points")
    named = {t.get_text().split(" (")[0]: t.xy for t in ax.texts}  # each name points at its marker
    table = {m: float(g) for m, g in re.findall(r"^\| `([\w-]+)` \|(?:[^|]*\|){4} ([\d.]+) \|",
                                                   (folder / "table.md").read_text(), re.M)}
    assert set(named) == set(by_model) <= set(table)
    for model, (x, y) in named.items():
        assert x == pytest.approx(table[model], abs=0.006)
        assert y == pytest.approx(statistics.mean(by_model[model]))
    markers = sorted(zip(line.get_xdata(), line.get_ydata()))
    assert [v for xy in markers for v in xy] == pytest.approx([v for xy in sorted(named.values()) for v in xy])

    # the machine: what result.json records, or the docs page's words and that it is not recorded
    for fig in drawn.values():
        caption = _caption(fig)
        assert "Machine:" in caption
        recorded = {r.get("machine") for r in results}
        if None in recorded:
            assert "not recorded in result.json" in caption and "docs/benchmarks/camvid-study.md" in caption
        assert all(m[:40] in caption for m in recorded if m)


def test_speed_vs_transformers_plot_shows_the_ratios_of_raw_json(monkeypatch, tmp_path):
    script = _script(monkeypatch, "speed_vs_hf")
    runs = json.loads((RESULTS / "speed_vs_hf" / "raw.json").read_text())
    (path, fig), = script.plot(runs, tmp_path).items()
    assert path == tmp_path / "speed-vs-transformers.png"
    _check_png(path)
    assert len(fig.axes) == len(runs)
    for ax, raw in zip(fig.axes, runs):
        t = {k: v["median_ms"] for k, v in raw["forward/b0/512x512"]["contenders"].items()}
        fp32, bf16, compiled = (_bars(ax, name)[0][1] for name in ("ours fp32", "ours bf16", "ours bf16 + compile"))
        assert fp32 == pytest.approx(t["hf-b0/fp32"] / t["ours-b0/fp32"])
        assert bf16 == pytest.approx(t["hf-b0/fp32"] / t["ours-b0/bf16"])
        assert compiled == pytest.approx(t["hf-b0/fp32"] / t["ours-b0/bf16+compile"])
        train = {k: v["median_ms"] for k, v in raw["train"].items()}
        assert _bars(ax, "ours fp32")[-1][1] == pytest.approx(train["hf-b0"] / train["ours-b0"])
    caption = _caption(fig)
    assert "Machine:" in caption and runs[0]["torch"] in caption
    if any("machine" not in r for r in runs):
        assert "not recorded in the JSON" in caption


def test_int8_plot_shows_every_path_against_ort_fp32(monkeypatch, tmp_path):
    script = _script(monkeypatch, "int8")
    results = json.loads((RESULTS / "int8" / "results.json").read_text())
    (path, fig), = script.plot(results, tmp_path).items()
    _check_png(path)
    latency, throughput = fig.axes[:2]
    models = list(results["models"].values())
    for ax, role in ((latency, "latency"), (throughput, "throughput")):
        assert [h for _, h in _bars(ax, "ort-fp32")] == pytest.approx([1.0] * len(models))
        int8 = [h for _, h in _bars(ax, "ort-int8")]
        speed = [m["speed"] for m in models]
        assert int8 == pytest.approx([s["ort-fp32"][role]["median_ms"] / s["ort-int8"][role]["median_ms"] for s in speed])
    ceilings = next(c for c in latency.collections if c.get_gid() == "int8 ceiling")
    assert sorted(seg[0][1] for seg in ceilings.get_segments()) == pytest.approx(
        sorted(m["int8_ceiling"]["speedup"] for m in models))
    caption = _caption(fig)
    m = results["machine"]
    assert m["cpu"] in caption and m["date"] in caption
    assert all(f"{flag} {'yes' if on else 'no'}" in caption for flag, on in m["isa"].items())


def test_predict_throughput_plot_shows_each_json(monkeypatch, tmp_path):
    script = _script(monkeypatch, "predict_throughput")
    files = sorted((RESULTS / "predict_throughput").glob("*.json"))
    runs = [json.loads(f.read_text()) for f in files]
    (path, fig), = script.plot(files, tmp_path).items()
    _check_png(path)
    stages, ratios = fig.axes[:2]
    assert sorted(h for _, h in _bars(ratios, "predict / forward")) == pytest.approx(sorted(r["ratio"] for r in runs))
    assert sorted(h for _, h in _bars(stages, "forward alone")) == pytest.approx(
        sorted(r["rates"]["forward"] for r in runs))
    caption = _caption(fig)
    assert all(r.get("machine", script.MACHINE_NOT_RECORDED) in caption for r in runs)


def test_time_to_accuracy_plot_draws_the_curve_of_its_json(monkeypatch, tmp_path):
    # no time-to-accuracy JSON is committed: a small report of the shape the script writes
    script = _script(monkeypatch, "time_to_accuracy")
    timeline = [{"iter": 100 * i, "mIoU": 4.0 * i, "train_s": 30.0 * i, "eval_s": 5.0} for i in range(1, 11)]
    report = {"machine": "a test machine, AMX-BF16 no",
              "time_to_accuracy": [{"model": "adapt-mit-b0", "amp": "amp auto -> fp32: no bf16 units",
                                    "timeline": timeline}],
              "step_ms": {"hf/default": 450.0, "ours/default": 230.0, "hf/tuned": 390.0, "ours/tuned": 190.0}}
    (path, fig), = script.plot(report, tmp_path).items()
    _check_png(path)
    curve = next(l for l in fig.axes[0].lines if l.get_gid() == "adapt-mit-b0")
    assert list(curve.get_xdata()) == pytest.approx([p["train_s"] / 60 for p in timeline])
    assert list(curve.get_ydata()) == pytest.approx([p["mIoU"] for p in timeline])
    assert [h for _, h in _bars(fig.axes[1], "tuned allocator")] == pytest.approx([390.0, 190.0])
    assert "a test machine, AMX-BF16 no" in _caption(fig)


def test_docs_pages_show_the_committed_plots():
    pngs = sorted((DOCS / "img").glob("*.png"))
    assert {p.name for p in pngs} >= {"camvid-study-miou.png", "camvid-study-gflops.png", "speed-vs-transformers.png",
                                      "int8-speed.png", "predict-throughput.png"}
    pages = " ".join(p.read_text() for p in DOCS.glob("*.md"))
    for png in pngs:
        _check_png(png)
        assert f"](img/{png.name})" in pages, f"{png.name} is on no benchmark page"
