"""Where an ONNX graph spends its time in ONNX Runtime: ORT's own profiler over a few batch-1 runs
at 480x360 (random input: timings do not depend on the values), by operator type, and the share
of the time spent in weighted products (Conv / MatMul / Gemm with constant weights) - the only
work int8 kernels speed up. That share bounds what any int8 version of the graph can gain over
it: were those products free, the graph would run 1 / (1 - share) times faster (Amdahl).

    python benchmarks/ort_profile.py work_dirs/int8_benchmark/segformer-b0/fp32.onnx \\
        work_dirs/int8_benchmark/segformer-b0/int8.onnx
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import tempfile

import numpy as np


def kernel_times(path: str, runs: int = 8, size: tuple[int, int] = (360, 480), threads: int | None = None) -> list[dict]:
    """Per kernel call of `runs` batch-1 runs: node name, op type, microseconds. (ORT's layout pass
    names a Conv it moves to blocked layout after its output, plus `_nchwc`: that suffix is cut.)"""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(runs + 1):
        session.run(None, feed)
    trace = session.end_profiling()
    events = [e for e in json.load(open(trace)) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    os.remove(trace)
    first = len(events) // (runs + 1)  # drop the first run's calls: it allocates
    return [{"node": re.sub(r"_nchwc$", "", e["name"][:-len("_kernel_time")]),
             "op": e["args"]["op_name"], "us": e["dur"] / runs} for e in events[first:]]


def weighted_share(path: str, runs: int = 8, size: tuple[int, int] = (360, 480), threads: int | None = None,
                   calls: list[dict] | None = None) -> float:
    """The share of the graph's kernel time in weighted products (see the module's doc)."""
    import onnx

    from segadapter.export.fp32_nodes import weighted_nodes

    graph = onnx.load(path).graph
    names = weighted_nodes(graph)
    weighted = names | {n.output[0] for n in graph.node if n.name in names}  # a blocked-layout Conv's name
    calls = calls if calls is not None else kernel_times(path, runs, size, threads)
    return sum(c["us"] for c in calls if c["node"] in weighted) / sum(c["us"] for c in calls)


def profile(path: str, runs: int, size: tuple[int, int], top: int) -> None:
    calls = kernel_times(path, runs, size)
    by_op: collections.Counter = collections.Counter()
    for call in calls:
        by_op[call["op"]] += call["us"]
    total = sum(by_op.values())
    print(f"{path}: {total / 1000:.1f} ms a run in kernels")
    for op, us in by_op.most_common(top):
        print(f"  {op:24s} {us / 1000:7.1f} ms  {100 * us / total:5.1f}%")
    if any(c["op"] in ("QuantizeLinear", "DynamicQuantizeLinear") for c in calls):
        return  # an int8 graph already: the bound is the fp32 graph's
    share = weighted_share(path, calls=calls)
    print(f"  weighted products (Conv / MatMul / Gemm with constant weights): {100 * share:.1f}% of the time; "
          f"int8 can speed this graph up {1 / (1 - share):.2f}x at most")


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
