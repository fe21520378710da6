"""Where an ONNX graph spends its time in ONNX Runtime, by operator type: ORT's own profiler over
a few batch-1 runs at 480x360 (random input: timings do not depend on the values).

    python benchmarks/ort_profile.py work_dirs/int8_benchmark/segformer-b0/fp32.onnx \
        work_dirs/int8_benchmark/segformer-b0/int8.onnx
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np


def profile(path: str, runs: int, size: tuple[int, int], top: int) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(runs):
        session.run(None, {session.get_inputs()[0].name: x})
    trace = session.end_profiling()
    by_op: collections.Counter = collections.Counter()
    for event in json.load(open(trace)):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    os.remove(trace)
    total = sum(by_op.values())
    print(f"{path}: {total / runs / 1000:.1f} ms a run in kernels")
    for op, us in by_op.most_common(top):
        print(f"  {op:24s} {us / runs / 1000:7.1f} ms  {100 * us / total:5.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graphs", nargs="+")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--top", type=int, default=10)
    args = p.parse_args()
    for g in args.graphs:
        profile(g, args.runs, tuple(args.size), args.top)


if __name__ == "__main__":
    main()
