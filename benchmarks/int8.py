"""CPU deployment, measured: our torch fp32, torch bf16 (eager and + torch.compile), ONNX Runtime
fp32 and ONNX Runtime int8 - the default rule, and `--int8-rule all` (every op type ONNX Runtime
quantizes, nothing kept fp32) - on the CamVid study's models, all in one run.

For each model: export fp32 and both int8 files (`segadapter export --int8` in Python: static
QDQ, per-channel weights, calibrated on `--calib-images` train images through the model's
preprocessing record), then
- val mIoU of every path, through `segadapter.evaluation.evaluate` (the `eval` command's loop; an
  .onnx runs as `segadapter eval out.onnx` runs it);
- ORT fp32 against torch fp32 (max abs logit difference) and int8 against ORT fp32 (pixels with
  the same label) on full val frames;
- latency (batch 1) and throughput (batch 8) at 480x360 (full CamVid frames): each path in its own
  worker process (`worker_process.py`), timed round-robin (A B C, B C A, ...) so a slow spell of
  the machine hits all alike; a latency turn is `--burst` calls back to back, the last one timed (a
  throughput turn one call); medians.
Every worker runs under the allocator settings the CLI applies (`segadapter.utils.malloc`) and with
torch's thread count. Before the timing, ONNX Runtime's profiler measures the share of the fp32
graph's time spent in weighted products (Conv / MatMul / Gemm with constant weights, the only work
int8 kernels speed up): 1 / (1 - share) is the most any int8 version can gain over ORT fp32
(`ort_profile.py`), reported beside the measured speed-up as `int8_ceiling`. The report states the
CPU's int8/bf16 ISA (AVX-512 VNNI, AMX), since int8 speed-ups depend on it, and checks the issue's
targets.

    python benchmarks/int8.py --data ../shared/data/camvid             # train what is missing (seed 0), measure
    python benchmarks/int8.py --runs work_dirs/a work_dirs/b           # existing run (or model) folders
    python benchmarks/int8.py --models segformer-b0 --iters 200        # a quick look: a short schedule
    python benchmarks/int8.py --quick ...                              # tiny schedule, few rounds (a smoke run)
    python benchmarks/int8.py --plot-only --plot-dir docs/benchmarks/img   # redraw the plot from --out's results.json

Models are trained with benchmarks/camvid_study.py's recipe (`train_one`, the `*_camvid-cpu`
configs) into `--train-out` (runs with a result.json are reused). Results: JSON per model, all of
it in results.json, and table.md under `--out` (benchmarks/results/int8/); the .onnx files go to
`--work` (work_dirs/int8_benchmark/). Beside them (or in `--plot-dir`), int8-speed.png: every path's
speed relative to ORT fp32 per model, latency and throughput, with the int8 ceiling; `--plot-only`
redraws it from an existing results.json, measuring nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from worker_process import Worker, serve  # benchmarks/ is on sys.path when a script runs

PATHS = ("torch-fp32", "torch-bf16", "torch-bf16-compile", "ort-fp32", "ort-int8", "ort-int8-all")
ORT_FILES = {"ort-fp32": "fp32.onnx", "ort-int8": "int8.onnx", "ort-int8-all": "int8-all.onnx"}
ISSUE_MODELS = ["segformer-b0", "adapt-mit-b0", "segdeformer-mit-b0", "segvit-vit-t"]
TARGETS = {"int8_vs_ort_fp32": 2.0, "int8_vs_best_torch": 1.5, "miou_drop": 1.0, "ort_fp32_diff": 1e-4}


# ----------------------------------------------------------------------------- child side
class _ByBatch(dict):
    """Callables by batch size ("1", "8", ...), made on first use: `run 8` times the network on
    8 frames (a compiled path compiles that shape in its first, warm-up, call)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key: str):
        self[key] = call = self.make(int(key))
        return call


