"""A benchmark contender in its own process: the parent writes one command a line, the child
(the same script run with `--worker SPEC`) answers one line each. Shared by the speed benchmarks."""
from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable


class Worker:
    def __init__(self, script: str, spec: dict, env: dict | None = None):
        self.log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ if env is None else env, **spec.get("env", {}))
        self.proc = subprocess.Popen([sys.executable, script, "--worker", json.dumps(spec)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"benchmark worker died:\n{self.log.read()[-3000:]}")
        return line.strip()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def interleaved(script: str, specs: dict[str, dict], rounds: int, warmup: int = 1, env: dict | None = None,
                burst: int = 1) -> dict[str, dict[str, float]]:
    """Median and best ms and peak extra MB of each named spec, each in its own worker process
    running `script`, timed round-robin (A B C, B C A, ...) so a slow spell of the machine hits all
    alike. Workers start one by one (loading must not overlap); each turn runs `burst` calls back
    to back and keeps the last one's time."""
    workers: dict[str, Worker] = {}
    try:
        for name, spec in specs.items():
            workers[name] = Worker(script, spec, env)
            assert workers[name].read() == "ready"
        names = list(workers)
        for _ in range(warmup):
            for n in names:
                workers[n].ask("run")
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                times[n].append([float(workers[n].ask("run")) for _ in range(burst)][-1])
        return {n: {"median_ms": statistics.median(times[n]), "best_ms": min(times[n]),
                    "peak_extra_mb": float(workers[n].ask("mem"))} for n in names}
    finally:
        for w in workers.values():
            w.close()


# ----------------------------------------------------------------------------- the child's side
def serve(build: Callable[[], Callable[[], object] | dict[str, Callable[[], object]]]) -> None:
    """Build the timed callable, say `ready`, then answer `run` (ms of one call) and `mem` (peak
    extra MB since ready: the high-water RSS minus the RSS after building) until anything else.
    A build may return several callables by name: `run NAME` times that one."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library chatter on stdout must not mix with the protocol
    fn = build()
    gc.collect()
    reset_peak_rss()
    before = status_mb("VmRSS")
    print("ready", file=proto, flush=True)
    for line in sys.stdin:
        command, _, name = line.strip().partition(" ")
        if command == "run":
            call = fn[name] if name else fn
            t = time.perf_counter()
            call()
            print((time.perf_counter() - t) * 1e3, file=proto, flush=True)
        elif line.strip() == "mem":
            print(status_mb("VmHWM") - before, file=proto, flush=True)
        else:
            return


def status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the high-water mark (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