def _build(spec: dict):
    """The network of `spec["path"]` on the first frames of `spec["frames"]`, by batch size."""
    import numpy as np

    from segadapter.utils.malloc import tune_malloc

    tune_malloc()  # as the CLI's eval / predict run
    frames = np.load(spec["frames"])

    def batch(b: int):
        return np.ascontiguousarray(np.resize(frames, (b, *frames.shape[1:])))
    path = spec["path"]
    if path.startswith("ort"):
        from segadapter.inference.onnx_network import INPUT, OUTPUT, open_session

        session = open_session(Path(spec["file"]), spec.get("threads"))
        return _ByBatch(lambda b: (lambda x=batch(b): session.run([OUTPUT], {INPUT: x})))
    import torch

    import segadapter

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = segadapter.from_pretrained(spec["model_dir"]).eval()
    bf16 = "bf16" in path
    if path.endswith("compile"):
        from segadapter.utils.compile import compile_for_inference

        model = compile_for_inference(model)

    def make(b: int):
        x = torch.from_numpy(batch(b))

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x)
        return run
    return _ByBatch(make)


def worker(spec: dict) -> None:
    serve(lambda: _build(spec))


# ----------------------------------------------------------------------------- machine
def machine() -> dict:
    import onnxruntime
    import torch

    from segadapter.utils.cpu_isa import cpu_model, isa_summary

    return {"cpu": cpu_model(), "isa": isa_summary(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


# ----------------------------------------------------------------------------- the models
def trained_runs(args) -> dict[str, Path]:
    """model name -> run folder: `--runs` as given, else camvid_study's recipe (seed `--seed`),
    training only what `--train-out` lacks."""
    if args.runs:
        return {_run_model_name(Path(r)): Path(r) for r in args.runs}
    from camvid_study import CONFIGS, train_one

    unknown = sorted(set(args.models) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"--models {' '.join(unknown)}: no CamVid study recipe; choose from {', '.join(CONFIGS)} "
                         "(or pass trained folders with --runs)")
    out = Path(args.train_out or (f"work_dirs/int8_benchmark/runs_iters{args.iters}" if args.iters
                                  else "benchmarks/results/int8/runs"))
    runs = {}
    for model in args.models:
        print(f"[{model}] training with the CamVid study recipe (seed {args.seed}) in {out} unless done", flush=True)
        train_one(model, args.seed, args.data, out, args.iters, [])
        runs[model] = out / f"{model}_seed{args.seed}"
    return runs


def _run_model_name(run: Path) -> str:
    from segadapter.modeling.model_folder import resolve_model_dir

    return json.loads((resolve_model_dir(run) / "config.json").read_text())["name"]


def model_folder(run: Path) -> Path:
    from segadapter.errors import SegAdapterError
    from segadapter.modeling.model_folder import resolve_model_dir

    try:
        return resolve_model_dir(run)
    except SegAdapterError as e:
        hint = (" (its result.json came without the checkpoint, which is not committed: delete result.json to "
                "retrain, or pass --runs)") if (run / "result.json").is_file() else ""
        raise SystemExit(f"{run}: {e}{hint}") from None


def dataset_of(folder: Path, args) -> tuple[str, str, dict]:
    """(dataset name, root, options) of the run the model folder came from (camvid and --data otherwise)."""
    from segadapter.modeling.model_folder import run_data_config

    data = run_data_config(folder)
    return data.get("dataset") or "camvid", args.data or data.get("root"), data.get("options") or {}


def export_all(model, pre, dataset: tuple, work: Path, args) -> dict:
    """fp32.onnx, int8.onnx (default rule) and int8-all.onnx in `work`, both int8 files calibrated
    on the same recorded network inputs."""
    from segadapter.export.calibration import calibration_tensors
    from segadapter.export.int8 import export_int8
    from segadapter.export.quantize import quantize_int8

    name, root, options = dataset
    images = calibration_tensors(root, pre, args.calib_images, name, "train", options)
    size = pre.resized_size(*args.size)
    default, inputs = export_int8(model, work / ORT_FILES["ort-int8"], images, pre, method=args.calib_method,
                                  sample_size=size, fp32_path=work / ORT_FILES["ort-fp32"])
    every = quantize_int8(work / ORT_FILES["ort-fp32"], work / ORT_FILES["ort-int8-all"], inputs,
                          args.calib_method, rule="all")
    return {"calibration_inputs": default.calibration_inputs, "default_rule": default.plan.summary(),
            "default_kept_fp32": default.plan.keep, "all_rule": every.plan.summary()}


# ----------------------------------------------------------------------------- accuracy
def timing_frames(dataset: tuple, pre, count: int, size: tuple[int, int], work: Path) -> Path:
    """The first val frames at `size` (H, W), normalised by the record: what every path is timed on."""
    import numpy as np

    from segadapter.data import build_dataset

    name, root, options = dataset
    fixed = pre.replace(scale=(size[1], size[0]), keep_ratio=False, short_side=None, max_size=None)
    val = build_dataset(name, root, "val", fixed.transforms(), **options)
    frames = np.stack([val[i]["image"].numpy() for i in range(min(count, len(val)))])
    path = work / f"frames_{size[0]}x{size[1]}.npy"
    np.save(path, frames)
    return path


def accuracy(model, pre, dataset: tuple, work: Path, frames: Path, args) -> dict:
    """val mIoU of every path (compile: the bf16 number; its graph computes what eager bf16 does),
    ORT fp32 vs torch, int8 vs ORT fp32."""
    import numpy as np
    import torch
    from torch.utils.data import Subset

    from segadapter.data import build_dataset
    from segadapter.evaluation import evaluate
    from segadapter.export.int8 import agreement
    from segadapter.inference.onnx_network import load_onnx_network

    name, root, options = dataset
    full = build_dataset(name, root, "val", pre.transforms(), **options)
    val = full
    if args.val_images:
        val = Subset(full, range(min(args.val_images, len(full))))
        val.classes, val.ignore_index = full.classes, full.ignore_index
    nets = {p: load_onnx_network(work / f) for p, f in ORT_FILES.items()}
    runs = {"torch-fp32": (model, None), "torch-bf16": (model, torch.bfloat16),
            **{p: (net, None) for p, net in nets.items()}}
    out: dict = {"val_images": len(val), "miou": {}}
    for path, (net, amp) in runs.items():
        if path in args.paths or path == "torch-fp32":
            result = evaluate(net, val, amp_dtype=amp, progress=False, **pre.inference_kwargs())
            out["miou"][path] = 100 * result.mIoU
            print(f"  {path:<18} val mIoU {100 * result.mIoU:.2f}", flush=True)
    if "torch-bf16-compile" in args.paths and "torch-bf16" in out["miou"]:
        out["miou"]["torch-bf16-compile"] = out["miou"]["torch-bf16"]
    x = torch.from_numpy(np.load(frames))
    with torch.inference_mode():
        ref = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
    inputs = [x[i:i + 1].numpy() for i in range(len(x))]
    ort = torch.cat([nets["ort-fp32"](x[i:i + 1]) for i in range(len(x))])  # one by one: SegDeformer's N x N scores
    out["ort_fp32_vs_torch_max_abs_diff"] = float((ort - ref).abs().max())
    # float32's own rounding, for scale: both fp32 paths against the same model in float64
    with torch.inference_mode():
        exact = copy.deepcopy(model).double()
        ref64 = torch.cat([exact(x[i:i + 1].double()) for i in range(len(x))])
    out["torch_fp32_vs_fp64_max_abs_diff"] = float((ref.double() - ref64).abs().max())
    out["ort_fp32_vs_fp64_max_abs_diff"] = float((ort.double() - ref64).abs().max())
    for path in ("ort-int8", "ort-int8-all"):
        agree = agreement(nets["ort-fp32"], nets[path], inputs)
        out[f"{path}_vs_ort_fp32"] = {"pixels_agree": agree.pixels, "max_abs_diff": agree.max_abs_diff,
                                      "frames": agree.inputs}
    return out


# ----------------------------------------------------------------------------- speed
def int8_ceiling(work: Path, args) -> dict:
    """The share of ORT fp32's kernel time in weighted products at the latency batch and size, and
    the speed-up int8 would give were those products free."""
    import torch
    from ort_profile import weighted_share

    share = weighted_share(str(work / ORT_FILES["ort-fp32"]), runs=max(2, args.rounds), size=tuple(args.size),
                           threads=args.threads or torch.get_num_threads())
    print(f"  weighted products: {100 * share:.1f}% of ORT fp32's kernel time; int8 ceiling {1 / (1 - share):.2f}x",
          flush=True)
    return {"weighted_share": share, "speedup": 1 / (1 - share)}


def timings(model_dir: Path, work: Path, frames: Path, args) -> dict:
    """Per path: median / best ms per call at the latency batch, then at the throughput batch (or
    the largest that fits in memory, said in `throughput.note`), and the peak extra MB."""
    workers: dict[str, Worker] = {}
    result: dict = {}
    base = {"frames": str(frames), "model_dir": str(model_dir), "threads": args.threads}
    try:
        for path in args.paths:  # started one by one: loading must not overlap
            worker = Worker(__file__, {**base, "path": path, "file": str(work / ORT_FILES.get(path, ""))}, env=_env())
            try:
                if worker.read() != "ready":
                    raise RuntimeError("did not say ready")
                workers[path] = worker
            except RuntimeError as e:
                result[path] = {"not_timed": str(e).strip().splitlines()[-1][:300]}
                print(f"  {path}: not timed ({result[path]['not_timed']})", flush=True)
                worker.close()
        latency, throughput = args.batch
        for name, stats in _round_robin(workers, latency, args.burst, args).items():
            result[name] = {"latency": stats}
        # each worker now holds its batch-1 high-water memory; a bigger batch needs about that much per image more
        per_image = sum(float(w.ask("mem")) for w in workers.values())
        fits = _fitting_batch(throughput, per_image, _available_mb())
        for name, stats in _round_robin(workers, fits, 1, args).items():  # a throughput call is long enough alone
            result[name]["throughput"] = stats
            if fits < throughput:
                stats["note"] = (f"batch {fits}, not {throughput}: {per_image:.0f} MB a frame for all paths together, "
                                 f"{_available_mb():.0f} MB available")
        for name, w in workers.items():
            result[name]["peak_extra_mb"] = float(w.ask("mem"))
        if fits < throughput:
            print(f"  throughput at batch {fits}: batch {throughput} would not fit in memory", flush=True)
        return result
    finally:
        for w in workers.values():
            w.close()


def _round_robin(workers: dict[str, Worker], batch: int, burst: int, args) -> dict[str, dict]:
    """Warm-up calls, then `args.rounds` rounds in rotating order (A B C, B C A, ...); a turn is
    `burst` calls back to back, the last one timed."""
    names = list(workers)
    for n in names:
        for _ in range(args.warmup):
            workers[n].ask(f"run {batch}")
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            times[n].append([float(workers[n].ask(f"run {batch}")) for _ in range(burst)][-1])
    return {n: {"batch": batch, "median_ms": statistics.median(t), "best_ms": min(t),
                "images_per_s": 1e3 * batch / statistics.median(t), "rounds": len(t)} for n, t in times.items()}


def _fitting_batch(batch: int, per_image_mb: float, available_mb: float, share: float = 0.7) -> int:
    """The largest batch up to `batch` whose extra images fit in `share` of the memory available
    (ONNX Runtime's graph of SegDeformer builds the full N x N attention scores: ~0.5 GB a frame)."""
    spare = share * available_mb
    return max(1, min(batch, 1 + int(spare // per_image_mb) if per_image_mb > 0 else batch))


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) / 1024


def _env() -> dict:
    from segadapter.utils import malloc

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(malloc.environment(), SEGADAPTER_TUNE_MALLOC="1")
    return env


# ----------------------------------------------------------------------------- report
def targets(model: str, row: dict) -> dict:
    """The issue's targets for one model: int8's speed-ups (latency and throughput), mIoU drop,
    ORT fp32's parity with torch."""
    speed, miou = row["speed"], row["accuracy"]["miou"]
    checks: dict = {}
    int8 = speed.get("ort-int8", {})
    for role in ("latency", "throughput"):
        if role not in int8:
            continue
        ort = speed.get("ort-fp32", {}).get(role)
        torch_paths = {p: s[role]["median_ms"] for p, s in speed.items() if p.startswith("torch") and role in s}
        if ort:
            checks[f"int8_vs_ort_fp32_{role}"] = _check(ort["median_ms"] / int8[role]["median_ms"],
                                                        TARGETS["int8_vs_ort_fp32"])
        if torch_paths and _is_mit(model):
            best = min(torch_paths, key=torch_paths.get)
            checks[f"int8_vs_best_torch_{role}"] = {**_check(torch_paths[best] / int8[role]["median_ms"],
                                                             TARGETS["int8_vs_best_torch"]), "best_torch": best}
    if "ort-int8" in miou:
        drop = miou["torch-fp32"] - miou["ort-int8"]
        checks["miou_drop"] = {"value": drop, "target": TARGETS["miou_drop"], "met": drop <= TARGETS["miou_drop"]}
    if "int8_vs_ort_fp32_latency" in checks and "int8_ceiling" in row:
        checks["int8_vs_ort_fp32_latency"]["ceiling"] = row["int8_ceiling"]["speedup"]  # int8's best possible
    acc = row["accuracy"]
    diff = acc["ort_fp32_vs_torch_max_abs_diff"]
    checks["ort_fp32_diff"] = {"value": diff, "target": TARGETS["ort_fp32_diff"], "met": diff <= TARGETS["ort_fp32_diff"]}
    if "torch_fp32_vs_fp64_max_abs_diff" in acc:  # how far each fp32 path is from float64
        checks["ort_fp32_diff"]["fp64"] = {"torch": acc["torch_fp32_vs_fp64_max_abs_diff"],
                                           "ort": acc["ort_fp32_vs_fp64_max_abs_diff"]}
    return checks


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _check(ratio: float, target: float) -> dict:
    return {"value": ratio, "target": target, "met": ratio >= target}


def _describe_check(name: str, check: dict) -> str:
    extra = [f"vs {check['best_torch']}"] if "best_torch" in check else []
    extra += [f"int8 ceiling {check['ceiling']:.2f}x"] if "ceiling" in check else []
    extra += [f"from float64: torch fp32 {check['fp64']['torch']:.2g}, ORT fp32 {check['fp64']['ort']:.2g}"] \
        if "fp64" in check else []
    return f"{name} {check['value']:.3g} ({', '.join(['met' if check['met'] else 'NOT met', *extra])})"


def _is_mit(model: str) -> bool:
    return model.startswith("segformer") or "-mit-" in model


def table(results: dict, settings: dict) -> str:
    m = results["machine"]
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["isa"].items())
    b1, bn = settings["batch"]
    h, w = settings["size"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores ({m['threads']} threads); {isa}; torch {m['torch']}, "
             f"onnxruntime {m['onnxruntime']}; {m['date']}",
             f"Timed at {w}x{h}, batch {b1} (latency) and {bn} (throughput; less where it does not fit in memory, "
             f"see the notes), {settings['rounds']} interleaved rounds, medians; val mIoU with each model's "
             "preprocessing record (torch-bf16-compile: eager bf16's, the same computation); int8 calibrated "
             f"({settings['calib_method']}) on {settings['calib_images']} train images.", "",
             "| model | path | latency (ms) | throughput (img/s) | x ORT fp32 (latency / throughput) | "
             "val mIoU | mIoU - torch fp32 | peak extra MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, row in results["models"].items():
        speed, miou = row["speed"], row["accuracy"]["miou"]
        ort = speed.get("ort-fp32", {})
        for path in PATHS:
            if path not in speed and path not in miou:
                continue
            s = speed.get(path, {})
            lat, thr = s.get("latency", {}), s.get("throughput", {})
            ratio = "-"
            if lat and thr and "latency" in ort and "throughput" in ort:
                ratio = (f"{ort['latency']['median_ms'] / lat['median_ms']:.2f}x / "
                         f"{ort['throughput']['median_ms'] / thr['median_ms']:.2f}x")
            mi = miou.get(path)
            delta = None if mi is None else mi - miou["torch-fp32"]
            timed = " (not timed)" if "not_timed" in s else ""
            batch = f" (b{thr['batch']})" if thr and thr["batch"] != bn else ""
            lines.append(f"| `{model}` | {path}{timed} | {_fmt(lat.get('median_ms'), '.1f')} | "
                         f"{_fmt(thr.get('images_per_s'), '.1f')}{batch} | {ratio} | {_fmt(mi, '.2f')} | "
                         f"{_fmt(delta, '+.2f')} | {_fmt(s.get('peak_extra_mb'), '.0f')} |")
    lines += ["", "Targets (issue 23): ORT int8 >= 2x ORT fp32 and >= 1.5x the best torch path (MiT models); "
              "mIoU within 1.0 of fp32; ORT fp32 within 1e-4 of torch.", ""]
    for model, row in results["models"].items():
        acc = row["accuracy"]
        agree = ", ".join(f"{p} {100 * acc[f'{p}_vs_ort_fp32']['pixels_agree']:.2f}%"
                          for p in ("ort-int8", "ort-int8-all"))
        checks = "; ".join(_describe_check(k, v) for k, v in row["targets"].items())
        notes = {s["throughput"]["note"] for s in row["speed"].values() if "note" in s.get("throughput", {})}
        lines.append(f"- `{model}`: {checks}. Labels as ORT fp32's on the timed val frames: {agree}. "
                     f"Default rule: {row['export']['default_rule']}" + "".join(f". Throughput: {n}" for n in notes))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
PLOT_FILE = "int8-speed.png"
PATH_COLORS = {"torch-fp32": "#9ecae1", "torch-bf16": "#4292c6", "torch-bf16-compile": "#08519c",
               "ort-fp32": "#fdae6b", "ort-int8": "#e6550d", "ort-int8-all": "#a63603"}  # torch blue, ORT orange


def describe_machine(m: dict) -> str:
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["isa"].items())
    return (f"{m['cpu']}, {m['cores']} cores ({m['threads']} threads); {isa}; torch {m['torch']}, "
            f"onnxruntime {m['onnxruntime']}; {m['date']}")


def plot(results: dict, plot_dir: Path) -> dict:
    """int8-speed.png in plot_dir: each path's speed relative to ORT fp32 (its time / the path's),
    latency and throughput, per model, the int8 ceiling marked; {path: figure}."""
    import plots

    settings, models = results["settings"], results["models"]
    paths = [p for p in PATHS if any("latency" in row["speed"].get(p, {}) for row in models.values())]
    fig, axes = plots.figure(8, 7, 2, 1)
    for ax, role in zip(axes, ("latency", "throughput")):
        series = {}
        for path in paths:
            series[path] = []
            for row in models.values():
                ort, this = row["speed"].get("ort-fp32", {}).get(role), row["speed"].get(path, {}).get(role)
                series[path].append(ort["median_ms"] / this["median_ms"] if ort and this else None)
        batches = {row["speed"][p][role]["batch"] for row in models.values() for p in paths
                   if role in row["speed"].get(p, {})}
        groups = []
        for name, row in models.items():
            b = {row["speed"][p][role]["batch"] for p in paths if role in row["speed"].get(p, {})}
            groups.append(name + (f"\n(batch {', '.join(map(str, sorted(b)))})" if len(batches) > 1 else ""))
        # no values on the bars: 24 of them, and the table above the plot has every number
        drawn = plots.grouped_bars(ax, groups, series, "x ORT fp32 (higher: faster)", reference=1.0,
                                   colors=PATH_COLORS, legend=role == "latency")
        if "ort-int8" in drawn:  # the most any int8 graph could gain over ORT fp32 (ORT's profiler)
            w = 0.6 * plots.bar_width(len(series))
            ceilings = [(x, row["int8_ceiling"]["speedup"]) for (x, _), row in zip(drawn["ort-int8"], models.values())
                        if row.get("int8_ceiling")]
            ax.hlines([c for _, c in ceilings], [x - w for x, _ in ceilings], [x + w for x, _ in ceilings],
                      color="black", linewidth=2, zorder=4, gid="int8 ceiling", label="int8 ceiling")
        size = f"{settings['size'][1]}x{settings['size'][0]}"
        batch = settings["batch"][0 if role == "latency" else 1]  # the one asked for; less where it did not fit
        ax.set_title(f"{role} at {size}, batch {batch}"
                     + (" (less where memory ran out)" if len(batches) > 1 else ""), fontsize=9)
    axes[0].legend(fontsize=7, frameon=False, ncols=4)
    note = (f"Median of {settings['rounds']} interleaved rounds per path, each in its own process; int8: static QDQ "
            f"calibrated ({settings['calib_method']}) on {settings['calib_images']} train images. Black tick: the int8 "
            "ceiling, 1 / (1 - share of ORT fp32's time in weighted products). Dashed line: ORT fp32.")
    path = plots.save(fig, plot_dir / PLOT_FILE, "int8 against fp32 on a CPU: speed of each path relative to ORT fp32",
                      describe_machine(results["machine"]), note=note)
    return {path: fig}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", default="../shared/data/camvid", help="CamVid root [../shared/data/camvid]")
    p.add_argument("--runs", nargs="+", metavar="RUN", help="trained run / model folders (no training)")
    p.add_argument("--models", nargs="+", default=ISSUE_MODELS, help=f"models to train when no --runs [{' '.join(ISSUE_MODELS)}]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, help="override the recipe's schedule (a quick look)")
    p.add_argument("--train-out", help="where models are trained [benchmarks/results/int8/runs; with --iters "
                   "work_dirs/int8_benchmark/runs_itersN]")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="paths to time [all]")
    p.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"), help="timed input [360 480]")
    p.add_argument("--batch", type=int, nargs=2, default=[1, 8], metavar=("LATENCY", "THROUGHPUT"), help="[1 8]")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--burst", type=int, default=3,
                   help="latency: calls per turn, the last one timed (throughput: one) [3]")
    p.add_argument("--threads", type=int, help="threads of every path [torch's default]")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--val-images", type=int, help="evaluate on the first N val images only [all]")
    p.add_argument("--work", default="work_dirs/int8_benchmark", help=".onnx files and timing frames")
    p.add_argument("--out", default="benchmarks/results/int8", help="JSON results and table.md")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 20 training iterations, 8 calibration and 8 val images, 2 rounds, bursts of 1")
    p.add_argument("--plot-only", action="store_true",
                   help="only redraw the plot from --out's results.json (measures nothing)")
    p.add_argument("--plot-dir", help=f"where {PLOT_FILE} goes [--out]")
    args = p.parse_args(argv)
    if args.quick:
        args.iters = args.iters or 20
        args.calib_images, args.val_images = min(args.calib_images, 8), args.val_images or 8
        args.rounds, args.warmup, args.burst = 2, 1, 1
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.plot_only:
        for path in plot(json.loads((Path(args.out) / "results.json").read_text()), Path(args.plot_dir or args.out)):
            print(path)
        return 0
    import segadapter
    from segadapter.inference.preprocess import preprocessing_of
    from segadapter.utils.cpu_isa import describe_isa
    from segadapter.utils.io import write_json_atomic, write_text_atomic

    settings = {k: getattr(args, k) for k in ("size", "batch", "rounds", "warmup", "burst", "calib_images",
                                              "calib_method", "val_images", "paths", "iters", "seed")}
    results = {"machine": machine(), "settings": settings, "models": {}}
    print(f"CPU: {results['machine']['cpu']}; {describe_isa()}", flush=True)
    out, work_root = Path(args.out), Path(args.work)
    for model_name, run in trained_runs(args).items():
        folder = model_folder(run)
        model = segadapter.from_pretrained(folder).eval()
        pre = preprocessing_of(model, source=str(folder))
        dataset = dataset_of(folder, args)
        work = work_root / model_name
        work.mkdir(parents=True, exist_ok=True)
        print(f"[{model_name}] {folder}: exporting fp32 and int8", flush=True)
        row = {"run": str(run), "model_folder": str(folder), "export": export_all(model, pre, dataset, work, args)}
        frames = timing_frames(dataset, pre, max(args.batch), tuple(args.size), work)
        print(f"[{model_name}] accuracy", flush=True)
        row["accuracy"] = accuracy(model, pre, dataset, work, frames, args)
        del model
        row["int8_ceiling"] = int8_ceiling(work, args)
        print(f"[{model_name}] timing {', '.join(args.paths)}", flush=True)
        row["speed"] = timings(folder, work, frames, args)
        row["targets"] = targets(model_name, row)
        results["models"][model_name] = row
        write_json_atomic(out / f"{model_name}.json", {"machine": results["machine"], "settings": settings, **row})
    text = table(results, settings)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "table.md", text + "\n")
    print(text)
    for path in plot(results, Path(args.plot_dir or out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
